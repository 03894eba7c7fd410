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
	"sync"
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
		// The SDK's encoder directly: json.Marshal would re-scan and copy
		// its output to compact it. Checking that the data is JSON is the
		// part of that worth keeping: a payload that does not decode would
		// stay pending for ever.
		payload, err := ev.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("outbox event %q: %w", ev.ID(), err)
		}
		if !json.Valid(payload) {
			return nil, fmt.Errorf("outbox event %q: its data is not valid JSON", ev.ID())
		}
		out = append(out, state.OutboxEvent{ID: ID(ev), Payload: payload, Event: &ev})
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
	// HandOff makes Notifying pass a write's events on in memory right
	// after the commit, instead of waking Run to read them back from the
	// store. When no publish is under way the writer publishes them itself,
	// in its own goroutine (a hop's latency is then the commit plus the
	// publish, with no wait for Run's goroutine); otherwise it hands them to
	// Run, which publishes what several writers handed off in one Publish
	// (under load, fewer and bigger publishes). Either way they are marked
	// sent later (see MarkDelay), and Run polls the store only every
	// Interval, for what was never published this way (a failed publish, a
	// crash between commit and publish, another process's writes). For a
	// process that does all the writing to its store (the embedded runtime).
	HandOff bool
	// MarkDelay is how long events published after a hand-off may wait to be
	// marked sent, so that several share one store write (default 0: at
	// once; at most markBatch wait). One published but not yet marked when
	// the process dies is published again by the next relay: consumers
	// dedupe on source+id.
	MarkDelay time.Duration
}

// markBatch is the most published events that wait for MarkDelay.
const markBatch = 64

// Relay publishes a store's pending outbox events. Run it in one goroutine
// per process; several processes may relay the same store.
type Relay struct {
	src  Source
	pub  Publisher
	opts Options
	wake chan struct{}

	// With HandOff: inflight are the events passed on and published (or
	// being published) but not yet marked sent, which a poll skips; toMark
	// are those published, waiting since markSince to be marked;
	// publishing counts the publishes of passed-on events under way.
	mu         sync.Mutex
	inflight   map[string]struct{}
	handed     []state.OutboxEvent // written, waiting for Run to publish them
	publishing int
	toMark     []string
	markSince  time.Time
	kick       chan struct{} // events were handed off, or are waiting to be marked
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
	return &Relay{src: src, pub: pub, opts: opts, wake: make(chan struct{}, 1),
		inflight: map[string]struct{}{}, kick: make(chan struct{}, 1)}
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
	if err := r.markSent(ctx, true); err != nil {
		return 0, fmt.Errorf("outbox relay: %w", err)
	}
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
	r.mu.Lock()
	skip := make(map[string]bool, len(r.inflight))
	for _, p := range pending {
		if _, ok := r.inflight[p.ID]; ok {
			skip[p.ID] = true // handed off and published; marked sent soon
		}
	}
	r.mu.Unlock()
	for _, p := range pending {
		if skip[p.ID] {
			continue
		}
		var ev event.Event
		if err := json.Unmarshal(p.Payload, &ev); err != nil {
			// Never dropped: it stays pending and is reported every pass.
			errs = append(errs, fmt.Errorf("outbox event %q is not a CloudEvent: %w", p.ID, err))
			continue
		}
		evs = append(evs, ev)
		ids = append(ids, p.ID)
	}
	var sent []string
	if len(evs) > 0 {
		var perr error
		if sent, perr = r.publish(ctx, evs, ids); perr != nil {
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
	// A full batch of events all published on write shows nothing new:
	// stop, they are marked sent before the next poll.
	return len(sent), len(pending) == r.opts.Batch && len(evs) > 0, nil
}

// publish publishes evs (ids[i] is the outbox id of evs[i]) and returns the
// ids of those published; the error describes the others.
func (r *Relay) publish(ctx context.Context, evs []event.Event, ids []string) (sent []string, err error) {
	perr := r.pub.Publish(ctx, evs...)
	if perr == nil {
		return ids, nil
	}
	var pe *bus.PublishError
	if !errors.As(perr, &pe) {
		return nil, fmt.Errorf("publish %d outbox events: %w", len(evs), perr)
	}
	failed := make(map[int]bool, len(pe.Failures))
	for _, f := range pe.Failures {
		failed[f.Index] = true
	}
	for i, id := range ids {
		if !failed[i] {
			sent = append(sent, id)
		}
	}
	return sent, perr
}

// handOff passes on the events of a write that has just committed
// (HandOff): the writer publishes them itself when no other publish is
// under way, else Run publishes them with whatever else was handed off.
func (r *Relay) handOff(ctx context.Context, out []state.OutboxEvent) {
	r.mu.Lock()
	if r.publishing > 0 || len(r.handed) > 0 {
		r.handed = append(r.handed, out...)
		r.mu.Unlock()
		r.kickRun()
		return
	}
	r.publishing++
	r.mu.Unlock()
	// The write is committed: its events go out even when the writer's
	// context is ending (a handler cut short at shutdown). If the bus is
	// already closed the publish fails, and a later poll publishes them.
	r.publishBatches(context.WithoutCancel(ctx), out)
	r.mu.Lock()
	r.publishing--
	r.mu.Unlock()
}

// kickRun wakes Run without waiting: it has events to publish, or to mark.
func (r *Relay) kickRun() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// publishHanded publishes the events handed off by writers, all in one
// Publish call: many writers' events share one bus request. What fails to
// publish stays pending for the poll; what succeeds is queued to be marked
// sent.
func (r *Relay) publishHanded(ctx context.Context) {
	r.mu.Lock()
	out := r.handed
	r.handed = nil
	if len(out) > 0 {
		r.publishing++
	}
	r.mu.Unlock()
	if len(out) == 0 {
		return
	}
	r.publishBatches(ctx, out)
	r.mu.Lock()
	r.publishing--
	r.mu.Unlock()
}

// publishBatches publishes out in Publish calls of at most Options.Batch.
func (r *Relay) publishBatches(ctx context.Context, out []state.OutboxEvent) {
	for len(out) > 0 {
		n := min(len(out), r.opts.Batch)
		r.publishHandedBatch(ctx, out[:n])
		out = out[n:]
	}
}

func (r *Relay) publishHandedBatch(ctx context.Context, out []state.OutboxEvent) {
	evs := make([]event.Event, 0, len(out))
	ids := make([]string, 0, len(out))
	for _, o := range out {
		if o.Event != nil {
			evs = append(evs, *o.Event)
			ids = append(ids, o.ID)
			continue
		}
		var ev event.Event
		if err := json.Unmarshal(o.Payload, &ev); err != nil {
			continue // the poll reports it (and keeps it)
		}
		evs = append(evs, ev)
		ids = append(ids, o.ID)
	}
	r.mu.Lock()
	k := 0
	for i, id := range ids {
		if _, dup := r.inflight[id]; dup {
			continue // written again before it was marked: already published
		}
		r.inflight[id] = struct{}{}
		evs[k], ids[k] = evs[i], id
		k++
	}
	evs, ids = evs[:k], ids[:k]
	r.mu.Unlock()
	if len(evs) == 0 {
		return
	}
	sent, err := r.publish(ctx, evs, ids)
	if err != nil {
		r.opts.Logger.WarnContext(ctx, "publishing written outbox events failed; the relay's poll publishes them",
			"events", len(ids)-len(sent), "err", err)
	}
	r.mu.Lock()
	// Those that failed are no longer in flight: the poll publishes them.
	for _, id := range ids {
		delete(r.inflight, id)
	}
	armed := false
	for _, id := range sent {
		r.inflight[id] = struct{}{}
		if len(r.toMark) == 0 {
			r.markSince, armed = time.Now(), true
		}
		r.toMark = append(r.toMark, id)
	}
	r.mu.Unlock()
	if armed {
		r.kickRun() // Run marks them sent when MarkDelay is up
	}
}

// markSent marks the events published on write sent: all of them when
// force is set or MarkDelay is 0, otherwise once the oldest has waited
// MarkDelay or markBatch are waiting. Those that fail stay queued.
func (r *Relay) markSent(ctx context.Context, force bool) error {
	r.mu.Lock()
	due := len(r.toMark) > 0 && (force || r.opts.MarkDelay <= 0 || len(r.toMark) >= markBatch ||
		time.Since(r.markSince) >= r.opts.MarkDelay)
	var ids []string
	if due {
		ids = r.toMark
		r.toMark = nil
	}
	r.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	if err := r.src.MarkSent(ctx, ids...); err != nil {
		r.mu.Lock()
		r.toMark = append(ids, r.toMark...)
		r.mu.Unlock()
		return fmt.Errorf("mark %d published outbox events sent: %w", len(ids), err)
	}
	r.mu.Lock()
	for _, id := range ids {
		delete(r.inflight, id)
	}
	r.mu.Unlock()
	return nil
}

// markWait is how long Run may sleep before events published on write are
// due to be marked (a negative value: none is waiting).
func (r *Relay) markWait() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.toMark) == 0 {
		return -1
	}
	return max(0, r.opts.MarkDelay-time.Since(r.markSince))
}

// Run flushes the outbox every Interval (or on Wake) until ctx ends, then
// returns nil; with HandOff it also publishes the events writers hand off
// and marks every event passed on and published sent, the last of them when
// ctx ends. Failures are logged and retried with a growing delay (up to 30
// times Interval).
func (r *Relay) Run(ctx context.Context) error {
	defer func() {
		// Marks lost here only cost a duplicate publication after restart,
		// but a clean stop should leave none.
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := r.markSent(mctx, true); err != nil {
			r.opts.Logger.WarnContext(mctx, "outbox relay: marking published events sent at stop failed", "err", err)
		}
	}()
	delay := r.opts.Interval
	nextPoll := time.Now()
	var markRetry time.Time // after a failed mark: not before
	for {
		// Handed-off events first: published, they are in flight, and the
		// poll below skips them.
		r.publishHanded(ctx)
		if !time.Now().Before(nextPoll) {
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
			nextPoll = time.Now().Add(delay)
		}
		if !time.Now().Before(markRetry) {
			if err := r.markSent(ctx, false); err != nil && ctx.Err() == nil {
				r.opts.Logger.ErrorContext(ctx, "outbox relay failed; retrying", "err", err, "retry_in", r.opts.Interval)
				markRetry = time.Now().Add(r.opts.Interval)
			}
		}
		wait := time.Until(nextPoll)
		if w := r.markWait(); w >= 0 {
			w = max(w, time.Until(markRetry))
			wait = min(wait, w)
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-r.wake:
			nextPoll = time.Now()
		case <-r.kick:
		case <-t.C:
		}
		t.Stop()
	}
}
