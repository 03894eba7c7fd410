package toolgateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentbus/agentbus/events"
	psaga "github.com/agentbus/agentbus/platform/saga"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/saga"
)

// Invoker performs saga tasks (platform/saga.Invoker) under the same claim
// ledger as the gateway's ordinary tool calls: the task's claim is
// Key = Task.Key(), SessionID = Task.Session, taken as a lease before the
// tool runs and completed with the outcome, so a redelivered task (an SQS
// redelivery, a local runner resuming after a crash) gets the stored outcome
// and never runs the tool twice. Both runners' workers call it.
//
// Outcomes: success → the tool's output; a stored outcome is returned as it
// was first reported; a live lease elsewhere → a bus.RetryAfter error (not a
// *saga.StepError: retry the task later); the lease of a dead holder of a
// non-idempotent tool → agentbus.OutcomeUnknown; invalid input →
// agentbus.InvalidInput; the tool's error → agentbus.ToolError; no answer
// within the task's timeout → agentbus.Timeout.
type Invoker struct {
	g *Gateway
}

var _ psaga.Invoker = (*Invoker)(nil)

// NewInvoker returns an Invoker that runs the local tools of cfg.Registry
// (the tools saga steps name) under the claims of cfg.Store. cfg.Hook is
// called at the same crash points as for ordinary calls. Publisher and
// Source are not used: a task's outcome goes back to its runner, not to
// the bus.
func NewInvoker(cfg Config) (*Invoker, error) {
	g, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return &Invoker{g: g}, nil
}

// taskResult is what a task's claim stores: its output or its StepError.
type taskResult struct {
	Output json.RawMessage `json:"output,omitempty"`
	Error  *taskError      `json:"error,omitempty"`
}

type taskError struct {
	Name  string `json:"name"`
	Cause string `json:"cause"`
}

// Invoke runs t's tool at most once per t.Key().
func (iv *Invoker) Invoke(ctx context.Context, t psaga.Task) (json.RawMessage, error) {
	entry, err := iv.g.cfg.Registry.Lookup(t.Tool)
	if err != nil || !entry.Local() {
		// Nothing ran, so the runner's retry policy may try again (another
		// worker may serve it); the cause says what to fix.
		return nil, &psaga.StepError{Name: saga.ErrorTool, Cause: fmt.Sprintf("no tool named %q is served by this worker", t.Tool)}
	}
	if err := state.ValidateSessionID(t.Session); err != nil {
		// A task that can never be claimed must not be redelivered forever.
		return nil, &psaga.StepError{Name: saga.ErrorInvalidInput, Cause: fmt.Sprintf("task %s: %v", t.Key(), err)}
	}
	timeout := entry.Spec().EffectiveTimeout()
	if t.TimeoutSeconds > 0 {
		// The step's timeout is the runner's: answering after it is useless.
		timeout = time.Duration(t.TimeoutSeconds) * time.Second
	}
	j := job{
		session: t.Session, key: t.Key(), entry: entry, input: t.Input, timeout: timeout,
		log: iv.g.log.With("session", t.Session, "execution", t.Execution, "step", t.Step, "kind", t.Kind,
			"attempt", t.Attempt, "tool", t.Tool),
	}
	claim, ran, err := iv.g.execute(ctx, j, encodeTask)
	switch {
	case errors.Is(err, state.ErrInvalid):
		return nil, &psaga.StepError{Name: saga.ErrorInvalidInput, Cause: fmt.Sprintf("task %s: %v", t.Key(), err)}
	case err != nil:
		// RetryAfter (in progress elsewhere), a lost claim (the new holder
		// stores the outcome; the redelivery reads it) or the store: retry.
		return nil, fmt.Errorf("toolgateway: saga task %s: %w", t.Key(), err)
	}
	if !ran {
		j.log.Debug("toolgateway: saga task already done; returning the stored outcome")
	}
	return decodeTask(claim)
}

// encodeTask is what a task's claim stores; an output too large for the
// claim is reported as a tool error rather than lost on redelivery.
func encodeTask(o outcome) ([]byte, []state.OutboxEvent, error) {
	r := taskResult{Output: o.Output}
	if o.Reason != "" {
		r = taskResult{Error: &taskError{Name: stepErrorName(o.Reason), Cause: o.Message}}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, nil, fmt.Errorf("toolgateway: encode task result: %w", err)
	}
	if len(b) > state.MaxInlineValue {
		if b, err = json.Marshal(taskResult{Error: &taskError{Name: saga.ErrorTool, Cause: fmt.Sprintf(
			"tool output too large: %d bytes exceeds the %d-byte limit", len(b), state.MaxInlineValue)}}); err != nil {
			return nil, nil, err
		}
	}
	return b, nil, nil
}

func decodeTask(c state.Claim) (json.RawMessage, error) {
	var r taskResult
	if err := json.Unmarshal(c.Result, &r); err != nil {
		return nil, &psaga.StepError{Name: saga.ErrorOutcomeUnknown, Cause: fmt.Sprintf(
			"the stored outcome of %s is not a saga task result (%v); the key may have been used by an ordinary call", c.Key, err)}
	}
	if r.Error != nil {
		return nil, &psaga.StepError{Name: r.Error.Name, Cause: r.Error.Cause}
	}
	if len(r.Output) == 0 {
		return json.RawMessage(`null`), nil
	}
	return r.Output, nil
}

// stepErrorName maps a tool failure reason to the saga error name the
// runner's Retry/Catch match on.
func stepErrorName(r events.ToolFailureReason) string {
	switch r {
	case events.ToolInvalidInput:
		return saga.ErrorInvalidInput
	case events.ToolOutcomeUnknown:
		return saga.ErrorOutcomeUnknown
	case events.ToolTimeout:
		return saga.ErrorTimeout
	default:
		return saga.ErrorTool
	}
}
