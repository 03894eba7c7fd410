package events

import (
	"errors"
	"testing"
	"time"
)

// FuzzFromDelivery: any body either decodes into a valid CloudEvent or fails
// with ErrInvalidEnvelope, never panics; a decoded event survives the
// envelope round trip.
func FuzzFromDelivery(f *testing.F) {
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"s","type":"t"}`))
	f.Add([]byte(`{"version":"0","detail-type":"t","source":"s","detail":{"specversion":"1.0","id":"1","source":"s","type":"t","sessionid":"x","data":{"a":[1,2]}}}`))
	f.Add([]byte(`{"detail":null,"detail-type":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := FromDelivery(body)
		if err != nil {
			if !errors.Is(err, ErrInvalidEnvelope) {
				t.Fatalf("error %v does not wrap ErrInvalidEnvelope", err)
			}
			return
		}
		env, err := ToEnvelope(ev)
		if err != nil {
			t.Fatalf("decoded event cannot be re-enveloped: %v", err)
		}
		back, err := FromDelivery(EnvelopeJSON(env, "id", time.Unix(0, 0), "a", "r"))
		if err != nil {
			t.Fatalf("round trip failed: %v", err)
		}
		if back.ID() != ev.ID() || back.Source() != ev.Source() || back.Type() != ev.Type() {
			t.Fatalf("round trip changed identity: %s vs %s", back, ev)
		}
	})
}

// FuzzValidateJSON: the validator never panics and every rejection wraps
// ErrInvalidEvent.
func FuzzValidateJSON(f *testing.F) {
	v, err := NewValidator()
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"s","type":"agentbus.step.planned.v1","sessionid":"x","step":1,"data":{"step":1,"calls":[]}}`))
	f.Add([]byte(`{"type":"agentbus.tool.invocation.requested.v1","step":"1","toolname":5,"data":{"step":1.5}}`))
	f.Add([]byte(`{"type":"nope"}`))
	f.Add([]byte(`0`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := v.ValidateJSON(b); err != nil && !errors.Is(err, ErrInvalidEvent) {
			t.Fatalf("error %v does not wrap ErrInvalidEvent", err)
		}
	})
}
