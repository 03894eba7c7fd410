package memory_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/platform/state/sqlite"
	"github.com/agentbus/agentbus/services/memory"
)

// countingHistory is the real SQLite store, counting appends per session and
// failing any append that carries an entry with a "bad" id.
type countingHistory struct {
	*sqlite.Store
	mu      sync.Mutex
	appends map[string]int
}

func (c *countingHistory) AppendHistory(ctx context.Context, sid string, es ...state.Entry) (int, error) {
	c.mu.Lock()
	c.appends[sid]++
	c.mu.Unlock()
	for _, e := range es {
		if e.ID == "bad" {
			return 0, errors.New("store refused the entry")
		}
	}
	return c.Store.AppendHistory(ctx, sid, es...)
}

func (c *countingHistory) count(sid string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.appends[sid]
}

// countingHot counts invalidations per session.
type countingHot struct {
	mu  sync.Mutex
	inv map[string]int
}

func (h *countingHot) Invalidate(_ context.Context, sid string) error {
	h.mu.Lock()
	h.inv[sid]++
	h.mu.Unlock()
	return nil
}

func (h *countingHot) Recent(ctx context.Context, _ string, load func(context.Context) ([]state.Entry, error)) ([]state.Entry, error) {
	return load(ctx)
}

func newHistory(t *testing.T) *countingHistory {
	t.Helper()
	s, err := sqlite.OpenMemory(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &countingHistory{Store: s, appends: map[string]int{}}
}

func memEvent(sid, id string) event.Event {
	ev := event.New()
	ev.SetID(id)
	ev.SetSource("agentbus/test")
	ev.SetType("agentbus.step.completed.v1")
	ev.SetTime(time.Now())
	ev.SetExtension(events.ExtSessionID, sid)
	return ev
}

// handleAll runs Handle for every event at once and returns each error.
func handleAll(ctx context.Context, svc *memory.Service, evs []event.Event) []error {
	errs := make([]error, len(evs))
	var wg sync.WaitGroup
	for i, ev := range evs {
		wg.Go(func() { errs[i] = svc.Handle(ctx, ev) })
	}
	wg.Wait()
	return errs
}

func historyIDs(t *testing.T, h *countingHistory, sid string) []string {
	t.Helper()
	es, err := h.ReadHistory(t.Context(), sid, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range es {
		ids = append(ids, e.ID)
	}
	slices.Sort(ids)
	return ids
}

func TestBatching(t *testing.T) {
	t.Parallel()
	type session struct {
		sid     string
		ids     []string
		appends int // writes expected for the session
	}
	cases := []struct {
		name     string
		linger   time.Duration
		max      int
		sessions []session
		bad      bool // one more event, id "bad", in the first session
	}{
		// max events arrive: written at once although linger is an hour.
		{"max ends the wait", time.Hour, 4, []session{{"s-1", []string{"a", "b", "c", "d"}, 1}}, false},
		// Two sessions in one batch: one write each.
		{"one write per session", 200 * time.Millisecond, 4, []session{
			{"s-1", []string{"a", "b"}, 1}, {"s-2", []string{"c", "d"}, 1}}, false},
		// A lone event waits linger and is written.
		{"linger ends the wait", 20 * time.Millisecond, 8, []session{{"s-1", []string{"a"}, 1}}, false},
		// The batch's write fails; each entry is retried on its own, so only
		// the bad one fails (1 batch write + 3 single ones).
		{"a bad entry fails alone", time.Hour, 3, []session{{"s-1", []string{"a", "b"}, 4}}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHistory(t)
			hot := &countingHot{inv: map[string]int{}}
			svc := memory.New(h, hot, nil, memory.WithBatching(tc.linger, tc.max))
			var evs []event.Event
			for _, s := range tc.sessions {
				for _, id := range s.ids {
					evs = append(evs, memEvent(s.sid, id))
				}
			}
			if tc.bad {
				evs = append(evs, memEvent(tc.sessions[0].sid, "bad"))
			}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			start := time.Now()
			errs := handleAll(ctx, svc, evs)
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("Handle took %v: the batch waited past max", d)
			}
			for i, err := range errs {
				if wantErr := evs[i].ID() == "bad"; (err != nil) != wantErr {
					t.Errorf("Handle(%s) = %v, want error %v", evs[i].ID(), err, wantErr)
				}
			}
			for _, s := range tc.sessions {
				if got := historyIDs(t, h, s.sid); !slices.Equal(got, s.ids) {
					t.Errorf("history of %s = %q, want %q", s.sid, got, s.ids)
				}
				if got := h.count(s.sid); got != s.appends {
					t.Errorf("%d writes for %s, want %d", got, s.sid, s.appends)
				}
				if got := hot.inv[s.sid]; got != 1 {
					t.Errorf("hot context of %s invalidated %d times, want once per batch", s.sid, got)
				}
			}
		})
	}
}

// A handler whose context ends while it waits for the batch returns its
// context's error; its event is still written with the batch (a redelivery
// then appends nothing).
func TestBatchingCancelledFollower(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	svc := memory.New(h, nil, nil, memory.WithBatching(300*time.Millisecond, 8))
	lead := make(chan error, 1)
	go func() { lead <- svc.Handle(t.Context(), memEvent("s-1", "a")) }()
	time.Sleep(20 * time.Millisecond) // "a" opens the batch
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := svc.Handle(ctx, memEvent("s-1", "b")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled follower: Handle = %v, want its context's error", err)
	}
	if err := <-lead; err != nil {
		t.Fatalf("leader: Handle = %v", err)
	}
	if got := historyIDs(t, h, "s-1"); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("history = %q, want both events", got)
	}
	// The redelivered event is recorded once.
	if err := svc.Handle(t.Context(), memEvent("s-1", "b")); err != nil {
		t.Fatal(err)
	}
	if got := historyIDs(t, h, "s-1"); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("history after redelivery = %q", got)
	}
}

// Without WithBatching every event is its own write.
func TestNoBatching(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	svc := memory.New(h, nil, nil)
	var evs []event.Event
	for i := range 3 {
		evs = append(evs, memEvent("s-1", fmt.Sprint(i)))
	}
	for i, err := range handleAll(t.Context(), svc, evs) {
		if err != nil {
			t.Fatalf("Handle(%d) = %v", i, err)
		}
	}
	if got := h.count("s-1"); got != 3 {
		t.Fatalf("%d writes, want 3", got)
	}
}

// The event that opens a session is written at once, batching or not: until
// the planner creates the session record, its history is how other readers
// (another API server) know the session exists.
func TestBatchingWritesAgentRequestedAtOnce(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	svc := memory.New(h, nil, nil, memory.WithBatching(time.Hour, 8))
	ev := memEvent("s-1", "req")
	ev.SetType(events.TypeAgentRequested)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := svc.Handle(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("AgentRequested waited %v for a batch", d)
	}
	if got := historyIDs(t, h, "s-1"); !slices.Equal(got, []string{"req"}) {
		t.Fatalf("history = %q", got)
	}
}

// slowFirstHistory holds the first append back until the test lets it go,
// so that a second batch is ready to write while the first still writes.
type slowFirstHistory struct {
	*countingHistory
	once    sync.Once
	started chan struct{}
	release chan struct{}
}

func (s *slowFirstHistory) AppendHistory(ctx context.Context, sid string, es ...state.Entry) (int, error) {
	first := false
	s.once.Do(func() { first = true })
	if first {
		close(s.started)
		<-s.release
	}
	return s.countingHistory.AppendHistory(ctx, sid, es...)
}

// TestBatchingKeepsEventOrder: a session's history follows its events'
// order although the handlers of a batch call in any order and a later
// batch is ready before an earlier one has written.
func TestBatchingKeepsEventOrder(t *testing.T) {
	t.Parallel()
	h := &slowFirstHistory{countingHistory: newHistory(t), started: make(chan struct{}), release: make(chan struct{})}
	svc := memory.New(h, nil, nil, memory.WithBatching(time.Hour, 4))
	at := time.Now()
	var evs []event.Event
	for i := range 8 {
		ev := memEvent("s-1", fmt.Sprintf("e%d", i))
		ev.SetTime(at.Add(time.Duration(i) * time.Millisecond))
		evs = append(evs, ev)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	// Each batch's handlers call in reverse order of their events.
	handle := func(batch []event.Event) {
		for i := len(batch) - 1; i >= 0; i-- {
			ev := batch[i]
			wg.Go(func() {
				if err := svc.Handle(ctx, ev); err != nil {
					t.Error(err)
				}
			})
			time.Sleep(5 * time.Millisecond)
		}
	}
	handle(evs[:4])
	<-h.started // the first batch is writing, held back
	handle(evs[4:])
	time.Sleep(100 * time.Millisecond) // room for the second batch to overtake
	close(h.release)
	wg.Wait()
	es, err := h.ReadHistory(ctx, "s-1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.ID)
	}
	if want := []string{"e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7"}; !slices.Equal(got, want) {
		t.Errorf("history = %q, want %q", got, want)
	}
}
