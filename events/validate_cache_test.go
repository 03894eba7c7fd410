package events

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

func toolRequestEvent(t testing.TB) event.Event {
	t.Helper()
	ev, err := NewPayload(SourceExecutor, "s1", ToolInvocationRequested{Step: 1, CallID: "c1", Tool: "calculator",
		Input: json.RawMessage(`{"expr":"1+2*3"}`), IdempotencyKey: "s1/1/c1"})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestFingerprintCoversEveryInput: changing any input of the event's JSON
// encoding changes the fingerprint, so a remembered valid event can never
// vouch for a different one.
func TestFingerprintCoversEveryInput(t *testing.T) {
	t.Parallel()
	seedCache := newValidCache(4)
	base := toolRequestEvent(t)
	fp0, ok := fingerprint(seedCache.seed, &base)
	if !ok {
		t.Fatal("a New event is not fingerprinted")
	}
	u, _ := url.Parse("https://example.com/schema")
	tests := []struct {
		name string
		edit func(ev *event.Event)
	}{
		{"id", func(ev *event.Event) { ev.SetID("other") }},
		{"source", func(ev *event.Event) { ev.SetSource("agentbus/other") }},
		{"type", func(ev *event.Event) { ev.SetType(TypeToolInvocationCompleted) }},
		{"subject", func(ev *event.Event) { ev.SetSubject("x") }},
		{"datacontenttype", func(ev *event.Event) { ev.SetDataContentType("text/plain") }},
		{"dataschema", func(ev *event.Event) { ev.SetDataSchema(u.String()) }},
		{"time", func(ev *event.Event) { ev.SetTime(ev.Time().Add(time.Nanosecond)) }},
		{"no time", func(ev *event.Event) { ev.Context.(*event.EventContextV1).Time = nil }},
		{"data byte", func(ev *event.Event) {
			ev.DataEncoded = []byte(strings.Replace(string(ev.DataEncoded), `"c1"`, `"c2"`, 1))
		}},
		{"data longer", func(ev *event.Event) { ev.DataEncoded = append(ev.DataEncoded, ' ') }},
		{"no data", func(ev *event.Event) { ev.DataEncoded = nil }},
		{"base64", func(ev *event.Event) { ev.DataBase64 = true }},
		{"extension value", func(ev *event.Event) { ev.SetExtension(ExtSessionID, "s2") }},
		{"extension type", func(ev *event.Event) { ev.SetExtension(ExtStep, "1") }},
		{"extension added", func(ev *event.Event) { ev.SetExtension("extra", true) }},
		{"extension removed", func(ev *event.Event) { ev.SetExtension(ExtToolName, nil) }},
		{"extension renamed", func(ev *event.Event) {
			ev.SetExtension(ExtToolName, nil)
			ev.SetExtension("toolnamex", "calculator")
		}},
		{"extension uri", func(ev *event.Event) { ev.SetExtension("ref", types.URI{URL: *u}) }},
		{"extension time", func(ev *event.Event) { ev.SetExtension("at", types.Timestamp{Time: time.Unix(1, 0)}) }},
		{"extension bytes", func(ev *event.Event) { ev.SetExtension("raw", []byte("x")) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev := base.Clone()
			tc.edit(&ev)
			fp, ok := fingerprint(seedCache.seed, &ev)
			if !ok {
				t.Fatal("not fingerprinted")
			}
			if fp == fp0 {
				t.Fatal("the fingerprint did not change")
			}
		})
	}
	t.Run("clone is equal", func(t *testing.T) {
		t.Parallel()
		c := base.Clone()
		if fp, _ := fingerprint(seedCache.seed, &c); fp != fp0 {
			t.Fatal("a clone has another fingerprint")
		}
	})
	t.Run("other seed", func(t *testing.T) {
		t.Parallel()
		if fp, _ := fingerprint(newValidCache(4).seed, &base); fp == fp0 {
			t.Fatal("two validators share fingerprints")
		}
	})
	t.Run("not fingerprinted", func(t *testing.T) {
		t.Parallel()
		v03 := base.Clone()
		v03.SetSpecVersion(event.CloudEventsVersionV03)
		odd := base.Clone()
		odd.Context.(*event.EventContextV1).Extensions["odd"] = 1.5 // not a CloudEvents type
		for name, ev := range map[string]event.Event{"v0.3": v03, "odd extension": odd, "no context": {}} {
			if _, ok := fingerprint(seedCache.seed, &ev); ok {
				t.Errorf("%s: fingerprinted", name)
			}
		}
	})
}

// TestValidateRemembersOnlyValid: a valid event is validated once, then
// answered from memory; an invalid event with the same source and id (what
// a producer going around the publisher could send) is still rejected with
// its reasons, every time.
func TestValidateRemembersOnlyValid(t *testing.T) {
	t.Parallel()
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	good := toolRequestEvent(t)
	bad := good.Clone()
	bad.DataEncoded = []byte(strings.Replace(string(good.DataEncoded), `"idempotencyKey":"s1/1/c1"`, `"idempotencyKey":"s1/9/c1"`, 1))
	for range 3 {
		if err := v.Validate(good); err != nil {
			t.Fatalf("valid event: %v", err)
		}
		var ve *ValidationError
		if err := v.Validate(bad); !errors.As(err, &ve) || !strings.Contains(err.Error(), "/data/idempotencyKey") {
			t.Fatalf("invalid event with the id of a valid one: %v", err)
		}
	}
	if fp, _ := fingerprint(v.valid.seed, &good); !v.valid.has(fp) {
		t.Error("the valid event was not remembered")
	}
	if fp, _ := fingerprint(v.valid.seed, &bad); v.valid.has(fp) {
		t.Error("the invalid event was remembered")
	}
	// Unknown types are errors every time too.
	unknown := good.Clone()
	unknown.SetType("com.example.unknown")
	for range 2 {
		if err := v.Validate(unknown); !errors.Is(err, ErrUnknownType) {
			t.Fatalf("unknown type: %v", err)
		}
	}
}

func TestValidCacheBounded(t *testing.T) {
	t.Parallel()
	c := newValidCache(4)
	for i := range uint64(10) {
		c.add(i)
	}
	if n := len(c.cur) + len(c.prev); n > 8 {
		t.Fatalf("holds %d fingerprints, at most 8", n)
	}
	for i := uint64(6); i < 10; i++ { // the newest size are always kept
		if !c.has(i) {
			t.Errorf("recent fingerprint %d forgotten", i)
		}
	}
	if c.has(0) {
		t.Error("the oldest fingerprint is still held")
	}
}

func TestValidateCachedConcurrent(t *testing.T) {
	t.Parallel()
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	ev := toolRequestEvent(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if err := v.Validate(ev.Clone()); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}
