package events

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
)

func TestNewSetsAttributesAndRoutingKeys(t *testing.T) {
	t.Parallel()
	data := ToolInvocationRequested{Step: 2, CallID: "c1", Tool: "calculator", Input: json.RawMessage(`{"expr":"1+1"}`),
		IdempotencyKey: IdempotencyKey("s-1", 2, "c1")}
	ev, err := New(TypeToolInvocationRequested, SourceExecutor, "s-1", data)
	if err != nil {
		t.Fatal(err)
	}
	id, err := uuid.Parse(ev.ID())
	if err != nil || id.Version() != 7 {
		t.Errorf("id %q is not a UUIDv7 (err %v)", ev.ID(), err)
	}
	if ev.DataContentType() != ContentTypeJSON {
		t.Errorf("datacontenttype = %q", ev.DataContentType())
	}
	if time.Since(ev.Time()) > time.Minute {
		t.Errorf("time = %v, want now", ev.Time())
	}
	if got := SessionID(ev); got != "s-1" {
		t.Errorf("sessionid = %q", got)
	}
	if !ValidTraceParent(TraceParent(ev)) {
		t.Errorf("traceparent %q invalid", TraceParent(ev))
	}
	if got := ToolName(ev); got != "calculator" {
		t.Errorf("toolname = %q", got)
	}
	if step, ok := Step(ev); !ok || step != 2 {
		t.Errorf("step = %d, %v", step, ok)
	}
	got, err := Decode[ToolInvocationRequested](ev)
	if err != nil {
		t.Fatal(err)
	}
	if got.IdempotencyKey != "s-1/2/c1" || string(got.Input) != `{"expr":"1+1"}` {
		t.Errorf("decoded %+v", got)
	}
}

func TestNewSurvivesDeliveryRoundTrip(t *testing.T) {
	t.Parallel()
	ev, err := NewPayload(SourcePlanner, "s-9", StepPlanned{Step: 4, Calls: []ToolCall{{ID: "a", Name: "clock", Input: json.RawMessage(`{}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	env, err := ToEnvelope(ev)
	if err != nil {
		t.Fatal(err)
	}
	back, err := FromDelivery(EnvelopeJSON(env, "x", time.Now(), "000000000000", "us-east-1"))
	if err != nil {
		t.Fatal(err)
	}
	// Extensions come back from JSON as generic values; accessors normalise them.
	if step, ok := Step(back); !ok || step != 4 {
		t.Errorf("step after round trip = %d, %v", step, ok)
	}
	if SessionID(back) != "s-9" || TraceParent(back) != TraceParent(ev) {
		t.Errorf("extensions lost: %v", back.Extensions())
	}
	p, err := Decode[StepPlanned](back)
	if err != nil || p.Step != 4 || len(p.Calls) != 1 {
		t.Errorf("decode after round trip = %+v, %v", p, err)
	}
}

func TestNewOptions(t *testing.T) {
	t.Parallel()
	parent, err := New(TypeAgentRequested, SourceClient, "s", AgentRequested{Prompt: "hi"}, WithTraceState("k=v"))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ev, err := New(TypeAgentCompleted, SourcePlanner, "s", AgentCompleted{Answer: "a"},
		WithID("fixed"), WithTime(at), WithTraceParent(tp), WithSubject("sub"), WithStep(7), WithToolName("clock"))
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID() != "fixed" || !ev.Time().Equal(at) || TraceParent(ev) != tp || ev.Subject() != "sub" || ToolName(ev) != "clock" {
		t.Errorf("options not applied: %s", ev)
	}
	if s, _ := Step(ev); s != 7 {
		t.Errorf("step = %d", s)
	}

	child, err := New(TypeStepPlanned, SourcePlanner, "s", StepPlanned{Step: 1}, CausedBy(parent))
	if err != nil {
		t.Fatal(err)
	}
	ptp, ctp := TraceParent(parent), TraceParent(child)
	if !ValidTraceParent(ctp) || ctp[:36] != ptp[:36] || ctp[36:52] == ptp[36:52] || ctp[52:] != ptp[52:] {
		t.Errorf("CausedBy: parent %s child %s: want same trace id and flags, new parent id", ptp, ctp)
	}
	if extString(child, ExtTraceState) != "k=v" {
		t.Errorf("tracestate not propagated")
	}
	// WithStep overrides the value copied from data.
	over, err := New(TypeStepPlanned, SourcePlanner, "s", StepPlanned{Step: 1}, WithStep(9))
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := Step(over); s != 9 {
		t.Errorf("WithStep did not override: %d", s)
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		typ     string
		src     string
		sid     string
		data    any
		opts    []Option
		wantErr error
		wantMsg string
	}{
		{name: "empty type", src: "s", sid: "x", data: map[string]any{}, wantMsg: "empty type"},
		{name: "empty source", typ: TypeAgentRequested, sid: "x", data: AgentRequested{Prompt: "p"}, wantMsg: "empty source"},
		{name: "empty session", typ: TypeAgentRequested, src: "s", data: AgentRequested{Prompt: "p"}, wantMsg: "empty session id"},
		{name: "nil data", typ: TypeAgentRequested, src: "s", sid: "x", wantErr: ErrNoData},
		{name: "payload of other type", typ: TypeAgentCompleted, src: "s", sid: "x", data: AgentFailed{}, wantErr: ErrWrongType},
		{name: "raw data not JSON", typ: TypeAgentRequested, src: "s", sid: "x", data: []byte(`{`), wantMsg: "not valid JSON"},
		{name: "bad traceparent", typ: TypeAgentRequested, src: "s", sid: "x", data: AgentRequested{Prompt: "p"},
			opts: []Option{WithTraceParent("00-abc")}, wantMsg: "invalid traceparent"},
		{name: "causing event without trace", typ: TypeAgentRequested, src: "s", sid: "x", data: AgentRequested{Prompt: "p"},
			opts: []Option{CausedBy(event.New())}, wantMsg: "no valid traceparent"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tc.typ, tc.src, tc.sid, tc.data, tc.opts...)
			if err == nil {
				t.Fatal("New accepted bad input")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantMsg != "" && !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("err = %q, want %q in it", err, tc.wantMsg)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	ev, err := New(TypeAgentRequested, SourceClient, "s", AgentRequested{Prompt: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode[AgentCompleted](ev); !errors.Is(err, ErrWrongType) {
		t.Errorf("wrong payload type: err = %v", err)
	}
	// A generic target skips the type check.
	if m, err := Decode[map[string]any](ev); err != nil || m["prompt"] != "p" {
		t.Errorf("generic decode = %v, %v", m, err)
	}

	offloaded := ev.Clone()
	offloaded.DataEncoded = nil
	offloaded.SetExtension(ExtDataRef, "blob://x")
	if _, err := Decode[AgentRequested](offloaded); !errors.Is(err, ErrDataOffloaded) || !strings.Contains(err.Error(), "blob://x") {
		t.Errorf("offloaded: err = %v", err)
	}
	empty := ev.Clone()
	empty.DataEncoded = nil
	if _, err := Decode[AgentRequested](empty); !errors.Is(err, ErrNoData) {
		t.Errorf("no data: err = %v", err)
	}
	bad := ev.Clone()
	bad.DataEncoded = []byte(`{"prompt":5}`)
	if _, err := Decode[AgentRequested](bad); !errors.Is(err, ErrInvalidEvent) {
		t.Errorf("bad data: err = %v", err)
	}
}

func TestDeterministicID(t *testing.T) {
	t.Parallel()
	a := DeterministicID("s-1", "3", "step.completed")
	if a != DeterministicID("s-1", "3", "step.completed") {
		t.Error("same parts, different id")
	}
	if _, err := uuid.Parse(a); err != nil {
		t.Errorf("id %q is not a UUID: %v", a, err)
	}
	distinct := map[string]bool{}
	for _, parts := range [][]string{{"a", "bc"}, {"ab", "c"}, {"abc"}, {"abc", ""}, {}, {""}} {
		id := DeterministicID(parts...)
		if distinct[id] {
			t.Errorf("collision for %q", parts)
		}
		distinct[id] = true
	}
}

func TestTraceParent(t *testing.T) {
	t.Parallel()
	for i := 0; i < 100; i++ {
		tp, err := NewTraceParent()
		if err != nil {
			t.Fatal(err)
		}
		if !ValidTraceParent(tp) {
			t.Fatalf("generated invalid traceparent %q", tp)
		}
	}
	for _, bad := range []string{
		"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
	} {
		if ValidTraceParent(bad) {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestTypesHaveSchemasAndPayloads(t *testing.T) {
	t.Parallel()
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, typ := range v.Types() {
		known[typ] = true
	}
	payloads := []Payload{AgentRequested{}, AgentCancelRequested{}, StepPlanned{}, ToolInvocationRequested{},
		ToolInvocationCompleted{}, ToolInvocationFailed{}, StepCompleted{}, AgentCompleted{}, AgentFailed{},
		AgentCancelled{}, ApprovalRequested{}, ApprovalDecided{}, SagaStarted{}, SagaCompleted{}, SagaCompensated{},
		SagaCompensationFailed{}}
	if len(payloads) != len(Types()) || len(known) != len(Types()) {
		t.Fatalf("%d payloads, %d schemas, %d types", len(payloads), len(known), len(Types()))
	}
	for i, typ := range Types() {
		if !known[typ] {
			t.Errorf("no schema for %s", typ)
		}
		if payloads[i].EventType() != typ {
			t.Errorf("payload %T has type %s, want %s", payloads[i], payloads[i].EventType(), typ)
		}
		if !strings.HasPrefix(typ, TypePrefix) || !strings.HasSuffix(typ, ".v1") {
			t.Errorf("type %s not versioned under %s", typ, TypePrefix)
		}
	}
}
