package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Loader reads a session's recent entries from the durable store (the
// session history in platform/state): the newest max entries, oldest first.
// It is declared here, where it is used, so that the cache does not depend on
// the state package.
type Loader interface {
	LoadRecent(ctx context.Context, sessionID string, max int) ([]Entry, error)
}

// LoaderFunc adapts a function to Loader.
type LoaderFunc func(ctx context.Context, sessionID string, max int) ([]Entry, error)

// LoadRecent calls f.
func (f LoaderFunc) LoadRecent(ctx context.Context, sessionID string, max int) ([]Entry, error) {
	return f(ctx, sessionID, max)
}

// ReadThroughOptions configure a ReadThrough; zero values give the defaults.
type ReadThroughOptions struct {
	// TTL of a cached session (default 15 minutes).
	TTL time.Duration
	// MaxEntries is how many recent entries make a session's hot context
	// (default 64); passed to the Loader. Configure the Cache to keep at
	// least as many.
	MaxEntries int
	// OpTimeout bounds each cache call (default 250 ms), so a hanging cache
	// costs a run little more than this before it falls back.
	OpTimeout time.Duration
	// RetryAfter is how long the cache is bypassed after a failure before it
	// is tried again (default 1 s).
	RetryAfter time.Duration
	// MaxPending bounds the sessions whose cache update failed and must be
	// invalidated when the cache is back (default 10,000).
	MaxPending int
	// Logger receives the down/recovered messages (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// ReadThrough serves sessions' hot context from a Cache in front of a
// Loader. A cache that fails or hangs never fails a call: Get falls back to
// the loader, and the outage is logged once when it starts and once when it
// ends. Writes that could not reach the cache are remembered (up to
// MaxPending sessions) and turned into invalidations when it recovers, so a
// recovered cache does not serve context from before the outage; until then
// those sessions are read from the loader. Safe for concurrent use.
type ReadThrough struct {
	cache  Cache
	loader Loader
	o      ReadThroughOptions

	mu       sync.Mutex
	down     bool
	since    time.Time
	retryAt  time.Time
	pending  map[string]struct{}
	overflow int // invalidations dropped because pending was full
}

// errBypassed reports a cache call skipped because the cache is down.
var errBypassed = errors.New("cache bypassed while down")

// NewReadThrough wires c in front of l.
func NewReadThrough(c Cache, l Loader, o ReadThroughOptions) (*ReadThrough, error) {
	if c == nil || l == nil {
		return nil, errors.New("cache: read-through needs a cache and a loader")
	}
	if o.TTL <= 0 {
		o.TTL = 15 * time.Minute
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 64
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = 250 * time.Millisecond
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 10_000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &ReadThrough{cache: c, loader: l, o: o, pending: make(map[string]struct{})}, nil
}

// Down reports whether the cache is currently considered down.
func (r *ReadThrough) Down() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.down
}

// Get returns the session's recent entries, oldest first: from the cache,
// or from the loader (filling the cache) on a miss or while the cache is
// down. Only a loader failure (or ctx) makes it fail.
func (r *ReadThrough) Get(ctx context.Context, sessionID string) ([]Entry, error) {
	if err := CheckArgs(sessionID, 0, false); err != nil {
		return nil, err
	}
	var (
		entries []Entry
		hit     bool
		v       Version
	)
	cacheOK := !r.isPending(sessionID)
	if cacheOK {
		err := r.call(ctx, func(ctx context.Context) error {
			var err error
			entries, hit, v, err = r.cache.Get(ctx, sessionID)
			return err
		})
		if err != nil && ctx.Err() != nil {
			return nil, err
		}
		if err == nil && hit {
			return entries, nil
		}
		cacheOK = err == nil
	}
	loaded, err := r.loader.LoadRecent(ctx, sessionID, r.o.MaxEntries)
	if err != nil {
		return nil, fmt.Errorf("cache: load session %q: %w", sessionID, err)
	}
	if cacheOK {
		// A refused fill (a concurrent write won) or a failed one only
		// means the next Get loads again.
		_ = r.call(ctx, func(ctx context.Context) error {
			_, err := r.cache.Fill(ctx, sessionID, v, loaded, r.o.TTL)
			return err
		})
	}
	return loaded, nil
}

// Written tells the cache that entries were appended to the session's
// durable history. Call it after the write commits. It never fails: if the
// cache cannot be updated, the session is invalidated when the cache is back.
func (r *ReadThrough) Written(ctx context.Context, sessionID string, entries ...Entry) {
	r.update(ctx, sessionID, func(ctx context.Context) error {
		return r.cache.Append(ctx, sessionID, entries, r.o.TTL)
	})
}

// Invalidate drops the session from the cache (after a durable change that
// is not an append, e.g. a redaction). It never fails, like Written.
func (r *ReadThrough) Invalidate(ctx context.Context, sessionID string) {
	r.update(ctx, sessionID, func(ctx context.Context) error {
		return r.cache.Invalidate(ctx, sessionID)
	})
}

func (r *ReadThrough) update(ctx context.Context, sessionID string, op func(context.Context) error) {
	if sessionID == "" {
		return
	}
	if r.isPending(sessionID) {
		return // invalidated on recovery anyway
	}
	err := r.call(ctx, op)
	if err == nil {
		return
	}
	if ctx.Err() != nil {
		// The caller gave up mid-update, so the cache may or may not have
		// the write: drop the session regardless of the caller's ctx.
		err = r.call(context.WithoutCancel(ctx), func(ctx context.Context) error {
			return r.cache.Invalidate(ctx, sessionID)
		})
		if err == nil {
			return
		}
	}
	r.addPending(sessionID)
}

func (r *ReadThrough) isPending(sessionID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.pending[sessionID]
	return ok
}

func (r *ReadThrough) addPending(sessionID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) >= r.o.MaxPending {
		if r.overflow == 0 {
			r.o.Logger.Error("cache: too many sessions to invalidate after the outage; some cached contexts may be stale until their TTL",
				"max_pending", r.o.MaxPending, "ttl", r.o.TTL)
		}
		r.overflow++
		return
	}
	r.pending[sessionID] = struct{}{}
}

// call runs op against the cache with OpTimeout, tracking the cache's
// health. While down it returns errBypassed without calling the cache,
// except for one probe every RetryAfter.
func (r *ReadThrough) call(ctx context.Context, op func(context.Context) error) error {
	now := r.o.Now()
	r.mu.Lock()
	if r.down && now.Before(r.retryAt) {
		r.mu.Unlock()
		return errBypassed
	}
	if r.down {
		r.retryAt = now.Add(r.o.RetryAfter) // this call is the probe
	}
	r.mu.Unlock()

	opCtx, cancel := context.WithTimeout(ctx, r.o.OpTimeout)
	err := op(opCtx)
	cancel()
	switch {
	case err == nil:
		r.succeeded(ctx)
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("cache: %w", ctx.Err()) // the caller gave up; says nothing about the cache
	case errors.Is(err, ErrInvalid):
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retryAt = r.o.Now().Add(r.o.RetryAfter)
	if !r.down {
		r.down, r.since = true, r.o.Now()
		r.o.Logger.Warn("cache unavailable; serving hot context from the durable store until it recovers", "err", err)
	}
	return err
}

// succeeded marks the cache up after a successful call and invalidates the
// sessions whose updates failed; it logs the recovery when it was down.
func (r *ReadThrough) succeeded(ctx context.Context) {
	r.mu.Lock()
	wasDown := r.down
	if !wasDown && len(r.pending) == 0 {
		r.mu.Unlock()
		return
	}
	r.down = false
	since, overflow := r.since, r.overflow
	r.overflow = 0
	ids := make([]string, 0, len(r.pending))
	for id := range r.pending {
		ids = append(ids, id)
	}
	r.mu.Unlock()

	failed := 0
	for _, id := range ids {
		opCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.OpTimeout)
		err := r.cache.Invalidate(opCtx, id)
		cancel()
		if err != nil {
			failed++
			continue // stays pending
		}
		r.mu.Lock()
		delete(r.pending, id)
		r.mu.Unlock()
	}
	if wasDown {
		r.o.Logger.Info("cache recovered", "down_for", r.o.Now().Sub(since).Round(time.Millisecond),
			"invalidated", len(ids)-failed, "invalidations_failed", failed, "invalidations_lost", overflow)
	}
	if failed > 0 {
		r.mu.Lock()
		if !r.down {
			r.down, r.since, r.retryAt = true, r.o.Now(), r.o.Now().Add(r.o.RetryAfter)
			r.o.Logger.Warn("cache unavailable again while invalidating sessions written during the outage", "pending", failed)
		}
		r.mu.Unlock()
	}
}
