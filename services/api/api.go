// Package api serves the agentbus gRPC API (proto/agentbus/v1): it turns
// calls into events on the bus (Submit → AgentRequested, Cancel →
// AgentCancelRequested), follows a session's events for Watch (history
// replay, then a live subscription), and answers reads from the state
// store, the memory service and the tool registry. It holds no state of its
// own beyond the sessions it submitted recently, so any number of servers
// can front one runtime.
//
// Security: see Listen. A loopback listener may run without TLS or token;
// any other address needs TLS and a bearer token or client certificates.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/state"
	pb "github.com/agentbus/agentbus/proto/agentbus/v1"
	"github.com/agentbus/agentbus/tools"
)

// Sessions is the part of the state store the API reads.
type Sessions interface {
	GetSession(ctx context.Context, id string) (state.Session, error)
	ListSessions(ctx context.Context, cursor string, limit int) (state.SessionPage, error)
	ReadHistory(ctx context.Context, sessionID string, afterSeq int64, limit int) ([]state.Entry, error)
}

// Turn is one recorded event rendered for a model's context (the memory
// service's reads, in this package's own type so that it need not import
// the service).
type Turn struct {
	Seq  int64
	Type string
	Time time.Time
	Text string
}

// Memory is the memory service's read side.
type Memory interface {
	Context(ctx context.Context, sessionID string, tokenBudget int) ([]Turn, error)
	Search(ctx context.Context, sessionID, query string, limit int) ([]Turn, error)
}

// ToolRegistry is what the API needs of the tool registry.
type ToolRegistry interface {
	All() []tools.Spec
	Lookup(name string) (*tools.Entry, error)
	Missing(allow []string) []string
}

// Subscriber opens a live subscription to one session's events.
type Subscriber interface {
	Subscribe(ctx context.Context, sessionID string) (Subscription, error)
}

// Subscription delivers a session's events as the bus routes them.
type Subscription interface {
	// Next waits (briefly: it returns an empty slice when nothing arrived
	// within its poll interval) for the next events. Duplicates are
	// possible; the caller dedupes on source+id.
	Next(ctx context.Context) ([]event.Event, error)
	// Close removes the subscription.
	Close(ctx context.Context)
}

// Config holds a Server's dependencies. Publisher, Sessions, Subscriber,
// Memory and Tools are required.
type Config struct {
	Publisher bus.Publisher
	// Validator checks AgentRequested before it is published, so that a bad
	// request is INVALID_ARGUMENT naming the offending field; nil skips it.
	Validator  *events.Validator
	Sessions   Sessions
	Subscriber Subscriber
	Memory     Memory
	Tools      ToolRegistry
	// Plugins hosts the PluginService (plug-in tools and queues); nil
	// answers its calls UNIMPLEMENTED.
	Plugins PluginHost
	// Source is the CloudEvents source of the events the API publishes
	// (default events.SourceClient).
	Source string
	// HistoryPoll is how often Watch re-reads the history while following
	// live, to pick up events published before its subscription existed
	// (default 500ms).
	HistoryPoll time.Duration
	// HistoryGrace bounds how long Watch and Get wait for the history to
	// record a session's terminal event once it was seen (default 2s).
	HistoryGrace time.Duration
	Logger       *slog.Logger
}

// Server implements the three services of agentbus.v1.
type Server struct {
	pb.UnimplementedAgentServiceServer
	pb.UnimplementedMemoryServiceServer
	pb.UnimplementedToolGatewayServer
	pb.UnimplementedPluginServiceServer

	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	recent map[string]time.Time // sessions submitted here, not yet known to the store
	// early holds, per submitted session, the subscription Submit opened
	// before publishing, until the first Watch adopts it: that Watch sees
	// every event in bus order, none lost between Submit and Watch.
	early map[string]earlySub
}

type earlySub struct {
	sub Subscription
	at  time.Time
}

var (
	_ pb.AgentServiceServer  = (*Server)(nil)
	_ pb.MemoryServiceServer = (*Server)(nil)
	_ pb.ToolGatewayServer   = (*Server)(nil)
)

// recentTTL is how long a submitted session counts as known without a
// session record (the planner creates it within milliseconds normally).
const recentTTL = 10 * time.Minute

// earlyTTL is how long a Submit's subscription waits for its Watch.
const earlyTTL = time.Minute

// New returns a Server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Publisher == nil:
		return nil, errors.New("api: no publisher")
	case cfg.Sessions == nil:
		return nil, errors.New("api: no session store")
	case cfg.Subscriber == nil:
		return nil, errors.New("api: no subscriber")
	case cfg.Memory == nil:
		return nil, errors.New("api: no memory reader")
	case cfg.Tools == nil:
		return nil, errors.New("api: no tool registry")
	}
	if cfg.Source == "" {
		cfg.Source = events.SourceClient
	}
	if cfg.HistoryPoll <= 0 {
		cfg.HistoryPoll = 500 * time.Millisecond
	}
	if cfg.HistoryGrace <= 0 {
		cfg.HistoryGrace = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: cfg.Logger, recent: map[string]time.Time{}, early: map[string]earlySub{}}, nil
}

// Close removes the subscriptions no Watch adopted.
func (s *Server) Close(ctx context.Context) {
	s.mu.Lock()
	early := s.early
	s.early = map[string]earlySub{}
	s.mu.Unlock()
	for _, e := range early {
		e.sub.Close(ctx)
	}
}

// keepEarly stores a Submit's subscription and closes the ones that
// waited too long.
func (s *Server) keepEarly(ctx context.Context, sid string, sub Subscription) {
	now := time.Now()
	var stale []Subscription
	s.mu.Lock()
	for id, e := range s.early {
		if now.Sub(e.at) > earlyTTL {
			stale = append(stale, e.sub)
			delete(s.early, id)
		}
	}
	s.early[sid] = earlySub{sub: sub, at: now}
	s.mu.Unlock()
	for _, sub := range stale {
		sub.Close(ctx)
	}
}

// takeEarly hands the session's early subscription to its first Watch.
func (s *Server) takeEarly(sid string) Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.early[sid]
	if !ok {
		return nil
	}
	delete(s.early, sid)
	return e.sub
}

// Register registers the services on g.
func (s *Server) Register(g *grpc.Server) {
	pb.RegisterAgentServiceServer(g, s)
	pb.RegisterMemoryServiceServer(g, s)
	pb.RegisterToolGatewayServer(g, s)
	pb.RegisterPluginServiceServer(g, s)
}

// Submit publishes AgentRequested.
func (s *Server) Submit(ctx context.Context, req *pb.SubmitRequest) (*pb.SubmitResponse, error) {
	if strings.TrimSpace(req.GetPrompt()) == "" {
		return nil, status.Error(codes.InvalidArgument, "prompt is empty: put the user's request in SubmitRequest.prompt")
	}
	sid := req.GetSessionId()
	if sid == "" {
		sid = uuid.NewString()
	} else {
		if err := state.ValidateSessionID(sid); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "session_id: %v", err)
		}
		known, _, err := s.lookup(ctx, sid)
		if err != nil {
			return nil, toStatus(err, "look up session "+sid)
		}
		if known {
			return nil, status.Errorf(codes.AlreadyExists, "session %q already exists: leave session_id empty for a new session, or Watch/Get this one", sid)
		}
	}
	var spec *events.AgentSpec
	if a := req.GetAgent(); a != nil {
		spec = &events.AgentSpec{Name: a.GetName(), Model: a.GetModel(), System: a.GetSystem(), Tools: a.GetTools()}
		if l := a.GetLimits(); l != nil {
			spec.Limits = &events.Limits{MaxSteps: int(l.GetMaxSteps()), MaxTokens: int(l.GetMaxTokens()), TimeoutSeconds: int(l.GetTimeoutSeconds())}
		}
		if missing := s.cfg.Tools.Missing(spec.Tools); len(missing) > 0 {
			var known []string
			for _, sp := range s.cfg.Tools.All() {
				known = append(known, sp.Name)
			}
			return nil, status.Errorf(codes.InvalidArgument, "agent.tools names unknown tool(s) %s; known tools: %s (see ToolGateway.ListTools)",
				strings.Join(missing, ", "), strings.Join(known, ", "))
		}
	}
	var opts []events.Option
	if tp := req.GetTraceparent(); tp != "" {
		if !events.ValidTraceParent(tp) {
			return nil, status.Errorf(codes.InvalidArgument, "traceparent %q is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>); leave it empty to start a new trace", tp)
		}
		opts = append(opts, events.WithTraceParent(tp))
	}
	ev, err := events.NewPayload(s.cfg.Source, sid, events.AgentRequested{Prompt: req.GetPrompt(), Agent: spec, Metadata: req.GetMetadata()}, opts...)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "build AgentRequested: %v", err)
	}
	if s.cfg.Validator != nil {
		if err := s.cfg.Validator.Validate(ev); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "the request breaks the AgentRequested schema: %v", err)
		}
	}
	// Subscribe before publishing, so that the first Watch misses nothing.
	sub, err := s.cfg.Subscriber.Subscribe(ctx, sid)
	if err != nil {
		return nil, toStatus(err, "subscribe to session "+sid)
	}
	s.remember(sid)
	if err := s.cfg.Publisher.Publish(ctx, ev); err != nil {
		s.forget(sid)
		sub.Close(context.WithoutCancel(ctx))
		if errors.Is(err, bus.ErrTooLarge) {
			return nil, status.Errorf(codes.InvalidArgument, "the request is too large for the bus: shorten the prompt or metadata (%v)", err)
		}
		return nil, toStatus(err, "publish AgentRequested")
	}
	s.keepEarly(context.WithoutCancel(ctx), sid, sub)
	s.log.Info("api: submitted", "session", sid, "event", ev.ID())
	return &pb.SubmitResponse{SessionId: sid, EventId: ev.ID()}, nil
}

// Cancel publishes AgentCancelRequested.
func (s *Server) Cancel(ctx context.Context, req *pb.CancelRequest) (*pb.CancelResponse, error) {
	sid := req.GetSessionId()
	if err := validSession(sid); err != nil {
		return nil, err
	}
	sess, err := s.knownSession(ctx, sid)
	if err != nil {
		return nil, err
	}
	if sess != nil && terminal(sess.Status) {
		return nil, status.Errorf(codes.FailedPrecondition, "session %q already ended (%s); nothing to cancel", sid, sess.Status)
	}
	reason := req.GetReason()
	if reason == "" {
		reason = "cancelled through the API"
	}
	ev, err := events.NewPayload(s.cfg.Source, sid, events.AgentCancelRequested{Reason: reason})
	if err != nil {
		return nil, toStatus(err, "build AgentCancelRequested")
	}
	if err := s.cfg.Publisher.Publish(ctx, ev); err != nil {
		return nil, toStatus(err, "publish AgentCancelRequested")
	}
	return &pb.CancelResponse{EventId: ev.ID()}, nil
}

// Get returns a session's state.
func (s *Server) Get(ctx context.Context, req *pb.GetRequest) (*pb.Session, error) {
	sid := req.GetSessionId()
	if err := validSession(sid); err != nil {
		return nil, err
	}
	sess, err := s.knownSession(ctx, sid)
	if err != nil {
		return nil, err
	}
	out := &pb.Session{SessionId: sid, Status: pb.Status_STATUS_PENDING}
	if sess == nil {
		return out, nil
	}
	out = sessionProto(*sess)
	// The planner writes the record before the memory service records the
	// terminal event: wait for the history to catch up, briefly.
	deadline := time.Now().Add(s.cfg.HistoryGrace)
	for {
		sum, err := s.summarize(ctx, sid)
		if err != nil {
			return nil, toStatus(err, "read history of "+sid)
		}
		if sum.terminal != nil || !terminal(sess.Status) || time.Now().After(deadline) {
			sum.fill(out)
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, toStatus(ctx.Err(), "get "+sid)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ListSessions lists sessions, newest first.
func (s *Server) ListSessions(ctx context.Context, req *pb.ListSessionsRequest) (*pb.ListSessionsResponse, error) {
	if req.GetPageSize() < 0 {
		return nil, status.Error(codes.InvalidArgument, "page_size is negative: use 0 for the default (100) or up to 1000")
	}
	page, err := s.cfg.Sessions.ListSessions(ctx, req.GetPageToken(), int(req.GetPageSize()))
	if err != nil {
		return nil, toStatus(err, "list sessions")
	}
	out := &pb.ListSessionsResponse{NextPageToken: page.Next}
	for _, ss := range page.Sessions {
		out.Sessions = append(out.Sessions, sessionProto(ss))
	}
	return out, nil
}

// GetHistory returns one page of a session's history.
func (s *Server) GetHistory(ctx context.Context, req *pb.GetHistoryRequest) (*pb.GetHistoryResponse, error) {
	sid := req.GetSessionId()
	if err := validSession(sid); err != nil {
		return nil, err
	}
	if req.GetPageSize() < 0 || req.GetAfterSeq() < 0 {
		return nil, status.Error(codes.InvalidArgument, "page_size and after_seq must not be negative")
	}
	if _, err := s.knownSession(ctx, sid); err != nil {
		return nil, err
	}
	es, err := s.cfg.Sessions.ReadHistory(ctx, sid, req.GetAfterSeq(), int(req.GetPageSize()))
	if err != nil {
		return nil, toStatus(err, "read history of "+sid)
	}
	out := &pb.GetHistoryResponse{Events: make([]*pb.Event, len(es))}
	for i, e := range es {
		out.Events[i] = entryProto(e)
	}
	return out, nil
}

// Watch streams a session's events until its terminal event.
func (s *Server) Watch(req *pb.WatchRequest, stream grpc.ServerStreamingServer[pb.Event]) error {
	ctx := stream.Context()
	sid := req.GetSessionId()
	if err := validSession(sid); err != nil {
		return err
	}
	// The first Watch after Submit adopts the subscription Submit opened
	// before publishing: it holds every event in bus order, so the watch
	// simply follows it. Any other watch subscribes before reading the
	// history: an event published from now on reaches the subscription, one
	// published before is (or will be) in the history, which Watch re-reads
	// while it follows.
	sub := s.takeEarly(sid)
	complete := sub != nil
	if sub == nil {
		var err error
		if sub, err = s.cfg.Subscriber.Subscribe(ctx, sid); err != nil {
			return toStatus(err, "subscribe to session "+sid)
		}
	}
	defer sub.Close(context.WithoutCancel(ctx))
	if _, err := s.knownSession(ctx, sid); err != nil {
		return err
	}
	w := &watch{s: s, sid: sid, stream: stream, seen: map[string]bool{}}
	if !complete {
		if done, err := w.sweep(ctx); done || err != nil {
			return err
		}
	}
	nextSweep := time.Now().Add(s.cfg.HistoryPoll)
	for {
		evs, err := sub.Next(ctx)
		if err != nil {
			return toStatus(err, "follow session "+sid)
		}
		for _, ev := range evs {
			if w.seen[key(ev.Source(), ev.ID())] {
				continue
			}
			if isTerminal(ev.Type()) {
				if complete {
					return w.sendLive(ev)
				}
				return w.finish(ctx, ev)
			}
			if err := w.sendLive(ev); err != nil {
				return err
			}
		}
		if !complete && time.Now().After(nextSweep) {
			if done, err := w.sweep(ctx); done || err != nil {
				return err
			}
			nextSweep = time.Now().Add(s.cfg.HistoryPoll)
		}
	}
}

// watch is one Watch call's progress.
type watch struct {
	s      *Server
	sid    string
	stream grpc.ServerStreamingServer[pb.Event]
	seen   map[string]bool
	after  int64
}

// sweep sends the history entries not yet sent; done reports that it sent
// the terminal event (always last: entries the history holds after it, from
// concurrent deliveries, go first).
func (w *watch) sweep(ctx context.Context) (done bool, err error) {
	var term *state.Entry
	for {
		page, err := w.s.cfg.Sessions.ReadHistory(ctx, w.sid, w.after, state.MaxPageSize)
		if err != nil {
			return false, toStatus(err, "read history of "+w.sid)
		}
		for _, e := range page {
			w.after = e.Seq
			k := key(e.Source, e.ID)
			if w.seen[k] {
				continue
			}
			if isTerminal(e.Type) {
				if term == nil {
					term = &e
				}
				continue
			}
			w.seen[k] = true
			if err := w.stream.Send(entryProto(e)); err != nil {
				return false, err
			}
		}
		if len(page) < state.MaxPageSize {
			break
		}
	}
	if term == nil {
		return false, nil
	}
	w.seen[key(term.Source, term.ID)] = true
	return true, w.stream.Send(entryProto(*term))
}

// finish ends the stream at a terminal event seen live: it gives the
// history a moment to record it, so that events published before this
// watch subscribed and recorded late are sent first.
func (w *watch) finish(ctx context.Context, ev event.Event) error {
	deadline := time.Now().Add(w.s.cfg.HistoryGrace)
	for time.Now().Before(deadline) {
		done, err := w.sweep(ctx)
		if done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return toStatus(ctx.Err(), "watch "+w.sid)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return w.sendLive(ev)
}

func (w *watch) sendLive(ev event.Event) error {
	w.seen[key(ev.Source(), ev.ID())] = true
	b, err := json.Marshal(ev)
	if err != nil {
		return toStatus(err, "encode event "+ev.ID())
	}
	return w.stream.Send(&pb.Event{Type: ev.Type(), Id: ev.ID(), Source: ev.Source(), Time: timestamppb.New(ev.Time()), CloudEvent: string(b)})
}

// summary is what a session's history says about its progress.
type summary struct {
	steps    int
	usage    events.Usage
	terminal *event.Event
}

func (s *Server) summarize(ctx context.Context, sid string) (summary, error) {
	var sum summary
	after := int64(0)
	for {
		page, err := s.cfg.Sessions.ReadHistory(ctx, sid, after, state.MaxPageSize)
		if err != nil {
			return sum, err
		}
		for _, e := range page {
			after = e.Seq
			switch e.Type {
			case events.TypeStepPlanned, events.TypeAgentCompleted, events.TypeAgentFailed, events.TypeAgentCancelled:
			default:
				continue
			}
			var ev event.Event
			if err := json.Unmarshal(e.Data, &ev); err != nil {
				continue // an unreadable entry says nothing about progress
			}
			if e.Type == events.TypeStepPlanned {
				if d, err := events.Decode[events.StepPlanned](ev); err == nil {
					sum.steps = max(sum.steps, d.Step)
					sum.usage = sum.usage.Add(d.Usage)
				}
				continue
			}
			if sum.terminal == nil {
				sum.terminal = &ev
			}
		}
		if len(page) < state.MaxPageSize {
			return sum, nil
		}
	}
}

// fill sets out's progress (and, once ended, outcome) fields.
func (sum summary) fill(out *pb.Session) {
	out.Steps = int32(sum.steps)
	out.Usage = usageProto(sum.usage)
	if sum.terminal == nil {
		return
	}
	ev := *sum.terminal
	switch ev.Type() {
	case events.TypeAgentCompleted:
		if d, err := events.Decode[events.AgentCompleted](ev); err == nil {
			out.Status, out.Answer, out.Steps, out.Usage = pb.Status_STATUS_COMPLETED, d.Answer, int32(d.Steps), usageProto(d.Usage)
		}
	case events.TypeAgentFailed:
		if d, err := events.Decode[events.AgentFailed](ev); err == nil {
			out.Status, out.Reason, out.Message, out.Steps, out.Usage = pb.Status_STATUS_FAILED, string(d.Reason), d.Message, int32(d.Steps), usageProto(d.Usage)
		}
	case events.TypeAgentCancelled:
		if d, err := events.Decode[events.AgentCancelled](ev); err == nil {
			out.Status, out.Reason, out.Steps, out.Usage = pb.Status_STATUS_CANCELLED, d.Reason, int32(d.Steps), usageProto(d.Usage)
		}
	}
}

// lookup reports whether sid is a session: one with a record (returned),
// one this server submitted, or one whose history has begun (the planner
// has not created the record yet).
func (s *Server) lookup(ctx context.Context, sid string) (known bool, sess *state.Session, err error) {
	ss, err := s.cfg.Sessions.GetSession(ctx, sid)
	if err == nil {
		s.forget(sid)
		return true, &ss, nil
	}
	if !errors.Is(err, state.ErrNotFound) {
		return false, nil, err
	}
	s.mu.Lock()
	_, recent := s.recent[sid]
	s.mu.Unlock()
	if recent {
		return true, nil, nil
	}
	es, err := s.cfg.Sessions.ReadHistory(ctx, sid, 0, 1)
	if err != nil {
		return false, nil, err
	}
	return len(es) > 0, nil, nil
}

// knownSession is lookup for a method that needs a known session: the
// record (nil while the planner has not created it), NOT_FOUND for an
// unknown session, or the lookup's error as a status.
func (s *Server) knownSession(ctx context.Context, sid string) (*state.Session, error) {
	known, sess, err := s.lookup(ctx, sid)
	if err != nil {
		return nil, toStatus(err, "look up session "+sid)
	}
	if !known {
		return nil, notFound(sid)
	}
	return sess, nil
}

func (s *Server) remember(sid string) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range s.recent {
		if now.Sub(t) > recentTTL {
			delete(s.recent, id)
		}
	}
	s.recent[sid] = now
}

func (s *Server) forget(sid string) {
	s.mu.Lock()
	delete(s.recent, sid)
	s.mu.Unlock()
}

func key(source, id string) string { return source + "\x00" + id }

func isTerminal(typ string) bool {
	switch typ {
	case events.TypeAgentCompleted, events.TypeAgentFailed, events.TypeAgentCancelled:
		return true
	}
	return false
}

func terminal(st state.Status) bool {
	switch st {
	case state.StatusCompleted, state.StatusFailed, state.StatusCancelled:
		return true
	}
	return false
}

func validSession(sid string) error {
	if sid == "" {
		return status.Error(codes.InvalidArgument, "session_id is empty: pass the id Submit returned (or see ListSessions)")
	}
	if err := state.ValidateSessionID(sid); err != nil {
		return status.Errorf(codes.InvalidArgument, "session_id: %v", err)
	}
	return nil
}

func notFound(sid string) error {
	return status.Errorf(codes.NotFound, "no session %q on this server: check the id (ListSessions lists them)", sid)
}

// toStatus maps an error to a gRPC status; what names the failed action.
func toStatus(err error, what string) error {
	if _, ok := status.FromError(err); ok {
		return err // already a status (or nil)
	}
	code := codes.Internal
	switch {
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, state.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, state.ErrInvalid), errors.Is(err, events.ErrInvalidEvent):
		code = codes.InvalidArgument
	case errors.Is(err, state.ErrConflict):
		code = codes.Aborted
	case errors.Is(err, bus.ErrClosed):
		code = codes.Unavailable
	}
	return status.Errorf(code, "%s: %v", what, err)
}

func sessionProto(s state.Session) *pb.Session {
	st := pb.Status_STATUS_UNSPECIFIED
	switch s.Status {
	case state.StatusRunning:
		st = pb.Status_STATUS_RUNNING
	case state.StatusCompleted:
		st = pb.Status_STATUS_COMPLETED
	case state.StatusFailed:
		st = pb.Status_STATUS_FAILED
	case state.StatusCancelled:
		st = pb.Status_STATUS_CANCELLED
	}
	return &pb.Session{SessionId: s.ID, Status: st, AgentName: s.AgentName,
		CreatedAt: timestamppb.New(s.CreatedAt), UpdatedAt: timestamppb.New(s.UpdatedAt)}
}

func entryProto(e state.Entry) *pb.Event {
	return &pb.Event{Type: e.Type, Id: e.ID, Source: e.Source, Time: timestamppb.New(e.Time), CloudEvent: string(e.Data), Seq: e.Seq}
}

func usageProto(u events.Usage) *pb.Usage {
	return &pb.Usage{InputTokens: int64(u.InputTokens), OutputTokens: int64(u.OutputTokens)}
}
