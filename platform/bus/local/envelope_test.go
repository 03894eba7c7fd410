package local

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
)

func TestEnvelopeMatchesEventsPackage(t *testing.T) {
	t.Parallel()
	tm := time.Date(2026, 11, 25, 14, 3, 4, 999, time.FixedZone("x", 3600))
	for i, tc := range []struct{ source, typ, id string }{
		{"agentbus/planner", "agentbus.step.planned.v1", "0191-abc"},
		{"a<b>&c\"d\\e", "t\u2028\u00e9\x01", "id"},
		{"", "x", ""},
	} {
		ev := event.New()
		ev.SetID("e1")
		ev.SetSource(tc.source)
		if tc.source == "" {
			ev.SetSource("s")
		}
		ev.SetType(tc.typ)
		ev.SetExtension("sessionid", "s1")
		_ = ev.SetData(event.ApplicationJSON, map[string]any{"x": []int{1, 2}, "html": "<&>"})
		env, err := events.ToEnvelope(ev)
		if err != nil {
			t.Fatal(err)
		}
		want := events.EnvelopeJSON(env, tc.id, tm, "123456789012", "eu-west-1")
		detail, err := marshalDetail(&ev)
		if err != nil {
			t.Fatal(err)
		}
		got := appendEnvelope(nil, ev.Source(), ev.Type(), detail, tc.id, tm, "123456789012", "eu-west-1")
		// json.Marshal also HTML-escapes inside detail (e.g. & in a source),
		// so bytes differ for such input; the documents must not.
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("invalid envelope %s: %v", got, err)
		}
		_ = json.Unmarshal(want, &w)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("envelope differs:\n got %s\nwant %s", got, want)
		}
		if i == 0 && !bytes.Equal(got, want) {
			t.Errorf("envelope bytes differ:\n got %s\nwant %s", got, want)
		}
	}
	bad := event.New()
	if _, err := marshalDetail(&bad); err == nil {
		t.Error("invalid event marshalled")
	}
}

func TestIDGen(t *testing.T) {
	t.Parallel()
	g := newIDGen()
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := g.next()
		if !re.MatchString(id) {
			t.Fatalf("id %q is not UUID-shaped", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
}
