package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Chain applies mws to h; the first middleware is the outermost, so it sees
// each event first.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// ErrPanic wraps a panic recovered from a handler.
var ErrPanic = errors.New("handler panicked")

// Recoverer turns a panicking handler into an error wrapping ErrPanic, so one
// bad event cannot take the process down. With Permanent the error also wraps
// ErrPermanent (the message is dead-lettered at once); otherwise it is retried
// like any other failure and reaches the DLQ after max receives.
type Recoverer struct {
	Permanent bool
}

// Middleware implements the recover middleware.
func (r Recoverer) Middleware(next Handler) Handler {
	return func(ctx context.Context, ev event.Event) (err error) {
		defer func() {
			if p := recover(); p != nil {
				if r.Permanent {
					err = fmt.Errorf("%w: %w: %v\n%s", ErrPermanent, ErrPanic, p, debug.Stack())
				} else {
					err = fmt.Errorf("%w: %v\n%s", ErrPanic, p, debug.Stack())
				}
			}
		}()
		return next(ctx, ev)
	}
}

// Timeout bounds each handler call. A handler that overruns gets a cancelled
// context and its failure is retried (not permanent: the next try may be
// faster).
type Timeout struct {
	D time.Duration
}

// Middleware implements the timeout middleware.
func (t Timeout) Middleware(next Handler) Handler {
	return func(ctx context.Context, ev event.Event) error {
		if t.D <= 0 {
			return next(ctx, ev)
		}
		ctx, cancel := context.WithTimeout(ctx, t.D)
		defer cancel()
		err := next(ctx, ev)
		if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("handler timed out after %s: %w", t.D, err)
		}
		return err
	}
}

// SeenStore remembers which events were handled, for Dedupe. Implementations
// may forget old keys (TTL, capacity); a forgotten key only means a late
// duplicate is handled again.
type SeenStore interface {
	// Seen reports whether key was marked.
	Seen(ctx context.Context, key string) (bool, error)
	// Mark records key as handled.
	Mark(ctx context.Context, key string) error
}

// Dedupe skips events already handled successfully, keyed by source + id (what
// CloudEvents defines as unique). It does not stop two concurrent deliveries
// of one event from both running: effects that must happen once use an
// idempotency claim (platform/state), this only saves repeated work.
type Dedupe struct {
	Store SeenStore
}

// DedupeKey is the key Dedupe uses for ev.
func DedupeKey(ev event.Event) string {
	return ev.Source() + "\x00" + ev.ID()
}

// Middleware implements the dedupe middleware.
func (d Dedupe) Middleware(next Handler) Handler {
	return func(ctx context.Context, ev event.Event) error {
		key := DedupeKey(ev)
		seen, err := d.Store.Seen(ctx, key)
		if err != nil {
			return fmt.Errorf("dedupe: %w", err)
		}
		if seen {
			return nil
		}
		if err := next(ctx, ev); err != nil {
			return err
		}
		if err := d.Store.Mark(ctx, key); err != nil {
			// The work is done; failing now would redo it. Report nothing:
			// at worst a duplicate runs again.
			return nil
		}
		return nil
	}
}

// MemorySeenStore is a SeenStore in process memory that keeps the most recent
// Capacity keys (default 100,000). Safe for concurrent use.
type MemorySeenStore struct {
	Capacity int

	mu    sync.Mutex
	keys  map[string]struct{}
	order []string
	next  int
}

var _ SeenStore = (*MemorySeenStore)(nil)

// Seen implements SeenStore.
func (s *MemorySeenStore) Seen(_ context.Context, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.keys[key]
	return ok, nil
}

// Mark implements SeenStore, evicting the oldest key when full.
func (s *MemorySeenStore) Mark(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		c := s.Capacity
		if c <= 0 {
			c = 100_000
		}
		s.keys = make(map[string]struct{}, c)
		s.order = make([]string, c)
	}
	if _, ok := s.keys[key]; ok {
		return nil
	}
	// order is a ring: the slot we overwrite holds the oldest key.
	if old := s.order[s.next]; old != "" {
		delete(s.keys, old)
	}
	s.order[s.next] = key
	s.keys[key] = struct{}{}
	s.next = (s.next + 1) % len(s.order)
	return nil
}

// Logging logs every handled event: failures at Warn, successes at Debug,
// with the event's type, source, id and the time taken.
type Logging struct {
	Logger *slog.Logger
}

// Middleware implements the logging middleware.
func (l Logging) Middleware(next Handler) Handler {
	return func(ctx context.Context, ev event.Event) error {
		start := time.Now()
		err := next(ctx, ev)
		attrs := []slog.Attr{
			slog.String("type", ev.Type()), slog.String("source", ev.Source()),
			slog.String("id", ev.ID()), slog.Duration("took", time.Since(start)),
		}
		if err != nil {
			attrs = append(attrs, slog.Any("err", err), slog.Bool("permanent", errors.Is(err, ErrPermanent)))
			l.Logger.LogAttrs(ctx, slog.LevelWarn, "handler failed", attrs...)
		} else {
			l.Logger.LogAttrs(ctx, slog.LevelDebug, "handled", attrs...)
		}
		return err
	}
}
