package redis_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/cache"
	rediscache "github.com/agentbus/agentbus/platform/cache/redis"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// closedPort returns an address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestDownRedisFallsBack: with Redis unreachable, every read is served by
// the loader without an error, writes do not fail, and the outage is logged
// once.
func TestDownRedisFallsBack(t *testing.T) {
	t.Parallel()
	rc, err := rediscache.New(closedPort(t), rediscache.Options{Prefix: uniquePrefix()})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// The raw cache reports the failure...
	if _, _, _, err := rc.Get(t.Context(), "s"); err == nil {
		t.Fatal("Get on a closed port succeeded")
	}
	var logs syncBuf
	loads := 0
	loader := cache.LoaderFunc(func(_ context.Context, id string, max int) ([]cache.Entry, error) {
		loads++
		return []cache.Entry{{Seq: 1, Data: []byte("turn of " + id)}}, nil
	})
	rt, err := cache.NewReadThrough(rc, loader, cache.ReadThroughOptions{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), RetryAfter: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	// ...the read-through never does.
	for i := range 10 {
		got, err := rt.Get(t.Context(), "s")
		if err != nil || len(got) != 1 || string(got[0].Data) != "turn of s" {
			t.Fatalf("Get %d = %v, %v", i, got, err)
		}
		rt.Written(t.Context(), "s", cache.Entry{Seq: int64(i + 2)})
		if i == 4 {
			time.Sleep(150 * time.Millisecond) // a probe happens, and fails
		}
	}
	if loads != 10 {
		t.Errorf("%d loads, want 10", loads)
	}
	if n := strings.Count(logs.String(), "cache unavailable"); n != 1 {
		t.Errorf("logged the outage %d times, want once:\n%s", n, logs.String())
	}
	if !rt.Down() {
		t.Error("not marked down")
	}
}

// TestRecoveryAgainstRealRedis: a ReadThrough whose writes failed while the
// cache was "down" invalidates those sessions on the real server when it
// comes back.
func TestRecoveryAgainstRealRedis(t *testing.T) {
	t.Parallel()
	rc := newRedis(t, 64)
	ctx := t.Context()
	// Pre-outage context cached on the server.
	_, _, v, err := rc.Get(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := rc.Fill(ctx, "s", v, []cache.Entry{{Seq: 1}}, time.Minute); !ok || err != nil {
		t.Fatalf("Fill = %v, %v", ok, err)
	}
	gate := &gatedCache{Cache: rc}
	gate.down.Store(true)
	history := []cache.Entry{{Seq: 1}, {Seq: 2}}
	loader := cache.LoaderFunc(func(context.Context, string, int) ([]cache.Entry, error) { return history, nil })
	rt, _ := cache.NewReadThrough(gate, loader, cache.ReadThroughOptions{
		Logger: slog.New(slog.DiscardHandler), RetryAfter: time.Millisecond,
	})
	rt.Written(ctx, "s", cache.Entry{Seq: 2}) // lost: the cache is down
	gate.down.Store(false)
	time.Sleep(5 * time.Millisecond)
	got, err := rt.Get(ctx, "s")
	if err != nil || len(got) != 2 {
		t.Fatalf("Get after recovery = %v, %v; want [1 2], not the stale [1]", got, err)
	}
}

// gatedCache fails every call while down is set, as an unreachable server.
type gatedCache struct {
	cache.Cache
	down atomic.Bool
}

var errUnreachable = net.ErrClosed

func (g *gatedCache) Get(ctx context.Context, id string) ([]cache.Entry, bool, cache.Version, error) {
	if g.down.Load() {
		return nil, false, 0, errUnreachable
	}
	return g.Cache.Get(ctx, id)
}

func (g *gatedCache) Fill(ctx context.Context, id string, v cache.Version, es []cache.Entry, ttl time.Duration) (bool, error) {
	if g.down.Load() {
		return false, errUnreachable
	}
	return g.Cache.Fill(ctx, id, v, es, ttl)
}

func (g *gatedCache) Append(ctx context.Context, id string, es []cache.Entry, ttl time.Duration) error {
	if g.down.Load() {
		return errUnreachable
	}
	return g.Cache.Append(ctx, id, es, ttl)
}

func (g *gatedCache) Invalidate(ctx context.Context, id string) error {
	if g.down.Load() {
		return errUnreachable
	}
	return g.Cache.Invalidate(ctx, id)
}
