package sqs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus"
)

// API is the SQS calls a Queue makes; an *sqs.Client satisfies it. Tests
// embed it in a struct that overrides one method to reach failure paths the
// stand-in cannot produce.
type API interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// IAMActions lists the IAM actions a Queue calls at run time, on the queue
// and on its DLQ. Batch calls are authorized by their single-message action.
var IAMActions = []string{
	"sqs:ReceiveMessage",
	"sqs:DeleteMessage",
	"sqs:ChangeMessageVisibility",
	"sqs:SendMessage",
	"sqs:GetQueueUrl",
	"sqs:GetQueueAttributes",
}

// Message attributes DeadLetter sets on the copy it sends to the DLQ.
const (
	AttrReason       = "agentbus.reason"
	AttrSourceQueue  = "agentbus.source-queue"
	AttrMessageID    = "agentbus.message-id"
	AttrReceiveCount = "agentbus.receive-count"
)

// SQS limits the adapter respects.
const (
	maxBatch         = 10
	maxWaitSeconds   = 20
	maxVisibilitySec = 12 * 60 * 60
	maxReasonBytes   = 1024
	deleteAttempts   = 3
)

// Queue is one SQS queue (and its DLQ) as a bus.Queue and bus.DLQ. It is safe
// for concurrent use.
type Queue struct {
	api  API
	info Info
	log  *slog.Logger
	// sleep waits between delete retries; replaced in tests.
	sleep func(ctx context.Context, d time.Duration) error
}

var (
	_ bus.Queue = (*Queue)(nil)
	_ bus.DLQ   = (*Queue)(nil)
)

// Option configures a Queue.
type Option func(*Queue)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(q *Queue) {
		if l != nil {
			q.log = l
		}
	}
}

// New builds a Queue with its own SQS client from cfg (the standard config
// chain, AWS_ENDPOINT_URL included). info.URL is required; info.DLQURL is
// needed for DeadLetter, List and Redrive (Lookup and EnsureQueue fill both).
func New(cfg aws.Config, info Info, opts ...Option) *Queue {
	return NewFromClient(sqs.NewFromConfig(cfg), info, opts...)
}

// NewFromClient builds a Queue on an existing client (borrowed).
func NewFromClient(api API, info Info, opts ...Option) *Queue {
	q := &Queue{api: api, info: info, log: slog.Default(), sleep: sleepCtx}
	for _, o := range opts {
		o(q)
	}
	return q
}

// Name is the SQS queue name.
func (q *Queue) Name() string { return q.info.Name }

// Info reports the queue's URLs and ARNs.
func (q *Queue) Info() Info { return q.info }

// Receive long-polls for up to max messages (at most 10 per call), waiting up
// to wait (rounded up to whole seconds, at most 20) for the first. visibility
// is rounded up to whole seconds; zero keeps the queue's default.
func (q *Queue) Receive(ctx context.Context, max int, wait, visibility time.Duration) ([]bus.Message, error) {
	if max <= 0 {
		return nil, fmt.Errorf("sqs: receive from %s: max must be positive, got %d", q.info.Name, max)
	}
	out, err := q.api.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(q.info.URL),
		MaxNumberOfMessages:         int32(min(max, maxBatch)),
		WaitTimeSeconds:             seconds(wait, maxWaitSeconds),
		VisibilityTimeout:           seconds(visibility, maxVisibilitySec),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount, types.MessageSystemAttributeNameSentTimestamp},
		MessageAttributeNames:       []string{"All"},
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("sqs: receive from %s: %w", q.info.Name, ctx.Err())
		}
		return nil, fmt.Errorf("sqs: receive from %s: %w", q.info.Name, err)
	}
	msgs := make([]bus.Message, 0, len(out.Messages))
	for _, m := range out.Messages {
		msgs = append(msgs, q.toMessage(ctx, m))
	}
	return msgs, nil
}

func (q *Queue) toMessage(ctx context.Context, m types.Message) bus.Message {
	body := aws.ToString(m.Body)
	msg := bus.Message{
		ID:           aws.ToString(m.MessageId),
		Receipt:      aws.ToString(m.ReceiptHandle),
		Body:         []byte(body),
		ReceiveCount: atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]),
		SentAt:       millis(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)]),
	}
	ev, err := events.FromDelivery(msg.Body)
	if err != nil {
		msg.DecodeErr = err
		q.log.WarnContext(ctx, "sqs: undecodable message", "queue", q.info.Name, "message_id", msg.ID, "err", err)
		return msg
	}
	msg.Event = ev
	return msg
}

// Ack deletes the messages of receipts in batches of 10. Entries SQS failed
// on its side are retried; the returned *AckError names the receipts that
// could not be deleted (they will be redelivered).
func (q *Queue) Ack(ctx context.Context, receipts ...string) error {
	receipts = dedupe(receipts)
	var failed []AckFailure
	for start := 0; start < len(receipts); start += maxBatch {
		failed = append(failed, q.deleteBatch(ctx, q.info.URL, receipts[start:min(start+maxBatch, len(receipts))])...)
	}
	if len(failed) > 0 {
		return &AckError{Queue: q.info.Name, Failed: failed}
	}
	return nil
}

// deleteBatch deletes up to 10 receipts from queueURL and returns what still
// failed after bounded retries of SQS-side (not sender-fault) failures.
func (q *Queue) deleteBatch(ctx context.Context, queueURL string, pending []string) []AckFailure {
	var failed []AckFailure
	for attempt := 1; ; attempt++ {
		entries := make([]types.DeleteMessageBatchRequestEntry, len(pending))
		for i, r := range pending {
			entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(r)}
		}
		out, err := q.api.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: entries})
		if err != nil {
			// The SDK client already retried throttling and 5xx.
			for _, r := range pending {
				failed = append(failed, AckFailure{Receipt: r, Reason: err.Error(), Err: err})
			}
			return failed
		}
		var again []string
		for _, e := range out.Failed {
			i, convErr := strconv.Atoi(aws.ToString(e.Id))
			if convErr != nil || i < 0 || i >= len(pending) {
				continue
			}
			reason := aws.ToString(e.Code) + ": " + aws.ToString(e.Message)
			if e.SenderFault || attempt >= deleteAttempts {
				failed = append(failed, AckFailure{Receipt: pending[i], Reason: reason})
				continue
			}
			again = append(again, pending[i])
		}
		if len(again) == 0 {
			return failed
		}
		q.log.WarnContext(ctx, "sqs: batch delete partially failed, retrying", "queue", q.info.Name, "failed", len(again), "attempt", attempt)
		pending = again
		if err := q.sleep(ctx, backoff(attempt)); err != nil {
			for _, r := range pending {
				failed = append(failed, AckFailure{Receipt: r, Reason: err.Error(), Err: err})
			}
			return failed
		}
	}
}

// Nack makes the message visible again after delay (rounded up to whole
// seconds, at most 12 hours).
func (q *Queue) Nack(ctx context.Context, receipt string, delay time.Duration) error {
	return q.changeVisibility(ctx, "nack", receipt, delay)
}

// Extend sets the message's visibility timeout to now+visibility (a heartbeat
// while a handler runs).
func (q *Queue) Extend(ctx context.Context, receipt string, visibility time.Duration) error {
	return q.changeVisibility(ctx, "extend", receipt, visibility)
}

func (q *Queue) changeVisibility(ctx context.Context, op, receipt string, d time.Duration) error {
	_, err := q.api.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(q.info.URL),
		ReceiptHandle:     aws.String(receipt),
		VisibilityTimeout: seconds(d, maxVisibilitySec),
	})
	if err != nil {
		return fmt.Errorf("sqs: %s on %s: %w", op, q.info.Name, err)
	}
	return nil
}

// DeadLetter sends m's body to the DLQ with reason (and the source queue,
// message id and receive count) as message attributes, then deletes m from
// this queue. If the delete fails the message stays in both queues; it is
// redelivered here and, being permanently broken, dead-lettered again.
func (q *Queue) DeadLetter(ctx context.Context, m bus.Message, reason string) error {
	if q.info.DLQURL == "" {
		return fmt.Errorf("sqs: dead-letter %s on %s: %w", m.ID, q.info.Name, errNoDLQ)
	}
	body := string(m.Body)
	if body == "" {
		// SQS rejects empty bodies; every message SQS handed us had one, so
		// this is a caller-built Message: keep its event.
		b, err := m.Event.MarshalJSON()
		if err != nil {
			return fmt.Errorf("sqs: dead-letter %s on %s: empty body and event does not encode: %w", m.ID, q.info.Name, err)
		}
		body = string(b)
	}
	if reason == "" {
		reason = "unspecified"
	}
	attrs := map[string]types.MessageAttributeValue{
		AttrReason:       strAttr(truncate(sanitize(reason), maxReasonBytes)),
		AttrSourceQueue:  strAttr(q.info.Name),
		AttrReceiveCount: {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(m.ReceiveCount))},
	}
	if m.ID != "" {
		attrs[AttrMessageID] = strAttr(m.ID)
	}
	if _, err := q.api.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:          aws.String(q.info.DLQURL),
		MessageBody:       aws.String(body),
		MessageAttributes: attrs,
	}); err != nil {
		return fmt.Errorf("sqs: dead-letter %s on %s: send to DLQ: %w", m.ID, q.info.Name, err)
	}
	q.log.WarnContext(ctx, "sqs: message dead-lettered", "queue", q.info.Name, "message_id", m.ID, "receive_count", m.ReceiveCount, "reason", reason)
	if _, err := q.api.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q.info.URL), ReceiptHandle: aws.String(m.Receipt)}); err != nil {
		return fmt.Errorf("sqs: dead-letter %s on %s: sent to DLQ but delete failed: %w", m.ID, q.info.Name, err)
	}
	return nil
}

// AckFailure is one receipt Ack could not delete.
type AckFailure struct {
	Receipt string
	Reason  string
	// Err is the call error when the whole batch call failed.
	Err error
}

// AckError names the receipts an Ack could not delete.
type AckError struct {
	Queue  string
	Failed []AckFailure
}

func (e *AckError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sqs: %d message(s) not deleted from %s:", len(e.Failed), e.Queue)
	for i, f := range e.Failed {
		if i == 3 {
			fmt.Fprintf(&b, " … and %d more", len(e.Failed)-i)
			break
		}
		fmt.Fprintf(&b, " [receipt %s: %s]", abbreviate(f.Receipt), f.Reason)
	}
	return b.String()
}

// Unwrap exposes the call errors (e.g. context cancellation).
func (e *AckError) Unwrap() []error {
	var errs []error
	for _, f := range e.Failed {
		if f.Err != nil {
			errs = append(errs, f.Err)
		}
	}
	return errs
}

// Receipts lists the receipts that were not deleted.
func (e *AckError) Receipts() []string {
	out := make([]string, len(e.Failed))
	for i, f := range e.Failed {
		out[i] = f.Receipt
	}
	return out
}

// seconds rounds d up to whole seconds within [0, max]: SQS takes integers,
// and rounding down would turn a short wait or visibility into none.
func seconds(d time.Duration, max int32) int32 {
	if d <= 0 {
		return 0
	}
	s := math.Ceil(d.Seconds())
	if s > float64(max) {
		return max
	}
	return int32(s)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func millis(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func dedupe(ss []string) []string {
	seen := make(map[string]bool, len(ss))
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		if s == "" || seen[s] {
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	return out
}

func strAttr(v string) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}

// sanitize replaces the characters SQS refuses in messages (outside #x9 #xA
// #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF) so a reason quoting a
// broken body cannot make the dead-letter send itself fail.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return r
		case r < 0x20, r == utf8.RuneError, r >= 0xD800 && r <= 0xDFFF, r == 0xFFFE || r == 0xFFFF:
			return '?'
		}
		return r
	}, s)
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func abbreviate(s string) string {
	if len(s) <= 16 {
		return s
	}
	return s[:8] + "…" + s[len(s)-8:]
}

// backoff is exponential with full jitter, from 50ms up to 1s.
func backoff(attempt int) time.Duration {
	d := min(50*time.Millisecond<<min(attempt-1, 10), time.Second)
	return time.Duration(rand.Int64N(int64(d) + 1))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// errNoDLQ reports a DLQ operation on a queue without one.
var errNoDLQ = errors.New("queue has no DLQ configured")
