package outbox

import (
	"context"
	"time"

	"github.com/agentbus/agentbus/platform/state"
)

// Notifying wraps a state store so that every successful write that carried
// outbox events wakes r at once (with Options.HandOff: passes r the events,
// which are published at once without being read back): in one process
// this keeps a hop's latency at the cost of a write instead of the relay's
// polling interval.
func Notifying(s state.Store, r *Relay) state.Store { return AfterWrite(s, r.written) }

// written is what Notifying does after a write that stored events.
func (r *Relay) written(ctx context.Context, out []state.OutboxEvent) {
	if r.opts.HandOff {
		r.handOff(ctx, out)
		return
	}
	r.Wake()
}

// AfterWrite wraps a state store so that f gets the outbox events of every
// write that committed them: not of a failed write, nor of an OpenStep that
// found the step open, a CompleteStep or RecordAndComplete that did not
// complete the step, or a CompleteUnclaimed that found the key done (those
// write nothing; their events were written, and published, before). f runs
// in the writer's goroutine after the commit, with the write's context.
func AfterWrite(s state.Store, f func(ctx context.Context, out []state.OutboxEvent)) state.Store {
	return afterWrite{Store: s, f: f}
}

type afterWrite struct {
	state.Store
	f func(ctx context.Context, out []state.OutboxEvent)
}

func (a afterWrite) done(ctx context.Context, out []state.OutboxEvent, wrote bool, err error) {
	if err == nil && wrote && len(out) > 0 {
		a.f(ctx, out)
	}
}

func (a afterWrite) CreateSession(ctx context.Context, s state.Session, out ...state.OutboxEvent) (state.Session, error) {
	res, err := a.Store.CreateSession(ctx, s, out...)
	a.done(ctx, out, true, err)
	return res, err
}

func (a afterWrite) UpdateSession(ctx context.Context, s state.Session, out ...state.OutboxEvent) (state.Session, error) {
	res, err := a.Store.UpdateSession(ctx, s, out...)
	a.done(ctx, out, true, err)
	return res, err
}

func (a afterWrite) CompleteClaim(ctx context.Context, sessionID, key, holder string, result []byte, out ...state.OutboxEvent) (state.Claim, error) {
	res, err := a.Store.CompleteClaim(ctx, sessionID, key, holder, result, out...)
	a.done(ctx, out, true, err)
	return res, err
}

func (a afterWrite) CompleteUnclaimed(ctx context.Context, sessionID, key, holder string, ttl time.Duration, result []byte, out ...state.OutboxEvent) (state.Claim, bool, error) {
	res, stored, err := a.Store.CompleteUnclaimed(ctx, sessionID, key, holder, ttl, result, out...)
	a.done(ctx, out, stored, err)
	return res, stored, err
}

func (a afterWrite) OpenStep(ctx context.Context, key state.StepKey, callIDs []string, out ...state.OutboxEvent) (state.StepState, bool, error) {
	st, opened, err := a.Store.OpenStep(ctx, key, callIDs, out...)
	a.done(ctx, out, opened, err)
	return st, opened, err
}

func (a afterWrite) CompleteStep(ctx context.Context, key state.StepKey, out ...state.OutboxEvent) (bool, error) {
	first, err := a.Store.CompleteStep(ctx, key, out...)
	a.done(ctx, out, first, err)
	return first, err
}

func (a afterWrite) RecordAndComplete(ctx context.Context, key state.StepKey, callID string, result []byte, complete func(state.StepState) ([]state.OutboxEvent, error)) (state.StepState, bool, error) {
	var out []state.OutboxEvent
	st, completed, err := a.Store.RecordAndComplete(ctx, key, callID, result, func(st state.StepState) ([]state.OutboxEvent, error) {
		var err error
		out, err = complete(st)
		return out, err
	})
	a.done(ctx, out, completed, err)
	return st, completed, err
}
