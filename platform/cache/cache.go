// Package cache holds the hot context of agent sessions (their recent turns)
// in front of the durable history in platform/state.
//
// Cache is what a backend implements (cache/memory in process, cache/redis
// on Redis/ElastiCache); every implementation passes the cachetest suite.
// Services use ReadThrough, which loads from the durable store on a miss,
// keeps the cache coherent with writes, and never lets a cache outage fail a
// run.
//
// Coherence: a reader that misses loads from the store and then fills the
// cache; a writer that updates the store concurrently could otherwise be
// overwritten by the reader's older load. Every mutation of a session's slot
// therefore gets a new Version, and Fill is a compare-and-set on the Version
// the reader saw at its miss: a fill loaded before a concurrent write is
// refused, and the next read loads again.
package cache

import (
	"context"
	"errors"
	"time"
)

// Entry is one item of a session's hot context (typically one turn, encoded
// by the caller). Seq orders entries within a session and makes Append
// idempotent: the history sequence number is the natural choice.
type Entry struct {
	Seq  int64
	Data []byte
}

// Version identifies the state of one session's slot; see the package doc.
// The zero Version is the slot of a session that was never touched.
type Version uint64

// Cache is a per-session cache of recent entries. Every method is safe for
// concurrent use. ttl must be positive; each write (Fill, Append) restarts
// the session's time to live.
type Cache interface {
	// Get returns the session's entries, oldest first, and hit=true when the
	// session is cached (a cached session may have no entries). On a miss it
	// returns the Version to pass to Fill.
	Get(ctx context.Context, sessionID string) (entries []Entry, hit bool, v Version, err error)
	// Fill caches entries (oldest first; only the newest MaxEntries of the
	// implementation are kept) if the session's slot is still at Version v.
	// It reports whether it stored them; false means a concurrent write or
	// fill won, which is not an error.
	Fill(ctx context.Context, sessionID string, v Version, entries []Entry, ttl time.Duration) (bool, error)
	// Append adds entries to a cached session, skipping any whose Seq is not
	// above the last cached Seq (redelivered writes). On an uncached session
	// it stores nothing but still changes the Version, so that a fill loaded
	// before this write is refused.
	Append(ctx context.Context, sessionID string, entries []Entry, ttl time.Duration) error
	// Invalidate drops the session's entries and refuses pending fills.
	Invalidate(ctx context.Context, sessionID string) error
}

// ErrInvalid is wrapped by errors for bad arguments (empty session id,
// non-positive ttl).
var ErrInvalid = errors.New("cache: invalid argument")

// CheckArgs validates the arguments every implementation checks; ttl is
// ignored when checkTTL is false.
func CheckArgs(sessionID string, ttl time.Duration, checkTTL bool) error {
	if sessionID == "" {
		return errors.Join(ErrInvalid, errors.New("cache: empty session id"))
	}
	if checkTTL && ttl <= 0 {
		return errors.Join(ErrInvalid, errors.New("cache: ttl must be positive"))
	}
	return nil
}

// AppendNewer returns cur with the entries of add whose Seq is above the
// last Seq seen (of cur, then of add as it goes), trimmed to the newest max
// entries when max > 0. Implementations share it so they agree exactly.
func AppendNewer(cur []Entry, add []Entry, max int) []Entry {
	last, ok := int64(0), false
	if n := len(cur); n > 0 {
		last, ok = cur[n-1].Seq, true
	}
	for _, e := range add {
		if ok && e.Seq <= last {
			continue
		}
		cur = append(cur, Entry{Seq: e.Seq, Data: clone(e.Data)})
		last, ok = e.Seq, true
	}
	return Trim(cur, max)
}

// Trim keeps the newest max entries (all when max <= 0).
func Trim(es []Entry, max int) []Entry {
	if max > 0 && len(es) > max {
		return append([]Entry(nil), es[len(es)-max:]...)
	}
	return es
}

func clone(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return append([]byte{}, b...)
}
