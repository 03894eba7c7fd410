package claimcheck_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/bus/claimcheck"
	"github.com/agentbus/agentbus/platform/bus/local"
)

// TestLocalBusEndToEnd sends a 5 MB event through the embedded bus, whose
// own limit is the EventBridge default, and a rule that routes on an
// extension: the claim check keeps it under the limit, the rule still
// matches, and the handler gets the whole event.
func TestLocalBusEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b, err := local.Open(ctx, local.Options{
		MaxEventSize: claimcheck.DefaultLimit,
		Rules: []local.Rule{{
			Name:    "big-requests",
			Pattern: json.RawMessage(`{"detail-type":["agentbus.agent.requested.v1"],"detail":{"sessionid":["sess-big"]}}`),
			Queue:   "planner",
		}},
		Queues: []local.QueueConfig{{Name: "planner"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	store := newStore(t)

	big := newEvent(t, "sess-big", 5<<20)
	// Without the claim check the bus refuses it.
	if err := b.Publish(ctx, big); !errors.Is(err, bus.ErrTooLarge) {
		t.Fatalf("bare Publish of 5 MB = %v, want ErrTooLarge", err)
	}
	p, err := claimcheck.NewPublisher(b, store)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, big); err != nil {
		t.Fatalf("Publish through the claim check: %v", err)
	}
	msgs, err := b.Queue("planner").Receive(ctx, 10, 2*time.Second, time.Minute)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Receive = %d messages, %v", len(msgs), err)
	}
	if len(msgs[0].Body) > claimcheck.DefaultLimit {
		t.Errorf("queued body is %d bytes, over the limit", len(msgs[0].Body))
	}
	r, err := claimcheck.NewResolver(store)
	if err != nil {
		t.Fatal(err)
	}
	var got event.Event
	h := bus.Chain(func(_ context.Context, ev event.Event) error { got = ev; return nil }, r.Middleware)
	if err := h(ctx, msgs[0].Event); err != nil {
		t.Fatalf("handler: %v", err)
	}
	if !bytes.Equal(mustJSON(t, got), mustJSON(t, big)) {
		t.Fatal("the handler's event differs from the published one")
	}
	if err := b.Queue("planner").Ack(ctx, msgs[0].Receipt); err != nil {
		t.Fatal(err)
	}
	// Cleaning the session removes its blob.
	if err := store.DeletePrefix(context.Background(), claimcheck.SessionKeyPrefix(claimcheck.DefaultKeyPrefix, "sess-big")); err != nil {
		t.Fatal(err)
	}
	if err := h(ctx, msgs[0].Event); !errors.Is(err, claimcheck.ErrMissingBlob) || !errors.Is(err, bus.ErrPermanent) {
		t.Fatalf("after the blob is gone: %v, want a permanent missing-blob error", err)
	}
}
