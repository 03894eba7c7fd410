package bustest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/platform/bus"
)

func testPublishReceive(t *testing.T, s *suite) {
	b := s.newBackend(t, []Rule{s.rule("a", "thing", 5)})
	q := b.Queue(s.q("a"))
	ev := s.newEvent(t, "thing", map[string]any{"hello": "world", "n": 42}, map[string]any{"toolname": "calc", "step": 3})
	s.publish(t, b.Publisher, ev)

	got := s.receiveN(t, q, 1, 30*time.Second)
	m := got[0]
	mustDecode(t, m)
	if m.ID == "" || m.Receipt == "" {
		t.Errorf("message id %q receipt %q: want both set", m.ID, m.Receipt)
	}
	if m.ReceiveCount != 1 {
		t.Errorf("ReceiveCount = %d, want 1", m.ReceiveCount)
	}
	if len(m.Body) == 0 {
		t.Error("Body is empty")
	}
	e := m.Event
	if e.ID() != ev.ID() || e.Source() != ev.Source() || e.Type() != ev.Type() {
		t.Errorf("got id/source/type %s %s %s, want %s %s %s", e.ID(), e.Source(), e.Type(), ev.ID(), ev.Source(), ev.Type())
	}
	for _, k := range []string{"sessionid", "toolname", "step"} {
		if g, w := fmt.Sprint(e.Extensions()[k]), fmt.Sprint(ev.Extensions()[k]); g != w {
			t.Errorf("extension %s = %q, want %q", k, g, w)
		}
	}
	var data map[string]any
	if err := e.DataAs(&data); err != nil {
		t.Fatalf("data: %v", err)
	}
	if data["hello"] != "world" || data["n"] != float64(42) {
		t.Errorf("data = %v", data)
	}
	s.ack(t, q, m)
	s.expectNone(t, q)
}

func testFanOut(t *testing.T, s *suite) {
	b := s.newBackend(t, []Rule{s.rule("a", "fan", 5), s.rule("b", "fan", 5), s.rule("c", "fan", 5), s.rule("other", "nothing", 5)})
	ev := s.newEvent(t, "fan", nil, nil)
	s.publish(t, b.Publisher, ev)
	for _, name := range []string{"a", "b", "c"} {
		q := b.Queue(s.q(name))
		got := s.receiveN(t, q, 1, 30*time.Second)
		mustDecode(t, got[0])
		if got[0].Event.ID() != ev.ID() {
			t.Errorf("queue %s got %s, want %s", name, got[0].Event.ID(), ev.ID())
		}
		s.ack(t, q, got...)
		s.expectNone(t, q)
	}
	s.expectNone(t, b.Queue(s.q("other")))
}

// testPatternFiltering routes on attributes and extensions (the way the
// catalog does). It avoids arrays of objects and true-vs-1 cases, which
// moto's matcher gets wrong; the engine itself is proven by the
// conformance corpus in platform/pattern.
func testPatternFiltering(t *testing.T, s *suite) {
	dt := s.detailType("pf")
	rules := []Rule{
		{Name: s.prefix + "-tool", Queue: s.q("tool"), Pattern: fmt.Sprintf(`{"detail-type":[%q],"detail":{"toolname":["calc"]}}`, dt)},
		{Name: s.prefix + "-prefix", Queue: s.q("prefix"), Pattern: fmt.Sprintf(`{"detail-type":[%q],"detail":{"toolname":[{"prefix":"web"}]}}`, dt)},
		{Name: s.prefix + "-but", Queue: s.q("but"), Pattern: fmt.Sprintf(`{"detail-type":[%q],"detail":{"toolname":[{"anything-but":["calc","websearch"]}]}}`, dt)},
		{Name: s.prefix + "-num", Queue: s.q("num"), Pattern: fmt.Sprintf(`{"detail-type":[%q],"detail":{"step":[{"numeric":[">",2,"<=",5]}]}}`, dt)},
		{Name: s.prefix + "-noext", Queue: s.q("noext"), Pattern: fmt.Sprintf(`{"detail-type":[%q],"detail":{"toolname":[{"exists":false}]}}`, dt)},
	}
	for i := range rules {
		rules[i].MaxReceiveCount, rules[i].Visibility = 5, 30*time.Second
	}
	b := s.newBackend(t, rules)
	type tc struct {
		ext  map[string]any
		want []string
	}
	cases := []tc{
		{map[string]any{"toolname": "calc", "step": 1}, []string{"tool"}},
		{map[string]any{"toolname": "websearch", "step": 3}, []string{"prefix", "num"}},
		{map[string]any{"toolname": "webfetch", "step": 6}, []string{"prefix", "but"}},
		{map[string]any{"toolname": "shell", "step": 5}, []string{"but", "num"}},
		{map[string]any{"step": 4}, []string{"num", "noext"}},
	}
	want := map[string]map[string]bool{}
	var evs []event.Event
	for _, c := range cases {
		ev := s.newEvent(t, "pf", nil, c.ext)
		evs = append(evs, ev)
		for _, q := range c.want {
			if want[q] == nil {
				want[q] = map[string]bool{}
			}
			want[q][ev.ID()] = true
		}
	}
	// Noise: another type with a matching toolname must not be routed.
	evs = append(evs, s.newEvent(t, "noise", nil, map[string]any{"toolname": "calc", "step": 3}))
	s.publish(t, b.Publisher, evs...)
	for _, name := range []string{"tool", "prefix", "but", "num", "noext"} {
		q := b.Queue(s.q(name))
		got := s.receiveN(t, q, len(want[name]), 30*time.Second)
		for _, m := range got {
			mustDecode(t, m)
			if !want[name][m.Event.ID()] {
				t.Errorf("queue %s got unexpected event with extensions %v", name, m.Event.Extensions())
			}
		}
		if g := ids(got); len(g) != len(want[name]) {
			t.Errorf("queue %s got %d distinct events, want %d", name, len(g), len(want[name]))
		}
		s.ack(t, q, got...)
		s.expectNone(t, q)
	}
}

func testBatchLimits(t *testing.T, s *suite) {
	b := s.newBackend(t, []Rule{s.rule("a", "batch", 5)})
	q := b.Queue(s.q("a"))
	n := 2*s.f.MaxBatch + 3
	if s.f.MaxBatch > 50 {
		n = 53
	}
	var evs []event.Event
	for range n {
		evs = append(evs, s.newEvent(t, "batch", nil, nil))
	}
	// Publishers may cap a batch (PutEvents takes 10): publish in tens.
	for i := 0; i < n; i += 10 {
		s.publish(t, b.Publisher, evs[i:min(n, i+10)]...)
	}
	ctx := s.ctx(t)
	deadline := time.Now().Add(s.f.Timeout)
	seen := map[string]int{}
	for len(seen) < n && time.Now().Before(deadline) {
		msgs, err := q.Receive(ctx, s.f.MaxBatch, time.Second, 30*time.Second)
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		if len(msgs) > s.f.MaxBatch {
			t.Fatalf("receive(max=%d) returned %d messages", s.f.MaxBatch, len(msgs))
		}
		for _, m := range msgs {
			mustDecode(t, m)
			seen[m.Event.ID()]++
		}
		s.ack(t, q, msgs...)
	}
	if len(seen) != n {
		t.Fatalf("received %d of %d events", len(seen), n)
	}
	// Asking for more than a backend can give is refused or capped, never
	// over-delivered.
	msgs, err := q.Receive(ctx, s.f.MaxBatch+1, 10*time.Millisecond, time.Second)
	if err == nil && len(msgs) > s.f.MaxBatch {
		t.Errorf("receive(max=%d) returned %d messages", s.f.MaxBatch+1, len(msgs))
	}
	if _, err := q.Receive(ctx, 0, 0, time.Second); err == nil {
		t.Error("receive(max=0) succeeded, want an error")
	}
}

func testLongPollWakeup(t *testing.T, s *suite) {
	b := s.newBackend(t, []Rule{s.rule("a", "lp", 5)})
	q := b.Queue(s.q("a"))
	ev := s.newEvent(t, "lp", nil, nil)
	go func() {
		time.Sleep(s.f.Quiet / 2)
		_ = b.Publisher.Publish(context.Background(), ev)
	}()
	start := time.Now()
	msgs, err := q.Receive(s.ctx(t), 1, min(s.f.Timeout, 20*time.Second), 30*time.Second)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	if len(msgs) != 1 {
		t.Fatalf("long poll returned %d messages, want 1", len(msgs))
	}
	if took := time.Since(start); took >= s.f.Timeout {
		t.Errorf("long poll took %s: not woken by the publish", took)
	}
	s.ack(t, q, msgs...)
}

func testReceiveCancel(t *testing.T, s *suite) {
	b := s.newBackend(t, []Rule{s.rule("a", "cancel", 5)})
	q := b.Queue(s.q("a"))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	_, err := q.Receive(ctx, 1, 20*time.Second, time.Second)
	if err == nil {
		t.Fatal("receive with cancelled context: want an error")
	}
	if took := time.Since(start); took > s.f.Timeout {
		t.Errorf("cancelled receive returned after %s", took)
	}
	// The queue still works after a withdrawn wait.
	ev := s.newEvent(t, "cancel", nil, nil)
	s.publish(t, b.Publisher, ev)
	got := s.receiveN(t, q, 1, 30*time.Second)
	s.ack(t, q, got...)
}

func testRedeliveryAfterVisibility(t *testing.T, s *suite) {
	b := s.newBackend(t, []Rule{s.rule("a", "vis", 10)})
	q := b.Queue(s.q("a"))
	ev := s.newEvent(t, "vis", nil, nil)
	s.publish(t, b.Publisher, ev)
	first := s.receiveN(t, q, 1, s.f.Visibility)[0]
	start := time.Now()
	if s.f.ExactlyOnceWithinVisibility {
		msgs, err := q.Receive(s.ctx(t), 1, s.f.Visibility/3, s.f.Visibility)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) > 0 {
			t.Fatalf("message handed out again within its visibility timeout")
		}
	}
	second := s.receiveN(t, q, 1, 30*time.Second)[0]
	mustDecode(t, second)
	if second.Event.ID() != ev.ID() || second.ID != first.ID {
		t.Fatalf("redelivered %s (message %s), want %s (message %s)", second.Event.ID(), second.ID, ev.ID(), first.ID)
	}
	if took := time.Since(start); s.f.ExactlyOnceWithinVisibility && took < s.f.Visibility*8/10 {
		t.Errorf("redelivered after %s, visibility was %s", took, s.f.Visibility)
	}
	if second.ReceiveCount != 2 {
		t.Errorf("ReceiveCount = %d, want 2", second.ReceiveCount)
	}
	// The first delivery's receipt is superseded; the new one acks.
	s.ack(t, q, second)
	s.expectNone(t, q)
}

func testExtendVisibility(t *testing.T, s *suite) {
	b := s.newBackend(t, []Rule{s.rule("a", "ext", 10)})
	q := b.Queue(s.q("a"))
	s.publish(t, b.Publisher, s.newEvent(t, "ext", nil, nil))
	m := s.receiveN(t, q, 1, s.f.Visibility)[0]
	// Extend at once to four times the visibility, then wait past the
	// original timeout: the message must stay hidden.
	if err := q.Extend(s.ctx(t), m.Receipt, 4*s.f.Visibility); err != nil {
		t.Fatalf("extend: %v", err)
	}
	msgs, err := q.Receive(s.ctx(t), 1, 2*s.f.Visibility, s.f.Visibility)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) > 0 && s.f.ExactlyOnceWithinVisibility {
		t.Fatal("extended message was delivered again before its extended timeout")
	}
	// A heartbeat keeps extending: still hidden.
	if err := q.Extend(s.ctx(t), m.Receipt, 4*s.f.Visibility); err != nil {
		t.Fatalf("second extend: %v", err)
	}
	if msgs, _ = q.Receive(s.ctx(t), 1, s.f.Visibility, s.f.Visibility); len(msgs) > 0 && s.f.ExactlyOnceWithinVisibility {
		t.Fatal("extended message was delivered again")
	}
	s.ack(t, q, m)
	s.expectNone(t, q)
}

func testNackDelay(t *testing.T, s *suite) {
	b := s.newBackend(t, []Rule{s.rule("a", "nack", 10)})
	q := b.Queue(s.q("a"))
	s.publish(t, b.Publisher, s.newEvent(t, "nack", nil, nil))
	m := s.receiveN(t, q, 1, 30*time.Second)[0]
	start := time.Now()
	if err := q.Nack(s.ctx(t), m.Receipt, s.f.NackDelay); err != nil {
		t.Fatalf("nack: %v", err)
	}
	msgs, err := q.Receive(s.ctx(t), 1, s.f.NackDelay/2, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) > 0 && time.Since(start) < s.f.NackDelay*8/10 {
		t.Fatalf("nacked message came back after %s, delay was %s", time.Since(start), s.f.NackDelay)
	}
	if len(msgs) == 0 {
		msgs = s.receiveN(t, q, 1, 30*time.Second)
	}
	if msgs[0].ID != m.ID {
		t.Fatalf("got message %s, want %s", msgs[0].ID, m.ID)
	}
	if msgs[0].ReceiveCount != 2 {
		t.Errorf("ReceiveCount = %d, want 2", msgs[0].ReceiveCount)
	}
	s.ack(t, q, msgs...)
}

func testNackZero(t *testing.T, s *suite) {
	b := s.newBackend(t, []Rule{s.rule("a", "nack0", 10)})
	q := b.Queue(s.q("a"))
	s.publish(t, b.Publisher, s.newEvent(t, "nack0", nil, nil))
	m := s.receiveN(t, q, 1, 30*time.Second)[0]
	if err := q.Nack(s.ctx(t), m.Receipt, 0); err != nil {
		t.Fatalf("nack: %v", err)
	}
	start := time.Now()
	again := s.receiveN(t, q, 1, 30*time.Second)[0]
	if again.ID != m.ID {
		t.Fatalf("got message %s, want %s", again.ID, m.ID)
	}
	if took := time.Since(start); took > s.f.Timeout/2 {
		t.Errorf("nack(0) redelivery took %s", took)
	}
	s.ack(t, q, again)
}

func testDLQAfterMaxReceives(t *testing.T, s *suite) {
	const maxReceives = 2
	b := s.newBackend(t, []Rule{s.rule("a", "dlq", maxReceives)})
	q, d := b.Queue(s.q("a")), b.DLQ(s.q("a"))
	ev := s.newEvent(t, "dlq", nil, nil)
	s.publish(t, b.Publisher, ev)
	fn, hasReason := q.(bus.FailureNacker)
	for i := 1; i <= maxReceives; i++ {
		m := s.receiveN(t, q, 1, 30*time.Second)[0]
		if m.ReceiveCount != i {
			t.Errorf("receive %d: ReceiveCount = %d", i, m.ReceiveCount)
		}
		var err error
		if hasReason {
			err = fn.NackFailure(s.ctx(t), m.Receipt, 0, fmt.Sprintf("failure %d", i))
		} else {
			err = q.Nack(s.ctx(t), m.Receipt, 0)
		}
		if err != nil {
			t.Fatalf("nack: %v", err)
		}
	}
	// The next receive attempt redrives it instead of delivering it.
	s.expectNone(t, q)
	dead := s.waitDLQ(t, d, 1)
	if len(dead) != 1 {
		t.Fatalf("dlq holds %d, want 1", len(dead))
	}
	if !strings.Contains(string(dead[0].Body), ev.ID()) {
		t.Errorf("dead letter body does not carry the event: %s", dead[0].Body)
	}
	if s.f.DLQReason && hasReason && dead[0].Reason != fmt.Sprintf("failure %d", maxReceives) {
		t.Errorf("dead letter reason = %q, want the last failure", dead[0].Reason)
	}
	if s.f.DLQReason && dead[0].ReceiveCount != maxReceives {
		t.Errorf("dead letter ReceiveCount = %d, want %d", dead[0].ReceiveCount, maxReceives)
	}
	n, err := d.Redrive(s.ctx(t), 10)
	if err != nil || n != 1 {
		t.Fatalf("redrive = %d, %v; want 1", n, err)
	}
	back := s.receiveN(t, q, 1, 30*time.Second)[0]
	mustDecode(t, back)
	if back.Event.ID() != ev.ID() {
		t.Fatalf("redriven event %s, want %s", back.Event.ID(), ev.ID())
	}
	s.ack(t, q, back)
	if left, err := d.List(s.ctx(t), 10); err != nil || len(left) != 0 {
		t.Errorf("dlq after redrive holds %d (%v), want 0", len(left), err)
	}
}

func testDeadLetterWithReason(t *testing.T, s *suite) {
	b := s.newBackend(t, []Rule{s.rule("a", "dl", 5)})
	q, d := b.Queue(s.q("a")), b.DLQ(s.q("a"))
	ev := s.newEvent(t, "dl", nil, nil)
	s.publish(t, b.Publisher, ev)
	m := s.receiveN(t, q, 1, 30*time.Second)[0]
	if err := q.DeadLetter(s.ctx(t), m, "schema violation: field x"); err != nil {
		t.Fatalf("dead letter: %v", err)
	}
	s.expectNone(t, q)
	dead := s.waitDLQ(t, d, 1)
	if dead[0].Reason != "schema violation: field x" {
		t.Errorf("reason = %q", dead[0].Reason)
	}
	if !strings.Contains(string(dead[0].Body), ev.ID()) {
		t.Errorf("dead letter body does not carry the event")
	}
	// A receipt that was dead-lettered can no longer be acked as current.
	if err := q.DeadLetter(s.ctx(t), m, "again"); err == nil && s.f.ExactlyOnceWithinVisibility {
		if again, _ := d.List(s.ctx(t), 10); len(again) > 1 {
			t.Error("dead-lettering the same delivery twice made two dead letters")
		}
	}
}

func testOversize(t *testing.T, s *suite) {
	b := s.newBackend(t, []Rule{s.rule("a", "big", 5)})
	q := b.Queue(s.q("a"))
	big := s.newEvent(t, "big", map[string]any{"blob": strings.Repeat("x", s.f.MaxEventSize)}, nil)
	err := b.Publisher.Publish(s.ctx(t), big)
	if !errors.Is(err, bus.ErrTooLarge) {
		t.Fatalf("publish of a %d-byte event: err = %v, want ErrTooLarge", s.f.MaxEventSize, err)
	}
	// In a batch, only the oversize event fails and the error names it.
	small := s.newEvent(t, "big", nil, nil)
	err = b.Publisher.Publish(s.ctx(t), small, big)
	var pe *bus.PublishError
	if !errors.As(err, &pe) {
		t.Fatalf("batch publish err = %v, want *bus.PublishError", err)
	}
	if len(pe.Failures) != 1 || pe.Failures[0].Index != 1 || pe.Failures[0].ID != big.ID() || !errors.Is(pe.Failures[0].Err, bus.ErrTooLarge) {
		t.Errorf("failures = %+v, want only index 1 (%s) too large", pe.Failures, big.ID())
	}
	got := s.receiveN(t, q, 1, 30*time.Second)
	if got[0].Event.ID() != small.ID() {
		t.Errorf("got %s, want the small event", got[0].Event.ID())
	}
	s.ack(t, q, got...)
	s.expectNone(t, q)
}

func testInvalidEvent(t *testing.T, s *suite) {
	b := s.newBackend(t, []Rule{s.rule("a", "inv", 5)})
	bad := s.newEvent(t, "inv", nil, nil)
	bad.SetID("")
	if err := b.Publisher.Publish(s.ctx(t), bad); err == nil {
		t.Fatal("publish of an event without id succeeded")
	}
	s.expectNone(t, b.Queue(s.q("a")))
}

func testConcurrentConsumers(t *testing.T, s *suite) {
	b := s.newBackend(t, []Rule{s.rule("a", "cc", 5)})
	q := b.Queue(s.q("a"))
	n := s.f.Events
	want := map[string]bool{}
	var evs []event.Event
	for range n {
		ev := s.newEvent(t, "cc", nil, nil)
		want[ev.ID()] = true
		evs = append(evs, ev)
	}
	var wg sync.WaitGroup
	for i := 0; i < n; i += 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.Publisher.Publish(s.ctx(t), evs[i:min(n, i+10)]...); err != nil {
				t.Errorf("publish: %v", err)
			}
		}()
	}
	var (
		mu    sync.Mutex
		seen  = map[string]int{}
		total atomic.Int64
	)
	ctx, cancel := context.WithTimeout(s.ctx(t), s.f.Timeout*time.Duration(1+n/100))
	defer cancel()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for total.Load() < int64(n) && ctx.Err() == nil {
				msgs, err := q.Receive(ctx, s.f.MaxBatch, 200*time.Millisecond, 60*time.Second)
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("receive: %v", err)
					}
					return
				}
				mu.Lock()
				for _, m := range msgs {
					seen[m.Event.ID()]++
					if seen[m.Event.ID()] == 1 {
						total.Add(1)
					}
				}
				mu.Unlock()
				var rs []string
				for _, m := range msgs {
					rs = append(rs, m.Receipt)
				}
				if len(rs) > 0 {
					if err := q.Ack(context.Background(), rs...); err != nil {
						t.Errorf("ack: %v", err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("consumers saw %d of %d events", len(seen), n)
	}
	for id, c := range seen {
		if !want[id] {
			t.Errorf("unexpected event %s", id)
		}
		if c > 1 && s.f.ExactlyOnceWithinVisibility {
			t.Errorf("event %s delivered %d times within its visibility timeout", id, c)
		}
	}
}

// workerConfig is a Worker tuned for tests.
func (s *suite) workerConfig() bus.WorkerConfig {
	return bus.WorkerConfig{
		Concurrency: 4, Wait: min(s.f.Timeout, 2*time.Second), Visibility: max(s.f.Visibility, time.Second),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, ShutdownTimeout: s.f.Timeout,
	}
}

// runWorker runs w until the test ends (or stop is called) and reports when
// Run returned.
func runWorker(t *testing.T, w *bus.Worker) (stop func(), returned <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return cancel, done
}

func testWorkerEndToEnd(t *testing.T, s *suite) {
	b := s.newBackend(t, []Rule{s.rule("a", "w", 5)})
	q, d := b.Queue(s.q("a")), b.DLQ(s.q("a"))
	var (
		mu    sync.Mutex
		calls = map[string]int{}
		okAll = make(chan struct{})
	)
	kinds := map[string]string{}
	var evs []event.Event
	for _, kind := range []string{"ok", "ok", "ok", "flaky", "perm"} {
		ev := s.newEvent(t, "w", map[string]any{"kind": kind}, nil)
		kinds[ev.ID()] = kind
		evs = append(evs, ev)
	}
	h := func(ctx context.Context, ev event.Event) error {
		mu.Lock()
		defer mu.Unlock()
		calls[ev.ID()]++
		var data struct{ Kind string }
		if err := json.Unmarshal(ev.Data(), &data); err != nil {
			return fmt.Errorf("%w: %v", bus.ErrPermanent, err)
		}
		switch data.Kind {
		case "flaky":
			if calls[ev.ID()] == 1 {
				return errors.New("transient")
			}
		case "perm":
			return fmt.Errorf("cannot ever work: %w", bus.ErrPermanent)
		}
		done := 0
		for id, k := range kinds {
			if k != "perm" && calls[id] > 0 && (k != "flaky" || calls[id] > 1) {
				done++
			}
		}
		if done == 4 {
			select {
			case <-okAll:
			default:
				close(okAll)
			}
		}
		return nil
	}
	runWorker(t, bus.NewWorker(q, h, s.workerConfig()))
	s.publish(t, b.Publisher, evs...)
	select {
	case <-okAll:
	case <-time.After(s.f.Timeout * 2):
		t.Fatalf("worker did not handle every event in time: %v", calls)
	}
	dead := s.waitDLQ(t, d, 1)
	if !strings.Contains(dead[0].Reason, "cannot ever work") {
		t.Errorf("dead letter reason = %q, want the handler's error", dead[0].Reason)
	}
	time.Sleep(s.f.Quiet)
	mu.Lock()
	defer mu.Unlock()
	for id, kind := range kinds {
		want := map[string]int{"ok": 1, "flaky": 2, "perm": 1}[kind]
		if calls[id] != want && (s.f.ExactlyOnceWithinVisibility || calls[id] < want) {
			t.Errorf("%s event handled %d times, want %d", kind, calls[id], want)
		}
	}
}

func testWorkerMaxReceives(t *testing.T, s *suite) {
	b := s.newBackend(t, []Rule{s.rule("a", "wmax", 3)})
	q, d := b.Queue(s.q("a")), b.DLQ(s.q("a"))
	var calls atomic.Int64
	h := func(ctx context.Context, ev event.Event) error {
		return fmt.Errorf("attempt %d failed", calls.Add(1))
	}
	runWorker(t, bus.NewWorker(q, h, s.workerConfig()))
	s.publish(t, b.Publisher, s.newEvent(t, "wmax", nil, nil))
	dead := s.waitDLQ(t, d, 1)
	if c := calls.Load(); c != 3 && s.f.ExactlyOnceWithinVisibility {
		t.Errorf("handler ran %d times, want 3 (maxReceiveCount)", c)
	}
	if s.f.DLQReason && !strings.Contains(dead[0].Reason, "failed") {
		t.Errorf("dead letter reason = %q, want the last handler error", dead[0].Reason)
	}
}

func testWorkerDecodeError(t *testing.T, s *suite) {
	b := s.newBackend(t, []Rule{s.rule("a", "wdec", 5)})
	if b.SendRaw == nil {
		t.Skip("backend cannot send a raw message")
	}
	q, d := b.Queue(s.q("a")), b.DLQ(s.q("a"))
	if err := b.SendRaw(s.ctx(t), s.q("a"), []byte(`{"not":"an event"}`)); err != nil {
		t.Fatalf("send raw: %v", err)
	}
	var calls atomic.Int64
	runWorker(t, bus.NewWorker(q, func(context.Context, event.Event) error { calls.Add(1); return nil }, s.workerConfig()))
	dead := s.waitDLQ(t, d, 1)
	if !strings.Contains(dead[0].Reason, "decode") {
		t.Errorf("reason = %q, want a decode error", dead[0].Reason)
	}
	if string(dead[0].Body) != `{"not":"an event"}` {
		t.Errorf("dead letter body = %s, want the raw body", dead[0].Body)
	}
	if calls.Load() != 0 {
		t.Error("handler ran for an undecodable message")
	}
}

func testWorkerGracefulShutdown(t *testing.T, s *suite) {
	b := s.newBackend(t, []Rule{s.rule("a", "wsd", 5)})
	q := b.Queue(s.q("a"))
	started, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	h := func(ctx context.Context, ev event.Event) error {
		close(started)
		<-release
		finished.Store(true)
		return nil
	}
	stop, returned := runWorker(t, bus.NewWorker(q, h, s.workerConfig()))
	s.publish(t, b.Publisher, s.newEvent(t, "wsd", nil, nil))
	select {
	case <-started:
	case <-time.After(s.f.Timeout):
		t.Fatal("handler never started")
	}
	stop()
	select {
	case <-returned:
		t.Fatal("Run returned while a handler was still running")
	case <-time.After(s.f.Quiet / 2):
	}
	close(release)
	select {
	case <-returned:
	case <-time.After(s.f.Timeout):
		t.Fatal("Run did not return after the handler finished")
	}
	if !finished.Load() {
		t.Fatal("handler did not finish")
	}
	// It was acked on the way out: nothing comes back.
	msgs, err := q.Receive(s.ctx(t), 1, s.workerConfig().Visibility+s.f.Quiet, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) > 0 {
		t.Fatal("message handled during shutdown was not acked")
	}
}

func testWorkerShutdownTimeout(t *testing.T, s *suite) {
	b := s.newBackend(t, []Rule{s.rule("a", "wst", 5)})
	q := b.Queue(s.q("a"))
	started := make(chan struct{})
	h := func(ctx context.Context, ev event.Event) error {
		close(started)
		<-ctx.Done() // only gives up when cancelled
		return ctx.Err()
	}
	cfg := s.workerConfig()
	cfg.Visibility = 30 * time.Second
	cfg.ShutdownTimeout = s.f.Quiet
	stop, returned := runWorker(t, bus.NewWorker(q, h, cfg))
	ev := s.newEvent(t, "wst", nil, nil)
	s.publish(t, b.Publisher, ev)
	select {
	case <-started:
	case <-time.After(s.f.Timeout):
		t.Fatal("handler never started")
	}
	stop()
	select {
	case <-returned:
	case <-time.After(s.f.Timeout):
		t.Fatal("Run did not return after ShutdownTimeout")
	}
	// Released, not left invisible for the 30s visibility timeout.
	got := s.receiveN(t, q, 1, 30*time.Second)
	if got[0].Event.ID() != ev.ID() {
		t.Fatalf("got %s, want %s", got[0].Event.ID(), ev.ID())
	}
	s.ack(t, q, got...)
}

func testRestart(t *testing.T, s *suite) {
	if !s.f.Persistent {
		t.Skip("backend is not persistent")
	}
	b := s.newBackend(t, []Rule{s.rule("a", "rs", 5)})
	if b.Restart == nil {
		t.Fatal("Features.Persistent but Backend.Restart is nil")
	}
	q := b.Queue(s.q("a"))
	var evs []event.Event
	for range 5 {
		evs = append(evs, s.newEvent(t, "rs", nil, nil))
	}
	s.publish(t, b.Publisher, evs...)
	got := s.receiveN(t, q, 2, s.f.Visibility)
	s.ack(t, q, got[0]) // one acked, one in flight, three never received

	b = b.Restart(t)
	q = b.Queue(s.q("a"))
	after := s.newEvent(t, "rs", nil, nil)
	s.publish(t, b.Publisher, after)
	rest := s.receiveN(t, q, 5, 30*time.Second)
	seen := ids(rest)
	if seen[got[0].Event.ID()] > 0 {
		t.Error("acked message came back after restart")
	}
	for _, ev := range append(evs[:0:0], append(evs, after)...) {
		if ev.ID() == got[0].Event.ID() {
			continue
		}
		if seen[ev.ID()] == 0 {
			t.Errorf("event %s lost across restart", ev.ID())
		}
	}
	for _, m := range rest {
		if m.Event.ID() == got[1].Event.ID() && m.ReceiveCount != 2 {
			t.Errorf("in-flight message: ReceiveCount = %d after restart, want 2", m.ReceiveCount)
		}
	}
	s.ack(t, q, rest...)
	s.expectNone(t, q)
}
