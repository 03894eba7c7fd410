package pattern_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/agentbus/agentbus/platform/pattern"
)

func TestMatcherAddRemoveReplace(t *testing.T) {
	t.Parallel()
	m := pattern.NewMatcher()
	add := func(name, p string) {
		t.Helper()
		if err := m.Add(name, pattern.MustCompile(p)); err != nil {
			t.Fatal(err)
		}
	}
	add("b-planner", `{"detail-type":["agentbus.agent.requested.v1"]}`)
	add("a-tools", `{"detail":{"toolname":["calculator"]}}`)
	add("c-any-step", `{"detail-type":[{"prefix":"agentbus.step."}]}`)
	ev := []byte(`{"detail-type":"agentbus.step.planned.v1","detail":{"toolname":"calculator"}}`)
	check := func(want ...string) {
		t.Helper()
		got, err := m.Match(ev)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Match = %v, want %v", got, want)
		}
	}
	check("a-tools", "c-any-step")
	add("a-tools", `{"detail":{"toolname":["other"]}}`) // replaces
	check("c-any-step")
	m.Remove("c-any-step")
	m.Remove("no-such-rule")
	check()
	if m.Len() != 2 {
		t.Fatalf("Len = %d, want 2", m.Len())
	}
	if err := m.Add("x", nil); err == nil {
		t.Fatal("Add(nil) succeeded")
	}
	if _, err := m.Match([]byte(`[1,2]`)); !errors.Is(err, pattern.ErrInvalidEvent) {
		t.Fatalf("Match(array) error = %v, want ErrInvalidEvent", err)
	}
}

// TestMatcherOrRuleReportedOnce: a rule whose $or branches both match is
// reported once.
func TestMatcherOrRuleReportedOnce(t *testing.T) {
	t.Parallel()
	m := pattern.NewMatcher()
	_ = m.Add("r", pattern.MustCompile(`{"$or":[{"a":[1]},{"b":[2]}]}`))
	got, err := m.Match([]byte(`{"a":1,"b":2}`))
	if err != nil || !slices.Equal(got, []string{"r"}) {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestMatcherConcurrent(t *testing.T) {
	t.Parallel()
	m := pattern.NewMatcher()
	_ = m.Add("base", pattern.MustCompile(`{"source":["s"]}`))
	ev := []byte(`{"source":"s","n":5}`)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				got, err := m.Match(ev)
				if err != nil || !slices.Contains(got, "base") {
					t.Errorf("Match = %v, %v", got, err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				name := fmt.Sprintf("r%d-%d", g, i%7)
				_ = m.Add(name, pattern.MustCompile(`{"n":[{"numeric":[">",1]}]}`))
				m.Remove(name)
			}
		}()
	}
	wg.Wait()
}
