package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/state"
	pb "github.com/agentbus/agentbus/proto/agentbus/v1"
	"github.com/agentbus/agentbus/tools"
)

// fakeStore is a session record and a history the test appends to.
type fakeStore struct {
	mu   sync.Mutex
	sess map[string]state.Session
	hist map[string][]state.Entry
}

func newFakeStore() *fakeStore {
	return &fakeStore{sess: map[string]state.Session{}, hist: map[string][]state.Entry{}}
}

func (f *fakeStore) GetSession(_ context.Context, id string) (state.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sess[id]
	if !ok {
		return state.Session{}, state.ErrNotFound
	}
	return s, nil
}

func (f *fakeStore) ListSessions(context.Context, string, int) (state.SessionPage, error) {
	return state.SessionPage{}, nil
}

func (f *fakeStore) ReadHistory(_ context.Context, sid string, after int64, limit int) ([]state.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []state.Entry
	for _, e := range f.hist[sid] {
		if e.Seq > after && len(out) < state.PageSize(limit) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fakeStore) record(t *testing.T, ev event.Event) {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	sid := events.SessionID(ev)
	h := f.hist[sid]
	f.hist[sid] = append(h, state.Entry{Seq: int64(len(h) + 1), Source: ev.Source(), ID: ev.ID(), Type: ev.Type(), Time: ev.Time(), Data: b})
}

// fakeSub delivers what the test pushes.
type fakeSub struct{ ch chan event.Event }

func (f *fakeSub) Subscribe(context.Context, string) (Subscription, error) { return f, nil }
func (f *fakeSub) Next(ctx context.Context) ([]event.Event, error) {
	select {
	case ev := <-f.ch:
		return []event.Event{ev}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(10 * time.Millisecond):
		return nil, nil
	}
}
func (f *fakeSub) Close(context.Context) {}

type noMemory struct{}

func (noMemory) Context(context.Context, string, int) ([]Turn, error)        { return nil, nil }
func (noMemory) Search(context.Context, string, string, int) ([]Turn, error) { return nil, nil }

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, ...event.Event) error { return nil }

func newEvent(t *testing.T, sid string, p events.Payload) event.Event {
	t.Helper()
	src := events.SourcePlanner
	if _, ok := p.(events.AgentRequested); ok {
		src = events.SourceClient
	}
	ev, err := events.NewPayload(src, sid, p)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// serve starts s on an in-memory connection and returns a client.
func serve(t *testing.T, s *Server) pb.AgentServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer()
	s.Register(g)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewAgentServiceClient(conn)
}

func newServer(t *testing.T, st *fakeStore, sub Subscriber) *Server {
	t.Helper()
	s, err := New(Config{Publisher: nopPublisher{}, Sessions: st, Subscriber: sub, Memory: noMemory{}, Tools: tools.NewRegistry(),
		HistoryPoll: 20 * time.Millisecond, HistoryGrace: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func watchAll(t *testing.T, c pb.AgentServiceClient, sid string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.Watch(ctx, &pb.WatchRequest{SessionId: sid})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return ids
		}
		if err != nil {
			t.Fatalf("watch: %v (after %v)", err, ids)
		}
		var ev event.Event
		if err := json.Unmarshal([]byte(m.GetCloudEvent()), &ev); err != nil || ev.ID() != m.GetId() || ev.Type() != m.GetType() {
			t.Fatalf("event %s does not carry its CloudEvent: %v", m.GetId(), err)
		}
		ids = append(ids, m.GetId())
	}
}

// A history recorded out of order (a step's late result after the terminal
// event) is streamed with the terminal event last.
func TestWatchSendsTerminalLast(t *testing.T) {
	t.Parallel()
	st := newFakeStore()
	const sid = "s1"
	st.sess[sid] = state.Session{ID: sid, Status: state.StatusCompleted}
	req := newEvent(t, sid, events.AgentRequested{Prompt: "hi"})
	done := newEvent(t, sid, events.AgentCompleted{Answer: "x", Steps: 1})
	late := newEvent(t, sid, events.StepCompleted{Step: 1, Results: []events.ToolResult{{CallID: "c", Tool: "t", OK: true, Output: json.RawMessage(`1`)}}})
	for _, ev := range []event.Event{req, done, late} {
		st.record(t, ev)
	}
	c := serve(t, newServer(t, st, &fakeSub{ch: make(chan event.Event)}))
	got := watchAll(t, c, sid)
	if want := []string{req.ID(), late.ID(), done.ID()}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

// A terminal event seen live before the history recorded an earlier event
// (published before the watch subscribed): Watch waits for the history and
// sends the earlier event first; duplicates between live and history are
// sent once.
func TestWatchLiveTerminalWaitsForHistory(t *testing.T) {
	t.Parallel()
	st := newFakeStore()
	const sid = "s2"
	req := newEvent(t, sid, events.AgentRequested{Prompt: "hi"})
	planned := newEvent(t, sid, events.StepPlanned{Step: 1, Calls: []events.ToolCall{{ID: "c", Name: "t", Input: json.RawMessage(`{}`)}}})
	done := newEvent(t, sid, events.AgentCompleted{Answer: "x", Steps: 1})
	st.sess[sid] = state.Session{ID: sid, Status: state.StatusRunning}
	st.record(t, req)
	sub := &fakeSub{ch: make(chan event.Event, 4)}
	c := serve(t, newServer(t, st, sub))
	go func() {
		time.Sleep(50 * time.Millisecond)
		sub.ch <- req // a duplicate of a replayed event
		sub.ch <- done
		time.Sleep(100 * time.Millisecond)
		st.record(t, planned) // the memory service catches up late
		st.record(t, done)
	}()
	got := watchAll(t, c, sid)
	if want := []string{req.ID(), planned.ID(), done.ID()}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// A terminal event the history never records is still sent, after the grace.
func TestWatchLiveTerminalWithoutHistory(t *testing.T) {
	t.Parallel()
	st := newFakeStore()
	const sid = "s3"
	st.sess[sid] = state.Session{ID: sid, Status: state.StatusRunning}
	done := newEvent(t, sid, events.AgentFailed{Reason: events.AgentInternal, Message: "boom"})
	sub := &fakeSub{ch: make(chan event.Event, 1)}
	sub.ch <- done
	c := serve(t, newServer(t, st, sub))
	start := time.Now()
	if got := watchAll(t, c, sid); !slices.Equal(got, []string{done.ID()}) {
		t.Fatalf("got %v", got)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("ended after %v, before the history grace", d)
	}
}

// Get reports progress while running and the outcome from the terminal event.
func TestGetSummarizesHistory(t *testing.T) {
	t.Parallel()
	st := newFakeStore()
	const sid = "s4"
	st.sess[sid] = state.Session{ID: sid, Status: state.StatusRunning, AgentName: "a"}
	st.record(t, newEvent(t, sid, events.AgentRequested{Prompt: "hi"}))
	st.record(t, newEvent(t, sid, events.StepPlanned{Step: 1, Calls: []events.ToolCall{{ID: "c", Name: "t", Input: json.RawMessage(`{}`)}},
		Usage: events.Usage{InputTokens: 10, OutputTokens: 2}}))
	s := newServer(t, st, &fakeSub{})
	c := serve(t, s)
	ctx := context.Background()
	got, err := c.Get(ctx, &pb.GetRequest{SessionId: sid})
	if err != nil || got.GetStatus() != pb.Status_STATUS_RUNNING || got.GetSteps() != 1 || got.GetUsage().GetInputTokens() != 10 {
		t.Fatalf("running: %v %v", got, err)
	}
	st.mu.Lock()
	st.sess[sid] = state.Session{ID: sid, Status: state.StatusFailed, AgentName: "a"}
	st.mu.Unlock()
	st.record(t, newEvent(t, sid, events.AgentFailed{Reason: events.AgentMaxSteps, Message: "too many", Steps: 1, Usage: events.Usage{InputTokens: 20, OutputTokens: 3}}))
	got, err = c.Get(ctx, &pb.GetRequest{SessionId: sid})
	if err != nil || got.GetStatus() != pb.Status_STATUS_FAILED || got.GetReason() != "max_steps" || got.GetMessage() != "too many" || got.GetUsage().GetInputTokens() != 20 {
		t.Fatalf("failed: %v %v", got, err)
	}
	// A submitted session the planner has not started yet is PENDING.
	sub, err := c.Submit(ctx, &pb.SubmitRequest{Prompt: "later"})
	if err != nil {
		t.Fatal(err)
	}
	got, err = c.Get(ctx, &pb.GetRequest{SessionId: sub.GetSessionId()})
	if err != nil || got.GetStatus() != pb.Status_STATUS_PENDING {
		t.Fatalf("pending: %v %v", got, err)
	}
}

func TestNewNeedsDependencies(t *testing.T) {
	t.Parallel()
	full := Config{Publisher: nopPublisher{}, Sessions: newFakeStore(), Subscriber: &fakeSub{}, Memory: noMemory{}, Tools: tools.NewRegistry()}
	for _, drop := range []string{"publisher", "store", "subscriber", "memory", "tool"} {
		cfg := full
		switch drop {
		case "publisher":
			cfg.Publisher = nil
		case "store":
			cfg.Sessions = nil
		case "subscriber":
			cfg.Subscriber = nil
		case "memory":
			cfg.Memory = nil
		case "tool":
			cfg.Tools = nil
		}
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), drop) {
			t.Errorf("without %s: %v", drop, err)
		}
	}
}

func TestPublishFailureIsUnavailableOrInternal(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Publisher: failingPublisher{}, Sessions: newFakeStore(), Subscriber: &fakeSub{}, Memory: noMemory{}, Tools: tools.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	c := serve(t, s)
	_, err = c.Submit(context.Background(), &pb.SubmitRequest{Prompt: "hi", SessionId: "sx"})
	if st := status.Convert(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), "publish AgentRequested") {
		t.Fatalf("got %v", err)
	}
	// The failed submission is not remembered as a session.
	if _, err := c.Get(context.Background(), &pb.GetRequest{SessionId: "sx"}); status.Code(err) != codes.NotFound {
		t.Fatalf("get: %v", err)
	}
}

type failingPublisher struct{}

func (failingPublisher) Publish(context.Context, ...event.Event) error {
	return errors.New("bus is down")
}

// The first Watch after Submit follows the subscription Submit opened
// before publishing: events in bus order, the terminal event at once.
func TestWatchAfterSubmitFollowsEarlySubscription(t *testing.T) {
	t.Parallel()
	st := newFakeStore()
	sub := &fakeSub{ch: make(chan event.Event, 8)}
	c := serve(t, newServer(t, st, sub))
	ctx := context.Background()
	out, err := c.Submit(ctx, &pb.SubmitRequest{Prompt: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	sid := out.GetSessionId()
	planned := newEvent(t, sid, events.StepPlanned{Step: 1, Calls: []events.ToolCall{{ID: "c", Name: "t", Input: json.RawMessage(`{}`)}}})
	done := newEvent(t, sid, events.AgentCompleted{Answer: "x", Steps: 1})
	// Published before Watch is called, never recorded in the history.
	sub.ch <- planned
	sub.ch <- planned
	sub.ch <- done
	start := time.Now()
	if got := watchAll(t, c, sid); !slices.Equal(got, []string{planned.ID(), done.ID()}) {
		t.Fatalf("got %v", got)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Fatalf("took %v: waited for the history instead of following the early subscription", d)
	}
}
