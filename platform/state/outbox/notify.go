package outbox

import (
	"context"

	"github.com/agentbus/agentbus/platform/state"
)

// Notifying wraps a state store so that every successful write that carried
// outbox events wakes r at once (with Options.HandOff: hands r the events,
// so it need not read them back): in one process this keeps a hop's latency
// at the cost of a write instead of the relay's polling interval.
func Notifying(s state.Store, r *Relay) state.Store { return notifying{Store: s, r: r} }

type notifying struct {
	state.Store
	r *Relay
}

// kick is called after a write; wrote is false when the store reported it
// wrote nothing (its events were written, and published, before).
func (n notifying) kick(out []state.OutboxEvent, wrote bool, err error) {
	if err != nil || !wrote || len(out) == 0 {
		return
	}
	if n.r.opts.HandOff {
		n.r.handOff(out)
		return
	}
	n.r.Wake()
}

func (n notifying) CreateSession(ctx context.Context, s state.Session, out ...state.OutboxEvent) (state.Session, error) {
	res, err := n.Store.CreateSession(ctx, s, out...)
	n.kick(out, true, err)
	return res, err
}

func (n notifying) UpdateSession(ctx context.Context, s state.Session, out ...state.OutboxEvent) (state.Session, error) {
	res, err := n.Store.UpdateSession(ctx, s, out...)
	n.kick(out, true, err)
	return res, err
}

func (n notifying) CompleteClaim(ctx context.Context, sessionID, key, holder string, result []byte, out ...state.OutboxEvent) (state.Claim, error) {
	res, err := n.Store.CompleteClaim(ctx, sessionID, key, holder, result, out...)
	n.kick(out, true, err)
	return res, err
}

func (n notifying) OpenStep(ctx context.Context, key state.StepKey, callIDs []string, out ...state.OutboxEvent) (state.StepState, bool, error) {
	st, opened, err := n.Store.OpenStep(ctx, key, callIDs, out...)
	n.kick(out, opened, err)
	return st, opened, err
}

func (n notifying) CompleteStep(ctx context.Context, key state.StepKey, out ...state.OutboxEvent) (bool, error) {
	first, err := n.Store.CompleteStep(ctx, key, out...)
	n.kick(out, first, err)
	return first, err
}
