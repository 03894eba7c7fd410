package memory_test

import (
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/cache"
	"github.com/agentbus/agentbus/platform/cache/cachetest"
	"github.com/agentbus/agentbus/platform/cache/memory"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	cachetest.Run(t, func(t *testing.T, maxEntries int) cache.Cache {
		return memory.New(memory.Options{MaxEntries: maxEntries})
	})
}

func TestBoundedSessions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := memory.New(memory.Options{MaxSessions: 3})
	fillOne := func(id string) {
		t.Helper()
		_, _, v, err := c.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := c.Fill(ctx, id, v, []cache.Entry{{Seq: 1}}, time.Minute); !ok || err != nil {
			t.Fatalf("Fill(%s) = %v, %v", id, ok, err)
		}
	}
	for _, id := range []string{"a", "b", "c"} {
		fillOne(id)
	}
	// Touch a so that b is the least recently used.
	if _, hit, _, _ := c.Get(ctx, "a"); !hit {
		t.Fatal("a missing")
	}
	fillOne("d")
	if c.Len() != 3 {
		t.Fatalf("Len = %d, want 3", c.Len())
	}
	for id, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true} {
		if _, hit, _, _ := c.Get(ctx, id); hit != want {
			t.Errorf("%s hit=%v, want %v", id, hit, want)
		}
	}
}

// TestEvictedWriteRefusesFill: a write whose record was evicted before the
// older reader fills must still refuse the fill.
func TestEvictedWriteRefusesFill(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := memory.New(memory.Options{MaxSessions: 1})
	_, _, v, _ := c.Get(ctx, "s")                  // reader misses
	if err := c.Invalidate(ctx, "s"); err != nil { // writer
		t.Fatal(err)
	}
	_ = c.Invalidate(ctx, "other") // evicts s's tombstone
	if ok, err := c.Fill(ctx, "s", v, nil, time.Minute); ok || err != nil {
		t.Fatalf("Fill = %v, %v; want refused", ok, err)
	}
}

func TestFakeClockExpiry(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	now := time.Unix(1_000_000, 0)
	c := memory.New(memory.Options{Now: func() time.Time { return now }})
	_, _, v, _ := c.Get(ctx, "s")
	if ok, _ := c.Fill(ctx, "s", v, nil, time.Hour); !ok {
		t.Fatal("fill refused")
	}
	now = now.Add(59 * time.Minute)
	if _, hit, _, _ := c.Get(ctx, "s"); !hit {
		t.Fatal("expired early")
	}
	now = now.Add(time.Minute)
	if _, hit, _, _ := c.Get(ctx, "s"); hit {
		t.Fatal("not expired at its ttl")
	}
	if c.Len() != 0 {
		t.Errorf("expired session still held: Len = %d", c.Len())
	}
}
