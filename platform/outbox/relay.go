// Package outbox relays the transactional outbox of the state store to the
// bus: events written in the same transaction as a state change are
// published after it commits and then marked sent. Publishing is
// at-least-once (a crash between publish and mark-sent publishes again);
// every outbox event carries a deterministic id, so consumers deduplicate on
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

// Source is the outbox side of the state store.
type Source interface {
	PendingOutbox(ctx context.Context, limit int) ([]state.OutboxEvent, error)
	MarkSent(ctx context.Context, ids ...string) error
}

// Publisher publishes events (a bus.Publisher).
type Publisher interface {
	Publish(ctx context.Context, events ...event.Event) error
}

// Options tune a Relay; the zero value is usable.
type Options struct {
	// Batch is how many events one pass reads (default 100).
	Batch int
	// Interval is how often the relay looks without being notified
	// (default 250ms): the safety net for writes by other processes and
	// for retrying after a failed publish.
	Interval time.Duration
	Logger   *slog.Logger
}

// Relay publishes pending outbox events. Create it with New and run it with
// Run; call Notify after a write that added outbox events to publish them
// without waiting for the next interval.
type Relay struct {
	src  Source
	pub  Publisher
	opts Options
	kick chan struct{}
}

// New returns a relay from src to pub.
func New(src Source, pub Publisher, opts Options) *Relay {
	if opts.Batch <= 0 {
		opts.Batch = 100
	}
	if opts.Interval <= 0 {
		opts.Interval = 250 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Relay{src: src, pub: pub, opts: opts, kick: make(chan struct{}, 1)}
}

// Notify wakes the relay; it never blocks.
func (r *Relay) Notify() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run relays until ctx ends.
func (r *Relay) Run(ctx context.Context) error {
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		for {
			n, err := r.Flush(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				r.opts.Logger.Warn("outbox: relay pass failed", "err", err)
				break
			}
			if n < r.opts.Batch {
				break
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
		case <-t.C:
		}
	}
}

// Flush makes one pass: it publishes up to Batch pending events and marks
// the published ones sent, returning how many it read.
func (r *Relay) Flush(ctx context.Context) (int, error) {
	rows, err := r.src.PendingOutbox(ctx, r.opts.Batch)
	if err != nil {
		return 0, fmt.Errorf("outbox: read pending: %w", err)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	evs := make([]event.Event, 0, len(rows))
	ids := make([]string, 0, len(rows))
	for _, row := range rows {
		var ev event.Event
		if err := json.Unmarshal(row.Payload, &ev); err != nil {
			// Our own writers produced it, so this is a bug; the row stays
			// pending (nothing is dropped) and says so on every pass.
			r.opts.Logger.Error("outbox: pending event is not a CloudEvent; left pending", "id", row.ID, "err", err)
			continue
		}
		evs = append(evs, ev)
		ids = append(ids, row.ID)
	}
	if len(evs) == 0 {
		return len(rows), nil
	}
	sent := ids
	if err := r.pub.Publish(ctx, evs...); err != nil {
		var pe *bus.PublishError
		if !errors.As(err, &pe) {
			return len(rows), fmt.Errorf("outbox: publish %d event(s): %w", len(evs), err)
		}
		failed := make(map[int]bool, len(pe.Failures))
		for _, f := range pe.Failures {
			failed[f.Index] = true
			r.opts.Logger.Warn("outbox: event not published; will retry", "id", f.ID, "source", f.Source, "err", f.Err)
		}
		sent = sent[:0:0]
		for i, id := range ids {
			if !failed[i] {
				sent = append(sent, id)
			}
		}
	}
	if len(sent) > 0 {
		if err := r.src.MarkSent(ctx, sent...); err != nil {
			return len(rows), fmt.Errorf("outbox: mark %d sent: %w", len(sent), err)
		}
	}
	return len(rows), nil
}
