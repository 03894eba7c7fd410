package toolgateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	psaga "github.com/agentbus/agentbus/platform/saga"
	"github.com/agentbus/agentbus/saga"
	"github.com/agentbus/agentbus/services/toolgateway"
	"github.com/agentbus/agentbus/tools"
)

const tripDef = `{
  "name": "trip",
  "description": "Book a trip",
  "inputSchema": {"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]},
  "steps": [
    {"name": "flight", "action": {"tool": "reserve_flight", "input": {"to": "$.input.to"}},
     "compensation": {"tool": "cancel_flight", "input": {"id": "$.steps.flight.id"}},
     "retry": {"maxAttempts": 2, "intervalSeconds": 1, "backoffRate": 2}, "timeoutSeconds": 10},
    {"name": "pay", "action": {"tool": "charge_card", "input": {}}, "retry": {"maxAttempts": 0}, "timeoutSeconds": 20}
  ]
}`

func tripDefinition(t testing.TB) saga.Definition {
	t.Helper()
	d, err := saga.Parse([]byte(tripDef))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// fakeRunner is a saga.Runner whose executions end as told.
type fakeRunner struct {
	mu      sync.Mutex
	starts  map[string]psaga.StartRequest
	outcome psaga.Outcome
	err     error
}

func (f *fakeRunner) Start(_ context.Context, req psaga.StartRequest) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return false, f.err
	}
	if f.starts == nil {
		f.starts = map[string]psaga.StartRequest{}
	}
	if _, ok := f.starts[req.Name]; ok {
		return false, nil
	}
	f.starts[req.Name] = req
	return true, nil
}

func (f *fakeRunner) Describe(_ context.Context, name string) (psaga.Outcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.starts[name]; !ok {
		return psaga.Outcome{}, psaga.ErrUnknownExecution
	}
	o := f.outcome
	o.Execution = name
	return o, nil
}

func (f *fakeRunner) Wait(ctx context.Context, name string) (psaga.Outcome, error) {
	return f.Describe(ctx, name)
}

// sagaOutbox returns the outbox events of a session, by type.
func (e *env) outboxByType(session string) map[string][]event.Event {
	e.t.Helper()
	pending, err := e.store.PendingOutbox(context.Background(), 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string][]event.Event{}
	for _, p := range pending {
		var ev event.Event
		if err := json.Unmarshal(p.Payload, &ev); err != nil {
			e.t.Fatal(err)
		}
		if p.ID != ev.Source()+" "+ev.ID() {
			e.t.Errorf("outbox id %q is not source+id", p.ID)
		}
		if events.SessionID(ev) == session {
			out[ev.Type()] = append(out[ev.Type()], ev)
		}
	}
	return out
}

func TestSagaTool(t *testing.T) {
	t.Parallel()
	d := tripDefinition(t)
	tests := []struct {
		name     string
		outcome  psaga.Outcome
		endType  string
		mentions []string // in the failure message; nil = success
	}{
		{"succeeded", psaga.Outcome{Status: psaga.StatusSucceeded, Output: json.RawMessage(`{"flight":{"id":"F1"}}`)},
			events.TypeSagaCompleted, nil},
		{"compensated", psaga.Outcome{Status: psaga.StatusCompensated, FailedStep: "pay", Error: "agentbus.ToolError: card declined",
			Compensated: []string{"flight"}}, events.TypeSagaCompensated,
			[]string{"failed at step pay", "card declined", "Undone (compensated, in this order): flight", "Nothing of this saga remains"}},
		{"compensation failed", psaga.Outcome{Status: psaga.StatusCompensationFailed, FailedStep: "pay", Error: "agentbus.ToolError: card declined",
			Failures: []string{"flight: agentbus.ToolError: airline down"}}, events.TypeSagaCompensationFailed,
			[]string{"failed at step pay", "COMPENSATION FAILED", "could NOT be undone", "flight: agentbus.ToolError: airline down", "No earlier step needed undoing"}},
	}
	v, err := events.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			runner := &fakeRunner{outcome: tt.outcome}
			early := &recorder{}
			st, err := toolgateway.NewSagaTool(toolgateway.SagaToolConfig{Definition: d, Runner: runner, Publisher: early})
			if err != nil {
				t.Fatal(err)
			}
			if err := e.reg.Register(st); err != nil {
				t.Fatal(err)
			}
			g := e.gateway(nil, nil)
			req := request(t, "sess-t", 3, "c1", "trip", `{"to":"Lisbon"}`)
			for range 2 { // the second delivery finds the done claim
				if err := g.Handle(context.Background(), req); err != nil {
					t.Fatal(err)
				}
			}
			name := psaga.ExecutionName("trip", "sess-t", 3, "c1")
			if sr, ok := runner.starts[name]; !ok || len(runner.starts) != 1 || sr.Session != "sess-t" || string(sr.Input) != `{"to":"Lisbon"}` {
				t.Fatalf("starts %+v, want one named %s", runner.starts, name)
			}
			byType := e.outboxByType("sess-t")
			for _, typ := range []string{events.TypeSagaStarted, tt.endType} {
				if len(byType[typ]) != 1 {
					t.Fatalf("%d %s events in the outbox, want 1 (all: %v)", len(byType[typ]), typ, byType)
				}
				if err := v.Validate(byType[typ][0]); err != nil {
					t.Fatalf("%s does not validate: %v", typ, err)
				}
				if byType[typ][0].Source() != events.SourceSaga {
					t.Fatalf("source %s", byType[typ][0].Source())
				}
			}
			if len(early.evs) != 1 || early.evs[0].ID() != byType[events.TypeSagaStarted][0].ID() {
				t.Fatalf("early SagaStarted %v, want the outbox one's id", early.evs)
			}
			sd, _ := events.Decode[events.SagaStarted](byType[events.TypeSagaStarted][0])
			if sd.ExecutionID != name || sd.Step != 3 || sd.CallID != "c1" || sd.Saga != "trip" {
				t.Fatalf("SagaStarted %+v", sd)
			}
			if tt.mentions == nil {
				c := completed(t, e.only("sess-t", 3, "c1"))
				if string(c.Output) != `{"flight":{"id":"F1"}}` {
					t.Fatalf("output %s", c.Output)
				}
				return
			}
			f := failure(t, e.only("sess-t", 3, "c1"))
			for _, m := range tt.mentions {
				if !strings.Contains(f.Message, m) {
					t.Errorf("message %q does not mention %q", f.Message, m)
				}
			}
			if !strings.Contains(f.Message, name) {
				t.Errorf("message %q does not name the execution", f.Message)
			}
		})
	}
}

// TestSagaToolRerunFindsTheExecution: a call whose gateway died after the
// saga ended (before storing the result) is re-run — the tool is idempotent
// — and finds the same execution; the events carry the same ids.
func TestSagaToolRerunFindsTheExecution(t *testing.T) {
	t.Parallel()
	runner := &fakeRunner{outcome: psaga.Outcome{Status: psaga.StatusSucceeded, Output: json.RawMessage(`1`)}}
	first, second := &recorder{}, &recorder{}
	d := tripDefinition(t)
	for _, r := range []*recorder{first, second} {
		st, err := toolgateway.NewSagaTool(toolgateway.SagaToolConfig{Definition: d, Runner: runner, Publisher: r})
		if err != nil {
			t.Fatal(err)
		}
		// Run directly, as a re-run does: no gateway, so the tool publishes.
		out, err := st.Run(context.Background(), tools.Call{SessionID: "sess-r", Step: 1, CallID: "c", Input: json.RawMessage(`{"to":"Oslo"}`)})
		if err != nil || string(out) != "1" {
			t.Fatalf("run: %s %v", out, err)
		}
	}
	if len(runner.starts) != 1 {
		t.Fatalf("%d executions started, want 1", len(runner.starts))
	}
	if len(first.evs) != 3 || len(second.evs) != 3 { // early SagaStarted, then SagaStarted + SagaCompleted
		t.Fatalf("published %d and %d events", len(first.evs), len(second.evs))
	}
	for i := range first.evs {
		if first.evs[i].ID() != second.evs[i].ID() || first.evs[i].Type() != second.evs[i].Type() {
			t.Fatalf("event %d: %s %s vs %s %s", i, first.evs[i].Type(), first.evs[i].ID(), second.evs[i].Type(), second.evs[i].ID())
		}
	}
}

func TestSagaToolErrors(t *testing.T) {
	t.Parallel()
	d := tripDefinition(t)
	if _, err := toolgateway.NewSagaTool(toolgateway.SagaToolConfig{Definition: d}); err == nil {
		t.Error("nil runner accepted")
	}
	bad := d
	bad.Steps = nil
	if _, err := toolgateway.NewSagaTool(toolgateway.SagaToolConfig{Definition: bad, Runner: &fakeRunner{}}); !errors.Is(err, saga.ErrInvalid) {
		t.Errorf("invalid definition: %v", err)
	}
	st, err := toolgateway.NewSagaTool(toolgateway.SagaToolConfig{Definition: d, Runner: &fakeRunner{err: psaga.ErrUnknownSaga}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Run(context.Background(), tools.Call{SessionID: "s", Step: 1, CallID: "c"}); !errors.Is(err, psaga.ErrUnknownSaga) {
		t.Errorf("start error: %v", err)
	}
	if _, err := st.Run(context.Background(), tools.Call{Step: 1}); err == nil {
		t.Error("a call without session ran")
	}
}

func TestSagaSpecAndTimeout(t *testing.T) {
	t.Parallel()
	d := tripDefinition(t)
	sp := toolgateway.SagaSpec(d)
	if sp.Name != "trip" || !sp.Idempotent || string(sp.InputSchema) != string(d.InputSchema) ||
		!strings.HasPrefix(sp.Description, "Book a trip.") || !strings.Contains(sp.Description, "flight → pay") {
		t.Fatalf("spec %+v", sp)
	}
	// flight: 10 s × 3 attempts + 1 s + 2 s of intervals, twice (action and
	// compensation) = 66 s; pay: 20 s once; + 60 s of slack.
	if want := (66 + 20 + 60) * time.Second; sp.Timeout != want {
		t.Fatalf("timeout %v, want %v", sp.Timeout, want)
	}
	long := d
	long.Steps = append([]saga.Step(nil), d.Steps...)
	long.Steps[1].TimeoutSeconds = 86400
	if got := toolgateway.SagaTimeout(long); got != toolgateway.MaxSagaTimeout {
		t.Fatalf("long saga timeout %v, want the cap", got)
	}
	r := tools.NewRegistry()
	if err := r.RegisterSpec(sp); err != nil {
		t.Fatalf("the spec does not register: %v", err)
	}
}
