// Package bus declares what agentbus needs from an event bus: a Publisher that
// routes CloudEvents to queues by rule, and Queues that hand those events to
// handlers with at-least-once delivery. Implementations live in sub-packages
// (local: SQLite, embedded; eventbridge + sqs: AWS). The conformance suite every
// implementation passes is in bustest.
package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Publisher publishes CloudEvents to the bus. Publishing a batch is atomic per
// event (every matching queue gets the event, or none does); a batch may
// partially fail, in which case the returned error names the events that failed
// (see PublishError).
type Publisher interface {
	Publish(ctx context.Context, events ...event.Event) error
}

// Message is one delivery of one event from a queue.
type Message struct {
	// ID identifies the message in its queue (SQS MessageId, local row id).
	ID string
	// Receipt is the handle for Ack, Nack, Extend and DeadLetter on this
	// delivery (an SQS receipt handle changes with every receive).
	Receipt string
	// Event is the decoded CloudEvent. It is the zero Event when DecodeErr is set.
	Event event.Event
	// Body is the raw payload as it sat in the queue; kept so that a message
	// that cannot be decoded can still be dead-lettered whole.
	Body []byte
	// DecodeErr is set when Body is not a valid CloudEvent (or envelope). Such a
	// message can never succeed: the worker dead-letters it with this reason.
	DecodeErr error
	// ReceiveCount counts deliveries of this message, this one included.
	ReceiveCount int
	// SentAt is when the message entered the queue, if known.
	SentAt time.Time
}

// Queue is one subscriber queue. Receive returns up to max messages, waiting
// up to wait for the first one (long poll); each returned message is invisible
// to other receivers for visibility unless acked, nacked or extended.
type Queue interface {
	Name() string
	Receive(ctx context.Context, max int, wait, visibility time.Duration) ([]Message, error)
	// Ack deletes messages that were handled. It returns an error naming the
	// receipts that could not be deleted (they will be redelivered).
	Ack(ctx context.Context, receipts ...string) error
	// Nack makes a message visible again after delay.
	Nack(ctx context.Context, receipt string, delay time.Duration) error
	// Extend pushes a message's visibility timeout to now+visibility (heartbeat).
	Extend(ctx context.Context, receipt string, visibility time.Duration) error
	// DeadLetter moves a message that can never succeed to the queue's DLQ
	// with reason, and removes it from this queue.
	DeadLetter(ctx context.Context, m Message, reason string) error
}

// FailureNacker is implemented by queues that can keep the reason of a failed
// delivery on the message, so that one redriven to the DLQ after its queue's
// max receive count still says why it failed. The Worker uses it instead of
// Nack when the queue has it (SQS cannot carry a reason on its own redrive,
// so its queue does not implement it).
type FailureNacker interface {
	NackFailure(ctx context.Context, receipt string, delay time.Duration, reason string) error
}

// DeadLetter is a message parked in a queue's DLQ.
type DeadLetter struct {
	ID           string
	Body         []byte
	Reason       string
	ReceiveCount int
	DeadAt       time.Time
}

// DLQ inspects and redrives a queue's dead-letter queue.
type DLQ interface {
	// List returns up to max dead letters without removing them.
	List(ctx context.Context, max int) ([]DeadLetter, error)
	// Redrive moves up to max dead letters back to the source queue and
	// reports how many moved.
	Redrive(ctx context.Context, max int) (int, error)
}

// Handler handles one event. Returning nil acks the message; returning an
// error retries it (nack with backoff) until the queue's max receive count
// sends it to the DLQ; an error wrapping ErrPermanent dead-letters it at once.
type Handler func(ctx context.Context, ev event.Event) error

// Middleware wraps a Handler (retry, recover, dedupe, timeout, tracing).
type Middleware func(Handler) Handler

// ErrPermanent marks a failure that retrying cannot fix (malformed event,
// schema violation). Wrap it: fmt.Errorf("...: %w", bus.ErrPermanent).
var ErrPermanent = errors.New("permanent failure")

// ErrStaleReceipt is returned (wrapped) for a receipt that no longer names
// the current delivery of a message: it was acked, dead-lettered, or
// delivered again since.
var ErrStaleReceipt = errors.New("stale or unknown receipt")

// ErrClosed is returned by a bus or queue used after Close.
var ErrClosed = errors.New("bus closed")

// ErrTooLarge is returned by a Publisher for an event over the bus's size
// limit that no claim check offloaded.
var ErrTooLarge = errors.New("event too large")

// PublishFailure is one event of a batch that could not be published.
type PublishFailure struct {
	// Index is the event's position in the Publish call.
	Index int
	// ID and Source identify the event (CloudEvents uniqueness).
	ID, Source string
	Err        error
}

// PublishError reports the events of a Publish call that failed; the others
// were published. errors.Is/As see through it to each failure's cause (e.g.
// ErrTooLarge).
type PublishError struct {
	Failures []PublishFailure
}

// Error names every failed event.
func (e *PublishError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "publish: %d event(s) failed", len(e.Failures))
	for _, f := range e.Failures {
		fmt.Fprintf(&b, "; event %d (source %q id %q): %v", f.Index, f.Source, f.ID, f.Err)
	}
	return b.String()
}

// Unwrap returns each failure's cause.
func (e *PublishError) Unwrap() []error {
	errs := make([]error, len(e.Failures))
	for i, f := range e.Failures {
		errs[i] = f.Err
	}
	return errs
}
