package outbox

import (
	"context"

	"github.com/agentbus/agentbus/platform/state"
)

// Notifying wraps a state store so that every successful write that carried
// outbox events wakes r at once: in one process this keeps a hop's latency
// at the cost of a write instead of the relay's polling interval.
func Notifying(s state.Store, r *Relay) state.Store { return notifying{Store: s, r: r} }

type notifying struct {
	state.Store
	r *Relay
}

func (n notifying) kick(out []state.OutboxEvent, err error) {
	if err == nil && len(out) > 0 {
		n.r.Wake()
	}
}

func (n notifying) CreateSession(ctx context.Context, s state.Session, out ...state.OutboxEvent) (state.Session, error) {
	res, err := n.Store.CreateSession(ctx, s, out...)
	n.kick(out, err)
	return res, err
}

func (n notifying) UpdateSession(ctx context.Context, s state.Session, out ...state.OutboxEvent) (state.Session, error) {
	res, err := n.Store.UpdateSession(ctx, s, out...)
	n.kick(out, err)
	return res, err
}

func (n notifying) CompleteClaim(ctx context.Context, sessionID, key, holder string, result []byte, out ...state.OutboxEvent) (state.Claim, error) {
	res, err := n.Store.CompleteClaim(ctx, sessionID, key, holder, result, out...)
	n.kick(out, err)
	return res, err
}

func (n notifying) OpenStep(ctx context.Context, key state.StepKey, callIDs []string, out ...state.OutboxEvent) (state.StepState, bool, error) {
	st, opened, err := n.Store.OpenStep(ctx, key, callIDs, out...)
	n.kick(out, err)
	return st, opened, err
}

func (n notifying) CompleteStep(ctx context.Context, key state.StepKey, out ...state.OutboxEvent) (bool, error) {
	first, err := n.Store.CompleteStep(ctx, key, out...)
	n.kick(out, err)
	return first, err
}
