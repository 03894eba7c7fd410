// Package outbox relays the transactional outbox of a state.Store to the
// bus: it reads pending events, publishes them, and marks them sent.
//
// Delivery is at-least-once: a relay that crashes between publishing and
// marking sent (or two relays reading the same rows) publishes an event
// again. That is harmless because every outbox event carries the
// deterministic CloudEvents id its writer chose, and consumers dedupe on
// source+id.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/state"
)

// Publisher is what the relay publishes through (bus.Publisher satisfies
// it). A *bus.PublishError names the events that failed; the others count
// as published.
type Publisher interface {
	Publish(ctx context.Context, events ...event.Event) error
}

// Source is the outbox the relay drains (state.Store satisfies it).
type Source interface {
	PendingOutbox(ctx context.Context, limit int) ([]state.OutboxEvent, error)
	MarkSent(ctx context.Context, ids ...string) error
}

// ID is the outbox id of a CloudEvent: its source and id, which together
// identify it (CloudEvents uniqueness), so the same event written twice
// occupies one outbox row.
func ID(ev event.Event) string { return ev.Source() + " " + ev.ID() }

// FromEvents turns CloudEvents into outbox events (structured JSON). Each
// event must be valid and carry the deterministic id its writer chose.
func FromEvents(evs ...event.Event) ([]state.OutboxEvent, error) {
	out := make([]state.OutboxEvent, 0, len(evs))
	for _, ev := range evs {
		if err := ev.Validate(); err != nil {
			return nil, fmt.Errorf("outbox event %q: %w", ev.ID(), err)
		}
		payload, err := json.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("outbox event %q: %w", ev.ID(), err)
		}
		out = append(out, state.OutboxEvent{ID: ID(ev), Payload: payload})
	}
	return out, nil
}

// Options tune a Relay; the zero value is usable.
type Options struct {
	// Interval is how long Run waits between polls when there is nothing to
	// do (default 200ms). Wake cuts the wait short.
	Interval time.Duration
	// Batch is how many events one Publish call carries (default 100).
	Batch int
	// Logger receives publish failures (default slog.Default()).
	Logger *slog.Logger
}

// Relay publishes a store's pending outbox events. Run it in one goroutine
// per process; several processes may relay the same store.
type Relay struct {
	src  Source
	pub  Publisher
	opts Options
	wake chan struct{}
}

// NewRelay returns a relay from src to pub.
func NewRelay(src Source, pub Publisher, opts Options) *Relay {
	if opts.Interval <= 0 {
		opts.Interval = 200 * time.Millisecond
	}
	if opts.Batch <= 0 {
		opts.Batch = 100
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Relay{src: src, pub: pub, opts: opts, wake: make(chan struct{}, 1)}
}

// Wake asks a running relay to poll now (e.g. right after a write with
// outbox events). It never blocks.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Flush publishes pending events until none is left or a batch had
// failures, and reports how many it published. Events that failed stay
// pending for the next Flush; the error describes them.
func (r *Relay) Flush(ctx context.Context) (int, error) {
	total := 0
	for {
		n, more, err := r.pass(ctx)
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

// pass publishes one batch. more reports a full, fully published batch
// (there may be more pending).
func (r *Relay) pass(ctx context.Context) (published int, more bool, err error) {
	pending, err := r.src.PendingOutbox(ctx, r.opts.Batch)
	if err != nil {
		return 0, false, fmt.Errorf("outbox relay: %w", err)
	}
	if len(pending) == 0 {
		return 0, false, nil
	}
	var (
		evs  []event.Event
		ids  []string
		errs []error
	)
	for _, p := range pending {
		var ev event.Event
		if err := json.Unmarshal(p.Payload, &ev); err != nil {
			// Never dropped: it stays pending and is reported every pass.
			errs = append(errs, fmt.Errorf("outbox event %q is not a CloudEvent: %w", p.ID, err))
			continue
		}
		evs = append(evs, ev)
		ids = append(ids, p.ID)
	}
	sent := ids
	if len(evs) > 0 {
		if perr := r.pub.Publish(ctx, evs...); perr != nil {
			var pe *bus.PublishError
			if !errors.As(perr, &pe) {
				errs = append(errs, fmt.Errorf("publish %d outbox events: %w", len(evs), perr))
				return 0, false, fmt.Errorf("outbox relay: %w", errors.Join(errs...))
			}
			failed := make(map[int]bool, len(pe.Failures))
			for _, f := range pe.Failures {
				failed[f.Index] = true
			}
			sent = nil
			for i, id := range ids {
				if !failed[i] {
					sent = append(sent, id)
				}
			}
			errs = append(errs, perr)
		}
	}
	if len(sent) > 0 {
		if err := r.src.MarkSent(ctx, sent...); err != nil {
			// Published but still pending: they will be published again.
			errs = append(errs, fmt.Errorf("mark %d outbox events sent: %w", len(sent), err))
			return len(sent), false, fmt.Errorf("outbox relay: %w", errors.Join(errs...))
		}
	}
	if len(errs) > 0 {
		return len(sent), false, fmt.Errorf("outbox relay: %w", errors.Join(errs...))
	}
	return len(sent), len(pending) == r.opts.Batch, nil
}

// Run flushes the outbox every Interval (or on Wake) until ctx ends, then
// returns nil. Failures are logged and retried with a growing delay (up to
// 30 times Interval).
func (r *Relay) Run(ctx context.Context) error {
	delay := r.opts.Interval
	for {
		_, err := r.Flush(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			r.opts.Logger.ErrorContext(ctx, "outbox relay failed; retrying", "err", err, "retry_in", delay)
			delay = min(delay*2, 30*r.opts.Interval)
		default:
			delay = r.opts.Interval
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-r.wake:
			t.Stop()
		case <-t.C:
		}
	}
}
