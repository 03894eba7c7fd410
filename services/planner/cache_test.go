package planner

import (
	"testing"

	"github.com/agentbus/agentbus/platform/model"
	"github.com/agentbus/agentbus/platform/state"
)

// TestRunCache: copies in and out, the later version kept when puts come
// out of order, ended runs dropped, the least recently used evicted.
func TestRunCache(t *testing.T) {
	t.Parallel()
	c := newRunCache(2)
	running := func(id string, version int64) state.Session {
		return state.Session{ID: id, Version: version, Status: state.StatusRunning}
	}
	r := &run{Messages: []model.Message{model.UserText("hi")}, Awaiting: 1}
	c.put(running("a", 2), r)
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
	c.put(running("a", 1), &run{Awaiting: 7}) // an older write, put late
	if s, got, _ := c.get("a"); s.Version != 2 || got.Awaiting != 1 {
		t.Fatalf("after a late put of version 1: version %d awaiting %d, want 2 and 1", s.Version, got.Awaiting)
	}
	c.put(state.Session{ID: "a", Version: 3, Status: state.StatusCompleted}, &run{})
	if _, _, ok := c.get("a"); ok {
		t.Fatal("an ended run is still cached")
	}
	c.put(running("b", 1), &run{})
	c.put(running("c", 1), &run{})
	c.get("b")
	c.put(running("d", 1), &run{}) // evicts c, the least recently used
	for id, want := range map[string]bool{"b": true, "c": false, "d": true} {
		if _, _, ok := c.get(id); ok != want {
			t.Errorf("cached(%s) = %v, want %v", id, ok, want)
		}
	}
	var off *runCache // CacheRuns 0
	off.put(running("x", 1), &run{})
	if _, _, ok := off.get("x"); ok {
		t.Error("a nil cache returned a run")
	}
}
