// Package cachetest is the conformance suite every cache.Cache passes. An
// implementation's test calls Run with a constructor returning a fresh cache
// (its own key prefix for a shared server) that keeps at most maxEntries
// entries per session.
package cachetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/cache"
)

// TTL is the time to live used where expiry is not under test.
const TTL = time.Minute

// Run runs the suite. newCache must return a cache that no other subtest
// uses, keeping the newest maxEntries entries per session.
func Run(t *testing.T, newCache func(t *testing.T, maxEntries int) cache.Cache) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, newCache func(t *testing.T, maxEntries int) cache.Cache)
	}{
		{"MissFillHit", testMissFillHit},
		{"FillEmpty", testFillEmpty},
		{"FillRefusedAfterWrite", testFillRefusedAfterWrite},
		{"Append", testAppend},
		{"AppendUncached", testAppendUncached},
		{"MaxEntries", testMaxEntries},
		{"Invalidate", testInvalidate},
		{"SessionsIsolated", testSessionsIsolated},
		{"ReturnedSlicesAreCopies", testCopies},
		{"TTL", testTTL},
		{"ConcurrentFill", testConcurrentFill},
		{"Concurrent", testConcurrent},
		{"InvalidArguments", testInvalidArguments},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newCache)
		})
	}
}

func entries(seqs ...int64) []cache.Entry {
	out := make([]cache.Entry, len(seqs))
	for i, s := range seqs {
		out[i] = cache.Entry{Seq: s, Data: fmt.Appendf(nil, "turn-%d\x00\xff", s)}
	}
	return out
}

func seqsOf(es []cache.Entry) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

// wantHit checks that the session is cached with exactly the given seqs and
// the data entries() generates for them.
func wantHit(t *testing.T, c cache.Cache, id string, seqs ...int64) {
	t.Helper()
	got, hit, _, err := c.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	if !hit {
		t.Fatalf("Get(%s): miss, want hit with %v", id, seqs)
	}
	want := entries(seqs...)
	if len(got) != len(want) {
		t.Fatalf("Get(%s) = seqs %v, want %v", id, seqsOf(got), seqs)
	}
	for i := range want {
		if got[i].Seq != want[i].Seq || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("Get(%s)[%d] = {%d %q}, want {%d %q}", id, i, got[i].Seq, got[i].Data, want[i].Seq, want[i].Data)
		}
	}
}

func wantMiss(t *testing.T, c cache.Cache, id string) cache.Version {
	t.Helper()
	got, hit, v, err := c.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	if hit {
		t.Fatalf("Get(%s): hit with %v, want a miss", id, seqsOf(got))
	}
	return v
}

func fill(t *testing.T, c cache.Cache, id string, v cache.Version, es []cache.Entry, want bool) {
	t.Helper()
	ok, err := c.Fill(t.Context(), id, v, es, TTL)
	if err != nil {
		t.Fatalf("Fill(%s): %v", id, err)
	}
	if ok != want {
		t.Fatalf("Fill(%s) stored=%v, want %v", id, ok, want)
	}
}

func mustAppend(t *testing.T, c cache.Cache, id string, es []cache.Entry) {
	t.Helper()
	if err := c.Append(t.Context(), id, es, TTL); err != nil {
		t.Fatalf("Append(%s): %v", id, err)
	}
}

func testMissFillHit(t *testing.T, newCache func(*testing.T, int) cache.Cache) {
	c := newCache(t, 100)
	v := wantMiss(t, c, "s")
	fill(t, c, "s", v, entries(1, 2, 5), true)
	wantHit(t, c, "s", 1, 2, 5)
	// Filled entries out of order or repeated are normalized like appends.
	c2 := newCache(t, 100)
	v = wantMiss(t, c2, "s")
	fill(t, c2, "s", v, entries(1, 3, 2, 3, 4), true)
	wantHit(t, c2, "s", 1, 3, 4)
}

func testFillEmpty(t *testing.T, newCache func(*testing.T, int) cache.Cache) {
	c := newCache(t, 100)
	// A session with no history yet is cacheable: a hit with no entries.
	fill(t, c, "s", wantMiss(t, c, "s"), nil, true)
	wantHit(t, c, "s")
	mustAppend(t, c, "s", entries(1))
	wantHit(t, c, "s", 1)
}

func testFillRefusedAfterWrite(t *testing.T, newCache func(*testing.T, int) cache.Cache) {
	ctx := t.Context()
	writes := []struct {
		name  string
		write func(c cache.Cache) error
	}{
		{"invalidate", func(c cache.Cache) error { return c.Invalidate(ctx, "s") }},
		{"append", func(c cache.Cache) error { return c.Append(ctx, "s", entries(9), TTL) }},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			c := newCache(t, 100)
			// A reader misses and loads; a writer updates the store and the
			// cache; the reader's older load must not be cached.
			v := wantMiss(t, c, "s")
			if err := w.write(c); err != nil {
				t.Fatal(err)
			}
			fill(t, c, "s", v, entries(1), false)
			wantMiss(t, c, "s")
			fill(t, c, "s", wantMiss(t, c, "s"), entries(1, 9), true)
			wantHit(t, c, "s", 1, 9)
		})
	}
	t.Run("second fill", func(t *testing.T) {
		// Two readers miss at the same Version; the first fill wins, the
		// second is refused rather than overwriting.
		c := newCache(t, 100)
		v := wantMiss(t, c, "s")
		fill(t, c, "s", v, entries(1, 2), true)
		fill(t, c, "s", v, entries(1), false)
		wantHit(t, c, "s", 1, 2)
	})
	t.Run("stale version", func(t *testing.T) {
		// A Version from before a fill and an invalidation.
		c := newCache(t, 100)
		v := wantMiss(t, c, "x")
		fill(t, c, "x", v, entries(1), true)
		if err := c.Invalidate(ctx, "x"); err != nil {
			t.Fatal(err)
		}
		fill(t, c, "x", v, entries(1), false)
	})
}

func testAppend(t *testing.T, newCache func(*testing.T, int) cache.Cache) {
	c := newCache(t, 100)
	fill(t, c, "s", wantMiss(t, c, "s"), entries(1, 2), true)
	mustAppend(t, c, "s", entries(3))
	mustAppend(t, c, "s", entries(4, 6))
	wantHit(t, c, "s", 1, 2, 3, 4, 6)
	// Redelivered and out-of-order entries are skipped.
	mustAppend(t, c, "s", entries(3, 6))
	mustAppend(t, c, "s", entries(5, 7, 7, 6, 8))
	wantHit(t, c, "s", 1, 2, 3, 4, 6, 7, 8)
	mustAppend(t, c, "s", nil)
	wantHit(t, c, "s", 1, 2, 3, 4, 6, 7, 8)
	// Empty data survives.
	mustAppend(t, c, "s", []cache.Entry{{Seq: 9, Data: nil}})
	got, _, _, err := c.Get(t.Context(), "s")
	if err != nil || len(got) != 8 || got[7].Seq != 9 || len(got[7].Data) != 0 {
		t.Fatalf("after appending empty data: %v, %v", seqsOf(got), err)
	}
}

func testAppendUncached(t *testing.T, newCache func(*testing.T, int) cache.Cache) {
	c := newCache(t, 100)
	// Appending to an uncached session must not create a partial context.
	mustAppend(t, c, "s", entries(7))
	wantMiss(t, c, "s")
	mustAppend(t, c, "s", entries(8))
	fill(t, c, "s", wantMiss(t, c, "s"), entries(1, 7, 8), true)
	wantHit(t, c, "s", 1, 7, 8)
}

func testMaxEntries(t *testing.T, newCache func(*testing.T, int) cache.Cache) {
	c := newCache(t, 3)
	fill(t, c, "s", wantMiss(t, c, "s"), entries(1, 2, 3, 4, 5), true)
	wantHit(t, c, "s", 3, 4, 5)
	mustAppend(t, c, "s", entries(6))
	wantHit(t, c, "s", 4, 5, 6)
	mustAppend(t, c, "s", entries(7, 8, 9, 10))
	wantHit(t, c, "s", 8, 9, 10)
	// The trimmed-away seqs still count as seen.
	mustAppend(t, c, "s", entries(2))
	wantHit(t, c, "s", 8, 9, 10)
}

func testInvalidate(t *testing.T, newCache func(*testing.T, int) cache.Cache) {
	c := newCache(t, 100)
	ctx := t.Context()
	fill(t, c, "s", wantMiss(t, c, "s"), entries(1), true)
	if err := c.Invalidate(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	wantMiss(t, c, "s")
	if err := c.Invalidate(ctx, "never-seen"); err != nil {
		t.Fatalf("Invalidate of an unknown session: %v", err)
	}
	fill(t, c, "s", wantMiss(t, c, "s"), entries(1, 2), true)
	wantHit(t, c, "s", 1, 2)
}

func testSessionsIsolated(t *testing.T, newCache func(*testing.T, int) cache.Cache) {
	c := newCache(t, 100)
	ids := []string{"a", "b", "a:b", "{a}", "sess/with/slashes", "ünï"}
	for i, id := range ids {
		fill(t, c, id, wantMiss(t, c, id), entries(int64(i+1)), true)
	}
	if err := c.Invalidate(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	wantMiss(t, c, "a")
	for i, id := range ids[1:] {
		wantHit(t, c, id, int64(i+2))
	}
}

func testCopies(t *testing.T, newCache func(*testing.T, int) cache.Cache) {
	c := newCache(t, 100)
	in := entries(1, 2)
	fill(t, c, "s", wantMiss(t, c, "s"), in, true)
	in[0].Data[0] = 'X' // the caller reuses its buffer
	got, _, _, _ := c.Get(t.Context(), "s")
	got[1].Data[0] = 'Y' // the caller edits what it got
	got[0].Seq = 99
	wantHit(t, c, "s", 1, 2)
}

func testTTL(t *testing.T, newCache func(*testing.T, int) cache.Cache) {
	if testing.Short() {
		t.Skip("sleeps; skipped in -short mode")
	}
	ctx := t.Context()
	c := newCache(t, 100)
	const ttl = 1500 * time.Millisecond
	ok, err := c.Fill(ctx, "s", wantMiss(t, c, "s"), entries(1), ttl)
	if err != nil || !ok {
		t.Fatalf("Fill = %v, %v", ok, err)
	}
	time.Sleep(ttl / 2)
	// An append restarts the time to live.
	if err := c.Append(ctx, "s", entries(2), ttl); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl*3/4 + 100*time.Millisecond)
	wantHit(t, c, "s", 1, 2) // past the fill's expiry, within the append's
	time.Sleep(ttl)
	wantMiss(t, c, "s")
}

func testConcurrentFill(t *testing.T, newCache func(*testing.T, int) cache.Cache) {
	c := newCache(t, 100)
	v := wantMiss(t, c, "s")
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			ok, err := c.Fill(t.Context(), "s", v, entries(int64(i+1)), TTL)
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d fills at one Version won, want exactly 1", wins.Load())
	}
	got, hit, _, err := c.Get(t.Context(), "s")
	if err != nil || !hit || len(got) != 1 {
		t.Fatalf("after concurrent fills: %v %v %v", seqsOf(got), hit, err)
	}
}

func testConcurrent(t *testing.T, newCache func(*testing.T, int) cache.Cache) {
	c := newCache(t, 1000)
	ctx := t.Context()
	const sessions, appends = 6, 30
	var wg sync.WaitGroup
	for s := range sessions {
		id := fmt.Sprintf("s%d", s)
		fill(t, c, id, wantMiss(t, c, id), nil, true)
		// One writer per session (a session's writes are ordered by its
		// history), with readers alongside.
		wg.Go(func() {
			for i := range appends {
				if err := c.Append(ctx, id, entries(int64(i+1)), TTL); err != nil {
					t.Error(err)
				}
			}
		})
		wg.Go(func() {
			for range appends {
				got, hit, _, err := c.Get(ctx, id)
				if err != nil || !hit {
					t.Errorf("Get(%s) = hit %v, %v", id, hit, err)
					return
				}
				for i, e := range got { // always a prefix 1..n
					if e.Seq != int64(i+1) {
						t.Errorf("Get(%s) = %v, not in order", id, seqsOf(got))
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for s := range sessions {
		seqs := make([]int64, appends)
		for i := range seqs {
			seqs[i] = int64(i + 1)
		}
		wantHit(t, c, fmt.Sprintf("s%d", s), seqs...)
	}
}

func testInvalidArguments(t *testing.T, newCache func(*testing.T, int) cache.Cache) {
	c := newCache(t, 100)
	ctx := t.Context()
	checks := map[string]error{
		"Get empty id":        func() error { _, _, _, err := c.Get(ctx, ""); return err }(),
		"Fill empty id":       func() error { _, err := c.Fill(ctx, "", 0, nil, TTL); return err }(),
		"Fill zero ttl":       func() error { _, err := c.Fill(ctx, "s", 0, nil, 0); return err }(),
		"Append negative ttl": c.Append(ctx, "s", entries(1), -time.Second),
		"Append empty id":     c.Append(ctx, "", entries(1), TTL),
		"Invalidate empty id": c.Invalidate(ctx, ""),
	}
	for name, err := range checks {
		if !errors.Is(err, cache.ErrInvalid) {
			t.Errorf("%s: %v, want an error wrapping cache.ErrInvalid", name, err)
		}
	}
	wantMiss(t, c, "s")
}
