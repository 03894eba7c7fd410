package events

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

func sampleEvent(t *testing.T) event.Event {
	t.Helper()
	ev := event.New()
	ev.SetID("0190c9f4-7d2a-7c1e-9a55-3c1d2f0b1a11")
	ev.SetSource("agentbus/planner")
	ev.SetType("agentbus.step.planned.v1")
	ev.SetTime(time.Date(2026, 11, 25, 14, 0, 0, 123456789, time.UTC))
	ev.SetExtension("sessionid", "s-1")
	ev.SetExtension("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	ev.SetExtension("step", 3)
	if err := ev.SetData("application/json", map[string]any{"step": 3, "calls": []any{map[string]any{"id": "c1", "name": "clock", "input": map[string]any{}}}}); err != nil {
		t.Fatal(err)
	}
	return ev
}

// canonical renders an event as a generic JSON value so that equality does not
// depend on field order or extension map iteration.
func canonical(t *testing.T, ev event.Event) any {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestEnvelopeRoundTrip(t *testing.T) {
	t.Parallel()
	ev := sampleEvent(t)
	env, err := ToEnvelope(ev)
	if err != nil {
		t.Fatal(err)
	}
	if env.Source != "agentbus/planner" || env.DetailType != "agentbus.step.planned.v1" {
		t.Fatalf("envelope source/detail-type = %q/%q", env.Source, env.DetailType)
	}
	body := EnvelopeJSON(env, "eb-1", time.Date(2026, 11, 25, 14, 0, 1, 0, time.FixedZone("x", 3600)), "123456789012", "us-east-1")

	var top map[string]any
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatalf("envelope JSON invalid: %v\n%s", err, body)
	}
	want := map[string]any{
		"version": "0", "id": "eb-1", "detail-type": "agentbus.step.planned.v1", "source": "agentbus/planner",
		"account": "123456789012", "time": "2026-11-25T13:00:01Z", "region": "us-east-1", "resources": []any{},
	}
	for k, v := range want {
		if !reflect.DeepEqual(top[k], v) {
			t.Errorf("envelope[%q] = %#v, want %#v", k, top[k], v)
		}
	}
	detail, ok := top["detail"].(map[string]any)
	if !ok {
		t.Fatalf("detail is not an object: %#v", top["detail"])
	}
	// Rules match extensions as top-level fields of detail.
	if detail["sessionid"] != "s-1" || detail["type"] != "agentbus.step.planned.v1" {
		t.Errorf("detail lacks top-level attributes: %#v", detail)
	}

	got, err := FromDelivery(body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(canonical(t, got), canonical(t, ev)) {
		t.Errorf("round trip changed the event:\n got %s\nwant %s", got, ev)
	}
	if !got.Time().Equal(ev.Time()) {
		t.Errorf("time = %v, want %v", got.Time(), ev.Time())
	}
}

func TestFromDeliveryBareCloudEvent(t *testing.T) {
	t.Parallel()
	ev := sampleEvent(t)
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := FromDelivery(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(canonical(t, got), canonical(t, ev)) {
		t.Errorf("bare CloudEvent changed:\n got %s\nwant %s", got, ev)
	}
}

func TestFromDeliveryRejectsGarbage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body, wantMsg string
	}{
		{"not json", `hello`, "not a JSON object"},
		{"json array", `[1,2]`, "not a JSON object"},
		{"empty object", `{}`, "neither an EventBridge envelope"},
		{"detail without detail-type", `{"detail":{}}`, "no \"detail-type\""},
		{"detail not object", `{"detail-type":"x","source":"y","detail":"str"}`, "decode CloudEvent"},
		{"detail missing id", `{"detail-type":"x","source":"y","detail":{"specversion":"1.0","type":"x","source":"y"}}`, "id"},
		{"bare missing type", `{"specversion":"1.0","id":"1","source":"y"}`, "type"},
		{"bad specversion", `{"specversion":"9.9","id":"1","source":"y","type":"t"}`, "decode CloudEvent"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := FromDelivery([]byte(tc.body))
			if !errors.Is(err, ErrInvalidEnvelope) {
				t.Fatalf("err = %v, want ErrInvalidEnvelope", err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("err = %q, want it to mention %q", err, tc.wantMsg)
			}
		})
	}
}

func TestToEnvelopeRejectsInvalidEvent(t *testing.T) {
	t.Parallel()
	ev := event.New()
	ev.SetType("agentbus.step.planned.v1") // no id, no source
	if _, err := ToEnvelope(ev); err == nil {
		t.Fatal("ToEnvelope accepted an event without id and source")
	}
}

func TestEnvelopeJSONEmptyDetail(t *testing.T) {
	t.Parallel()
	body := EnvelopeJSON(Envelope{Source: "s", DetailType: "d"}, "1", time.Unix(0, 0), "a", "r")
	var top map[string]any
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatal(err)
	}
	if d, ok := top["detail"].(map[string]any); !ok || len(d) != 0 {
		t.Errorf("detail = %#v, want {}", top["detail"])
	}
}
