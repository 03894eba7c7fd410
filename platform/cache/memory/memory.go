// Package memory is the in-process cache.Cache of embedded mode: a map of
// sessions with a time to live, bounded to MaxSessions sessions (least
// recently used evicted first) of at most MaxEntries entries each.
package memory

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/agentbus/agentbus/platform/cache"
)

// Defaults for Options' zero values.
const (
	DefaultMaxSessions = 10_000
	DefaultMaxEntries  = 64
	// tombstoneTTL is how long an invalidated session's Version is kept to
	// refuse late fills; dropping it earlier is safe (see floor) but refuses
	// more fills than needed.
	tombstoneTTL = time.Minute
)

// Options configure a Cache; the zero value gives the defaults.
type Options struct {
	// MaxSessions bounds the sessions held (cached or recently invalidated).
	MaxSessions int
	// MaxEntries bounds the entries kept per session (the newest are kept).
	MaxEntries int
	// Now is the clock (time.Now when nil); tests inject a fake one.
	Now func() time.Time
}

// Cache is an in-process cache.Cache. Safe for concurrent use.
type Cache struct {
	mu      sync.Mutex
	opts    Options
	counter uint64 // last Version handed out
	// floor is the highest Version of a record that was dropped (evicted,
	// expired). A fill for an absent session with a Version below it may
	// have lost a race with a write whose record is gone, so it is refused.
	floor    uint64
	lru      *list.List // of *record, most recently used first
	sessions map[string]*list.Element
}

type record struct {
	id      string
	cached  bool // false: a tombstone that only keeps the Version
	entries []cache.Entry
	version uint64
	expires time.Time
}

var _ cache.Cache = (*Cache)(nil)

// New returns an empty cache.
func New(opts Options) *Cache {
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Cache{opts: opts, lru: list.New(), sessions: make(map[string]*list.Element)}
}

// Len returns the number of sessions held (cached or tombstones).
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// lookup returns the live record of id, dropping it if expired. Caller holds mu.
func (c *Cache) lookup(id string, now time.Time) *record {
	el, ok := c.sessions[id]
	if !ok {
		return nil
	}
	r := el.Value.(*record)
	if !now.Before(r.expires) {
		c.drop(el)
		return nil
	}
	c.lru.MoveToFront(el)
	return r
}

func (c *Cache) drop(el *list.Element) {
	r := el.Value.(*record)
	c.floor = max(c.floor, r.version)
	c.lru.Remove(el)
	delete(c.sessions, r.id)
}

// put stores r as id's record and evicts beyond MaxSessions. Caller holds mu.
func (c *Cache) put(r *record) {
	if el, ok := c.sessions[r.id]; ok {
		el.Value = r
		c.lru.MoveToFront(el)
	} else {
		c.sessions[r.id] = c.lru.PushFront(r)
	}
	for c.lru.Len() > c.opts.MaxSessions {
		c.drop(c.lru.Back())
	}
}

func ctxErr(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory cache: %s: %w", op, err)
	}
	return nil
}

// Get implements cache.Cache.
func (c *Cache) Get(ctx context.Context, sessionID string) ([]cache.Entry, bool, cache.Version, error) {
	if err := cache.CheckArgs(sessionID, 0, false); err != nil {
		return nil, false, 0, err
	}
	if err := ctxErr(ctx, "get"); err != nil {
		return nil, false, 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.lookup(sessionID, c.opts.Now())
	if r == nil {
		return nil, false, cache.Version(c.counter), nil
	}
	if !r.cached {
		return nil, false, cache.Version(r.version), nil
	}
	out := make([]cache.Entry, len(r.entries))
	for i, e := range r.entries {
		out[i] = cache.Entry{Seq: e.Seq, Data: append([]byte{}, e.Data...)}
	}
	return out, true, cache.Version(r.version), nil
}

// Fill implements cache.Cache.
func (c *Cache) Fill(ctx context.Context, sessionID string, v cache.Version, entries []cache.Entry, ttl time.Duration) (bool, error) {
	if err := cache.CheckArgs(sessionID, ttl, true); err != nil {
		return false, err
	}
	if err := ctxErr(ctx, "fill"); err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	r := c.lookup(sessionID, now)
	switch {
	case r != nil && (r.cached || uint64(v) != r.version):
		return false, nil
	case r == nil && uint64(v) < c.floor:
		return false, nil
	}
	c.counter++
	c.put(&record{
		id: sessionID, cached: true, version: c.counter, expires: now.Add(ttl),
		entries: cache.AppendNewer(nil, entries, c.opts.MaxEntries),
	})
	return true, nil
}

// Append implements cache.Cache.
func (c *Cache) Append(ctx context.Context, sessionID string, entries []cache.Entry, ttl time.Duration) error {
	if err := cache.CheckArgs(sessionID, ttl, true); err != nil {
		return err
	}
	if err := ctxErr(ctx, "append"); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	c.counter++
	r := c.lookup(sessionID, now)
	if r == nil || !r.cached {
		c.put(&record{id: sessionID, version: c.counter, expires: now.Add(tombstoneTTL)})
		return nil
	}
	c.put(&record{
		id: sessionID, cached: true, version: c.counter, expires: now.Add(ttl),
		entries: cache.AppendNewer(r.entries, entries, c.opts.MaxEntries),
	})
	return nil
}

// Invalidate implements cache.Cache.
func (c *Cache) Invalidate(ctx context.Context, sessionID string) error {
	if err := cache.CheckArgs(sessionID, 0, false); err != nil {
		return err
	}
	if err := ctxErr(ctx, "invalidate"); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counter++
	c.put(&record{id: sessionID, version: c.counter, expires: c.opts.Now().Add(tombstoneTTL)})
	return nil
}
