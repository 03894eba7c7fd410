// Package awsclient submits agent runs to an agentbus deployment on AWS and
// awaits their outcome.
//
// A run is submitted by publishing AgentRequested to the deployment's
// EventBridge bus. Its outcome (AgentCompleted, AgentFailed or
// AgentCancelled) reaches the caller through a caller-owned SQS queue, fed by
// one EventBridge rule that matches the three terminal event types whose
// `sessionid` starts with "<callerID>." — every session id this client
// creates has that prefix (see EnsureCallerQueue for why the rule routes on
// the session id).
package awsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/agentbus/agentbus/events"
	s3blob "github.com/agentbus/agentbus/platform/blob/s3"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/bus/claimcheck"
	"github.com/agentbus/agentbus/platform/bus/eventbridge"
	"github.com/agentbus/agentbus/platform/bus/sqs"
)

// ErrClosed is returned by Await after Close.
var ErrClosed = errors.New("awsclient: client closed")

// callerIDPattern keeps caller ids valid inside session ids, queue names and
// rule names, and free of "." so that one caller's prefix is never another's.
var callerIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,40}$`)

// Config configures a Client.
type Config struct {
	// AWS is the SDK configuration (region, credentials, endpoint).
	AWS aws.Config
	// Bus is the deployment's EventBridge bus name (AGENTBUS_BUS_NAME).
	Bus string
	// CallerID names this caller: session ids are "<CallerID>.<uuid>" and
	// the caller's rule routes on that prefix. [A-Za-z0-9_-]{1,40}.
	CallerID string
	// Queue is the caller's queue, as returned by EnsureCallerQueue (or
	// provisioned by Terraform with the same rule).
	Queue CallerQueue
	// Source is the CloudEvents source of submitted events (default
	// agentbus/client).
	Source string
	// Bucket is the deployment's blob bucket (AGENTBUS_BUCKET). Optional:
	// without it a prompt larger than the event size limit cannot be
	// submitted and a claim-checked answer cannot be read.
	Bucket string
	// MaxEventSize is the claim-check limit (default 256 KiB).
	MaxEventSize int
	Logger       *slog.Logger
}

// Result is the outcome of one run: exactly one of Completed, Failed,
// Cancelled is set.
type Result struct {
	SessionID string
	Completed *events.AgentCompleted
	Failed    *events.AgentFailed
	Cancelled *events.AgentCancelled
	// Event is the terminal event itself.
	Event event.Event
}

// Client submits runs and awaits their results. Safe for concurrent use; one
// Client per caller queue (two clients on one queue would take each other's
// results).
type Client struct {
	cfg       Config
	validator *events.Validator
	pub       bus.Publisher
	queue     *sqs.Queue
	resolver  *claimcheck.Resolver // nil without a bucket

	mu      sync.Mutex
	results map[string]Result // arrived, not yet awaited
	waiters map[string][]chan Result
	started bool
	closed  bool
	stop    context.CancelFunc
	done    chan struct{}
}

// New returns a client; it starts consuming the caller queue on the first
// Await.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Bus == "" {
		return nil, errors.New("awsclient: no bus name")
	}
	if !callerIDPattern.MatchString(cfg.CallerID) {
		return nil, fmt.Errorf("awsclient: caller id %q: want %s", cfg.CallerID, callerIDPattern)
	}
	if cfg.Queue.URL == "" {
		return nil, errors.New("awsclient: no caller queue (use EnsureCallerQueue)")
	}
	if cfg.Source == "" {
		cfg.Source = events.SourceClient
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	v, err := events.NewValidator()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, validator: v, results: map[string]Result{}, waiters: map[string][]chan Result{}, done: make(chan struct{})}
	var pub bus.Publisher = eventbridge.New(cfg.AWS, cfg.Bus, eventbridge.WithLogger(cfg.Logger))
	if cfg.Bucket != "" {
		var opts []claimcheck.Option
		if cfg.MaxEventSize > 0 {
			opts = append(opts, claimcheck.WithLimit(cfg.MaxEventSize))
		}
		blobs, err := s3blob.New(ctx, cfg.AWS, cfg.Bucket)
		if err != nil {
			return nil, err
		}
		if pub, err = claimcheck.NewPublisher(pub, blobs, opts...); err != nil {
			return nil, err
		}
		if c.resolver, err = claimcheck.NewResolver(blobs, opts...); err != nil {
			return nil, err
		}
	}
	c.pub = pub
	c.queue = sqs.New(cfg.AWS, sqs.Info{Name: cfg.Queue.Name, URL: cfg.Queue.URL, ARN: cfg.Queue.ARN,
		DLQURL: cfg.Queue.DLQURL, DLQARN: cfg.Queue.DLQARN}, sqs.WithLogger(cfg.Logger))
	return c, nil
}

// NewSessionID returns a fresh session id routed to this caller's queue.
func (c *Client) NewSessionID() string {
	return c.cfg.CallerID + "." + uuid.NewString()
}

// Submit publishes AgentRequested for a new session and returns its id.
func (c *Client) Submit(ctx context.Context, req events.AgentRequested) (string, error) {
	sid := c.NewSessionID()
	return sid, c.SubmitSession(ctx, sid, req)
}

// SubmitSession publishes AgentRequested for sessionID, which must start
// with "<CallerID>." for the result to reach this client.
func (c *Client) SubmitSession(ctx context.Context, sessionID string, req events.AgentRequested) error {
	return c.publish(ctx, sessionID, req)
}

// Cancel asks the planner to stop sessionID; the run then ends with
// AgentCancelled (unless it ended first).
func (c *Client) Cancel(ctx context.Context, sessionID, reason string) error {
	return c.publish(ctx, sessionID, events.AgentCancelRequested{Reason: reason})
}

func (c *Client) publish(ctx context.Context, sessionID string, p events.Payload) error {
	ev, err := events.NewPayload(c.cfg.Source, sessionID, p)
	if err != nil {
		return fmt.Errorf("awsclient: %w", err)
	}
	if err := c.validator.Validate(ev); err != nil {
		return fmt.Errorf("awsclient: %w", err)
	}
	if err := c.pub.Publish(ctx, ev); err != nil {
		return fmt.Errorf("awsclient: publish %s: %w", ev.Type(), err)
	}
	return nil
}

// Run submits req and waits for its result.
func (c *Client) Run(ctx context.Context, req events.AgentRequested) (Result, error) {
	sid, err := c.Submit(ctx, req)
	if err != nil {
		return Result{}, err
	}
	return c.Await(ctx, sid)
}

// Await waits for the terminal event of sessionID. A result that arrived
// before Await was called is kept (in memory) and returned at once.
func (c *Client) Await(ctx context.Context, sessionID string) (Result, error) {
	ch := make(chan Result, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return Result{}, ErrClosed
	}
	if r, ok := c.results[sessionID]; ok {
		delete(c.results, sessionID)
		c.mu.Unlock()
		return r, nil
	}
	c.waiters[sessionID] = append(c.waiters[sessionID], ch)
	if !c.started {
		c.started = true
		loopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
		c.stop = stop
		go c.consume(loopCtx)
	}
	c.mu.Unlock()
	select {
	case r := <-ch:
		return r, nil
	case <-c.done:
		return Result{}, ErrClosed
	case <-ctx.Done():
		c.mu.Lock()
		ws := c.waiters[sessionID]
		for i, w := range ws {
			if w == ch {
				c.waiters[sessionID] = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(c.waiters[sessionID]) == 0 {
			delete(c.waiters, sessionID)
		}
		c.mu.Unlock()
		return Result{}, fmt.Errorf("awsclient: await %s: %w", sessionID, ctx.Err())
	}
}

// Close stops consuming the caller queue.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	started := c.started
	c.mu.Unlock()
	if started {
		c.stop()
		<-c.done
	} else {
		close(c.done)
	}
	return nil
}

// consume receives terminal events until ctx ends and hands them to
// waiters.
func (c *Client) consume(ctx context.Context) {
	defer close(c.done)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		msgs, err := c.queue.Receive(ctx, 10, 10*time.Second, 30*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.cfg.Logger.Warn("awsclient: receive failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		var acks []string
		for _, m := range msgs {
			if c.deliver(ctx, m) {
				acks = append(acks, m.Receipt)
			}
		}
		if len(acks) > 0 {
			if err := c.queue.Ack(ctx, acks...); err != nil && ctx.Err() == nil {
				c.cfg.Logger.Warn("awsclient: ack failed (the result may be delivered again)", "err", err)
			}
		}
	}
}

// deliver decodes one message and hands its result over; false leaves the
// message to be received again (it was dead-lettered or failed transiently).
func (c *Client) deliver(ctx context.Context, m bus.Message) bool {
	if m.DecodeErr != nil {
		if err := c.queue.DeadLetter(ctx, m, m.DecodeErr.Error()); err != nil {
			c.cfg.Logger.Warn("awsclient: dead-letter failed", "err", err, "message", m.ID)
		}
		return false
	}
	ev := m.Event
	if events.DataRef(ev) != "" {
		if c.resolver == nil {
			c.cfg.Logger.Error("awsclient: result is a claim check and no bucket is configured (Config.Bucket)", "session", events.SessionID(ev))
			return false
		}
		resolved, err := c.resolver.Resolve(ctx, ev)
		if err != nil {
			c.cfg.Logger.Warn("awsclient: resolve claim check", "err", err)
			return false
		}
		ev = resolved
	}
	r := Result{SessionID: events.SessionID(ev), Event: ev}
	var err error
	switch ev.Type() {
	case events.TypeAgentCompleted:
		var p events.AgentCompleted
		p, err = events.Decode[events.AgentCompleted](ev)
		r.Completed = &p
	case events.TypeAgentFailed:
		var p events.AgentFailed
		p, err = events.Decode[events.AgentFailed](ev)
		r.Failed = &p
	case events.TypeAgentCancelled:
		var p events.AgentCancelled
		p, err = events.Decode[events.AgentCancelled](ev)
		r.Cancelled = &p
	default:
		c.cfg.Logger.Warn("awsclient: ignoring unexpected event on the caller queue", "type", ev.Type())
		return true
	}
	if err != nil {
		if dlErr := c.queue.DeadLetter(ctx, m, err.Error()); dlErr != nil {
			c.cfg.Logger.Warn("awsclient: dead-letter failed", "err", dlErr)
		}
		return false
	}
	c.mu.Lock()
	ws := c.waiters[r.SessionID]
	delete(c.waiters, r.SessionID)
	if len(ws) == 0 {
		c.results[r.SessionID] = r
	}
	c.mu.Unlock()
	for _, w := range ws {
		w <- r
	}
	return true
}
