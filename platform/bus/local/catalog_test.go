package local_test

import (
	"context"
	"testing"
	"time"

	"github.com/agentbus/agentbus/events/rules"
	"github.com/agentbus/agentbus/platform/bus/local"
)

// TestCatalogRoutes loads the project's rule catalog into the bus and checks
// that a StepPlanned event reaches the executor queue with its settings.
func TestCatalogRoutes(t *testing.T) {
	t.Parallel()
	cat, err := rules.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	rs, qs, err := local.FromCatalog(cat)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != len(cat) || len(qs) == 0 {
		t.Fatalf("%d rules, %d queues from a catalog of %d", len(rs), len(qs), len(cat))
	}
	b := open(t, local.Options{Rules: rs, Queues: qs})
	ev := newEv("1", "agentbus.step.planned.v1")
	if err := b.Publish(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	msgs, err := b.Queue("executor").Receive(context.Background(), 10, 2*time.Second, 0)
	if err != nil || len(msgs) == 0 || msgs[0].Event.ID() != "1" {
		t.Fatalf("executor queue: %d messages, %v", len(msgs), err)
	}
	if _, _, err := local.FromCatalog([]rules.Rule{
		{Name: "a", EventPattern: []byte(`{"source":["x"]}`), Target: rules.Target{Queue: "q", MaxReceiveCount: 1, VisibilityTimeoutSeconds: 1}},
		{Name: "b", EventPattern: []byte(`{"source":["y"]}`), Target: rules.Target{Queue: "q", MaxReceiveCount: 2, VisibilityTimeoutSeconds: 1}},
	}); err == nil {
		t.Error("conflicting queue settings accepted")
	}
}
