package events

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// roundTripDoc is what Validate decoded before eventDoc existed.
func roundTripDoc(t *testing.T, ev event.Event) (any, bool) {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, false
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("re-decode: %v", err)
	}
	return doc, true
}

// TestEventDocMatchesRoundTrip: for every event eventDoc accepts, its
// document equals the one decoded from json.Marshal(ev), so the schema
// sees the same input either way; for the rest it declines.
func TestEventDocMatchesRoundTrip(t *testing.T) {
	t.Parallel()
	evs := map[string]event.Event{}
	add := func(name string, b []byte) {
		var ev event.Event
		if err := json.Unmarshal(b, &ev); err == nil {
			evs[name] = ev
		}
	}
	samples := validSamples(t)
	for typ, b := range samples {
		add(typ, b)
	}
	// Shapes the validator must also see right: wrong types, odd numbers,
	// missing data, other content types, unusual extensions.
	edits := map[string]func(m map[string]any){
		"sessionid number":   func(m map[string]any) { m["sessionid"] = 5 },
		"step float":         func(m map[string]any) { m["step"] = 1.5 },
		"step big":           func(m map[string]any) { m["step"] = 1e12 },
		"no data":            func(m map[string]any) { delete(m, "data") },
		"data string":        func(m map[string]any) { m["data"] = "stop" },
		"data null":          func(m map[string]any) { m["data"] = nil },
		"text content":       func(m map[string]any) { m["datacontenttype"] = "text/plain"; m["data"] = "hi" },
		"json with charset":  func(m map[string]any) { m["datacontenttype"] = "application/json; charset=utf-8" },
		"no content type":    func(m map[string]any) { delete(m, "datacontenttype") },
		"base64":             func(m map[string]any) { delete(m, "data"); m["data_base64"] = "aGk=" },
		"subject and schema": func(m map[string]any) { m["subject"] = "s"; m["dataschema"] = "https://example.com/s" },
		"bool extension":     func(m map[string]any) { m["flag"] = true },
		"html in strings":    func(m map[string]any) { m["sessionid"] = "<a&b>"; data(m)["prompt"] = "<b>&amp;" },
		"unicode":            func(m map[string]any) { data(m)["prompt"] = "naïve — ✓ \u2028" },
		"time with zone":     func(m map[string]any) { m["time"] = "2026-01-02T03:04:05.123456789+02:00" },
	}
	for name, f := range edits {
		add(name, edit(t, samples[TypeAgentRequested], f))
	}
	built, err := New(TypeStepPlanned, SourcePlanner, "s1", StepPlanned{Step: 2, Calls: []ToolCall{{ID: "c", Name: "t", Input: json.RawMessage(`{"x":[1,2.50,-3e2]}`)}}},
		WithSubject("subj"), WithTraceState("k=v"), WithTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))))
	if err != nil {
		t.Fatal(err)
	}
	evs["built with options"] = built
	odd := built.Clone()
	odd.SetExtension("count", 7)
	evs["int extension"] = odd

	accepted := 0
	for name, ev := range evs {
		got, ok := eventDoc(&ev)
		want, wantOK := roundTripDoc(t, ev)
		if !ok {
			continue
		}
		accepted++
		if !wantOK {
			t.Errorf("%s: eventDoc accepted an event json.Marshal rejects", name)
			continue
		}
		if !reflect.DeepEqual(any(got), want) {
			t.Errorf("%s: documents differ\n direct:     %#v\n round trip: %#v", name, got, want)
		}
	}
	if accepted < len(samples) {
		t.Errorf("eventDoc took only %d of %d events", accepted, len(evs))
	}
	// Declined shapes.
	b64 := built.Clone()
	b64.DataBase64 = true
	text := built.Clone()
	_ = text.SetData("text/plain", "hi")
	bad := built.Clone()
	bad.DataEncoded = []byte(`{"x":`)
	shadow := built.Clone()
	shadow.Context.(*event.EventContextV1).Extensions["data"] = "x"
	for name, ev := range map[string]event.Event{"base64": b64, "text": text, "invalid data": bad, "extension named data": shadow} {
		if _, ok := eventDoc(&ev); ok {
			t.Errorf("%s: eventDoc accepted it", name)
		}
	}
}
