package bus_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/platform/bus"
)

func testEvent(id string) event.Event {
	ev := event.New()
	ev.SetID(id)
	ev.SetSource("test")
	ev.SetType("test.v1")
	return ev
}

func TestChainOrder(t *testing.T) {
	t.Parallel()
	var got []string
	mw := func(name string) bus.Middleware {
		return func(next bus.Handler) bus.Handler {
			return func(ctx context.Context, ev event.Event) error {
				got = append(got, name)
				return next(ctx, ev)
			}
		}
	}
	h := bus.Chain(func(context.Context, event.Event) error { got = append(got, "h"); return nil }, mw("a"), mw("b"))
	if err := h(context.Background(), testEvent("1")); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "a,b,h" {
		t.Errorf("order %v, want a,b,h", got)
	}
}

func TestRecoverer(t *testing.T) {
	t.Parallel()
	panicky := func(context.Context, event.Event) error { panic("boom") }
	for _, tc := range []struct {
		permanent bool
	}{{false}, {true}} {
		err := bus.Recoverer{Permanent: tc.permanent}.Middleware(panicky)(context.Background(), testEvent("1"))
		if !errors.Is(err, bus.ErrPanic) || !strings.Contains(err.Error(), "boom") {
			t.Errorf("permanent=%v: err = %v, want ErrPanic with the value", tc.permanent, err)
		}
		if errors.Is(err, bus.ErrPermanent) != tc.permanent {
			t.Errorf("permanent=%v: errors.Is(err, ErrPermanent) = %v", tc.permanent, !tc.permanent)
		}
	}
	ok := bus.Recoverer{}.Middleware(func(context.Context, event.Event) error { return nil })
	if err := ok(context.Background(), testEvent("1")); err != nil {
		t.Errorf("no panic: err = %v", err)
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	slow := func(ctx context.Context, _ event.Event) error {
		<-ctx.Done()
		return ctx.Err()
	}
	err := bus.Timeout{D: 10 * time.Millisecond}.Middleware(slow)(context.Background(), testEvent("1"))
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, bus.ErrPermanent) {
		t.Errorf("err = %v, want a retryable deadline error", err)
	}
	fast := bus.Timeout{D: time.Second}.Middleware(func(context.Context, event.Event) error { return nil })
	if err := fast(context.Background(), testEvent("1")); err != nil {
		t.Errorf("fast handler: %v", err)
	}
	none := bus.Timeout{}.Middleware(func(ctx context.Context, _ event.Event) error {
		if _, ok := ctx.Deadline(); ok {
			return errors.New("deadline set with D=0")
		}
		return nil
	})
	if err := none(context.Background(), testEvent("1")); err != nil {
		t.Error(err)
	}
}

type failingSeen struct{ seenErr, markErr error }

func (f failingSeen) Seen(context.Context, string) (bool, error) { return false, f.seenErr }
func (f failingSeen) Mark(context.Context, string) error         { return f.markErr }

func TestDedupe(t *testing.T) {
	t.Parallel()
	calls := 0
	fail := true
	h := bus.Dedupe{Store: &bus.MemorySeenStore{}}.Middleware(func(context.Context, event.Event) error {
		calls++
		if fail {
			return errors.New("first try fails")
		}
		return nil
	})
	ctx := context.Background()
	if err := h(ctx, testEvent("a")); err == nil {
		t.Fatal("want the handler's error")
	}
	fail = false
	for range 3 {
		if err := h(ctx, testEvent("a")); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 2 {
		t.Errorf("handler ran %d times, want 2 (a failure is not marked seen)", calls)
	}
	other := testEvent("a")
	other.SetSource("elsewhere")
	_ = h(ctx, other)
	if calls != 3 {
		t.Error("same id from another source was deduplicated")
	}
	bad := bus.Dedupe{Store: failingSeen{seenErr: errors.New("store down")}}.Middleware(func(context.Context, event.Event) error { return nil })
	if err := bad(ctx, testEvent("x")); err == nil {
		t.Error("a failing seen-store must fail the handler (retry later)")
	}
	markFails := bus.Dedupe{Store: failingSeen{markErr: errors.New("store down")}}.Middleware(func(context.Context, event.Event) error { return nil })
	if err := markFails(ctx, testEvent("x")); err != nil {
		t.Errorf("a failing Mark after success: err = %v, want nil", err)
	}
}

func TestMemorySeenStoreEvicts(t *testing.T) {
	t.Parallel()
	s := &bus.MemorySeenStore{Capacity: 2}
	ctx := context.Background()
	for _, k := range []string{"a", "b", "a", "c"} {
		_ = s.Mark(ctx, k)
	}
	for k, want := range map[string]bool{"a": false, "b": true, "c": true, "d": false} {
		if got, _ := s.Seen(ctx, k); got != want {
			t.Errorf("Seen(%s) = %v, want %v", k, got, want)
		}
	}
}

func TestLogging(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := bus.Logging{Logger: log}.Middleware(func(_ context.Context, ev event.Event) error {
		if ev.ID() == "bad" {
			return fmt.Errorf("nope: %w", bus.ErrPermanent)
		}
		return nil
	})
	_ = h(context.Background(), testEvent("good"))
	err := h(context.Background(), testEvent("bad"))
	if !errors.Is(err, bus.ErrPermanent) {
		t.Errorf("logging changed the error: %v", err)
	}
	out := buf.String()
	for _, want := range []string{"level=DEBUG msg=handled", "id=good", "level=WARN msg=\"handler failed\"", "id=bad", "permanent=true"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestWrapPublisherOrder(t *testing.T) {
	t.Parallel()
	var got []string
	base := bus.PublisherFunc(func(_ context.Context, evs ...event.Event) error {
		got = append(got, fmt.Sprintf("base:%d", len(evs)))
		return nil
	})
	mw := func(name string) bus.PublisherMiddleware {
		return func(next bus.Publisher) bus.Publisher {
			return bus.PublisherFunc(func(ctx context.Context, evs ...event.Event) error {
				got = append(got, name)
				return next.Publish(ctx, evs...)
			})
		}
	}
	p := bus.WrapPublisher(base, mw("outer"), mw("inner"))
	if err := p.Publish(context.Background(), testEvent("1"), testEvent("2")); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "outer,inner,base:2" {
		t.Errorf("order %v", got)
	}
}

func TestPublishError(t *testing.T) {
	t.Parallel()
	pe := &bus.PublishError{Failures: []bus.PublishFailure{
		{Index: 1, ID: "b", Source: "s", Err: fmt.Errorf("x: %w", bus.ErrTooLarge)},
		{Index: 3, ID: "d", Source: "s", Err: errors.New("invalid")},
	}}
	var err error = pe
	if !errors.Is(err, bus.ErrTooLarge) {
		t.Error("errors.Is does not see ErrTooLarge through PublishError")
	}
	for _, want := range []string{"2 event(s) failed", `event 1 (source "s" id "b")`, "invalid"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
}

// fakeQueue records what a Worker does with its messages.
type fakeQueue struct {
	mu       sync.Mutex
	msgs     []bus.Message
	recvErrs int
	acked    []string
	nacked   map[string]time.Duration
	reasons  map[string]string
	dead     map[string]string
}

func (q *fakeQueue) Name() string { return "fake" }

func (q *fakeQueue) Receive(ctx context.Context, max int, wait, _ time.Duration) ([]bus.Message, error) {
	q.mu.Lock()
	if q.recvErrs > 0 {
		q.recvErrs--
		q.mu.Unlock()
		return nil, errors.New("transient receive error")
	}
	n := min(max, len(q.msgs))
	out := q.msgs[:n]
	q.msgs = q.msgs[n:]
	q.mu.Unlock()
	if n == 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(wait, 10*time.Millisecond)):
		}
	}
	return out, nil
}

func (q *fakeQueue) Ack(_ context.Context, rs ...string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.acked = append(q.acked, rs...)
	return nil
}

func (q *fakeQueue) Nack(_ context.Context, r string, d time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.nacked[r] = d
	return nil
}

func (q *fakeQueue) Extend(context.Context, string, time.Duration) error { return nil }

func (q *fakeQueue) DeadLetter(_ context.Context, m bus.Message, reason string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.dead[m.Receipt] = reason
	return nil
}

type reasonQueue struct{ *fakeQueue }

func (q reasonQueue) NackFailure(ctx context.Context, r string, d time.Duration, reason string) error {
	q.mu.Lock()
	q.reasons[r] = reason
	q.mu.Unlock()
	return q.Nack(ctx, r, d)
}

func TestWorkerSettles(t *testing.T) {
	t.Parallel()
	for _, withReason := range []bool{false, true} {
		fq := &fakeQueue{recvErrs: 2, nacked: map[string]time.Duration{}, reasons: map[string]string{}, dead: map[string]string{}}
		for i, id := range []string{"ok", "retry", "perm"} {
			fq.msgs = append(fq.msgs, bus.Message{ID: id, Receipt: "r-" + id, Event: testEvent(id), ReceiveCount: 3 + i})
		}
		fq.msgs = append(fq.msgs, bus.Message{ID: "garbage", Receipt: "r-garbage", DecodeErr: errors.New("not json")})
		var q bus.Queue = fq
		if withReason {
			q = reasonQueue{fq}
		}
		h := func(_ context.Context, ev event.Event) error {
			switch ev.ID() {
			case "retry":
				return errors.New("try later")
			case "perm":
				return fmt.Errorf("never: %w", bus.ErrPermanent)
			}
			return nil
		}
		w := bus.NewWorker(q, h, bus.WorkerConfig{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
		runUntil(t, w, func() bool {
			fq.mu.Lock()
			defer fq.mu.Unlock()
			return len(fq.acked)+len(fq.nacked)+len(fq.dead) == 4
		})
		if len(fq.acked) != 1 || fq.acked[0] != "r-ok" {
			t.Errorf("acked %v, want [r-ok]", fq.acked)
		}
		// ReceiveCount 4: 100ms·2³ = 800ms, jittered into [400ms, 800ms].
		if d, ok := fq.nacked["r-retry"]; !ok || d < 400*time.Millisecond || d > 800*time.Millisecond {
			t.Errorf("retry nacked with %v (present %v), want 400ms..800ms", d, ok)
		}
		if withReason && fq.reasons["r-retry"] != "try later" {
			t.Errorf("FailureNacker reason = %q", fq.reasons["r-retry"])
		}
		if !strings.Contains(fq.dead["r-perm"], "never") {
			t.Errorf("perm dead-lettered with %q", fq.dead["r-perm"])
		}
		if !strings.Contains(fq.dead["r-garbage"], "decode: not json") {
			t.Errorf("garbage dead-lettered with %q", fq.dead["r-garbage"])
		}
	}
}

// runUntil runs w until done reports true (or 5 s pass), then stops it and
// checks that Run returned nil.
func runUntil(t *testing.T, w *bus.Worker, done func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- w.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for !done() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestWorkerReceiveCount: a handler learns its message's receive count
// from its context; outside a handler it is unknown (0).
func TestWorkerReceiveCount(t *testing.T) {
	t.Parallel()
	fq := &fakeQueue{nacked: map[string]time.Duration{}, reasons: map[string]string{}, dead: map[string]string{}}
	for i, id := range []string{"first", "third"} {
		fq.msgs = append(fq.msgs, bus.Message{ID: id, Receipt: "r-" + id, Event: testEvent(id), ReceiveCount: 1 + 2*i})
	}
	var (
		mu  sync.Mutex
		got = map[string]int{}
	)
	h := func(ctx context.Context, ev event.Event) error {
		mu.Lock()
		defer mu.Unlock()
		got[ev.ID()] = bus.ReceiveCount(ctx)
		return nil
	}
	runUntil(t, bus.NewWorker(fq, h, bus.WorkerConfig{}), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 2
	})
	if got["first"] != 1 || got["third"] != 3 {
		t.Errorf("handlers saw receive counts %v, want first 1, third 3", got)
	}
	if n := bus.ReceiveCount(context.Background()); n != 0 {
		t.Errorf("ReceiveCount outside a handler = %d, want 0", n)
	}
	if n := bus.ReceiveCount(bus.WithReceiveCount(context.Background(), 2)); n != 2 {
		t.Errorf("ReceiveCount(WithReceiveCount(2)) = %d", n)
	}
}

// TestWorkerPool: the fixed handler pool runs exactly Concurrency handlers at
// once, handles every message, and Run returns only after the handlers that
// were running when its context ended have finished and been acked.
func TestWorkerPool(t *testing.T) {
	t.Parallel()
	const concurrency, total = 3, 20
	fq := &fakeQueue{nacked: map[string]time.Duration{}, reasons: map[string]string{}, dead: map[string]string{}}
	for i := range total {
		id := fmt.Sprintf("m-%d", i)
		fq.msgs = append(fq.msgs, bus.Message{ID: id, Receipt: "r-" + id, Event: testEvent(id), ReceiveCount: 1})
	}
	var (
		mu            sync.Mutex
		running, peak int
		handled       int
		release       = make(chan struct{})
	)
	h := func(ctx context.Context, _ event.Event) error {
		mu.Lock()
		running++
		peak = max(peak, running)
		handled++
		n := handled
		mu.Unlock()
		if n > total-concurrency {
			// The last ones block until the test releases them after
			// cancelling Run: shutdown must wait for them.
			<-release
		} else {
			time.Sleep(2 * time.Millisecond)
		}
		mu.Lock()
		running--
		mu.Unlock()
		return ctx.Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := bus.NewWorker(fq, h, bus.WorkerConfig{Concurrency: concurrency, ShutdownTimeout: 10 * time.Second})
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := handled
		mu.Unlock()
		if n == total || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) while %d handlers were still running", err, concurrency)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if handled != total {
		t.Fatalf("handled %d messages, want %d", handled, total)
	}
	if peak != concurrency {
		t.Errorf("at most %d handlers ran at once, want exactly Concurrency = %d", peak, concurrency)
	}
	fq.mu.Lock()
	defer fq.mu.Unlock()
	if len(fq.acked) != total || len(fq.nacked) != 0 || len(fq.dead) != 0 {
		t.Errorf("acked %d, nacked %v, dead %v; want all %d acked", len(fq.acked), fq.nacked, fq.dead, total)
	}
}

// acked reports whether n of fq's messages have been acked.
func acked(fq *fakeQueue, n int) func() bool {
	return func() bool {
		fq.mu.Lock()
		defer fq.mu.Unlock()
		return len(fq.acked) == n
	}
}

// TestWorkerBatchWindow: with a window, the worker pauses after a receive
// that did not fill its batch, so messages published meanwhile wait and come
// together; without one they are taken at once; a full batch does not pause
// the worker, and a worker stopped while pausing stops at once.
func TestWorkerBatchWindow(t *testing.T) {
	t.Parallel()
	msg := func(id string) bus.Message {
		return bus.Message{ID: id, Receipt: "r-" + id, Event: testEvent(id), ReceiveCount: 1}
	}
	newQueue := func(ids ...string) *fakeQueue {
		fq := &fakeQueue{nacked: map[string]time.Duration{}, reasons: map[string]string{}, dead: map[string]string{}}
		for _, id := range ids {
			fq.msgs = append(fq.msgs, msg(id))
		}
		return fq
	}
	const window = 2 * time.Second
	for _, tt := range []struct {
		name       string
		window     time.Duration
		wantWaited bool
	}{
		{"a window makes later messages wait", window, true},
		{"without a window they are taken at once", 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fq := newQueue("first")
			var (
				mu      sync.Mutex
				started = map[string]time.Time{}
			)
			h := func(_ context.Context, ev event.Event) error {
				mu.Lock()
				defer mu.Unlock()
				started[ev.ID()] = time.Now()
				return nil
			}
			w := bus.NewWorker(fq, h, bus.WorkerConfig{Concurrency: 10, BatchWindow: tt.window})
			go func() {
				time.Sleep(100 * time.Millisecond)
				fq.mu.Lock()
				defer fq.mu.Unlock()
				fq.msgs = append(fq.msgs, msg("second"), msg("third"))
			}()
			runUntil(t, w, acked(fq, 3))
			mu.Lock()
			defer mu.Unlock()
			if len(started) != 3 {
				t.Fatalf("handled %v, want all three", started)
			}
			gap := started["second"].Sub(started["first"])
			if waited := gap >= window/2; waited != tt.wantWaited {
				t.Errorf("second handled %v after the first: waited = %v, want %v", gap, waited, tt.wantWaited)
			}
		})
	}
	t.Run("a full batch does not pause the worker", func(t *testing.T) {
		t.Parallel()
		fq := newQueue("1", "2", "3", "4", "5", "6", "7", "8")
		w := bus.NewWorker(fq, func(context.Context, event.Event) error { return nil },
			bus.WorkerConfig{Concurrency: 4, BatchWindow: time.Minute})
		start := time.Now()
		runUntil(t, w, acked(fq, 8))
		fq.mu.Lock()
		defer fq.mu.Unlock()
		if d := time.Since(start); d > 4*time.Second || len(fq.acked) != 8 {
			t.Errorf("%d of 8 messages handled in %v: the worker paused after a full batch", len(fq.acked), d)
		}
	})
	t.Run("stopping during a pause", func(t *testing.T) {
		t.Parallel()
		fq := newQueue("one")
		w := bus.NewWorker(fq, func(context.Context, event.Event) error { return nil },
			bus.WorkerConfig{Concurrency: 4, BatchWindow: time.Minute})
		start := time.Now()
		runUntil(t, w, acked(fq, 1))
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("handling one message and stopping took %v", d)
		}
	})
}
