package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/pattern"
)

// DefaultMaxEventSize is EventBridge's classic PutEvents entry limit.
const DefaultMaxEventSize = 256 * 1024

// MaxReceiveBatch caps the messages one Receive may ask for.
const MaxReceiveBatch = 1000

// Rule routes events that match Pattern (an EventBridge event pattern, JSON)
// to Queue.
type Rule struct {
	Name    string
	Pattern json.RawMessage
	Queue   string
}

// QueueConfig holds a queue's settings.
type QueueConfig struct {
	Name string
	// MaxReceiveCount sends a message to the queue's DLQ on the receive after
	// its MaxReceiveCount-th (as an SQS redrive policy does); 0 = never.
	MaxReceiveCount int
	// Visibility is used when Receive is called with visibility 0
	// (default 30s).
	Visibility time.Duration
}

// Options configure Open. The zero value is an in-memory bus with no rules.
type Options struct {
	// Path is the journal file (journal.go; a file of an earlier, SQLite
	// format is migrated when opened); "" keeps everything in memory
	// (tests). Path+".lock" is the lock that keeps a second Open out.
	Path string
	// Synchronous says when commits reach the disk: "NORMAL" (default;
	// written with each commit, so durable against a crash of the process,
	// and fsynced in the background about once a second) or "FULL" (also
	// durable against a power loss: one fsync per group commit). "EXTRA"
	// is taken as "FULL".
	Synchronous string
	// CompactAt is the journal size in bytes past which the journal's log
	// may be compacted (rewritten as the live messages alone): once it is
	// also twice what the last compaction wrote. Default 8 MiB.
	CompactAt int
	// MaxEventSize is the largest event accepted, counted as EventBridge
	// counts a PutEvents entry (source + detail-type + detail); default
	// DefaultMaxEventSize. Larger events fail with bus.ErrTooLarge.
	MaxEventSize int
	Rules        []Rule
	Queues       []QueueConfig
	// Account and Region fill the envelope as EventBridge would (defaults
	// "000000000000" and "local").
	Account, Region string
	Logger          *slog.Logger
}

// Stats are a queue's depth metrics.
type Stats struct {
	// Ready messages can be received now; InFlight ones are invisible
	// because delivered; Delayed ones were nacked with a delay.
	Ready, InFlight, Delayed int
	// Dead is the number of messages in the queue's DLQ.
	Dead int
}

// Bus is the embedded bus. It is safe for concurrent use.
type Bus struct {
	e       *engine
	maxSize int
	account string
	region  string

	ids     *idGen
	matcher *pattern.Matcher
	mu      sync.RWMutex
	targets map[string]string // rule name -> queue

	closeOnce sync.Once
	closeErr  error
}

var (
	_ bus.Publisher = (*Bus)(nil)
	_ bus.Queue     = (*Queue)(nil)
	_ bus.DLQ       = (*DLQ)(nil)

	_ bus.FailureNacker = (*Queue)(nil)
)

var queueName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

// ErrInvalidConfig reports a bad rule, queue or option.
var ErrInvalidConfig = errors.New("local bus: invalid config")

// Open opens (or creates) the bus and starts its engine.
func Open(ctx context.Context, opts Options) (*Bus, error) {
	if opts.Synchronous == "" {
		opts.Synchronous = "NORMAL"
	}
	switch opts.Synchronous {
	case "NORMAL", "FULL", "EXTRA":
	default:
		return nil, fmt.Errorf("%w: synchronous %q (want NORMAL or FULL)", ErrInvalidConfig, opts.Synchronous)
	}
	if opts.MaxEventSize <= 0 {
		opts.MaxEventSize = DefaultMaxEventSize
	}
	if opts.Account == "" {
		opts.Account = "000000000000"
	}
	if opts.Region == "" {
		opts.Region = "local"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Bus{
		maxSize: opts.MaxEventSize, account: opts.Account, region: opts.Region,
		matcher: pattern.NewMatcher(), targets: map[string]string{}, ids: newIDGen(),
	}
	for _, r := range opts.Rules {
		if err := b.addRule(r); err != nil {
			return nil, err
		}
	}
	for i := range opts.Queues {
		if err := validQueue(&opts.Queues[i]); err != nil {
			return nil, err
		}
	}
	var j *journal
	if opts.Path != "" {
		var err error
		if j, err = openJournal(opts.Path, opts.Synchronous, opts.Logger); err != nil {
			return nil, err
		}
		if opts.CompactAt > 0 {
			j.compactMin = opts.CompactAt
		}
	}
	b.e = newEngine(j, QueueConfig{Visibility: 30 * time.Second}, opts.Logger)
	for _, q := range opts.Queues {
		b.e.queue(q.Name).cfg = q
	}
	if err := b.e.load(ctx); err != nil {
		if j != nil {
			j.close()
		}
		return nil, fmt.Errorf("local bus: load %s: %w", opts.Path, err)
	}
	if j != nil && j.legacy {
		// A file of an earlier format is rewritten in this one before
		// anything else is written to it.
		if err := b.e.compact(); err != nil {
			j.close()
			return nil, fmt.Errorf("local bus: migrate %s to the journal format: %w", opts.Path, err)
		}
	}
	go b.e.run()
	return b, nil
}

func validQueue(q *QueueConfig) error {
	if !queueName.MatchString(q.Name) {
		return fmt.Errorf("%w: queue name %q (want 1-80 of A-Za-z0-9_-)", ErrInvalidConfig, q.Name)
	}
	if q.MaxReceiveCount < 0 {
		return fmt.Errorf("%w: queue %s: negative maxReceiveCount", ErrInvalidConfig, q.Name)
	}
	if q.Visibility < 0 {
		return fmt.Errorf("%w: queue %s: negative visibility", ErrInvalidConfig, q.Name)
	}
	if q.Visibility == 0 {
		q.Visibility = 30 * time.Second
	}
	return nil
}

// Close stops the engine and closes the file. Unacknowledged messages are
// redelivered after the next Open. Parked receivers get bus.ErrClosed.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() {
		close(b.e.quit)
		<-b.e.exited
		if b.e.j != nil {
			b.closeErr = b.e.j.close()
		}
	})
	return b.closeErr
}

// AddRule adds a rule, or replaces the rule of the same name.
func (b *Bus) AddRule(r Rule) error { return b.addRule(r) }

func (b *Bus) addRule(r Rule) error {
	if r.Name == "" {
		return fmt.Errorf("%w: rule without a name", ErrInvalidConfig)
	}
	if !queueName.MatchString(r.Queue) {
		return fmt.Errorf("%w: rule %s: queue name %q", ErrInvalidConfig, r.Name, r.Queue)
	}
	p, err := pattern.Compile(r.Pattern)
	if err != nil {
		return fmt.Errorf("%w: rule %s: %w", ErrInvalidConfig, r.Name, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.matcher.Add(r.Name, p); err != nil {
		return fmt.Errorf("%w: rule %s: %w", ErrInvalidConfig, r.Name, err)
	}
	b.targets[r.Name] = r.Queue
	return nil
}

// RemoveRule removes a rule; messages it already routed stay queued.
func (b *Bus) RemoveRule(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.matcher.Remove(name)
	delete(b.targets, name)
}

// DeclareQueue sets a queue's settings (creating it if needed). A queue
// used without being declared gets visibility 30s and no redrive.
func (b *Bus) DeclareQueue(ctx context.Context, cfg QueueConfig) error {
	if err := validQueue(&cfg); err != nil {
		return err
	}
	r := &declareReq{errReq: newErrReq(), cfg: cfg}
	return b.do(ctx, r, r.ch)
}

// Publish implements bus.Publisher. Each event goes, atomically, to every
// queue whose rule matches it; the whole call is one transaction. Events that
// are invalid or too large are reported in a *bus.PublishError while the
// others are published.
//
// In-process receivers get copies of the published events (not decoded
// again from JSON); after a restart they are decoded from the stored
// envelope.
func (b *Bus) Publish(ctx context.Context, evs ...event.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	var (
		fails   []bus.PublishFailure
		entries = make([]pubEntry, 0, len(evs))
		idx     = make([]int, 0, len(evs))
	)
	fail := func(i int, ev event.Event, err error) {
		fails = append(fails, bus.PublishFailure{Index: i, ID: ev.ID(), Source: ev.Source(), Err: err})
	}
	for i, ev := range evs {
		detail, err := marshalDetail(&evs[i])
		if err != nil {
			fail(i, ev, err)
			continue
		}
		source, typ := ev.Source(), ev.Type()
		if size := len(source) + len(typ) + len(detail); size > b.maxSize {
			fail(i, ev, fmt.Errorf("%w: %d bytes, limit %d", bus.ErrTooLarge, size, b.maxSize))
			continue
		}
		body := appendEnvelope(make([]byte, 0, len(detail)+256), source, typ, detail, b.ids.next(), now, b.account, b.region)
		queues, err := b.route(body)
		if err != nil {
			fail(i, ev, err)
			continue
		}
		if len(queues) == 0 {
			continue
		}
		// Receivers get copies of this clone, so the caller may reuse or
		// modify its event once Publish returns.
		c := ev.Clone()
		entries = append(entries, pubEntry{body: body, ev: &c, queues: queues})
		idx = append(idx, i)
	}
	if len(entries) > 0 {
		r := &publishReq{errReq: newErrReq(), entries: entries}
		if err := b.do(ctx, r, r.ch); err != nil {
			for _, i := range idx {
				fail(i, evs[i], err)
			}
			slices.SortFunc(fails, func(a, b bus.PublishFailure) int { return a.Index - b.Index })
		}
	}
	if len(fails) > 0 {
		return &bus.PublishError{Failures: fails}
	}
	return nil
}

func (b *Bus) route(body []byte) ([]string, error) {
	names, err := b.matcher.Match(body)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	queues := make([]string, 0, len(names))
	for _, n := range names {
		if q, ok := b.targets[n]; ok {
			queues = append(queues, q)
		}
	}
	return queues, nil
}

// SendRaw puts body on a queue as is, bypassing rules (like SQS SendMessage).
// Tools and tests use it; a body that is not an envelope or CloudEvent is
// delivered with DecodeErr set.
func (b *Bus) SendRaw(ctx context.Context, queue string, body []byte) error {
	if !queueName.MatchString(queue) {
		return fmt.Errorf("%w: queue name %q", ErrInvalidConfig, queue)
	}
	if len(body) > b.maxSize {
		return fmt.Errorf("%w: %d bytes, limit %d", bus.ErrTooLarge, len(body), b.maxSize)
	}
	r := &sendRawReq{errReq: newErrReq(), queue: queue, body: slices.Clone(body)}
	return b.do(ctx, r, r.ch)
}

// EngineStats count the engine's work since Open: requests applied,
// transactions committed (group commits), message records written, and
// journal compactions.
type EngineStats struct {
	Requests, Commits, Rows int64
	// Compactions counts the journal's compactions.
	Compactions int64
}

// EngineStats reports how well group commit is batching.
func (b *Bus) EngineStats() EngineStats {
	return EngineStats{Requests: b.e.requests.Load(), Commits: b.e.commits.Load(), Rows: b.e.rows.Load(),
		Compactions: b.e.compactions.Load()}
}

// Queue returns a handle on the named queue.
func (b *Bus) Queue(name string) *Queue { return &Queue{b: b, name: name} }

// DLQ returns a handle on the named queue's dead-letter queue.
func (b *Bus) DLQ(name string) *DLQ { return &DLQ{b: b, name: name} }

// Stats returns the queue's depth metrics.
func (b *Bus) Stats(ctx context.Context, queue string) (Stats, error) {
	r := &statsReq{errReq: newErrReq(), queue: queue}
	err := b.do(ctx, r, r.ch)
	return r.out, err
}

// Purge deletes every message of the queue (not its DLQ) and reports how
// many were deleted.
func (b *Bus) Purge(ctx context.Context, queue string) (int, error) {
	r := &purgeReq{errReq: newErrReq(), queue: queue}
	err := b.do(ctx, r, r.ch)
	return r.purged, err
}

// Queues lists the queues the bus knows (declared, routed to or used), sorted.
func (b *Bus) Queues(ctx context.Context) ([]string, error) {
	r := &queuesReq{errReq: newErrReq()}
	err := b.do(ctx, r, r.ch)
	slices.Sort(r.out)
	return r.out, err
}

// do sends r to the engine and waits for its answer on ch.
func (b *Bus) do(ctx context.Context, r request, ch chan error) error {
	select {
	case b.e.reqs <- r:
	case <-b.e.exited:
		return bus.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-b.e.exited:
		// The engine answers everything it took before exiting.
		select {
		case err := <-ch:
			return err
		default:
			return bus.ErrClosed
		}
	}
}

// Queue is a handle on one queue of a Bus.
type Queue struct {
	b    *Bus
	name string
}

// Name implements bus.Queue.
func (q *Queue) Name() string { return q.name }

// Receive implements bus.Queue. visibility 0 uses the queue's default. It
// waits without polling: the engine wakes a parked receiver when a message
// becomes ready (publish, nack, visibility timeout), or at the end of wait.
func (q *Queue) Receive(ctx context.Context, max int, wait, visibility time.Duration) ([]bus.Message, error) {
	if max < 1 || max > MaxReceiveBatch {
		return nil, fmt.Errorf("local bus: receive: max %d out of 1..%d", max, MaxReceiveBatch)
	}
	if visibility < 0 || wait < 0 {
		return nil, errors.New("local bus: receive: negative duration")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &receiveReq{
		queue: q.name, max: max, vis: visibility, wait: wait > 0,
		deadline: time.Now().Add(wait), reply: make(chan receiveReply, 1),
	}
	e := q.b.e
	select {
	case e.reqs <- r:
	case <-e.exited:
		return nil, bus.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var rep receiveReply
	select {
	case rep = <-r.reply:
	case <-ctx.Done():
		// Withdraw the wait; if messages were claimed meanwhile, return them
		// rather than lose them until their visibility runs out.
		c := &cancelReq{errReq: newErrReq(), w: r}
		select {
		case e.reqs <- c:
			select {
			case rep = <-r.reply:
			case <-e.exited:
				return nil, bus.ErrClosed
			}
		case <-e.exited:
			return nil, bus.ErrClosed
		}
		if rep.err == nil && len(rep.msgs) == 0 {
			return nil, ctx.Err()
		}
	case <-e.exited:
		select {
		case rep = <-r.reply:
		default:
			return nil, bus.ErrClosed
		}
	}
	if rep.err != nil {
		return nil, rep.err
	}
	out := make([]bus.Message, len(rep.msgs))
	for i, c := range rep.msgs {
		m := bus.Message{
			ID:           strconv.FormatInt(c.id, 10),
			Receipt:      receipt{id: c.id, gen: c.gen}.String(),
			Body:         c.body,
			ReceiveCount: c.receives,
			SentAt:       c.sentAt,
		}
		if c.ev != nil {
			m.Event = c.ev.Clone()
		} else {
			m.Event, m.DecodeErr = events.FromDelivery(c.body)
		}
		out[i] = m
	}
	return out, nil
}

// Ack implements bus.Queue. Receipts that are stale or unknown are named in
// the error (wrapping bus.ErrStaleReceipt); the others are acked.
func (q *Queue) Ack(ctx context.Context, receipts ...string) error {
	r := &ackReq{errReq: newErrReq(), queue: q.name}
	var bad []error
	for _, s := range receipts {
		rc, err := parseReceipt(s)
		if err != nil {
			bad = append(bad, fmt.Errorf("queue %s: %w", q.name, err))
			continue
		}
		r.receipts = append(r.receipts, rc)
	}
	if len(r.receipts) > 0 {
		if err := q.b.do(ctx, r, r.ch); err != nil {
			bad = append(bad, err)
		}
	}
	return errors.Join(bad...)
}

// Nack implements bus.Queue.
func (q *Queue) Nack(ctx context.Context, receipt string, delay time.Duration) error {
	return q.nack(ctx, receipt, delay, "", false)
}

// NackFailure implements bus.FailureNacker: like Nack, and keeps reason on
// the message (it becomes the dead letter's reason if it is redriven).
func (q *Queue) NackFailure(ctx context.Context, receipt string, delay time.Duration, reason string) error {
	return q.nack(ctx, receipt, delay, reason, true)
}

func (q *Queue) nack(ctx context.Context, s string, delay time.Duration, reason string, set bool) error {
	rc, err := parseReceipt(s)
	if err != nil {
		return fmt.Errorf("queue %s: %w", q.name, err)
	}
	r := &nackReq{errReq: newErrReq(), queue: q.name, receipt: rc, delay: delay, reason: reason, setReason: set}
	return q.b.do(ctx, r, r.ch)
}

// Extend implements bus.Queue.
func (q *Queue) Extend(ctx context.Context, s string, visibility time.Duration) error {
	rc, err := parseReceipt(s)
	if err != nil {
		return fmt.Errorf("queue %s: %w", q.name, err)
	}
	r := &extendReq{errReq: newErrReq(), queue: q.name, receipt: rc, vis: visibility}
	return q.b.do(ctx, r, r.ch)
}

// DeadLetter implements bus.Queue.
func (q *Queue) DeadLetter(ctx context.Context, m bus.Message, reason string) error {
	rc, err := parseReceipt(m.Receipt)
	if err != nil {
		return fmt.Errorf("queue %s: %w", q.name, err)
	}
	r := &deadLetterReq{errReq: newErrReq(), queue: q.name, receipt: rc, reason: reason}
	return q.b.do(ctx, r, r.ch)
}

// DLQ is a handle on one queue's dead-letter queue.
type DLQ struct {
	b    *Bus
	name string
}

// List implements bus.DLQ (oldest first).
func (d *DLQ) List(ctx context.Context, max int) ([]bus.DeadLetter, error) {
	r := &listDeadReq{errReq: newErrReq(), queue: d.name, max: max}
	err := d.b.do(ctx, r, r.ch)
	return r.out, err
}

// Redrive implements bus.DLQ: the oldest dead letters go back to the queue
// as new messages (receive count 0).
func (d *DLQ) Redrive(ctx context.Context, max int) (int, error) {
	r := &redriveReq{errReq: newErrReq(), queue: d.name, max: max}
	err := d.b.do(ctx, r, r.ch)
	return r.moved, err
}
