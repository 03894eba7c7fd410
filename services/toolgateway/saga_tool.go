package toolgateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus"
	psaga "github.com/agentbus/agentbus/platform/saga"
	"github.com/agentbus/agentbus/saga"
	"github.com/agentbus/agentbus/tools"
)

// MaxSagaTimeout caps a saga tool's timeout (see SagaTimeout): the executor
// waits that long for the result, so a saga that could run for days is
// reported as timed out to the model after it (the execution itself goes
// on, and its Saga* outcome event is still emitted by a redelivered call).
const MaxSagaTimeout = time.Hour

// SagaToolConfig configures a saga tool.
type SagaToolConfig struct {
	// Definition is the saga; its name, description and input schema are
	// the tool's. Required (and valid: saga.Parse's output).
	Definition saga.Definition
	// Runner starts executions and waits for them. Required.
	Runner psaga.Runner
	// Publisher, when set, publishes SagaStarted as soon as the execution
	// has started, so watchers see a long saga begin. Every Saga* event is
	// also written to the outbox with the call's result (same ids), so
	// nothing is lost when this publish fails or the process dies.
	Publisher bus.Publisher
	// Now is the clock of event times; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// SagaTool offers one saga to the model as one tool: a call starts the
// execution named by saga.ExecutionName(saga, session, step, callId) — so a
// redelivered call finds the same execution instead of starting another,
// which is why the tool is idempotent — waits for it, and returns its
// output, or an error that says which step failed and what was undone.
type SagaTool struct {
	cfg     SagaToolConfig
	timeout time.Duration
	log     *slog.Logger
}

var _ tools.Tool = (*SagaTool)(nil)

// NewSagaTool returns the tool of cfg.Definition.
func NewSagaTool(cfg SagaToolConfig) (*SagaTool, error) {
	if cfg.Runner == nil {
		return nil, errors.New("toolgateway: saga tool: nil Runner")
	}
	if err := cfg.Definition.Validate(); err != nil {
		return nil, fmt.Errorf("toolgateway: saga tool: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &SagaTool{cfg: cfg, timeout: SagaTimeout(cfg.Definition), log: cfg.Logger.With("saga", cfg.Definition.Name)}, nil
}

// SagaTimeout is how long a saga may take in the worst case the runner
// allows — every action and every compensation using all its attempts to
// the timeout, plus the retry intervals — plus a minute for the hops,
// capped at MaxSagaTimeout. It is the saga tool's timeout, so the executor
// waits for the saga's outcome as long as the saga may run.
func SagaTimeout(d saga.Definition) time.Duration {
	var secs float64
	for _, s := range d.Steps {
		r := s.EffectiveRetry()
		one := float64(s.EffectiveTimeoutSeconds()) * float64(1+r.MaxAttempts)
		interval := float64(r.IntervalSeconds)
		for range r.MaxAttempts {
			one += interval
			interval *= r.BackoffRate
		}
		secs += one
		if s.Compensation != nil {
			secs += one
		}
	}
	t := time.Duration(math.Min(secs+60, MaxSagaTimeout.Seconds())) * time.Second
	return min(t, MaxSagaTimeout)
}

// SagaSpec is the tool spec of d (what the planner offers and the executor
// times); a process that does not run the saga (the planner, the executor
// in AWS mode) registers it with tools.Registry.RegisterSpec.
func SagaSpec(d saga.Definition) tools.Spec {
	desc := strings.TrimSpace(d.Description)
	names := make([]string, len(d.Steps))
	for i, s := range d.Steps {
		names[i] = s.Name
	}
	if desc != "" && !strings.HasSuffix(desc, ".") {
		desc += "."
	}
	desc = strings.TrimSpace(desc + fmt.Sprintf(" Runs as a saga (%s, in this order): if a step fails, "+
		"the steps before it are undone, and the result says what failed and what was undone. Call it once per request.",
		strings.Join(names, " → ")))
	schema := d.InputSchema
	if len(schema) == 0 {
		schema = json.RawMessage(`{"type":"object"}`)
	}
	return tools.Spec{Name: d.Name, Description: desc, InputSchema: schema, Idempotent: true, Timeout: SagaTimeout(d)}
}

// Spec describes the saga as a tool.
func (s *SagaTool) Spec() tools.Spec { return SagaSpec(s.cfg.Definition) }

// Run starts (or finds) the call's execution and waits for its outcome.
func (s *SagaTool) Run(ctx context.Context, c tools.Call) (json.RawMessage, error) {
	d := s.cfg.Definition
	if c.SessionID == "" || c.CallID == "" {
		return nil, fmt.Errorf("saga %s: the call has no session or call id", d.Name)
	}
	name := psaga.ExecutionName(d.Name, c.SessionID, c.Step, c.CallID)
	log := s.log.With("execution", name, "session", c.SessionID, "step", c.Step, "call", c.CallID)
	input := c.Input
	if len(input) == 0 {
		input = json.RawMessage(`{}`)
	}
	started, err := s.cfg.Runner.Start(ctx, psaga.StartRequest{Saga: d.Name, Name: name, Session: c.SessionID, Input: input})
	if err != nil {
		return nil, fmt.Errorf("saga %s: could not start execution %s: %w", d.Name, name, err)
	}
	log.Info("saga execution", "started", started)

	startedEv, err := s.event(c, name, "started", events.SagaStarted{Saga: d.Name, ExecutionID: name, Step: c.Step, CallID: c.CallID})
	if err != nil {
		return nil, err
	}
	if s.cfg.Publisher != nil {
		if err := s.cfg.Publisher.Publish(ctx, startedEv); err != nil {
			// Not fatal: the outbox carries it with the result.
			log.Warn("saga: publishing SagaStarted failed; it goes out with the result", "err", err)
		}
	}
	out, err := s.cfg.Runner.Wait(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("saga %s: waiting for execution %s: %w", d.Name, name, err)
	}
	var (
		end    events.Payload
		result json.RawMessage
		fail   error
	)
	switch out.Status {
	case psaga.StatusSucceeded:
		result = out.Output
		if len(result) == 0 {
			result = json.RawMessage(`null`)
		}
		end = events.SagaCompleted{Saga: d.Name, ExecutionID: name, Output: result}
	case psaga.StatusCompensated:
		end = events.SagaCompensated{Saga: d.Name, ExecutionID: name, FailedStep: out.FailedStep, Error: out.Error,
			Compensated: nonNil(out.Compensated)}
		fail = errors.New(failureMessage(d.Name, name, out))
	case psaga.StatusCompensationFailed:
		end = events.SagaCompensationFailed{Saga: d.Name, ExecutionID: name, FailedStep: out.FailedStep, Error: out.Error,
			Failures: nonNil(out.Failures)}
		fail = errors.New(failureMessage(d.Name, name, out))
	default:
		return nil, fmt.Errorf("saga %s: execution %s ended in status %q", d.Name, name, out.Status)
	}
	endEv, err := s.event(c, name, "ended", end)
	if err != nil {
		return nil, err
	}
	for _, ev := range []event.Event{startedEv, endEv} {
		if !emitWithResult(ctx, ev) {
			// Not run by a gateway (tests, a direct caller): publish now.
			if s.cfg.Publisher == nil {
				log.Warn("saga: no gateway and no publisher; event not emitted", "type", ev.Type())
				continue
			}
			if err := s.cfg.Publisher.Publish(ctx, ev); err != nil {
				return nil, fmt.Errorf("saga %s: publish %s: %w", d.Name, ev.Type(), err)
			}
		}
	}
	log.Info("saga execution ended", "status", out.Status, "failedStep", out.FailedStep)
	if fail != nil {
		return nil, fail
	}
	return result, nil
}

// event builds a Saga* event with a deterministic id: one per execution
// and what ("started", "ended": an execution ends one way), so every
// emission of it — the early publish, the outbox, a redelivered call's —
// deduplicates.
func (s *SagaTool) event(c tools.Call, execution, what string, data events.Payload) (event.Event, error) {
	ev, err := events.NewPayload(events.SourceSaga, c.SessionID, data,
		events.WithID(events.DeterministicID(c.SessionID, "saga", execution, what)), events.WithTime(s.cfg.Now()))
	if err != nil {
		return event.Event{}, fmt.Errorf("saga %s: build %s: %w", s.cfg.Definition.Name, data.EventType(), err)
	}
	return ev, nil
}

// failureMessage tells the model (and the user) what happened: the step
// that failed and why, what was undone, and — loudly — what could not be.
func failureMessage(name, execution string, o psaga.Outcome) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "saga %s failed at step %s: %s.", name, o.FailedStep, strings.TrimSuffix(o.Error, "."))
	if len(o.Compensated) > 0 {
		fmt.Fprintf(&sb, " Undone (compensated, in this order): %s.", strings.Join(o.Compensated, ", "))
	} else {
		sb.WriteString(" No earlier step needed undoing.")
	}
	if o.Status == psaga.StatusCompensationFailed {
		fmt.Fprintf(&sb, " COMPENSATION FAILED: these steps could NOT be undone and need manual attention: %s.",
			strings.Join(o.Failures, "; "))
	} else {
		sb.WriteString(" Nothing of this saga remains in effect.")
	}
	fmt.Fprintf(&sb, " (execution %s)", execution)
	return sb.String()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
