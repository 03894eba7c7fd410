// This is an external test package so it may import platform/pattern:
// events/ itself must not depend on platform/, but its tests may, and the
// catalog is only proven routable by compiling every pattern with the engine
// the embedded bus uses.
package rules_test

import (
	"encoding/json"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/events/rules"
	"github.com/agentbus/agentbus/platform/pattern"
)

func TestCatalogValidAndCompiles(t *testing.T) {
	t.Parallel()
	rs, err := rules.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) == 0 {
		t.Fatal("empty catalog")
	}
	for _, r := range rs {
		if err := rules.Validate(r); err != nil {
			t.Errorf("%s: %v", r.Name, err)
		}
		if _, err := pattern.Compile(r.EventPattern); err != nil {
			t.Errorf("%s: pattern does not compile: %v", r.Name, err)
		}
	}
	qs, err := rules.Queues(rs)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, q := range qs {
		names = append(names, q.Name)
	}
	if want := []string{"executor", "memory", "planner", "toolgateway"}; !reflect.DeepEqual(names, want) {
		t.Errorf("queues = %v, want %v", names, want)
	}
}

// TestCatalogRoutes publishes one event of every kind through the EventBridge
// envelope and checks which queues the catalog sends it to.
func TestCatalogRoutes(t *testing.T) {
	t.Parallel()
	rs, err := rules.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	m := pattern.NewMatcher()
	queueOf := map[string]string{}
	for _, r := range rs {
		p, err := pattern.Compile(r.EventPattern)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Add(r.Name, p); err != nil {
			t.Fatal(err)
		}
		queueOf[r.Name] = r.Target.Queue
	}
	in := json.RawMessage(`{}`)
	tool := func(name string) events.ToolInvocationRequested {
		return events.ToolInvocationRequested{Step: 1, CallID: "c", Tool: name, Input: in, IdempotencyKey: "s/1/c"}
	}
	cases := []struct {
		name   string
		source string
		data   events.Payload
		queues []string
	}{
		{"agent requested", events.SourceClient, events.AgentRequested{Prompt: "p"}, []string{"memory", "planner"}},
		{"agent requested, caller's own source", "acme/frontend", events.AgentRequested{Prompt: "p"}, []string{"memory", "planner"}},
		{"cancel requested", events.SourceClient, events.AgentCancelRequested{}, []string{"memory", "planner"}},
		{"step completed", events.SourceExecutor, events.StepCompleted{Step: 1}, []string{"memory", "planner"}},
		{"step planned", events.SourcePlanner, events.StepPlanned{Step: 1}, []string{"executor", "memory"}},
		{"tool completed", events.SourceToolGateway, events.ToolInvocationCompleted{Step: 1, Tool: "clock"}, []string{"executor", "memory"}},
		{"tool failed", events.SourceExecutor, events.ToolInvocationFailed{Step: 1, Tool: "x"}, []string{"executor", "memory"}},
		{"calculator", events.SourceExecutor, tool("calculator"), []string{"memory", "toolgateway"}},
		{"http_get", events.SourceExecutor, tool("http_get"), []string{"memory", "toolgateway"}},
		{"clock", events.SourceExecutor, tool("clock"), []string{"memory", "toolgateway"}},
		{"memory_search", events.SourceExecutor, tool("memory_search"), []string{"memory", "toolgateway"}},
		{"plug-in tool is not the gateway's", events.SourceExecutor, tool("refund"), []string{"memory"}},
		{"agent completed", events.SourcePlanner, events.AgentCompleted{}, []string{"memory"}},
		{"agent failed", events.SourcePlanner, events.AgentFailed{}, []string{"memory"}},
		{"saga started", events.SourceSaga, events.SagaStarted{}, []string{"memory"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev, err := events.NewPayload(tc.source, "s", tc.data)
			if err != nil {
				t.Fatal(err)
			}
			env, err := events.ToEnvelope(ev)
			if err != nil {
				t.Fatal(err)
			}
			matched, err := m.Match(events.EnvelopeJSON(env, "id", time.Now(), "000000000000", "us-east-1"))
			if err != nil {
				t.Fatal(err)
			}
			got := []string{}
			seen := map[string]bool{}
			for _, name := range matched {
				if q := queueOf[name]; !seen[q] {
					seen[q] = true
					got = append(got, q)
				}
			}
			sort.Strings(got)
			if !reflect.DeepEqual(got, tc.queues) {
				t.Errorf("routed to %v (rules %v), want %v", got, matched, tc.queues)
			}
		})
	}

	// A plug-in's event type outside agentbus.* reaches no project queue.
	ev, err := events.New("com.example.order.placed.v1", "example/shop", "s", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	env, err := events.ToEnvelope(ev)
	if err != nil {
		t.Fatal(err)
	}
	if matched, err := m.Match(events.EnvelopeJSON(env, "id", time.Now(), "0", "r")); err != nil || len(matched) != 0 {
		t.Errorf("foreign event matched %v, %v", matched, err)
	}
}
