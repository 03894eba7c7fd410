// Package executor turns a planned step into tool invocations and joins
// their results. On StepPlanned it emits one ToolInvocationRequested per
// call (parallel calls fan out); as ToolInvocationCompleted/Failed arrive it
// records each result and, once every call has one, emits StepCompleted —
// exactly once per step in effect, however many executor instances receive
// the results and however often: the fan-in and the step transition are
// conditional writes in the state store, and every event leaves through the
// transactional outbox with a deterministic id.
//
// A call to a tool that is not registered fails at once with unknown_tool. A
// call nobody answers within its tool's timeout (plus a grace period) fails
// with timeout: the executor keeps the StepPlanned message and has it
// redelivered when the step's deadline passes (bus.RetryAfter), so the check
// survives a crash of the executor.
package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/platform/state/outbox"
	"github.com/agentbus/agentbus/tools"
)

// Store is the part of the state store the executor uses.
type Store interface {
	OpenStep(ctx context.Context, key state.StepKey, callIDs []string, out ...state.OutboxEvent) (state.StepState, bool, error)
	RecordResult(ctx context.Context, key state.StepKey, callID string, result []byte) (state.StepState, error)
	CompleteStep(ctx context.Context, key state.StepKey, out ...state.OutboxEvent) (bool, error)
	RecordAndComplete(ctx context.Context, key state.StepKey, callID string, result []byte, complete func(state.StepState) ([]state.OutboxEvent, error)) (state.StepState, bool, error)
}

// ToolCatalog tells which tools exist and their timeouts.
type ToolCatalog interface {
	Lookup(name string) (*tools.Entry, error)
}

// DefaultGrace is added to a tool's timeout before the executor gives up on
// it: the tool-gateway enforces the timeout itself and reports it, so the
// executor's own check is the fallback for a runner that never answers.
const DefaultGrace = 2 * time.Second

// Executor handles the executor's events. Create it with New.
type Executor struct {
	store Store
	tools ToolCatalog
	grace time.Duration
	now   func() time.Time
	log   *slog.Logger
}

// New returns an executor. grace <= 0 means DefaultGrace; now and log may be nil.
func New(store Store, tc ToolCatalog, grace time.Duration, now func() time.Time, log *slog.Logger) *Executor {
	if grace <= 0 {
		grace = DefaultGrace
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Executor{store: store, tools: tc, grace: grace, now: now, log: log}
}

// Handle dispatches one event; it is a bus.Handler.
func (x *Executor) Handle(ctx context.Context, ev event.Event) error {
	switch ev.Type() {
	case events.TypeStepPlanned:
		return x.onStepPlanned(ctx, ev)
	case events.TypeToolInvocationCompleted:
		d, err := events.Decode[events.ToolInvocationCompleted](ev)
		if err != nil {
			return permanent(ev, err)
		}
		return x.onResult(ctx, ev, d.Step, events.ToolResult{CallID: d.CallID, Tool: d.Tool, OK: true, Output: d.Output})
	case events.TypeToolInvocationFailed:
		d, err := events.Decode[events.ToolInvocationFailed](ev)
		if err != nil {
			return permanent(ev, err)
		}
		return x.onResult(ctx, ev, d.Step, events.ToolResult{CallID: d.CallID, Tool: d.Tool, Reason: d.Reason, Message: d.Message})
	default:
		return fmt.Errorf("executor: unexpected event type %q: %w", ev.Type(), bus.ErrPermanent)
	}
}

func permanent(ev event.Event, err error) error {
	return fmt.Errorf("executor: %s %s: %v: %w", ev.Type(), ev.ID(), err, bus.ErrPermanent)
}

func (x *Executor) onStepPlanned(ctx context.Context, ev event.Event) error {
	sid := events.SessionID(ev)
	sp, err := events.Decode[events.StepPlanned](ev)
	if err != nil {
		return permanent(ev, err)
	}
	key := state.StepKey{SessionID: sid, Step: sp.Step}

	ids := make([]string, len(sp.Calls))
	var out []state.OutboxEvent
	unknown := map[string]events.ToolResult{}
	timeout := time.Duration(0)
	for i, c := range sp.Calls {
		ids[i] = c.ID
		entry, err := x.tools.Lookup(c.Name)
		if err != nil {
			unknown[c.ID] = events.ToolResult{CallID: c.ID, Tool: c.Name, Reason: events.ToolUnknown,
				Message: fmt.Sprintf("no tool named %q is registered", c.Name)}
			continue
		}
		t := entry.Spec().EffectiveTimeout()
		timeout = max(timeout, t)
		req := events.ToolInvocationRequested{
			Step: sp.Step, CallID: c.ID, Tool: c.Name, Input: c.Input,
			TimeoutMs: t.Milliseconds(), IdempotencyKey: events.IdempotencyKey(sid, sp.Step, c.ID),
		}
		o, err := x.outbox(sid, ev, req, "requested", strconv.Itoa(sp.Step), c.ID)
		if err != nil {
			return err
		}
		out = append(out, o)
	}

	st, opened, err := x.store.OpenStep(ctx, key, ids, out...)
	if err != nil {
		return fmt.Errorf("executor: open step %s/%d: %w", sid, sp.Step, err)
	}
	if opened {
		x.log.Debug("executor: step fanned out", "session", sid, "step", sp.Step, "calls", len(ids), "unknown", len(unknown))
	}
	// Unknown tools fail at once. Recorded on every delivery (RecordResult
	// keeps the first), so a crash between OpenStep and here loses nothing.
	for _, c := range sp.Calls {
		if r, ok := unknown[c.ID]; ok && !st.Done {
			if st, err = x.record(ctx, key, r); err != nil {
				return err
			}
		}
	}
	if st.Done {
		return nil
	}
	if st.AllIn() {
		return x.complete(ctx, ev, key, st)
	}

	// Wait for the results; come back when the slowest tool's time is up.
	deadline := ev.Time().Add(timeout + x.grace)
	if wait := deadline.Sub(x.now()); wait > 0 {
		return bus.RetryAfter(wait, fmt.Sprintf("step %d: waiting for tool results until %s", sp.Step, deadline.Format(time.RFC3339Nano)))
	}
	have := map[string]bool{}
	for _, r := range st.Results {
		have[r.CallID] = true
	}
	for _, c := range sp.Calls {
		if have[c.ID] {
			continue
		}
		r := events.ToolResult{CallID: c.ID, Tool: c.Name, Reason: events.ToolTimeout,
			Message: fmt.Sprintf("no result within %s", timeout+x.grace)}
		x.log.Info("executor: tool call timed out", "session", sid, "step", sp.Step, "call", c.ID, "tool", c.Name)
		if st, err = x.record(ctx, key, r); err != nil {
			return err
		}
	}
	if st.Done || !st.AllIn() {
		return nil
	}
	return x.complete(ctx, ev, key, st)
}

// onResult records a tool's result and, if it was the step's last, emits
// StepCompleted in the same write.
func (x *Executor) onResult(ctx context.Context, ev event.Event, step int, r events.ToolResult) error {
	key := state.StepKey{SessionID: events.SessionID(ev), Step: step}
	b, err := x.encodeResult(r)
	if err != nil {
		return err
	}
	_, completed, err := x.store.RecordAndComplete(ctx, key, r.CallID, b, func(st state.StepState) ([]state.OutboxEvent, error) {
		o, err := x.completion(ev, key, st)
		return []state.OutboxEvent{o}, err
	})
	if err != nil {
		return fmt.Errorf("executor: record result %s/%d/%s: %w", key.SessionID, key.Step, r.CallID, err)
	}
	if completed {
		x.log.Debug("executor: step completed", "session", key.SessionID, "step", key.Step)
	}
	return nil
}

// maxResult keeps a recorded result within what the state store holds
// inline; a larger tool output is reported as a failure instead of lost.
const maxResult = state.MaxInlineValue - 1024

func (x *Executor) record(ctx context.Context, key state.StepKey, r events.ToolResult) (state.StepState, error) {
	b, err := x.encodeResult(r)
	if err != nil {
		return state.StepState{}, err
	}
	st, err := x.store.RecordResult(ctx, key, r.CallID, b)
	if err != nil {
		return st, fmt.Errorf("executor: record result %s/%d/%s: %w", key.SessionID, key.Step, r.CallID, err)
	}
	return st, nil
}

// encodeResult encodes a result for the state store, replacing an output
// too large to store by a failure that says so.
func (x *Executor) encodeResult(r events.ToolResult) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("executor: encode result: %w", err)
	}
	if len(b) > maxResult {
		r = events.ToolResult{CallID: r.CallID, Tool: r.Tool, Reason: events.ToolError,
			Message: fmt.Sprintf("tool output of %d bytes exceeds the %d-byte limit of a step result", len(b), maxResult)}
		if b, err = json.Marshal(r); err != nil {
			return nil, fmt.Errorf("executor: encode result: %w", err)
		}
	}
	return b, nil
}

// completion builds the StepCompleted of a step whose results are all in.
func (x *Executor) completion(cause event.Event, key state.StepKey, st state.StepState) (state.OutboxEvent, error) {
	byID := map[string]events.ToolResult{}
	for _, cr := range st.Results {
		var r events.ToolResult
		if err := json.Unmarshal(cr.Result, &r); err != nil {
			return state.OutboxEvent{}, fmt.Errorf("executor: stored result %s is unreadable: %v: %w", cr.CallID, err, bus.ErrPermanent)
		}
		byID[cr.CallID] = r
	}
	sc := events.StepCompleted{Step: key.Step}
	for _, id := range st.Expected {
		sc.Results = append(sc.Results, byID[id])
	}
	return x.outbox(key.SessionID, cause, sc, "completed", strconv.Itoa(key.Step))
}

// complete emits StepCompleted once: CompleteStep lets exactly one caller
// write it to the outbox.
func (x *Executor) complete(ctx context.Context, cause event.Event, key state.StepKey, st state.StepState) error {
	o, err := x.completion(cause, key, st)
	if err != nil {
		return err
	}
	first, err := x.store.CompleteStep(ctx, key, o)
	if err != nil {
		return fmt.Errorf("executor: complete step %s/%d: %w", key.SessionID, key.Step, err)
	}
	if first {
		x.log.Debug("executor: step completed", "session", key.SessionID, "step", key.Step)
	}
	return nil
}

// outbox builds the outbox row of an event whose id is derived from the
// session and the given parts, so every delivery that builds it builds the
// same event.
func (x *Executor) outbox(sid string, cause event.Event, data events.Payload, parts ...string) (state.OutboxEvent, error) {
	id := events.DeterministicID(append([]string{sid, "executor"}, parts...)...)
	ev, err := events.NewPayload(events.SourceExecutor, sid, data, events.WithID(id), events.CausedBy(cause), events.WithTime(x.now()))
	if err != nil {
		return state.OutboxEvent{}, fmt.Errorf("executor: build %T: %w", data, err)
	}
	out, err := outbox.FromEvents(ev)
	if err != nil {
		return state.OutboxEvent{}, fmt.Errorf("executor: %w", err)
	}
	return out[0], nil
}
