package planner

import (
	"slices"
	"testing"

	"github.com/agentbus/agentbus/platform/model"
	"github.com/agentbus/agentbus/platform/state"
)

// TestRunCache: copies in and out, the later version kept when puts come
// out of order, ended runs dropped, the least recently used evicted past
// the count and past the byte budget.
func TestRunCache(t *testing.T) {
	t.Parallel()
	c := newRunCache(2, 1000)
	running := func(id string, version int64) state.Session {
		return state.Session{ID: id, Version: version, Status: state.StatusRunning}
	}
	r := &run{Messages: []model.Message{model.UserText("hi")}, Awaiting: 1}
	c.put(running("a", 2), r, 10)
	r.Messages[0] = model.UserText("changed after put")
	r.Awaiting = 9
	_, got, ok := c.get("a")
	if !ok || got.Awaiting != 1 || got.Messages[0].Content[0].Text != "hi" {
		t.Fatalf("get(a) = %+v, %v; want the run as put", got, ok)
	}
	got.Messages = append(got.Messages, model.UserText("appended by a turn"))
	if _, again, _ := c.get("a"); len(again.Messages) != 1 {
		t.Fatalf("a caller's append reached the cache: %d messages", len(again.Messages))
	}
	c.put(running("a", 1), &run{Awaiting: 7}, 10) // an older write, put late
	if s, got, _ := c.get("a"); s.Version != 2 || got.Awaiting != 1 {
		t.Fatalf("after a late put of version 1: version %d awaiting %d, want 2 and 1", s.Version, got.Awaiting)
	}
	c.put(state.Session{ID: "a", Version: 3, Status: state.StatusCompleted}, &run{}, 10)
	if _, _, ok := c.get("a"); ok {
		t.Fatal("an ended run is still cached")
	}
	c.put(running("b", 1), &run{}, 10)
	c.put(running("c", 1), &run{}, 10)
	c.get("b")
	c.put(running("d", 1), &run{}, 10) // evicts c, the least recently used
	for id, want := range map[string]bool{"b": true, "c": false, "d": true} {
		if _, _, ok := c.get(id); ok != want {
			t.Errorf("cached(%s) = %v, want %v", id, ok, want)
		}
	}
	// Past the byte budget the least recently used go first, below max too.
	cb := newRunCache(10, 100)
	cached := func(ids ...string) []string {
		var out []string
		for _, id := range ids {
			if _, ok := cb.byID[id]; ok {
				out = append(out, id)
			}
		}
		return out
	}
	cb.put(running("p", 1), &run{}, 40)
	cb.put(running("q", 1), &run{}, 40)
	cb.put(running("r", 1), &run{}, 40) // 120 bytes > 100: p goes
	if got := cached("p", "q", "r"); !slices.Equal(got, []string{"q", "r"}) || cb.bytes != 80 {
		t.Fatalf("cached %v (%d bytes), want q and r (80)", got, cb.bytes)
	}
	cb.put(running("q", 2), &run{}, 90) // q grows: 130 bytes, r is the least recent
	if got := cached("q", "r"); !slices.Equal(got, []string{"q"}) || cb.bytes != 90 {
		t.Fatalf("cached %v (%d bytes), want q alone (90)", got, cb.bytes)
	}
	cb.drop("q")
	if cb.bytes != 0 || cb.order.Len() != 0 {
		t.Fatalf("after drop: %d bytes, %d runs; want none", cb.bytes, cb.order.Len())
	}
	if newRunCache(0, 100) != nil {
		t.Error("CacheRuns 0 made a cache")
	}
	var off *runCache // CacheRuns 0
	off.put(running("x", 1), &run{}, 10)
	if _, _, ok := off.get("x"); ok {
		t.Error("a nil cache returned a run")
	}
}
