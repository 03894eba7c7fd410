package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/platform/state/outbox"
	"github.com/agentbus/agentbus/platform/state/sqlite"
)

func newEvent(t *testing.T, id string) event.Event {
	t.Helper()
	ev := event.New()
	ev.SetID(id)
	ev.SetSource("agentbus/executor")
	ev.SetType("agentbus.step.completed.v1")
	ev.SetTime(time.UnixMilli(1_700_000_000_000).UTC())
	ev.SetExtension("sessionid", "s-1")
	if err := ev.SetData(event.ApplicationJSON, map[string]any{"step": 1}); err != nil {
		t.Fatal(err)
	}
	return ev
}

func newStore(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.OpenMemory(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// write stores events through a state change, as a service does.
func write(t *testing.T, s state.Store, sessionID string, evs ...event.Event) {
	t.Helper()
	out, err := outbox.FromEvents(evs...)
	if err != nil {
		t.Fatalf("FromEvents: %v", err)
	}
	if _, err := s.CreateSession(t.Context(), state.Session{ID: sessionID, Status: state.StatusRunning}, out...); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
}

// recorder is a Publisher that records what it published and can fail.
type recorder struct {
	mu        sync.Mutex
	published []event.Event
	fail      func(i int, ev event.Event) error // per-event failure
	whole     error                             // whole-call failure
}

func (r *recorder) Publish(_ context.Context, evs ...event.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.whole != nil {
		return r.whole
	}
	var pe bus.PublishError
	for i, ev := range evs {
		if r.fail != nil {
			if err := r.fail(i, ev); err != nil {
				pe.Failures = append(pe.Failures, bus.PublishFailure{Index: i, ID: ev.ID(), Source: ev.Source(), Err: err})
				continue
			}
		}
		r.published = append(r.published, ev)
	}
	if len(pe.Failures) > 0 {
		return &pe
	}
	return nil
}

func (r *recorder) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.published {
		out = append(out, ev.ID())
	}
	sort.Strings(out)
	return out
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestFromEvents(t *testing.T) {
	t.Parallel()
	ev := newEvent(t, "ev-1")
	out, err := outbox.FromEvents(ev)
	if err != nil || len(out) != 1 {
		t.Fatalf("FromEvents = %v, %v", out, err)
	}
	if out[0].ID != "agentbus/executor ev-1" {
		t.Errorf("outbox id = %q, want source + id", out[0].ID)
	}
	var back event.Event
	if err := json.Unmarshal(out[0].Payload, &back); err != nil {
		t.Fatalf("payload is not a CloudEvent: %v", err)
	}
	if back.ID() != "ev-1" || back.Source() != ev.Source() || back.Extensions()["sessionid"] != "s-1" || string(back.Data()) != string(ev.Data()) {
		t.Errorf("payload round trip = %v, want %v", back, ev)
	}
	bad := event.New() // no id, source, type
	if _, err := outbox.FromEvents(bad); err == nil {
		t.Error("FromEvents accepted an invalid CloudEvent")
	}
	// JSON data that is not JSON would be stored and never decode: refused.
	notJSON := newEvent(t, "ev-2")
	notJSON.DataEncoded = []byte(`{"a":`)
	if _, err := outbox.FromEvents(notJSON); err == nil {
		t.Error("FromEvents accepted data that is not JSON")
	}
}

func TestFlush(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	var want []string
	for i := range 7 {
		id := fmt.Sprintf("ev-%d", i)
		want = append(want, id)
		write(t, s, fmt.Sprintf("s-%d", i), newEvent(t, id))
	}
	pub := &recorder{}
	r := outbox.NewRelay(s, pub, outbox.Options{Batch: 3, Logger: quiet()})
	n, err := r.Flush(t.Context())
	if err != nil || n != 7 {
		t.Fatalf("Flush = %d, %v; want 7", n, err)
	}
	if got := pub.ids(); !slices.Equal(got, want) {
		t.Fatalf("published %q, want %q", got, want)
	}
	if left, _ := s.PendingOutbox(t.Context(), 100); len(left) != 0 {
		t.Fatalf("%d still pending after Flush", len(left))
	}
	if n, err := r.Flush(t.Context()); err != nil || n != 0 {
		t.Fatalf("second Flush = %d, %v; want 0", n, err)
	}
}

func TestFlushPartialFailure(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	write(t, s, "s-1", newEvent(t, "ok-1"), newEvent(t, "bad"), newEvent(t, "ok-2"))
	failing := true
	pub := &recorder{fail: func(_ int, ev event.Event) error {
		if ev.ID() == "bad" && failing {
			return bus.ErrTooLarge
		}
		return nil
	}}
	r := outbox.NewRelay(s, pub, outbox.Options{Logger: quiet()})
	n, err := r.Flush(t.Context())
	if n != 2 || !errors.Is(err, bus.ErrTooLarge) {
		t.Fatalf("Flush = %d, %v; want 2 and the failure", n, err)
	}
	left, _ := s.PendingOutbox(t.Context(), 100)
	if len(left) != 1 || left[0].ID != "agentbus/executor bad" {
		t.Fatalf("pending after partial failure = %v, want only the failed event", left)
	}
	failing = false
	if n, err := r.Flush(t.Context()); err != nil || n != 1 {
		t.Fatalf("retry Flush = %d, %v; want 1", n, err)
	}
	if got := pub.ids(); !slices.Equal(got, []string{"bad", "ok-1", "ok-2"}) {
		t.Fatalf("published %q", got)
	}
}

func TestFlushWholeFailureAndPoison(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	write(t, s, "s-1", newEvent(t, "ev-1"))
	// A payload that is not a CloudEvent (a bug elsewhere) is never dropped.
	if _, err := s.CreateSession(t.Context(), state.Session{ID: "s-2", Status: state.StatusRunning}, state.OutboxEvent{ID: "poison", Payload: []byte("not json")}); err != nil {
		t.Fatal(err)
	}
	pub := &recorder{whole: errors.New("bus down")}
	r := outbox.NewRelay(s, pub, outbox.Options{Logger: quiet()})
	if n, err := r.Flush(t.Context()); n != 0 || err == nil {
		t.Fatalf("Flush with the bus down = %d, %v; want 0 and an error", n, err)
	}
	if left, _ := s.PendingOutbox(t.Context(), 100); len(left) != 2 {
		t.Fatalf("%d pending after a failed publish, want 2", len(left))
	}
	pub.whole = nil
	n, err := r.Flush(t.Context())
	if n != 1 || err == nil {
		t.Fatalf("Flush = %d, %v; want 1 published and the poison reported", n, err)
	}
	left, _ := s.PendingOutbox(t.Context(), 100)
	if len(left) != 1 || left[0].ID != "poison" {
		t.Fatalf("pending = %v, want the poison payload kept", left)
	}
}

// failingMarkSent simulates a crash between publish and mark-sent.
type failingMarkSent struct {
	outbox.Source
	fail bool
}

func (f *failingMarkSent) MarkSent(ctx context.Context, ids ...string) error {
	if f.fail {
		return errors.New("crashed before mark sent")
	}
	return f.Source.MarkSent(ctx, ids...)
}

func TestRepublishKeepsID(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	write(t, s, "s-1", newEvent(t, "ev-1"))
	src := &failingMarkSent{Source: s, fail: true}
	pub := &recorder{}
	r := outbox.NewRelay(src, pub, outbox.Options{Logger: quiet()})
	if _, err := r.Flush(t.Context()); err == nil {
		t.Fatal("Flush hid a MarkSent failure")
	}
	src.fail = false
	if _, err := r.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	// Published twice, with the same source+id: consumers dedupe it.
	if got := pub.ids(); !slices.Equal(got, []string{"ev-1", "ev-1"}) {
		t.Fatalf("published %q, want ev-1 twice with the same id", got)
	}
}

func TestRunWake(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	pub := &recorder{}
	r := outbox.NewRelay(s, pub, outbox.Options{Interval: time.Hour, Logger: quiet()})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	write(t, s, "s-1", newEvent(t, "ev-1"))
	r.Wake()
	deadline := time.Now().Add(5 * time.Second)
	for len(pub.ids()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Wake did not make Run publish (interval is an hour)")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil on cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop on cancel")
	}
}

func TestNotifyingWakesRelay(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	pub := &recorder{}
	r := outbox.NewRelay(s, pub, outbox.Options{Interval: time.Hour, Logger: quiet()})
	ns := outbox.Notifying(s, r)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go r.Run(ctx)
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for len(pub.ids()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("published %d events, want %d: a write with outbox events did not wake the relay", len(pub.ids()), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(20 * time.Millisecond) // let Run finish its first (empty) pass
	write(t, ns, "s-1", newEvent(t, "created"))
	waitFor(1)
	out, err := outbox.FromEvents(newEvent(t, "step-done"))
	if err != nil {
		t.Fatal(err)
	}
	if first, err := ns.CompleteStep(t.Context(), state.StepKey{SessionID: "s-1", Step: 1}, out...); err != nil || !first {
		t.Fatalf("CompleteStep = %v, %v", first, err)
	}
	waitFor(2)
	// Reads pass through to the store.
	if _, err := ns.GetSession(t.Context(), "s-1"); err != nil {
		t.Fatalf("GetSession through Notifying: %v", err)
	}
}

// countingSource counts the relay's reads and mark-sent writes.
type countingSource struct {
	outbox.Source
	mu           sync.Mutex
	reads, marks int
}

func (c *countingSource) PendingOutbox(ctx context.Context, limit int) ([]state.OutboxEvent, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.Source.PendingOutbox(ctx, limit)
}

func (c *countingSource) MarkSent(ctx context.Context, ids ...string) error {
	c.mu.Lock()
	c.marks++
	c.mu.Unlock()
	return c.Source.MarkSent(ctx, ids...)
}

func (c *countingSource) counts() (reads, marks int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads, c.marks
}

func (r *recorder) setWhole(err error) {
	r.mu.Lock()
	r.whole = err
	r.mu.Unlock()
}

// eventually fails the test if cond does not hold within 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func pendingIDs(t *testing.T, s state.Store) []string {
	t.Helper()
	p, err := s.PendingOutbox(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range p {
		ids = append(ids, e.ID)
	}
	return ids
}

// startHandOff runs a hand-off relay over s and returns the store writers
// use, the counting source, and a stop function that waits for Run.
func startHandOff(t *testing.T, s state.Store, pub outbox.Publisher, opts outbox.Options) (state.Store, *countingSource, func()) {
	t.Helper()
	src := &countingSource{Source: s}
	opts.HandOff, opts.Logger = true, quiet()
	r := outbox.NewRelay(src, pub, opts)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	eventually(t, "the relay's first poll", func() bool { reads, _ := src.counts(); return reads >= 1 })
	stop := func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return outbox.Notifying(s, r), src, stop
}

func TestHandOffPublishesWithoutReadingBack(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	pub := &recorder{}
	ns, src, _ := startHandOff(t, s, pub, outbox.Options{Interval: time.Hour, MarkDelay: 200 * time.Millisecond})
	for i := range 3 {
		write(t, ns, fmt.Sprintf("s-%d", i), newEvent(t, fmt.Sprintf("ev-%d", i)))
	}
	eventually(t, "three events published", func() bool { return len(pub.ids()) == 3 })
	eventually(t, "the events marked sent", func() bool { return len(pendingIDs(t, s)) == 0 })
	reads, marks := src.counts()
	if reads != 1 {
		t.Errorf("the relay read the outbox %d times, want only its first poll: handed-off events are not read back", reads)
	}
	if marks != 1 {
		t.Errorf("%d mark-sent writes, want 1: events published within MarkDelay share one", marks)
	}
	if got := pub.ids(); !slices.Equal(got, []string{"ev-0", "ev-1", "ev-2"}) {
		t.Errorf("published %q", got)
	}
}

func TestHandOffFailedPublishIsPolledAgain(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	pub := &recorder{whole: errors.New("bus down")}
	ns, _, _ := startHandOff(t, s, pub, outbox.Options{Interval: 20 * time.Millisecond})
	write(t, ns, "s-1", newEvent(t, "ev-1"))
	time.Sleep(50 * time.Millisecond) // the hand-off publish and a poll fail
	if got := pendingIDs(t, s); len(got) != 1 {
		t.Fatalf("pending %q after failed publishes, want the event kept", got)
	}
	pub.setWhole(nil)
	eventually(t, "the poll publishes the event", func() bool { return len(pub.ids()) == 1 })
	eventually(t, "the event marked sent", func() bool { return len(pendingIDs(t, s)) == 0 })
}

// blockingPublisher holds its first Publish until release is closed.
type blockingPublisher struct {
	recorder
	first   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (b *blockingPublisher) Publish(ctx context.Context, evs ...event.Event) error {
	if b.first.CompareAndSwap(false, true) {
		close(b.entered)
		<-b.release
	}
	return b.recorder.Publish(ctx, evs...)
}

// writeAsync makes the write of write in another goroutine; the channel
// gets its error.
func writeAsync(t *testing.T, s state.Store, sessionID string, evs ...event.Event) <-chan error {
	t.Helper()
	out, err := outbox.FromEvents(evs...)
	if err != nil {
		t.Fatalf("FromEvents: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.CreateSession(context.Background(), state.Session{ID: sessionID, Status: state.StatusRunning}, out...)
		done <- err
	}()
	return done
}

// TestHandOffIdleWriterPublishes: with no publish under way, the writer
// publishes its events itself, before its write returns.
func TestHandOffIdleWriterPublishes(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	pub := &recorder{}
	ns, _, _ := startHandOff(t, s, pub, outbox.Options{Interval: time.Hour})
	for i := range 3 {
		id := fmt.Sprintf("ev-%d", i)
		write(t, ns, fmt.Sprintf("s-%d", i), newEvent(t, id))
		if got := pub.ids(); len(got) != i+1 || got[i] != id {
			t.Fatalf("after write %d returned, published %q: the writer did not publish its event", i, got)
		}
	}
	eventually(t, "the events marked sent", func() bool { return len(pendingIDs(t, s)) == 0 })
}

// TestHandOffPublishesTheWrittenEvent: an outbox event that carries its
// decoded Event (FromEvents sets it) is published as it is, not decoded
// from its payload again.
func TestHandOffPublishesTheWrittenEvent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	pub := &recorder{}
	ns, _, _ := startHandOff(t, s, pub, outbox.Options{Interval: time.Hour})
	out, err := outbox.FromEvents(newEvent(t, "ev-1"))
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Event == nil || out[0].Event.ID() != "ev-1" {
		t.Fatalf("FromEvents left Event %v, want the event", out[0].Event)
	}
	// A marker only the in-memory event has: what is published is it.
	out[0].Event.SetExtension("marker", "in-memory")
	if _, err := ns.CreateSession(t.Context(), state.Session{ID: "s-1", Status: state.StatusRunning}, out...); err != nil {
		t.Fatal(err)
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if len(pub.published) != 1 || pub.published[0].Extensions()["marker"] != "in-memory" {
		t.Fatalf("published %v, want the written event itself", pub.published)
	}
}

func TestHandOffFlushSkipsEventsInFlight(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	pub := &blockingPublisher{entered: make(chan struct{}), release: make(chan struct{})}
	src := &countingSource{Source: s}
	r := outbox.NewRelay(src, pub, outbox.Options{Interval: time.Hour, HandOff: true, Logger: quiet()})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	release := sync.OnceFunc(func() { close(pub.release) })
	defer func() { release(); cancel(); <-done }()
	eventually(t, "the relay's first poll", func() bool { reads, _ := src.counts(); return reads >= 1 })
	wrote := writeAsync(t, outbox.Notifying(s, r), "s-1", newEvent(t, "ev-1"))
	<-pub.entered // the writer is publishing its event
	// A Flush from elsewhere (a shutdown, a test) sees it pending but in
	// flight: it must not publish it a second time.
	if n, err := r.Flush(t.Context()); err != nil || n != 0 {
		t.Fatalf("Flush during the writer's publish = %d, %v; want 0 published", n, err)
	}
	release()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	eventually(t, "the event marked sent", func() bool { return len(pendingIDs(t, s)) == 0 })
	if got := pub.ids(); !slices.Equal(got, []string{"ev-1"}) {
		t.Fatalf("published %q, want ev-1 once", got)
	}
}

// gatePublisher holds every Publish until release is closed, counting the
// calls that entered.
type gatePublisher struct {
	recorder
	entered atomic.Int32
	release chan struct{}
}

func (g *gatePublisher) Publish(ctx context.Context, evs ...event.Event) error {
	g.entered.Add(1)
	<-g.release
	return g.recorder.Publish(ctx, evs...)
}

// TestHandOffBusyWriterHandsToRun: while a publish is under way, a writer
// does not wait for the bus: it hands its events to Run and returns.
func TestHandOffBusyWriterHandsToRun(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	pub := &gatePublisher{release: make(chan struct{})}
	ns, _, _ := startHandOff(t, s, pub, outbox.Options{Interval: time.Hour})
	release := sync.OnceFunc(func() { close(pub.release) })
	defer release()
	first := writeAsync(t, ns, "s-1", newEvent(t, "ev-1"))
	eventually(t, "the first writer publishing", func() bool { return pub.entered.Load() == 1 })
	second := writeAsync(t, ns, "s-2", newEvent(t, "ev-2"))
	select {
	case err := <-second:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the second write waited for the bus while another publish was under way")
	}
	eventually(t, "Run publishing the handed-off event", func() bool { return pub.entered.Load() == 2 })
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	eventually(t, "both events marked sent", func() bool { return len(pendingIDs(t, s)) == 0 })
	got := pub.ids()
	slices.Sort(got)
	if !slices.Equal(got, []string{"ev-1", "ev-2"}) {
		t.Fatalf("published %q, want ev-1 and ev-2 once each", got)
	}
}

func TestHandOffMarksTheRestAtStop(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	pub := &recorder{}
	ns, _, stop := startHandOff(t, s, pub, outbox.Options{Interval: time.Hour, MarkDelay: time.Hour})
	write(t, ns, "s-1", newEvent(t, "ev-1"))
	eventually(t, "the event published", func() bool { return len(pub.ids()) == 1 })
	if got := pendingIDs(t, s); len(got) != 1 {
		t.Fatalf("pending %q, want the event unmarked until MarkDelay or stop", got)
	}
	stop()
	if got := pendingIDs(t, s); len(got) != 0 {
		t.Fatalf("pending %q after Run stopped: the last published events must be marked sent", got)
	}
}

func TestHandOffWriteThatWroteNothing(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	pub := &recorder{}
	ns, _, _ := startHandOff(t, s, pub, outbox.Options{Interval: time.Hour})
	key := state.StepKey{SessionID: "s-1", Step: 1}
	for i, want := range []bool{true, false} {
		out, err := outbox.FromEvents(newEvent(t, fmt.Sprintf("done-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if first, err := ns.CompleteStep(t.Context(), key, out...); err != nil || first != want {
			t.Fatalf("CompleteStep #%d = %v, %v; want %v", i, first, err, want)
		}
	}
	eventually(t, "the first completion's event published", func() bool { return len(pub.ids()) == 1 })
	time.Sleep(20 * time.Millisecond)
	if got := pub.ids(); !slices.Equal(got, []string{"done-0"}) {
		t.Fatalf("published %q, want only done-0: the second CompleteStep wrote nothing", got)
	}
}

// TestAfterWriteRecordAndComplete: only the call that completed the step
// hands its events on.
func TestAfterWriteRecordAndComplete(t *testing.T) {
	t.Parallel()
	var got []string
	s := outbox.AfterWrite(newStore(t), func(_ context.Context, out []state.OutboxEvent) {
		for _, o := range out {
			got = append(got, o.ID)
		}
	})
	key := state.StepKey{SessionID: "s-1", Step: 1}
	if _, _, err := s.OpenStep(t.Context(), key, []string{"c1", "c2"}); err != nil {
		t.Fatal(err)
	}
	complete := func(state.StepState) ([]state.OutboxEvent, error) {
		return outbox.FromEvents(newEvent(t, "step-1-completed"))
	}
	for i, tc := range []struct {
		call string
		want []string
	}{
		{"c1", nil},
		{"c2", []string{"step-1-completed"}},
		{"c2", nil}, // redelivered: the step is done, nothing written
	} {
		got = nil
		if _, _, err := s.RecordAndComplete(t.Context(), key, tc.call, []byte(`1`), complete); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tc.want) || (len(got) > 0 && !strings.HasSuffix(got[0], tc.want[0])) {
			t.Errorf("write %d (%s) handed on %q, want %q", i, tc.call, got, tc.want)
		}
	}
}
