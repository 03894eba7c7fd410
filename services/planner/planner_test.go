package planner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/model/scripted"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/platform/state/sqlite"
	"github.com/agentbus/agentbus/services/planner"
	"github.com/agentbus/agentbus/tools"
)

// countingStore counts the session reads the planner makes.
type countingStore struct {
	*sqlite.Store
	reads atomic.Int32
}

func (c *countingStore) GetSession(ctx context.Context, id string) (state.Session, error) {
	c.reads.Add(1)
	return c.Store.GetSession(ctx, id)
}

type noop struct{}

func (noop) Spec() tools.Spec {
	return tools.Spec{Name: "noop", Description: "does nothing", InputSchema: json.RawMessage(`{"type":"object"}`)}
}
func (noop) Run(context.Context, tools.Call) (json.RawMessage, error) {
	return json.RawMessage(`{}`), nil
}

const script = `{"entries": [{"name": "steps", "match": {"contains": "go"}, "turns": [
  {"calls": [{"name": "noop", "input": {}}]},
  {"calls": [{"name": "noop", "input": {}}]},
  {"answer": "done"}]}]}`

func newPlanner(t *testing.T, cacheRuns int) (*planner.Planner, *countingStore) {
	t.Helper()
	st, err := sqlite.OpenMemory(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cs := &countingStore{Store: st}
	return planner.New(cs, scriptedModel(t), registry(t), planner.Config{CacheRuns: cacheRuns}, nil, nil), cs
}

func registry(t *testing.T) *tools.Registry {
	t.Helper()
	reg := tools.NewRegistry()
	if err := reg.Register(noop{}); err != nil {
		t.Fatal(err)
	}
	return reg
}

func scriptedModel(t *testing.T) *scripted.Model {
	t.Helper()
	s, err := scripted.Parse([]byte(script))
	if err != nil {
		t.Fatal(err)
	}
	return scripted.New(s)
}

func mustEvent(t *testing.T, source, sid string, p events.Payload) event.Event {
	t.Helper()
	ev, err := events.NewPayload(source, sid, p)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// planned returns the steps of the StepPlanned events waiting in the outbox.
func planned(t *testing.T, st state.Store) map[int]bool {
	t.Helper()
	pending, err := st.PendingOutbox(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]bool{}
	for _, p := range pending {
		var ev event.Event
		if err := json.Unmarshal(p.Payload, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type() == events.TypeStepPlanned {
			sp, err := events.Decode[events.StepPlanned](ev)
			if err != nil {
				t.Fatal(err)
			}
			out[sp.Step] = true
		}
	}
	return out
}

func completed(t *testing.T, sid string, step int) event.Event {
	return mustEvent(t, events.SourceExecutor, sid, events.StepCompleted{Step: step,
		Results: []events.ToolResult{{CallID: fmt.Sprintf("call-%d-1", step), Tool: "noop", OK: true, Output: json.RawMessage(`{}`)}}})
}

// TestCachedRuns: with CacheRuns, a session's next event is planned from
// the run the planner wrote, without reading the session back; without it,
// every event reads it.
func TestCachedRuns(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cache int
		reads int32
	}{{0, 3}, {16, 1}} { // the request's existence check, then one read per StepCompleted unless cached
		p, st := newPlanner(t, tc.cache)
		sid := "s-cache"
		if err := p.Handle(t.Context(), mustEvent(t, events.SourceClient, sid, events.AgentRequested{Prompt: "go"})); err != nil {
			t.Fatal(err)
		}
		for step := 1; step <= 2; step++ {
			if err := p.Handle(t.Context(), completed(t, sid, step)); err != nil {
				t.Fatalf("cache %d, StepCompleted %d: %v", tc.cache, step, err)
			}
		}
		if got := planned(t, st.Store); !got[1] || !got[2] {
			t.Fatalf("cache %d: planned steps %v, want 1 and 2", tc.cache, got)
		}
		if s, err := st.Store.GetSession(t.Context(), sid); err != nil || s.Status != state.StatusCompleted {
			t.Fatalf("cache %d: session %+v, %v; want completed", tc.cache, s, err)
		}
		if n := st.reads.Load(); n != tc.reads {
			t.Errorf("cache %d: %d session reads, want %d", tc.cache, n, tc.reads)
		}
	}
}

// TestStaleCachedRun: a session written behind the planner's back makes its
// cached run stale; the write planned from it conflicts, writes nothing, and
// the redelivery plans from the stored run.
func TestStaleCachedRun(t *testing.T) {
	t.Parallel()
	p, st := newPlanner(t, 16)
	sid := "s-stale"
	if err := p.Handle(t.Context(), mustEvent(t, events.SourceClient, sid, events.AgentRequested{Prompt: "go"})); err != nil {
		t.Fatal(err)
	}
	s, err := st.Store.GetSession(t.Context(), sid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Store.UpdateSession(t.Context(), s); err != nil { // another writer: same run, next version
		t.Fatal(err)
	}
	ev := completed(t, sid, 1)
	if err := p.Handle(t.Context(), ev); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("StepCompleted on a stale cached run: %v, want ErrConflict", err)
	}
	if got := planned(t, st.Store); got[2] {
		t.Fatal("step 2 planned from a stale run")
	}
	if err := p.Handle(t.Context(), ev); err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	if got := planned(t, st.Store); !got[2] {
		t.Fatalf("planned steps %v after the redelivery, want step 2", got)
	}
}

// TestCachedRunBehindTheStore: a cached run that is behind the store (here
// another planner moved the session on) must not make the planner drop the
// event the stored run awaits as late.
func TestCachedRunBehindTheStore(t *testing.T) {
	t.Parallel()
	p1, st := newPlanner(t, 16)
	p2 := planner.New(st, scriptedModel(t), registry(t), planner.Config{}, nil, nil)
	sid := "s-behind"
	if err := p1.Handle(t.Context(), mustEvent(t, events.SourceClient, sid, events.AgentRequested{Prompt: "go"})); err != nil {
		t.Fatal(err)
	}
	// p1 caches the run awaiting step 1; p2 moves it on to await step 2.
	if err := p2.Handle(t.Context(), completed(t, sid, 1)); err != nil {
		t.Fatal(err)
	}
	if err := p1.Handle(t.Context(), completed(t, sid, 2)); err != nil {
		t.Fatal(err)
	}
	if s, err := st.Store.GetSession(t.Context(), sid); err != nil || s.Status != state.StatusCompleted {
		t.Fatalf("session %+v, %v; want completed: the step 2 result was dropped as late", s.Status, err)
	}
}
