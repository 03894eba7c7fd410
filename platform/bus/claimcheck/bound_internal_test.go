package claimcheck

import (
	"bytes"
	"net/url"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// TestSizeBoundIsAboveSize: the quick bound is never below the exact size,
// for whatever escaping inflates most, so skipping the exact measurement
// under the limit can never pass an event that the exact one would offload.
func TestSizeBoundIsAboveSize(t *testing.T) {
	t.Parallel()
	worst := strings.Repeat("<&>\u2028\u2029\x01\"\\\xff", 200) // escapes of every kind, invalid UTF-8
	base := func(t *testing.T) event.Event {
		ev := event.New()
		ev.SetID("id-1")
		ev.SetSource("agentbus/test")
		ev.SetType("agentbus.test.v1")
		ev.SetExtension("sessionid", "s-1")
		if err := ev.SetData("application/json", map[string]string{"k": "v"}); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	tests := []struct {
		name string
		edit func(t *testing.T, ev *event.Event)
	}{
		{"plain", func(*testing.T, *event.Event) {}},
		{"escapes in attributes", func(t *testing.T, ev *event.Event) {
			ev.SetID(worst)
			// A source is a URI reference: no control characters.
			ev.SetSource("agentbus/" + strings.Repeat("<&>\u2028\u2029\"\\\xff", 200))
			ev.SetType("t" + worst)
			ev.SetSubject(worst)
			ev.SetDataSchema("https://example.com/" + url.PathEscape(worst))
		}},
		{"escapes in extensions", func(t *testing.T, ev *event.Event) {
			ev.SetExtension("toolname", worst)
			ev.SetExtension("attempt", int32(-2147483648))
			ev.SetExtension("retried", false)
		}},
		{"escapes in JSON data", func(t *testing.T, ev *event.Event) {
			if err := ev.SetData("application/json", map[string]string{"p": worst}); err != nil {
				t.Fatal(err)
			}
		}},
		{"raw JSON data with html", func(t *testing.T, ev *event.Event) {
			ev.DataEncoded = []byte(`{"p":"` + strings.Repeat("<&>\u2028", 500) + `"}`)
		}},
		{"text data", func(t *testing.T, ev *event.Event) {
			if err := ev.SetData("text/plain", []byte(worst)); err != nil {
				t.Fatal(err)
			}
		}},
		{"binary data", func(t *testing.T, ev *event.Event) {
			if err := ev.SetData("application/octet-stream", bytes.Repeat([]byte{0xff, 0, '<'}, 1000)); err != nil {
				t.Fatal(err)
			}
		}},
		{"no data", func(t *testing.T, ev *event.Event) { ev.DataEncoded = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev := base(t)
			tt.edit(t, &ev)
			size, err := Size(ev)
			if err != nil {
				t.Fatal(err)
			}
			bound, ok := sizeBound(ev)
			if !ok {
				t.Fatal("no bound for an event of strings, integers and booleans")
			}
			if bound < size {
				t.Errorf("bound %d below the exact size %d", bound, size)
			}
		})
	}
}

// TestSizeBoundDeclines: what the bound cannot vouch for is measured.
func TestSizeBoundDeclines(t *testing.T) {
	t.Parallel()
	ev := event.New()
	ev.SetID("id-1")
	ev.SetSource("agentbus/test")
	ev.SetType("agentbus.test.v1")
	if _, ok := sizeBound(ev); !ok {
		t.Fatal("no bound for a plain event")
	}
	u, _ := url.Parse("https://example.com/x")
	ev.SetExtension("link", types.URI{URL: *u})
	if _, ok := sizeBound(ev); ok {
		t.Error("bounded an event with a URI extension (its encoding is not counted)")
	}
	old := event.New(event.CloudEventsVersionV03)
	old.SetID("id-1")
	old.SetSource("agentbus/test")
	old.SetType("agentbus.test.v1")
	if _, ok := sizeBound(old); ok {
		t.Error("bounded a CloudEvents 0.3 event")
	}
}
