package events

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/agentbus/agentbus/events/internal/fastschema"
)

// validSamples returns one valid event of every type, built with New.
func validSamples(t *testing.T) map[string][]byte {
	t.Helper()
	in := json.RawMessage(`{"a":1}`)
	payloads := []Payload{
		AgentRequested{Prompt: "What is 2+2?", Agent: &AgentSpec{Name: "calc", Model: "scripted", Tools: []string{"calculator"},
			Limits: &Limits{MaxSteps: 5, MaxTokens: 1000, TimeoutSeconds: 60}}, Metadata: map[string]string{"user": "u1"}},
		AgentCancelRequested{Reason: "user"},
		StepPlanned{Step: 1, Calls: []ToolCall{{ID: "c1", Name: "calculator", Input: in}}, Text: "let me compute", Usage: Usage{InputTokens: 10, OutputTokens: 5}},
		ToolInvocationRequested{Step: 1, CallID: "c1", Tool: "calculator", Input: in, TimeoutMs: 5000, IdempotencyKey: "sess-1/1/c1"},
		ToolInvocationCompleted{Step: 1, CallID: "c1", Tool: "calculator", Output: json.RawMessage(`4`), DurationMs: 3},
		ToolInvocationFailed{Step: 1, CallID: "c1", Tool: "calculator", Reason: ToolTimeout, Message: "took too long"},
		StepCompleted{Step: 1, Results: []ToolResult{{CallID: "c1", Tool: "calculator", OK: true, Output: json.RawMessage(`null`)},
			{CallID: "c2", Tool: "clock", OK: false, Reason: ToolError, Message: "boom"}}},
		AgentCompleted{Answer: "4", Steps: 2, Usage: Usage{InputTokens: 20, OutputTokens: 9}},
		AgentFailed{Reason: AgentMaxSteps, Message: "limit", Steps: 5},
		AgentCancelled{Reason: "user", Steps: 1},
		ApprovalRequested{Step: 1, CallID: "c1", Tool: "http_get", Input: in, Question: "ok?"},
		ApprovalDecided{CallID: "c1", Approved: true, By: "alice"},
		SagaStarted{Saga: "refund", ExecutionID: "ex-1", Step: 1, CallID: "c1"},
		SagaCompleted{Saga: "refund", ExecutionID: "ex-1", Output: json.RawMessage(`{"ok":true}`)},
		SagaCompensated{Saga: "refund", ExecutionID: "ex-1", FailedStep: "charge", Error: "declined", Compensated: []string{"reserve"}},
		SagaCompensationFailed{Saga: "refund", ExecutionID: "ex-1", FailedStep: "charge", Error: "declined", Failures: []string{"reserve: 500"}},
	}
	out := map[string][]byte{}
	for _, p := range payloads {
		ev, err := NewPayload("agentbus/test", "sess-1", p)
		if err != nil {
			t.Fatalf("%T: %v", p, err)
		}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		out[p.EventType()] = b
	}
	return out
}

// edit applies f to the decoded event JSON and re-encodes it.
func edit(t *testing.T, b []byte, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func data(m map[string]any) map[string]any { return m["data"].(map[string]any) }

func TestValidateAcceptsEveryType(t *testing.T) {
	t.Parallel()
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	samples := validSamples(t)
	if len(samples) != len(Types()) {
		t.Fatalf("%d samples for %d types", len(samples), len(Types()))
	}
	for typ, b := range samples {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			if err := v.ValidateJSON(b); err != nil {
				t.Fatalf("valid event rejected: %v\n%s", err, b)
			}
			ev, err := FromDelivery(b)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Validate(ev); err != nil {
				t.Fatalf("Validate(event.Event): %v", err)
			}
			// The fast path vouches for it, so the general validator is
			// skipped: a schema or event shape it cannot decide would
			// silently make every event of the type pay for the full run.
			doc, ok := eventDoc(&ev)
			if !ok {
				t.Fatal("eventDoc does not take a New event")
			}
			if f := v.fast[typ]; f == nil || f.Check(doc) != fastschema.Valid {
				t.Errorf("the fast path does not vouch for a valid %s", typ)
			}
			// Unknown fields anywhere are accepted (additive changes).
			more := edit(t, b, func(m map[string]any) {
				m["futureext"] = "x"
				data(m)["futureField"] = map[string]any{"nested": []any{1, 2}}
			})
			if err := v.ValidateJSON(more); err != nil {
				t.Errorf("unknown fields rejected: %v", err)
			}
			// Offloaded data (dataref, no data) validates: the data schema
			// applies only when data is present.
			off := edit(t, b, func(m map[string]any) { delete(m, "data"); m["dataref"] = "blob://bucket/key" })
			if err := v.ValidateJSON(off); err != nil {
				t.Errorf("offloaded event rejected: %v", err)
			}
			// Without data and without dataref it is invalid.
			none := edit(t, b, func(m map[string]any) { delete(m, "data") })
			assertViolation(t, v.ValidateJSON(none), typ, "/data", "required")
			// Every event needs sessionid and traceparent.
			noSession := edit(t, b, func(m map[string]any) { delete(m, "sessionid") })
			assertViolation(t, v.ValidateJSON(noSession), typ, "/sessionid", "required")
			noTrace := edit(t, b, func(m map[string]any) { delete(m, "traceparent") })
			assertViolation(t, v.ValidateJSON(noTrace), typ, "/traceparent", "required")
		})
	}
}

func TestValidateRejects(t *testing.T) {
	t.Parallel()
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	samples := validSamples(t)
	cases := []struct {
		name, typ   string
		mutate      func(m map[string]any)
		field, rule string
	}{
		{"sessionid wrong type", TypeAgentRequested, func(m map[string]any) { m["sessionid"] = 5 }, "/sessionid", "type"},
		{"sessionid with slash", TypeAgentRequested, func(m map[string]any) { m["sessionid"] = "a/b" }, "/sessionid", "pattern"},
		{"bad traceparent", TypeAgentRequested, func(m map[string]any) { m["traceparent"] = "00-xyz" }, "/traceparent", "pattern"},
		{"bad specversion", TypeAgentRequested, func(m map[string]any) { m["specversion"] = "0.3" }, "/specversion", "const"},
		{"empty id", TypeAgentRequested, func(m map[string]any) { m["id"] = "" }, "/id", "minLength"},
		{"bad time", TypeAgentRequested, func(m map[string]any) { m["time"] = "yesterday" }, "/time", "format"},
		{"xml content type", TypeAgentRequested, func(m map[string]any) { m["datacontenttype"] = "text/xml" }, "/datacontenttype", "pattern"},
		{"empty prompt", TypeAgentRequested, func(m map[string]any) { data(m)["prompt"] = "" }, "/data/prompt", "minLength"},
		{"missing prompt", TypeAgentRequested, func(m map[string]any) { delete(data(m), "prompt") }, "/data/prompt", "required"},
		{"metadata not strings", TypeAgentRequested, func(m map[string]any) { data(m)["metadata"] = map[string]any{"k": 1} }, "/data/metadata/k", "type"},
		{"zero max steps", TypeAgentRequested, func(m map[string]any) {
			data(m)["agent"].(map[string]any)["limits"].(map[string]any)["maxSteps"] = 0
		}, "/data/agent/limits/maxSteps", "minimum"},
		{"data not object", TypeAgentCancelRequested, func(m map[string]any) { m["data"] = "stop" }, "/data", "type"},
		{"no calls", TypeStepPlanned, func(m map[string]any) { data(m)["calls"] = []any{} }, "/data/calls", "minItems"},
		{"call input not object", TypeStepPlanned, func(m map[string]any) {
			data(m)["calls"].([]any)[0].(map[string]any)["input"] = "1+1"
		}, "/data/calls/0/input", "type"},
		{"step missing", TypeStepPlanned, func(m map[string]any) { delete(m, "step") }, "/step", "required"},
		{"step not integer", TypeStepPlanned, func(m map[string]any) { m["step"] = 1.5 }, "/step", "type"},
		{"step negative", TypeStepCompleted, func(m map[string]any) { m["step"] = -1; data(m)["step"] = -1 }, "/step", "minimum"},
		{"toolname missing", TypeToolInvocationRequested, func(m map[string]any) { delete(m, "toolname") }, "/toolname", "required"},
		{"toolname bad", TypeToolInvocationCompleted, func(m map[string]any) { m["toolname"] = "no spaces"; data(m)["tool"] = "no spaces" }, "/toolname", "pattern"},
		{"toolname differs from data", TypeToolInvocationCompleted, func(m map[string]any) { m["toolname"] = "clock" }, "/toolname", "consistency"},
		{"step differs from data", TypeToolInvocationFailed, func(m map[string]any) { m["step"] = 2 }, "/step", "consistency"},
		{"idempotency key wrong", TypeToolInvocationRequested, func(m map[string]any) { data(m)["idempotencyKey"] = "k" }, "/data/idempotencyKey", "consistency"},
		{"timeout negative", TypeToolInvocationRequested, func(m map[string]any) { data(m)["timeoutMs"] = -5 }, "/data/timeoutMs", "minimum"},
		{"completed without output", TypeToolInvocationCompleted, func(m map[string]any) { delete(data(m), "output") }, "/data/output", "required"},
		{"unknown tool failure reason", TypeToolInvocationFailed, func(m map[string]any) { data(m)["reason"] = "oops" }, "/data/reason", "enum"},
		{"ok result without output", TypeStepCompleted, func(m map[string]any) {
			delete(data(m)["results"].([]any)[0].(map[string]any), "output")
		}, "/data/results/0/output", "required"},
		{"failed result without reason", TypeStepCompleted, func(m map[string]any) {
			delete(data(m)["results"].([]any)[1].(map[string]any), "reason")
		}, "/data/results/1/reason", "required"},
		{"ok not boolean", TypeStepCompleted, func(m map[string]any) {
			data(m)["results"].([]any)[0].(map[string]any)["ok"] = "yes"
		}, "/data/results/0/ok", "type"},
		{"answer not string", TypeAgentCompleted, func(m map[string]any) { data(m)["answer"] = 4 }, "/data/answer", "type"},
		{"usage negative", TypeAgentCompleted, func(m map[string]any) {
			data(m)["usage"] = map[string]any{"inputTokens": -1, "outputTokens": 0}
		}, "/data/usage/inputTokens", "minimum"},
		{"unknown agent failure reason", TypeAgentFailed, func(m map[string]any) { data(m)["reason"] = "bored" }, "/data/reason", "enum"},
		{"cancelled without steps", TypeAgentCancelled, func(m map[string]any) { delete(data(m), "steps") }, "/data/steps", "required"},
		{"approval input not object", TypeApprovalRequested, func(m map[string]any) { data(m)["input"] = []any{} }, "/data/input", "type"},
		{"approved not boolean", TypeApprovalDecided, func(m map[string]any) { data(m)["approved"] = "true" }, "/data/approved", "type"},
		{"saga without execution", TypeSagaStarted, func(m map[string]any) { delete(data(m), "executionId") }, "/data/executionId", "required"},
		{"saga empty name", TypeSagaCompleted, func(m map[string]any) { data(m)["saga"] = "" }, "/data/saga", "minLength"},
		{"compensated not list", TypeSagaCompensated, func(m map[string]any) { data(m)["compensated"] = "reserve" }, "/data/compensated", "type"},
		{"failures items not strings", TypeSagaCompensationFailed, func(m map[string]any) { data(m)["failures"] = []any{1} }, "/data/failures/0", "type"},
		{"offloaded still checks extensions", TypeToolInvocationRequested, func(m map[string]any) {
			delete(m, "data")
			delete(m, "toolname")
			m["dataref"] = "blob://x"
		}, "/toolname", "required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := edit(t, samples[tc.typ], tc.mutate)
			assertViolation(t, v.ValidateJSON(b), tc.typ, tc.field, tc.rule)
		})
	}
}

func assertViolation(t *testing.T, err error, typ, field, rule string) {
	t.Helper()
	if err == nil {
		t.Fatalf("invalid %s event accepted (want %s %s)", typ, field, rule)
	}
	if !errors.Is(err, ErrInvalidEvent) {
		t.Errorf("err %v does not wrap ErrInvalidEvent", err)
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err %T is not a *ValidationError: %v", err, err)
	}
	if ve.Type != typ {
		t.Errorf("ValidationError.Type = %q, want %q", ve.Type, typ)
	}
	found := false
	for _, v := range ve.Violations {
		if v.Field == field && v.Rule == rule && v.Message != "" {
			found = true
		}
	}
	if !found {
		t.Errorf("violations %v lack %s (%s)", ve.Violations, field, rule)
	}
	// The message names the type, the field and the rule.
	msg := err.Error()
	for _, want := range []string{typ, field, rule} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not mention %q", msg, want)
		}
	}
}

func TestValidateUnknownTypeAndGarbage(t *testing.T) {
	t.Parallel()
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	b := edit(t, validSamples(t)[TypeAgentRequested], func(m map[string]any) { m["type"] = "agentbus.agent.requested.v9" })
	err = v.ValidateJSON(b)
	if !errors.Is(err, ErrUnknownType) || !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), "agentbus.agent.requested.v9") {
		t.Errorf("unknown type: err = %v", err)
	}
	for _, garbage := range []string{`nope`, `[1]`, `"str"`} {
		if err := v.ValidateJSON([]byte(garbage)); !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("%s: err = %v", garbage, err)
		}
	}
	noType := edit(t, b, func(m map[string]any) { delete(m, "type") })
	var ve *ValidationError
	if err := v.ValidateJSON(noType); !errors.As(err, &ve) || ve.Violations[0].Field != "/type" {
		t.Errorf("missing type: err = %v", err)
	}
}

func TestValidatorWithPluginSchema(t *testing.T) {
	t.Parallel()
	schema := []byte(`{
	  "$schema": "https://json-schema.org/draft/2020-12/schema",
	  "allOf": [{"$ref": "https://agentbus.dev/schemas/cloudevent.json"}],
	  "properties": {"data": {"type": "object", "required": ["sku"]}}
	}`)
	v, err := NewValidator(WithSchema("com.example.order.placed.v1", schema))
	if err != nil {
		t.Fatal(err)
	}
	ok, err := New("com.example.order.placed.v1", "example/shop", "s1", map[string]any{"sku": "A1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(ok); err != nil {
		t.Errorf("plug-in event rejected: %v", err)
	}
	bad, err := New("com.example.order.placed.v1", "example/shop", "s1", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	var ve *ValidationError
	if err := v.Validate(bad); !errors.As(err, &ve) || ve.Violations[0].Field != "/data/sku" {
		t.Errorf("plug-in violation: err = %v", err)
	}
	if _, err := NewValidator(WithSchema("x", []byte(`{`))); err == nil {
		t.Error("broken plug-in schema accepted")
	}
	if _, err := NewValidator(WithSchema("x", []byte(`{"type": 5}`))); err == nil {
		t.Error("invalid plug-in schema accepted")
	}
}

func TestValidatorConcurrent(t *testing.T) {
	t.Parallel()
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	samples := validSamples(t)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, b := range samples {
				if err := v.ValidateJSON(b); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkValidate: "first" is a new event each time (the publisher's
// case, a full schema run), "again" the same content again (a consumer in
// the publisher's process).
func BenchmarkValidate(b *testing.B) {
	v, err := NewValidator()
	if err != nil {
		b.Fatal(err)
	}
	ev := toolRequestEvent(b)
	b.Run("first", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			ev.SetID("id-" + strconv.Itoa(i))
			if err := v.Validate(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("again", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := v.Validate(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}
