package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
)

// Transport is what Run needs to start and follow a session. Client (gRPC
// to a dev server) implements it; an AWS transport (PutEvents to
// EventBridge, events read from a caller-owned SQS queue fed by a rule on
// the session) implements the same three methods.
type Transport interface {
	// Submit publishes AgentRequested and returns the session id.
	Submit(ctx context.Context, req Request) (sessionID string, err error)
	// Watch streams the session's events, each once, ending with io.EOF
	// after the terminal event.
	Watch(ctx context.Context, sessionID string) (Stream, error)
	// Cancel publishes AgentCancelRequested.
	Cancel(ctx context.Context, sessionID, reason string) error
}

// Stream yields a session's events.
type Stream interface {
	// Next returns the next event, or io.EOF after the terminal event.
	Next() (event.Event, error)
	Close() error
}

// Request is one agent run to start.
type Request struct {
	// Prompt is required.
	Prompt string
	// Agent is an optional inline agent definition.
	Agent    *events.AgentSpec
	Metadata map[string]string
	// SessionID makes a retried Submit safe; "" = a new id.
	SessionID string
	// TraceParent (W3C) joins the caller's trace; "" = a new trace.
	TraceParent string
}

// Status is a session's lifecycle state.
type Status string

// Session statuses.
const (
	StatusPending   Status = "pending"
	StatusRunning   Status = "running"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// Session is a session's state.
type Session struct {
	ID        string
	Status    Status
	AgentName string
	Answer    string
	// Reason and Message explain a failed (or cancelled) session.
	Reason    string
	Message   string
	Steps     int
	Usage     events.Usage
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Result is how a run ended.
type Result struct {
	SessionID string
	// Status is StatusCompleted, StatusFailed or StatusCancelled.
	Status Status
	Answer string
	Reason string
	// Message is AgentFailed.message.
	Message string
	Steps   int
	Usage   events.Usage
	// Final is the terminal event.
	Final event.Event
}

// Errors of Run and Await for a session that ended without an answer; the
// Result is filled all the same.
var (
	ErrAgentFailed    = errors.New("agent failed")
	ErrAgentCancelled = errors.New("agent cancelled")
	// ErrStreamEnded: the event stream ended before a terminal event.
	ErrStreamEnded = errors.New("event stream ended before the session did")
)

// RunOption configures Run.
type RunOption func(*runOptions)

type runOptions struct {
	req     Request
	onEvent func(event.Event)
}

// WithAgent runs the inline agent definition spec.
func WithAgent(spec *events.AgentSpec) RunOption { return func(o *runOptions) { o.req.Agent = spec } }

// WithMetadata attaches metadata to AgentRequested.
func WithMetadata(md map[string]string) RunOption { return func(o *runOptions) { o.req.Metadata = md } }

// WithSessionID uses id as the session id.
func WithSessionID(id string) RunOption { return func(o *runOptions) { o.req.SessionID = id } }

// OnEvent calls f with every event of the session as it arrives (the
// terminal event included), e.g. to show progress.
func OnEvent(f func(event.Event)) RunOption { return func(o *runOptions) { o.onEvent = f } }

// RunWith submits prompt through t and waits for AgentCompleted,
// AgentFailed or AgentCancelled. It returns the Result, with an error
// wrapping ErrAgentFailed or ErrAgentCancelled when the run did not
// complete. When ctx ends first, it asks for a cancel (best effort) and
// returns ctx's error.
func RunWith(ctx context.Context, t Transport, prompt string, opts ...RunOption) (Result, error) {
	o := runOptions{req: Request{Prompt: prompt}}
	for _, opt := range opts {
		opt(&o)
	}
	sid, err := t.Submit(ctx, o.req)
	if err != nil {
		return Result{}, err
	}
	return Await(ctx, t, sid, o.onEvent)
}

// Await follows the session sid to its end; onEvent may be nil.
func Await(ctx context.Context, t Transport, sid string, onEvent func(event.Event)) (Result, error) {
	res := Result{SessionID: sid}
	st, err := t.Watch(ctx, sid)
	if err != nil {
		return res, err
	}
	defer st.Close()
	for {
		ev, err := st.Next()
		if err != nil {
			if ctx.Err() != nil {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				_ = t.Cancel(cctx, sid, "the caller stopped waiting")
				cancel()
				return res, ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return res, fmt.Errorf("session %s: %w", sid, ErrStreamEnded)
			}
			return res, err
		}
		if onEvent != nil {
			onEvent(ev)
		}
		if done, err := res.end(ev); done {
			return res, err
		}
	}
}

// end fills r from a terminal event; done is false for any other event.
func (r *Result) end(ev event.Event) (done bool, err error) {
	switch ev.Type() {
	case events.TypeAgentCompleted:
		d, err := events.Decode[events.AgentCompleted](ev)
		if err != nil {
			return true, err
		}
		r.Status, r.Answer, r.Steps, r.Usage, r.Final = StatusCompleted, d.Answer, d.Steps, d.Usage, ev
		return true, nil
	case events.TypeAgentFailed:
		d, err := events.Decode[events.AgentFailed](ev)
		if err != nil {
			return true, err
		}
		r.Status, r.Reason, r.Message, r.Steps, r.Usage, r.Final = StatusFailed, string(d.Reason), d.Message, d.Steps, d.Usage, ev
		return true, fmt.Errorf("session %s: %w: %s: %s", r.SessionID, ErrAgentFailed, d.Reason, d.Message)
	case events.TypeAgentCancelled:
		d, err := events.Decode[events.AgentCancelled](ev)
		if err != nil {
			return true, err
		}
		r.Status, r.Reason, r.Steps, r.Usage, r.Final = StatusCancelled, d.Reason, d.Steps, d.Usage, ev
		return true, fmt.Errorf("session %s: %w: %s", r.SessionID, ErrAgentCancelled, d.Reason)
	}
	return false, nil
}
