package eventbridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus"
)

// PutEventsAPI is the one EventBridge call the Publisher makes. An
// *eventbridge.Client satisfies it; tests pass a function (PutEventsFunc) to
// reach paths the stand-in cannot produce, such as partial failures.
type PutEventsAPI interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// PutEventsFunc adapts a function to PutEventsAPI.
type PutEventsFunc func(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)

// PutEvents calls f.
func (f PutEventsFunc) PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	return f(ctx, in, optFns...)
}

// IAMActions lists the IAM actions a Publisher calls at run time.
var IAMActions = []string{"events:PutEvents"}

const (
	// DefaultMaxRequestBytes is EventBridge's default PutEvents limit, which
	// bounds both one entry and the sum of a request's entries.
	DefaultMaxRequestBytes = 256 * 1024
	// MaxEntriesPerRequest is the PutEvents entry limit.
	MaxEntriesPerRequest = 10
	// DefaultMaxAttempts bounds the attempts per entry (first try included).
	DefaultMaxAttempts = 5
	// DefaultBaseDelay and DefaultMaxDelay shape the exponential backoff.
	DefaultBaseDelay = 50 * time.Millisecond
	DefaultMaxDelay  = 2 * time.Second
)

// Publisher publishes CloudEvents to one EventBridge bus. It is safe for
// concurrent use.
type Publisher struct {
	api             PutEventsAPI
	busName         string
	maxRequestBytes int
	maxAttempts     int
	baseDelay       time.Duration
	maxDelay        time.Duration
	log             *slog.Logger
	// sleep waits d or until ctx ends; replaced in tests to avoid real waits.
	sleep func(ctx context.Context, d time.Duration) error
	// retryable classifies call errors; the SDK's own classifier (throttling,
	// 5xx, transport errors).
	retryable func(error) bool
}

var _ bus.Publisher = (*Publisher)(nil)

// Option configures a Publisher.
type Option func(*Publisher)

// WithMaxRequestBytes sets the PutEvents size limit (one entry and the sum of
// one request); EventBridge raised it to 1 MiB in 2026 for buses that opt in.
// Values <= 0 keep the default.
func WithMaxRequestBytes(n int) Option {
	return func(p *Publisher) {
		if n > 0 {
			p.maxRequestBytes = n
		}
	}
}

// WithRetry sets the attempts per entry (first try included) and the backoff
// bounds. Zero values keep the defaults.
func WithRetry(maxAttempts int, base, max time.Duration) Option {
	return func(p *Publisher) {
		if maxAttempts > 0 {
			p.maxAttempts = maxAttempts
		}
		if base > 0 {
			p.baseDelay = base
		}
		if max > 0 {
			p.maxDelay = max
		}
	}
}

// WithLogger sets the logger for retries (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(p *Publisher) {
		if l != nil {
			p.log = l
		}
	}
}

// New builds a Publisher with its own EventBridge client from cfg (the
// standard config chain: region, credentials, AWS_ENDPOINT_URL). The client's
// own retries are turned off so that the Publisher's loop is the one bounded
// retry policy for whole calls and single entries alike.
func New(cfg aws.Config, busName string, opts ...Option) *Publisher {
	client := eventbridge.NewFromConfig(cfg, func(o *eventbridge.Options) {
		o.Retryer = aws.NopRetryer{}
	})
	return NewFromClient(client, busName, opts...)
}

// NewFromClient builds a Publisher on an existing client (borrowed, not
// closed). A client with its own retryer multiplies attempts; prefer New.
func NewFromClient(api PutEventsAPI, busName string, opts ...Option) *Publisher {
	std := retry.NewStandard()
	p := &Publisher{
		api:             api,
		busName:         busName,
		maxRequestBytes: DefaultMaxRequestBytes,
		maxAttempts:     DefaultMaxAttempts,
		baseDelay:       DefaultBaseDelay,
		maxDelay:        DefaultMaxDelay,
		log:             slog.Default(),
		sleep:           sleepCtx,
		retryable:       std.IsErrorRetryable,
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// BusName reports the bus the Publisher puts events on.
func (p *Publisher) BusName() string { return p.busName }

// item is one event on its way: the entry and what names it in errors.
type item struct {
	entry types.PutEventsRequestEntry
	size  int
	index int
	id    string
	src   string
}

// Publish puts events on the bus in batches. An invalid or oversize event
// (the latter wrapping bus.ErrTooLarge) fails alone and is never sent; the
// others are published. A *bus.PublishError names every event that was not
// published, after retries, with its cause (an *EntryError for an entry
// EventBridge rejected).
func (p *Publisher) Publish(ctx context.Context, evs ...event.Event) error {
	items := make([]item, 0, len(evs))
	var failed []bus.PublishFailure
	for i, ev := range evs {
		it, err := p.toItem(i, ev)
		if err != nil {
			failed = append(failed, bus.PublishFailure{Index: i, ID: ev.ID(), Source: ev.Source(), Err: err})
			continue
		}
		items = append(items, it)
	}
	for _, batch := range p.batches(items) {
		if err := ctx.Err(); err != nil {
			failed = append(failed, failAll(batch, err)...)
			continue
		}
		failed = append(failed, p.send(ctx, batch)...)
	}
	if len(failed) > 0 {
		slices.SortFunc(failed, func(a, b bus.PublishFailure) int { return a.Index - b.Index })
		return &bus.PublishError{Failures: failed}
	}
	return nil
}

func (p *Publisher) toItem(index int, ev event.Event) (item, error) {
	env, err := events.ToEnvelope(ev)
	if err != nil {
		return item{}, fmt.Errorf("eventbridge: %w", err)
	}
	entry := types.PutEventsRequestEntry{
		EventBusName: aws.String(p.busName),
		Source:       aws.String(env.Source),
		DetailType:   aws.String(env.DetailType),
		Detail:       aws.String(string(env.Detail)),
	}
	size := EntrySize(entry)
	if size > p.maxRequestBytes {
		return item{}, fmt.Errorf("eventbridge: event of type %s is %d bytes, over the %d-byte limit: %w",
			ev.Type(), size, p.maxRequestBytes, bus.ErrTooLarge)
	}
	return item{entry: entry, size: size, index: index, id: ev.ID(), src: ev.Source()}, nil
}

// EntrySize computes the size EventBridge charges an entry against the
// request limit, following "Calculating PutEvents event entry size" in the
// EventBridge user guide: 14 bytes for Time if set, plus the UTF-8 bytes of
// Source, DetailType, Detail and each Resource. EventBusName does not count.
func EntrySize(e types.PutEventsRequestEntry) int {
	n := 0
	if e.Time != nil {
		n += 14
	}
	n += len(aws.ToString(e.Source)) + len(aws.ToString(e.DetailType)) + len(aws.ToString(e.Detail))
	for _, r := range e.Resources {
		n += len(r)
	}
	return n
}

// batches groups items in order, each batch within the entry and size limits.
func (p *Publisher) batches(items []item) [][]item {
	var out [][]item
	var cur []item
	curSize := 0
	for _, it := range items {
		if len(cur) == MaxEntriesPerRequest || (len(cur) > 0 && curSize+it.size > p.maxRequestBytes) {
			out = append(out, cur)
			cur, curSize = nil, 0
		}
		cur = append(cur, it)
		curSize += it.size
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// send puts one batch, retrying what may succeed later, and returns what
// finally failed.
func (p *Publisher) send(ctx context.Context, pending []item) []bus.PublishFailure {
	var failed []bus.PublishFailure
	for attempt := 1; ; attempt++ {
		entries := make([]types.PutEventsRequestEntry, len(pending))
		for i, it := range pending {
			entries[i] = it.entry
		}
		out, err := p.api.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: entries})
		switch {
		case err != nil && ctx.Err() != nil:
			return append(failed, failAll(pending, fmt.Errorf("%w (%v)", ctx.Err(), err))...)
		case err != nil:
			if !p.retryable(err) || attempt >= p.maxAttempts {
				return append(failed, failAll(pending, fmt.Errorf("eventbridge: PutEvents (attempt %d): %w", attempt, err))...)
			}
			p.log.WarnContext(ctx, "eventbridge: PutEvents failed, retrying", "bus", p.busName,
				"entries", len(pending), "attempt", attempt, "err", err)
		case out == nil:
			return append(failed, failAll(pending, errors.New("eventbridge: PutEvents returned no output"))...)
		case out.FailedEntryCount == 0 && !anyFailed(out.Entries):
			return failed
		case len(out.Entries) != len(pending):
			// Without one result per entry we cannot tell which failed; resend
			// all (at-least-once: consumers dedupe by source+id).
			if attempt >= p.maxAttempts {
				return append(failed, failAll(pending, fmt.Errorf("eventbridge: PutEvents reported %d failed entries but returned %d results for %d entries",
					out.FailedEntryCount, len(out.Entries), len(pending)))...)
			}
			p.log.WarnContext(ctx, "eventbridge: PutEvents result count mismatch, resending batch", "bus", p.busName,
				"entries", len(pending), "results", len(out.Entries), "attempt", attempt)
		default:
			var again []item
			for i, r := range out.Entries {
				if r.ErrorCode == nil && r.ErrorMessage == nil {
					continue
				}
				code, msg := aws.ToString(r.ErrorCode), aws.ToString(r.ErrorMessage)
				if !retryableEntryCode(code) || attempt >= p.maxAttempts {
					failed = append(failed, pending[i].failure(&EntryError{Code: code, Message: msg, Attempts: attempt}))
					continue
				}
				again = append(again, pending[i])
			}
			if len(again) == 0 {
				return failed
			}
			p.log.WarnContext(ctx, "eventbridge: PutEvents partial failure, retrying failed entries", "bus", p.busName,
				"failed", len(again), "of", len(pending), "attempt", attempt)
			pending = again
		}
		if err := p.sleep(ctx, p.backoff(attempt)); err != nil {
			return append(failed, failAll(pending, err)...)
		}
	}
}

func anyFailed(rs []types.PutEventsResultEntry) bool {
	for _, r := range rs {
		if r.ErrorCode != nil {
			return true
		}
	}
	return false
}

// retryableEntryCode reports whether an entry's ErrorCode may succeed on a
// retry. The PutEvents reference names InternalFailure and ThrottlingException
// retryable; everything else (InvalidArgument, MalformedDetail,
// AccessDeniedException, NotAuthorizedFor…) will fail again.
func retryableEntryCode(code string) bool {
	switch code {
	case "InternalFailure", "InternalException", "ThrottlingException", "ServiceUnavailable":
		return true
	}
	return false
}

// backoff is exponential with full jitter: uniform in [0, min(max, base·2^(n-1))].
func (p *Publisher) backoff(attempt int) time.Duration {
	d := p.baseDelay << min(attempt-1, 30)
	if d <= 0 || d > p.maxDelay {
		d = p.maxDelay
	}
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

func failAll(items []item, err error) []bus.PublishFailure {
	out := make([]bus.PublishFailure, len(items))
	for i, it := range items {
		out[i] = it.failure(err)
	}
	return out
}

func (it item) failure(err error) bus.PublishFailure {
	return bus.PublishFailure{Index: it.index, ID: it.id, Source: it.src, Err: err}
}

// EntryError is EventBridge's rejection of one PutEvents entry (its
// ErrorCode and ErrorMessage), after Attempts sends.
type EntryError struct {
	Code, Message string
	Attempts      int
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("eventbridge: entry rejected after %d attempt(s): %s: %s", e.Attempts, e.Code, e.Message)
}
