// Package bustest is the one conformance suite every bus backend passes
// (the local SQLite bus, EventBridge+SQS). A backend's _test.go calls Run with
// the Features it promises and a constructor; the suite skips what is not
// promised. Every test builds its own rules and queues (unique names), so
// backends that share a server (moto) can run the tests in parallel.
package bustest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/agentbus/agentbus/platform/bus"
)

// Rule is one routing rule a test needs: events matching Pattern (an
// EventBridge event pattern, JSON) go to Queue, a queue with the given
// redrive and visibility settings and a DLQ.
type Rule struct {
	Name    string
	Pattern string
	Queue   string
	// MaxReceiveCount redrives to the DLQ on the receive after this many
	// (0: the backend's default; the suite always sets it).
	MaxReceiveCount int
	// Visibility is the queue's default visibility timeout.
	Visibility time.Duration
}

// Backend is one running instance of a bus under test.
type Backend struct {
	Publisher bus.Publisher
	Queue     func(name string) bus.Queue
	DLQ       func(name string) bus.DLQ
	// SendRaw puts body on a queue as is, bypassing rules (SQS SendMessage).
	// nil skips the tests of undecodable messages.
	SendRaw func(ctx context.Context, queue string, body []byte) error
	// Restart stops the backend as a crash would (nothing acked, nothing
	// flushed beyond what it promised) and opens it again on the same
	// storage. Required when Features.Persistent.
	Restart func(t *testing.T) Backend
}

// Features declares what a backend promises, and how patient the suite must
// be with it.
type Features struct {
	// Persistent backends keep messages across Restart.
	Persistent bool
	// ExactlyOnceWithinVisibility: a received message is never handed to
	// another receiver before its visibility timeout ends (standard SQS may
	// break this).
	ExactlyOnceWithinVisibility bool
	// DLQReason: a message redriven after max receives keeps the last
	// failure reason (bus.FailureNacker). DeadLetter's explicit reason is
	// required of every backend.
	DLQReason bool
	// MaxBatch is the most messages one Receive returns (default 10).
	MaxBatch int
	// MaxEventSize is the publish size limit (default 256 KiB).
	MaxEventSize int
	// Slow marks a remote backend: defaults below grow.
	Slow bool
	// Timeout is how long to wait for an expected delivery (default 5s;
	// slow: 30s).
	Timeout time.Duration
	// Quiet is how long to wait to be satisfied nothing more arrives
	// (default 300ms; slow: 3s).
	Quiet time.Duration
	// Visibility is the short visibility timeout used by redelivery tests
	// (default 500ms; slow: 2s). Backends with whole-second timeouts need a
	// whole number of seconds.
	Visibility time.Duration
	// NackDelay is the redelivery delay tested (default 500ms; slow: 2s).
	NackDelay time.Duration
	// Events is how many events the load tests publish (default 200; slow: 40).
	Events int
}

func (f Features) withDefaults() Features {
	pick := func(d *time.Duration, fast, slow time.Duration) {
		if *d <= 0 {
			*d = fast
			if f.Slow {
				*d = slow
			}
		}
	}
	pick(&f.Timeout, 5*time.Second, 30*time.Second)
	pick(&f.Quiet, 300*time.Millisecond, 3*time.Second)
	pick(&f.Visibility, 500*time.Millisecond, 2*time.Second)
	pick(&f.NackDelay, 500*time.Millisecond, 2*time.Second)
	if f.MaxBatch <= 0 {
		f.MaxBatch = 10
	}
	if f.MaxEventSize <= 0 {
		f.MaxEventSize = 256 * 1024
	}
	if f.Events <= 0 {
		f.Events = 200
		if f.Slow {
			f.Events = 40
		}
	}
	return f
}

// Constructor builds a fresh backend with the given rules (and their queues).
type Constructor func(t *testing.T, rules []Rule) Backend

// Run runs the whole suite against backends built by newBackend.
func Run(t *testing.T, f Features, newBackend Constructor) {
	f = f.withDefaults()
	tests := []struct {
		name string
		fn   func(t *testing.T, s *suite)
	}{
		{"PublishReceive", testPublishReceive},
		{"FanOut", testFanOut},
		{"PatternFiltering", testPatternFiltering},
		{"BatchLimits", testBatchLimits},
		{"LongPollWakeup", testLongPollWakeup},
		{"ReceiveCancel", testReceiveCancel},
		{"RedeliveryAfterVisibility", testRedeliveryAfterVisibility},
		{"ExtendVisibility", testExtendVisibility},
		{"NackDelay", testNackDelay},
		{"NackZero", testNackZero},
		{"DLQAfterMaxReceives", testDLQAfterMaxReceives},
		{"DeadLetterWithReason", testDeadLetterWithReason},
		{"Oversize", testOversize},
		{"InvalidEvent", testInvalidEvent},
		{"ConcurrentConsumers", testConcurrentConsumers},
		{"WorkerEndToEnd", testWorkerEndToEnd},
		{"WorkerMaxReceivesToDLQ", testWorkerMaxReceives},
		{"WorkerDecodeErrorToDLQ", testWorkerDecodeError},
		{"WorkerGracefulShutdown", testWorkerGracefulShutdown},
		{"WorkerShutdownTimeoutReleases", testWorkerShutdownTimeout},
		{"RestartWithoutLoss", testRestart},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, &suite{f: f, newBackend: newBackend, prefix: uniq()})
		})
	}
}

type suite struct {
	f          Features
	newBackend Constructor
	prefix     string
}

// uniq is a short random name part: SQS names are at most 80 characters.
func uniq() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "bt" + hex.EncodeToString(b[:])
}

// q names a queue of this test.
func (s *suite) q(suffix string) string { return s.prefix + "-" + suffix }

// detailType is unique per test so that tests sharing one bus (EventBridge
// on moto) never see each other's events.
func (s *suite) detailType(kind string) string { return "bustest." + s.prefix + "." + kind + ".v1" }

// rule routes one detail-type of this test to a queue.
func (s *suite) rule(queue, kind string, maxReceives int) Rule {
	return Rule{
		Name:            s.prefix + "-" + queue + "-" + kind,
		Pattern:         fmt.Sprintf(`{"detail-type":[%q]}`, s.detailType(kind)),
		Queue:           s.q(queue),
		MaxReceiveCount: maxReceives,
		Visibility:      30 * time.Second,
	}
}

// newEvent builds a valid CloudEvent of this test.
func (s *suite) newEvent(t testing.TB, kind string, data any, ext map[string]any) event.Event {
	t.Helper()
	ev := event.New()
	ev.SetID(uuid.NewString())
	ev.SetSource("bustest/" + s.prefix)
	ev.SetType(s.detailType(kind))
	ev.SetTime(time.Now())
	ev.SetExtension("sessionid", "s-"+s.prefix)
	for k, v := range ext {
		ev.SetExtension(k, v)
	}
	if data == nil {
		data = map[string]any{"n": 1}
	}
	if err := ev.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatalf("set data: %v", err)
	}
	return ev
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*s.f.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// receiveN receives until n messages arrived or Timeout passed; it does not
// ack them.
func (s *suite) receiveN(t *testing.T, q bus.Queue, n int, vis time.Duration) []bus.Message {
	t.Helper()
	ctx := s.ctx(t)
	deadline := time.Now().Add(s.f.Timeout)
	var got []bus.Message
	for len(got) < n {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("queue %s: received %d of %d messages within %s", q.Name(), len(got), n, s.f.Timeout)
		}
		msgs, err := q.Receive(ctx, min(n-len(got), s.f.MaxBatch), min(left, 20*time.Second), vis)
		if err != nil {
			t.Fatalf("queue %s: receive: %v", q.Name(), err)
		}
		got = append(got, msgs...)
	}
	return got
}

// expectNone asserts nothing arrives on q within Quiet.
func (s *suite) expectNone(t *testing.T, q bus.Queue) {
	t.Helper()
	msgs, err := q.Receive(s.ctx(t), s.f.MaxBatch, s.f.Quiet, s.f.Visibility)
	if err != nil {
		t.Fatalf("queue %s: receive: %v", q.Name(), err)
	}
	if len(msgs) > 0 {
		t.Fatalf("queue %s: got %d unexpected message(s), first %s", q.Name(), len(msgs), describe(msgs[0]))
	}
}

func (s *suite) ack(t *testing.T, q bus.Queue, msgs ...bus.Message) {
	t.Helper()
	for i := 0; i < len(msgs); i += s.f.MaxBatch {
		var rs []string
		for _, m := range msgs[i:min(len(msgs), i+s.f.MaxBatch)] {
			rs = append(rs, m.Receipt)
		}
		if err := q.Ack(s.ctx(t), rs...); err != nil {
			t.Fatalf("queue %s: ack: %v", q.Name(), err)
		}
	}
}

func (s *suite) publish(t *testing.T, p bus.Publisher, evs ...event.Event) {
	t.Helper()
	if err := p.Publish(s.ctx(t), evs...); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// waitDLQ waits until the DLQ holds n dead letters and returns them.
func (s *suite) waitDLQ(t *testing.T, d bus.DLQ, n int) []bus.DeadLetter {
	t.Helper()
	deadline := time.Now().Add(s.f.Timeout)
	for {
		got, err := d.List(s.ctx(t), 10)
		if err != nil {
			t.Fatalf("dlq list: %v", err)
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("dlq holds %d dead letters after %s, want %d", len(got), s.f.Timeout, n)
		}
		time.Sleep(s.f.Quiet / 4)
	}
}

func describe(m bus.Message) string {
	if m.DecodeErr != nil {
		return fmt.Sprintf("undecodable message %s (%v)", m.ID, m.DecodeErr)
	}
	return fmt.Sprintf("event %s type %s", m.Event.ID(), m.Event.Type())
}

func ids(msgs []bus.Message) map[string]int {
	out := map[string]int{}
	for _, m := range msgs {
		out[m.Event.ID()]++
	}
	return out
}

func mustDecode(t *testing.T, m bus.Message) {
	t.Helper()
	if m.DecodeErr != nil {
		t.Fatalf("message %s: decode: %v", m.ID, m.DecodeErr)
	}
}
