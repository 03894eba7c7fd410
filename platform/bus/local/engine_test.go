package local

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// inspectReq runs f on the engine goroutine.
type inspectReq struct {
	errReq
	f func(e *engine)
}

func (r *inspectReq) apply(e *engine, _ time.Time) { r.f(e) }

// TestAckedMessagesLeaveEveryIndex checks that acked, extended, nacked and
// dead-lettered messages do not linger in the queue's indexes (they would
// keep their bodies in memory until their old visibility timeout).
func TestAckedMessagesLeaveEveryIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := Open(ctx, Options{Rules: []Rule{{Name: "r", Pattern: []byte(`{"source":["s"]}`), Queue: "q"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := range 50 {
		ev := event.New()
		ev.SetID(fmt.Sprint(i))
		ev.SetSource("s")
		ev.SetType("t")
		if err := b.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	q := b.Queue("q")
	handled := 0
	for handled < 50 {
		msgs, err := q.Receive(ctx, 7, time.Second, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range msgs {
			if err := q.Extend(ctx, m.Receipt, 2*time.Hour); err != nil {
				t.Fatal(err)
			}
			switch {
			case i == 0 && m.ReceiveCount == 1:
				err = q.Nack(ctx, m.Receipt, 0) // comes back once
			case i == 1:
				err = q.DeadLetter(ctx, m, "x")
				handled++
			default:
				err = q.Ack(ctx, m.Receipt)
				handled++
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	r := &inspectReq{errReq: newErrReq(), f: func(e *engine) {
		qs := e.queues["q"]
		if len(qs.msgs) != 0 || len(qs.timed) != 0 {
			t.Errorf("after handling everything: %d messages, %d timed entries", len(qs.msgs), len(qs.timed))
		}
		for _, m := range qs.ready[qs.head:] {
			if m.state != stGone {
				t.Errorf("message %d still ready", m.id)
			}
		}
	}}
	if err := b.do(ctx, r, r.ch); err != nil {
		t.Fatal(err)
	}
}
