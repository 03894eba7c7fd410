package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/cache"
	"github.com/agentbus/agentbus/platform/cache/memory"
)

// history is a fake durable store: the Loader side.
type history struct {
	mu    sync.Mutex
	turns map[string][]cache.Entry
	loads atomic.Int32
	err   error
	// gate, when set, blocks each load until it is closed.
	gate chan struct{}
}

func (h *history) LoadRecent(ctx context.Context, id string, max int) ([]cache.Entry, error) {
	h.loads.Add(1)
	h.mu.Lock()
	es := append([]cache.Entry(nil), h.turns[id]...)
	gate, err := h.gate, h.err
	h.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if err != nil {
		return nil, err
	}
	return cache.Trim(es, max), nil
}

func (h *history) add(id string, e cache.Entry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.turns == nil {
		h.turns = map[string][]cache.Entry{}
	}
	h.turns[id] = append(h.turns[id], e)
}

func entry(seq int64) cache.Entry { return cache.Entry{Seq: seq, Data: fmt.Appendf(nil, "t%d", seq)} }

func seqs(es []cache.Entry) string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, e.Seq)
	}
	return b.String()
}

// logSink collects log records for counting.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logSink) count(level, msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for line := range strings.SplitSeq(l.buf.String(), "\n") {
		if strings.Contains(line, "level="+level) && strings.Contains(line, msg) {
			n++
		}
	}
	return n
}

func (l *logSink) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func mustGet(t *testing.T, rt *cache.ReadThrough, id, want string) {
	t.Helper()
	got, err := rt.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	if seqs(got) != want {
		t.Fatalf("Get(%s) = [%s], want [%s]", id, seqs(got), want)
	}
}

func TestReadThroughMissThenHit(t *testing.T) {
	t.Parallel()
	h := &history{}
	h.add("s", entry(1))
	h.add("s", entry(2))
	rt, err := cache.NewReadThrough(memory.New(memory.Options{}), h, cache.ReadThroughOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustGet(t, rt, "s", "1,2")
	mustGet(t, rt, "s", "1,2")
	if n := h.loads.Load(); n != 1 {
		t.Fatalf("%d loads, want 1 (second Get from the cache)", n)
	}
	// A write: store first, then the cache; the next read needs no load.
	h.add("s", entry(3))
	rt.Written(t.Context(), "s", entry(3))
	mustGet(t, rt, "s", "1,2,3")
	if n := h.loads.Load(); n != 1 {
		t.Fatalf("%d loads after a write, want 1", n)
	}
	// Invalidate forces a reload.
	rt.Invalidate(t.Context(), "s")
	mustGet(t, rt, "s", "1,2,3")
	if n := h.loads.Load(); n != 2 {
		t.Fatalf("%d loads after Invalidate, want 2", n)
	}
}

func TestReadThroughWindow(t *testing.T) {
	t.Parallel()
	h := &history{}
	for i := range 10 {
		h.add("s", entry(int64(i+1)))
	}
	rt, _ := cache.NewReadThrough(memory.New(memory.Options{MaxEntries: 3}), h, cache.ReadThroughOptions{MaxEntries: 3})
	mustGet(t, rt, "s", "8,9,10")
	rt.Written(t.Context(), "s", entry(11))
	mustGet(t, rt, "s", "9,10,11")
}

// TestReadThroughRace: a reader's load that started before a write must not
// be cached over it.
func TestReadThroughRace(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	h := &history{gate: gate}
	h.add("s", entry(1))
	rt, _ := cache.NewReadThrough(memory.New(memory.Options{}), h, cache.ReadThroughOptions{})
	done := make(chan []cache.Entry)
	go func() {
		es, err := rt.Get(context.Background(), "s")
		if err != nil {
			t.Error(err)
		}
		done <- es
	}()
	for h.loads.Load() == 0 { // the reader has missed and is loading
		time.Sleep(time.Millisecond)
	}
	h.add("s", entry(2))
	rt.Written(t.Context(), "s", entry(2))
	h.mu.Lock()
	h.gate = nil
	h.mu.Unlock()
	close(gate)
	if es := <-done; seqs(es) != "1" {
		t.Fatalf("racing reader got [%s], want its own load [1]", seqs(es))
	}
	mustGet(t, rt, "s", "1,2") // not the stale [1]
}

func TestReadThroughLoaderError(t *testing.T) {
	t.Parallel()
	boom := errors.New("dynamodb unavailable")
	rt, _ := cache.NewReadThrough(memory.New(memory.Options{}), &history{err: boom}, cache.ReadThroughOptions{})
	if _, err := rt.Get(t.Context(), "s"); !errors.Is(err, boom) {
		t.Fatalf("Get = %v, want the loader's error", err)
	}
	if _, err := rt.Get(t.Context(), ""); !errors.Is(err, cache.ErrInvalid) {
		t.Fatalf("Get(\"\") = %v, want ErrInvalid", err)
	}
	if _, err := cache.NewReadThrough(nil, &history{}, cache.ReadThroughOptions{}); err == nil {
		t.Fatal("nil cache accepted")
	}
}

// flaky is a Cache that fails (or hangs) while broken, delegating otherwise.
type flaky struct {
	cache.Cache
	broken      atomic.Bool
	hang        atomic.Bool
	calls       atomic.Int32
	invalidated sync.Map
}

var errDown = errors.New("connection refused")

func (f *flaky) fail(ctx context.Context) error {
	f.calls.Add(1)
	if f.hang.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	if f.broken.Load() {
		return errDown
	}
	return nil
}

func (f *flaky) Get(ctx context.Context, id string) ([]cache.Entry, bool, cache.Version, error) {
	if err := f.fail(ctx); err != nil {
		return nil, false, 0, err
	}
	return f.Cache.Get(ctx, id)
}

func (f *flaky) Fill(ctx context.Context, id string, v cache.Version, es []cache.Entry, ttl time.Duration) (bool, error) {
	if err := f.fail(ctx); err != nil {
		return false, err
	}
	return f.Cache.Fill(ctx, id, v, es, ttl)
}

func (f *flaky) Append(ctx context.Context, id string, es []cache.Entry, ttl time.Duration) error {
	if err := f.fail(ctx); err != nil {
		return err
	}
	return f.Cache.Append(ctx, id, es, ttl)
}

func (f *flaky) Invalidate(ctx context.Context, id string) error {
	if err := f.fail(ctx); err != nil {
		return err
	}
	f.invalidated.Store(id, true)
	return f.Cache.Invalidate(ctx, id)
}

func TestReadThroughCacheDown(t *testing.T) {
	t.Parallel()
	h := &history{}
	h.add("s", entry(1))
	h.add("w", entry(1))
	f := &flaky{Cache: memory.New(memory.Options{})}
	var logs logSink
	now := time.Unix(1000, 0)
	var clock sync.Mutex
	rt, _ := cache.NewReadThrough(f, h, cache.ReadThroughOptions{
		Logger: logs.logger(), RetryAfter: time.Second,
		Now: func() time.Time { clock.Lock(); defer clock.Unlock(); return now },
	})
	advance := func(d time.Duration) { clock.Lock(); now = now.Add(d); clock.Unlock() }

	mustGet(t, rt, "w", "1") // w is cached before the outage
	f.broken.Store(true)
	for range 20 {
		mustGet(t, rt, "s", "1") // served by the loader, no error
	}
	if !rt.Down() {
		t.Fatal("cache not marked down")
	}
	if n := f.calls.Load(); n > 3 {
		t.Errorf("%d cache calls while down within RetryAfter, want the cache bypassed", n)
	}
	// A write during the outage cannot reach the cache.
	h.add("w", entry(2))
	rt.Written(t.Context(), "w", entry(2))
	advance(2 * time.Second) // probes keep failing: still one warning
	mustGet(t, rt, "s", "1")
	if n := logs.count("WARN", "cache unavailable"); n != 1 {
		t.Errorf("%d warnings, want exactly 1 per outage\n%s", n, logs.buf.String())
	}

	// Recovery: the next probe succeeds, logs once, and invalidates w so
	// that its pre-outage context [1] is not served.
	f.broken.Store(false)
	advance(2 * time.Second)
	mustGet(t, rt, "s", "1")
	mustGet(t, rt, "w", "1,2")
	if rt.Down() {
		t.Fatal("cache still down after a successful call")
	}
	if _, ok := f.invalidated.Load("w"); !ok {
		t.Error("w was not invalidated on recovery")
	}
	if n := logs.count("INFO", "cache recovered"); n != 1 {
		t.Errorf("%d recovery logs, want 1\n%s", n, logs.buf.String())
	}
	// A second outage logs again, once.
	f.broken.Store(true)
	advance(2 * time.Second)
	for range 5 {
		mustGet(t, rt, "s", "1")
	}
	if n := logs.count("WARN", "cache unavailable"); n != 2 {
		t.Errorf("%d warnings after a second outage, want 2", n)
	}
}

func TestReadThroughHangingCache(t *testing.T) {
	t.Parallel()
	h := &history{}
	h.add("s", entry(1))
	f := &flaky{Cache: memory.New(memory.Options{})}
	f.hang.Store(true)
	var logs logSink
	rt, _ := cache.NewReadThrough(f, h, cache.ReadThroughOptions{OpTimeout: 50 * time.Millisecond, Logger: logs.logger()})
	start := time.Now()
	mustGet(t, rt, "s", "1")
	mustGet(t, rt, "s", "1") // bypassed: no second wait
	if d := time.Since(start); d > time.Second {
		t.Errorf("two Gets on a hanging cache took %s, want about one OpTimeout", d)
	}
	if logs.count("WARN", "cache unavailable") != 1 {
		t.Errorf("hang not reported once:\n%s", logs.buf.String())
	}
}

func TestReadThroughPendingOverflow(t *testing.T) {
	t.Parallel()
	f := &flaky{Cache: memory.New(memory.Options{})}
	f.broken.Store(true)
	var logs logSink
	rt, _ := cache.NewReadThrough(f, &history{}, cache.ReadThroughOptions{MaxPending: 2, Logger: logs.logger()})
	for i := range 5 {
		rt.Written(t.Context(), fmt.Sprint("s", i), entry(1))
	}
	if n := logs.count("ERROR", "too many sessions"); n != 1 {
		t.Errorf("%d overflow errors, want 1\n%s", n, logs.buf.String())
	}
}

func TestReadThroughCanceledWrite(t *testing.T) {
	t.Parallel()
	h := &history{}
	h.add("s", entry(1))
	mem := memory.New(memory.Options{})
	rt, _ := cache.NewReadThrough(mem, h, cache.ReadThroughOptions{})
	mustGet(t, rt, "s", "1")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	h.add("s", entry(2))
	rt.Written(ctx, "s", entry(2)) // the caller's ctx is gone
	// The session was dropped rather than left stale.
	if _, hit, _, _ := mem.Get(t.Context(), "s"); hit {
		t.Fatal("session still cached after a write whose cache update was cancelled")
	}
	mustGet(t, rt, "s", "1,2")
}
