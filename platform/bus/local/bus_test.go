package local_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/bus/local"
)

func newEv(id, typ string) event.Event {
	ev := event.New()
	ev.SetID(id)
	ev.SetSource("test")
	ev.SetType(typ)
	ev.SetExtension("sessionid", "s1")
	return ev
}

func open(t *testing.T, opts local.Options) *local.Bus {
	t.Helper()
	b, err := local.Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func rule(name, typ, queue string) local.Rule {
	return local.Rule{Name: name, Pattern: []byte(`{"detail-type":["` + typ + `"]}`), Queue: queue}
}

func receive1(t *testing.T, q *local.Queue) bus.Message {
	t.Helper()
	msgs, err := q.Receive(context.Background(), 1, 2*time.Second, time.Minute)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("receive: %d messages, %v", len(msgs), err)
	}
	return msgs[0]
}

func TestOpenRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string]local.Options{
		"bad pattern":     {Rules: []local.Rule{{Name: "r", Pattern: []byte(`{"a":"not-an-array"}`), Queue: "q"}}},
		"rule no name":    {Rules: []local.Rule{{Pattern: []byte(`{"a":["x"]}`), Queue: "q"}}},
		"bad rule queue":  {Rules: []local.Rule{{Name: "r", Pattern: []byte(`{"a":["x"]}`), Queue: "no spaces"}}},
		"bad queue name":  {Queues: []local.QueueConfig{{Name: ""}}},
		"negative max":    {Queues: []local.QueueConfig{{Name: "q", MaxReceiveCount: -1}}},
		"bad synchronous": {Synchronous: "SOMETIMES"},
	} {
		if _, err := local.Open(context.Background(), opts); !errors.Is(err, local.ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
}

func TestSecondOpenOfFileFails(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "bus.db")
	b := open(t, local.Options{Path: path})
	if err := b.Publish(context.Background(), newEv("1", "x")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b2, err := local.Open(ctx, local.Options{Path: path})
	if err == nil {
		b2.Close()
		t.Fatal("a second Open of a bus file in use succeeded")
	}
	if !errors.Is(err, local.ErrInUse) {
		t.Errorf("second open: %v, want ErrInUse", err)
	}
	b.Close()
	b3 := open(t, local.Options{Path: path})
	if st, err := b3.Stats(ctx, "x"); err != nil {
		t.Errorf("open after the first closed: %+v, %v", st, err)
	}
}

func TestStaleAndMalformedReceipts(t *testing.T) {
	t.Parallel()
	b := open(t, local.Options{Rules: []local.Rule{rule("r", "t", "q")}})
	ctx := context.Background()
	if err := b.Publish(ctx, newEv("1", "t")); err != nil {
		t.Fatal(err)
	}
	q := b.Queue("q")
	first := receive1(t, q)
	if err := q.Nack(ctx, first.Receipt, 0); err != nil {
		t.Fatal(err)
	}
	second := receive1(t, q)
	for name, err := range map[string]error{
		"ack":    q.Ack(ctx, first.Receipt),
		"nack":   q.Nack(ctx, first.Receipt, 0),
		"extend": q.Extend(ctx, first.Receipt, time.Minute),
		"dead":   q.DeadLetter(ctx, first, "x"),
	} {
		if !errors.Is(err, bus.ErrStaleReceipt) {
			t.Errorf("%s with a superseded receipt: err = %v, want ErrStaleReceipt", name, err)
		}
	}
	if err := q.Ack(ctx, "garbage", second.Receipt); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("ack with a malformed receipt: err = %v", err)
	}
	// The good receipt in the same call was acked.
	if st, _ := b.Stats(ctx, "q"); st.Ready+st.InFlight+st.Delayed != 0 {
		t.Errorf("stats after ack = %+v, want empty", st)
	}
}

func TestStatsPurgeAndQueues(t *testing.T) {
	t.Parallel()
	b := open(t, local.Options{
		Rules:  []local.Rule{rule("r", "t", "q")},
		Queues: []local.QueueConfig{{Name: "q", MaxReceiveCount: 1}},
	})
	ctx := context.Background()
	for _, id := range []string{"1", "2", "3", "4"} {
		if err := b.Publish(ctx, newEv(id, "t")); err != nil {
			t.Fatal(err)
		}
	}
	q := b.Queue("q")
	inflight := receive1(t, q)
	delayed := receive1(t, q)
	if err := q.Nack(ctx, delayed.Receipt, time.Hour); err != nil {
		t.Fatal(err)
	}
	dead := receive1(t, q)
	if err := q.DeadLetter(ctx, dead, "bad"); err != nil {
		t.Fatal(err)
	}
	st, err := b.Stats(ctx, "q")
	if err != nil {
		t.Fatal(err)
	}
	if want := (local.Stats{Ready: 1, InFlight: 1, Delayed: 1, Dead: 1}); st != want {
		t.Errorf("stats = %+v, want %+v", st, want)
	}
	_ = inflight
	n, err := b.Purge(ctx, "q")
	if err != nil || n != 3 {
		t.Errorf("purge = %d, %v; want 3", n, err)
	}
	if st, _ := b.Stats(ctx, "q"); st != (local.Stats{Dead: 1}) {
		t.Errorf("stats after purge = %+v (the DLQ stays)", st)
	}
	if err := b.Publish(ctx, newEv("5", "t")); err != nil {
		t.Fatal(err)
	}
	if m := receive1(t, q); m.Event.ID() != "5" {
		t.Errorf("after purge got %s", m.Event.ID())
	}
	names, err := b.Queues(ctx)
	if err != nil || !slices.Equal(names, []string{"q"}) {
		t.Errorf("queues = %v, %v", names, err)
	}
}

func TestRulesAtRunTime(t *testing.T) {
	t.Parallel()
	b := open(t, local.Options{})
	ctx := context.Background()
	if err := b.Publish(ctx, newEv("dropped", "t")); err != nil {
		t.Fatalf("an event no rule matches is dropped, not an error: %v", err)
	}
	if err := b.AddRule(local.Rule{Name: "r", Pattern: []byte(`{"detail-type":["t"],"detail":{"sessionid":["s1"]}}`), Queue: "q"}); err != nil {
		t.Fatal(err)
	}
	if err := b.AddRule(local.Rule{Name: "bad", Pattern: []byte(`{"detail-type":[{"nope":1}]}`), Queue: "q"}); !errors.Is(err, local.ErrInvalidConfig) {
		t.Errorf("bad rule: err = %v", err)
	}
	if err := b.Publish(ctx, newEv("routed", "t")); err != nil {
		t.Fatal(err)
	}
	b.RemoveRule("r")
	if err := b.Publish(ctx, newEv("after-remove", "t")); err != nil {
		t.Fatal(err)
	}
	msgs, err := b.Queue("q").Receive(ctx, 10, 100*time.Millisecond, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].Event.ID() != "routed" {
		t.Errorf("got %d messages, want only the one routed while the rule existed", len(msgs))
	}
}

func TestDelayAndDLQSurviveRestart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "bus.db")
	opts := local.Options{Path: path, Rules: []local.Rule{rule("r", "t", "q")}, Queues: []local.QueueConfig{{Name: "q", MaxReceiveCount: 3}}}
	ctx := context.Background()
	b, err := local.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, newEv("delayed", "t"), newEv("dead", "t")); err != nil {
		t.Fatal(err)
	}
	q := b.Queue("q")
	msgs, err := q.Receive(ctx, 2, time.Second, time.Minute)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("receive: %d, %v", len(msgs), err)
	}
	for _, m := range msgs {
		if m.Event.ID() == "delayed" {
			err = q.NackFailure(ctx, m.Receipt, 500*time.Millisecond, "later")
		} else {
			err = q.DeadLetter(ctx, m, "poison")
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	if err := b.Publish(ctx, newEv("x", "t")); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("publish after close: %v", err)
	}
	if _, err := q.Receive(ctx, 1, 0, 0); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("receive after close: %v", err)
	}

	b = open(t, opts)
	q = b.Queue("q")
	start := time.Now()
	m := receive1(t, q)
	if m.Event.ID() != "delayed" || m.ReceiveCount != 2 {
		t.Errorf("got %s with ReceiveCount %d, want delayed with 2", m.Event.ID(), m.ReceiveCount)
	}
	if time.Since(start) < 200*time.Millisecond {
		t.Errorf("delayed message visible %s after restart: its delay was lost", time.Since(start))
	}
	dl, err := b.DLQ("q").List(ctx, 10)
	if err != nil || len(dl) != 1 || dl[0].Reason != "poison" || !strings.Contains(string(dl[0].Body), `"dead"`) {
		t.Errorf("dlq after restart = %+v, %v", dl, err)
	}
}

func TestSendRawAndReceiveValidation(t *testing.T) {
	t.Parallel()
	b := open(t, local.Options{MaxEventSize: 100})
	ctx := context.Background()
	if err := b.SendRaw(ctx, "q", []byte(strings.Repeat("x", 101))); !errors.Is(err, bus.ErrTooLarge) {
		t.Errorf("oversize raw: %v", err)
	}
	if err := b.SendRaw(ctx, "bad name", []byte("x")); err == nil {
		t.Error("raw send to an invalid queue name succeeded")
	}
	if err := b.SendRaw(ctx, "q", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	m := receive1(t, b.Queue("q"))
	if m.DecodeErr == nil || string(m.Body) != "not json" {
		t.Errorf("raw message: DecodeErr %v body %q", m.DecodeErr, m.Body)
	}
	q := b.Queue("q")
	for _, max := range []int{0, local.MaxReceiveBatch + 1} {
		if _, err := q.Receive(ctx, max, 0, 0); err == nil {
			t.Errorf("receive(max=%d) succeeded", max)
		}
	}
	if _, err := q.Receive(ctx, 1, -time.Second, 0); err == nil {
		t.Error("negative wait accepted")
	}
}
