package sagatest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	psaga "github.com/agentbus/agentbus/platform/saga"
	"github.com/agentbus/agentbus/saga"
	"github.com/agentbus/agentbus/tools"
)

// ErrInProgress is the Ledger's infrastructure error for a task whose
// claim another live holder has: the caller retries later.
var ErrInProgress = errors.New("saga task in progress elsewhere")

// DefaultLeaseMargin is added to a task's timeout to make its lease.
const DefaultLeaseMargin = 250 * time.Millisecond

// Ledger is an in-memory reference saga.Invoker with the claim semantics of
// the tool-gateway's ledger (services/toolgateway), so that platform tests
// need not import services: a claim per Task.Session + Task.Key() taken as
// a lease (the task's timeout + LeaseMargin) before the tool runs and
// completed with the outcome. A done claim returns its stored outcome (the
// tool does not run); a live lease of another holder is ErrInProgress; an
// expired lease is taken over, re-running an idempotent tool with the same
// key and answering agentbus.OutcomeUnknown for any other. Like the real
// ledger it outlives a runner's restart: keep one Ledger per durable state.
// It is safe for concurrent use.
type Ledger struct {
	reg  *tools.Registry
	hook func(point string)
	// LeaseMargin is added to a task's timeout to make its lease; zero
	// means DefaultLeaseMargin.
	LeaseMargin time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu      sync.Mutex
	holders int
	claims  map[string]*ledgerClaim
}

type ledgerClaim struct {
	done       bool
	holder     int
	leaseUntil time.Time
	out        json.RawMessage
	err        *psaga.StepError
}

var _ psaga.Invoker = (*Ledger)(nil)

// NewLedger returns a Ledger running the tools of reg; hook (may be nil) is
// called at PointAfterSideEffect and PointAfterComplete (Toolbox.Hook).
func NewLedger(reg *tools.Registry, hook func(point string)) *Ledger {
	return &Ledger{reg: reg, hook: hook, claims: map[string]*ledgerClaim{}}
}

func (l *Ledger) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

func (l *Ledger) callHook(point string) {
	if l.hook != nil {
		l.hook(point)
	}
}

// Invoke runs t's tool at most once per t.Key() (see Ledger).
func (l *Ledger) Invoke(ctx context.Context, t psaga.Task) (json.RawMessage, error) {
	entry, err := l.reg.Lookup(t.Tool)
	if err != nil || !entry.Local() {
		return nil, &psaga.StepError{Name: saga.ErrorTool, Cause: fmt.Sprintf("no tool named %q is served here", t.Tool)}
	}
	if t.Session == "" {
		return nil, &psaga.StepError{Name: saga.ErrorInvalidInput, Cause: fmt.Sprintf("task %s has no session", t.Key())}
	}
	spec := entry.Spec()
	timeout := spec.EffectiveTimeout()
	if t.TimeoutSeconds > 0 {
		timeout = time.Duration(t.TimeoutSeconds) * time.Second
	}
	margin := l.LeaseMargin
	if margin <= 0 {
		margin = DefaultLeaseMargin
	}
	id := t.Session + "\x00" + t.Key()

	l.mu.Lock()
	l.holders++
	holder := l.holders
	c := l.claims[id]
	now := l.now()
	switch {
	case c != nil && c.done:
		l.mu.Unlock()
		return c.out, stepErr(c.err)
	case c != nil && now.Before(c.leaseUntil):
		until := c.leaseUntil
		l.mu.Unlock()
		return nil, fmt.Errorf("sagatest: task %s: %w (lease until %s)", t.Key(), ErrInProgress, until.Format(time.RFC3339Nano))
	case c != nil && !spec.Idempotent:
		// The earlier holder died mid-call: its effect may have happened.
		c.done, c.holder = true, holder
		c.err = &psaga.StepError{Name: saga.ErrorOutcomeUnknown, Cause: fmt.Sprintf(
			"an earlier run of %s (task %s) was interrupted before its outcome was stored; %s is not idempotent, so it was not run again",
			t.Tool, t.Key(), t.Tool)}
		l.mu.Unlock()
		return nil, stepErr(c.err)
	case c != nil:
		c.holder, c.leaseUntil = holder, now.Add(timeout+margin) // idempotent: run again, same key
	default:
		c = &ledgerClaim{holder: holder, leaseUntil: now.Add(timeout + margin)}
		l.claims[id] = c
	}
	l.mu.Unlock()

	var out json.RawMessage
	var serr *psaga.StepError
	if err := entry.Validate(t.Input); err != nil {
		serr = &psaga.StepError{Name: saga.ErrorInvalidInput, Cause: err.Error()}
	} else {
		tctx, cancel := context.WithTimeout(ctx, timeout)
		out, err = entry.Tool().Run(tctx, tools.Call{Input: t.Input, IdempotencyKey: t.Key(), SessionID: t.Session})
		timedOut := errors.Is(tctx.Err(), context.DeadlineExceeded)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			// Our caller stopped (not the tool's timeout): no outcome; the
			// claim stays pending until its lease ends.
			return nil, fmt.Errorf("sagatest: task %s interrupted: %w", t.Key(), ctx.Err())
		case err != nil && timedOut:
			serr = &psaga.StepError{Name: saga.ErrorTimeout, Cause: fmt.Sprintf("%s: no answer within %s", t.Tool, timeout)}
		case errors.Is(err, tools.ErrInvalidInput):
			serr = &psaga.StepError{Name: saga.ErrorInvalidInput, Cause: err.Error()}
		case err != nil:
			serr = &psaga.StepError{Name: saga.ErrorTool, Cause: err.Error()}
		case len(out) == 0:
			out = json.RawMessage(`null`)
		}
		l.callHook(PointAfterSideEffect)
	}

	l.mu.Lock()
	if c.holder != holder || c.done {
		l.mu.Unlock()
		return nil, fmt.Errorf("sagatest: task %s: lost the claim to another holder: %w", t.Key(), ErrInProgress)
	}
	c.done, c.out, c.err = true, out, serr
	l.mu.Unlock()
	l.callHook(PointAfterComplete)
	return out, stepErr(serr)
}

// stepErr returns e as an error, nil when e is nil (no typed nil).
func stepErr(e *psaga.StepError) error {
	if e == nil {
		return nil
	}
	return &psaga.StepError{Name: e.Name, Cause: e.Cause}
}
