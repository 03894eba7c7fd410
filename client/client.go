// Package client runs agents on agentbus from Go. Client talks to a running
// agentbus API server (`agentbus dev`) over gRPC; Run, Await and the
// Transport interface are transport-neutral, so an AWS transport
// (EventBridge in, a caller-owned SQS queue out) plugs in beside it.
//
//	c, err := client.Dial(ctx, "127.0.0.1:7421")
//	res, err := c.Run(ctx, "What is 6*7?")
//	fmt.Println(res.Answer)
//
// Errors from the server are gRPC status errors: status.Code(err) tells
// NotFound, InvalidArgument, Unauthenticated, ... apart.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"

	"net"
	"os"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/agentbus/agentbus/events"
	pb "github.com/agentbus/agentbus/proto/agentbus/v1"
)

// Client is a connection to an agentbus API server. It is safe for
// concurrent use. Close it when done.
type Client struct {
	conn   *grpc.ClientConn
	agents pb.AgentServiceClient
	memory pb.MemoryServiceClient
	tools  pb.ToolGatewayClient
}

var _ Transport = (*Client)(nil)

// Option configures Dial.
type Option func(*dialOptions)

type dialOptions struct {
	token       string
	tls         *tls.Config
	caFile      string
	dialOptions []grpc.DialOption
}

// WithToken sends token as "authorization: Bearer <token>" on every call.
// Over plaintext it is only sent to a loopback address; elsewhere Dial
// requires TLS.
func WithToken(token string) Option { return func(o *dialOptions) { o.token = token } }

// WithTLS connects with TLS using cfg (nil: the system roots).
func WithTLS(cfg *tls.Config) Option {
	return func(o *dialOptions) {
		if cfg == nil {
			cfg = &tls.Config{}
		}
		o.tls = cfg
	}
}

// WithTLSCAFile connects with TLS, trusting the PEM CA certificates in file
// (a private CA, or the server's self-signed certificate).
func WithTLSCAFile(file string) Option { return func(o *dialOptions) { o.caFile = file } }

// WithDialOptions adds raw gRPC dial options (e.g. a bufconn dialer in
// tests); they are applied after the client's own.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *dialOptions) { o.dialOptions = append(o.dialOptions, opts...) }
}

// ErrInsecureToken is returned by Dial when a token would travel in clear
// text to a host that is not this machine.
var ErrInsecureToken = errors.New("client: refusing to send a bearer token without TLS to a non-loopback address")

// Dial prepares a connection to addr (host:port). The connection is made
// lazily: an unreachable server shows as UNAVAILABLE on the first call.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	_ = ctx // reserved: the connection is lazy, so nothing to bound yet
	var o dialOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.caFile != "" {
		pool, err := loadPool(o.caFile)
		if err != nil {
			return nil, err
		}
		if o.tls == nil {
			o.tls = &tls.Config{}
		}
		o.tls = o.tls.Clone()
		o.tls.RootCAs = pool
	}
	var dial []grpc.DialOption
	if o.tls != nil {
		cfg := o.tls.Clone()
		if cfg.MinVersion == 0 {
			cfg.MinVersion = tls.VersionTLS12
		}
		dial = append(dial, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		if o.token != "" && !loopback(addr) {
			return nil, fmt.Errorf("%w (%s): use WithTLS or WithTLSCAFile", ErrInsecureToken, addr)
		}
		dial = append(dial, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if o.token != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(bearer{token: o.token, secure: o.tls != nil}))
	}
	dial = append(dial, o.dialOptions...)
	conn, err := grpc.NewClient(addr, dial...)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", addr, err)
	}
	return &Client{conn: conn, agents: pb.NewAgentServiceClient(conn), memory: pb.NewMemoryServiceClient(conn), tools: pb.NewToolGatewayClient(conn)}, nil
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// bearer is the per-call token credential.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity is false only for the plaintext loopback case
// Dial allowed.
func (b bearer) RequireTransportSecurity() bool { return b.secure }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// PluginService returns the PluginService stub on this connection (same
// token and TLS). Plug-in authors use package plugin, which builds on it.
func (c *Client) PluginService() pb.PluginServiceClient { return pb.NewPluginServiceClient(c.conn) }

// Submit publishes AgentRequested and returns the session id.
func (c *Client) Submit(ctx context.Context, req Request) (string, error) {
	in := &pb.SubmitRequest{Prompt: req.Prompt, Metadata: req.Metadata, SessionId: req.SessionID, Traceparent: req.TraceParent}
	if a := req.Agent; a != nil {
		in.Agent = &pb.AgentSpec{Name: a.Name, Model: a.Model, System: a.System, Tools: a.Tools}
		if l := a.Limits; l != nil {
			in.Agent.Limits = &pb.Limits{MaxSteps: int32(l.MaxSteps), MaxTokens: int32(l.MaxTokens), TimeoutSeconds: int32(l.TimeoutSeconds)}
		}
	}
	out, err := c.agents.Submit(ctx, in)
	if err != nil {
		return "", err
	}
	return out.GetSessionId(), nil
}

// Watch streams the session's events from its first to its terminal one.
func (c *Client) Watch(ctx context.Context, sessionID string) (Stream, error) {
	ctx, cancel := context.WithCancel(ctx)
	st, err := c.agents.Watch(ctx, &pb.WatchRequest{SessionId: sessionID})
	if err != nil {
		cancel()
		return nil, err
	}
	return &grpcStream{st: st, cancel: cancel}, nil
}

// grpcStream reads a Watch stream.
type grpcStream struct {
	st     grpc.ServerStreamingClient[pb.Event]
	cancel context.CancelFunc
}

func (s *grpcStream) Next() (event.Event, error) {
	m, err := s.st.Recv()
	if err != nil {
		return event.Event{}, err // io.EOF after the terminal event
	}
	return decodeEvent(m)
}

func (s *grpcStream) Close() error { s.cancel(); return nil }

// Cancel publishes AgentCancelRequested.
func (c *Client) Cancel(ctx context.Context, sessionID, reason string) error {
	_, err := c.agents.Cancel(ctx, &pb.CancelRequest{SessionId: sessionID, Reason: reason})
	return err
}

// Get returns the session's state.
func (c *Client) Get(ctx context.Context, sessionID string) (Session, error) {
	s, err := c.agents.Get(ctx, &pb.GetRequest{SessionId: sessionID})
	if err != nil {
		return Session{}, err
	}
	return sessionFrom(s), nil
}

// ListSessions returns one page of sessions, newest first, and the token
// of the next page ("" after the last).
func (c *Client) ListSessions(ctx context.Context, pageToken string, pageSize int) ([]Session, string, error) {
	out, err := c.agents.ListSessions(ctx, &pb.ListSessionsRequest{PageToken: pageToken, PageSize: int32(pageSize)})
	if err != nil {
		return nil, "", err
	}
	ss := make([]Session, len(out.GetSessions()))
	for i, s := range out.GetSessions() {
		ss[i] = sessionFrom(s)
	}
	return ss, out.GetNextPageToken(), nil
}

// HistoryEvent is one recorded event and its position in the history.
type HistoryEvent struct {
	Seq   int64
	Event event.Event
	// Raw is the event's CloudEvent JSON exactly as the history holds it.
	Raw json.RawMessage
	// Time is the event's time as the history stores it (millisecond
	// precision), the order a timeline sorts by.
	Time time.Time
}

// History returns up to pageSize recorded events with Seq > afterSeq;
// fewer than asked means the end.
func (c *Client) History(ctx context.Context, sessionID string, afterSeq int64, pageSize int) ([]HistoryEvent, error) {
	out, err := c.agents.GetHistory(ctx, &pb.GetHistoryRequest{SessionId: sessionID, AfterSeq: afterSeq, PageSize: int32(pageSize)})
	if err != nil {
		return nil, err
	}
	hs := make([]HistoryEvent, 0, len(out.GetEvents()))
	for _, m := range out.GetEvents() {
		ev, err := decodeEvent(m)
		if err != nil {
			return nil, err
		}
		hs = append(hs, HistoryEvent{Seq: m.GetSeq(), Event: ev, Raw: json.RawMessage(m.GetCloudEvent()), Time: m.GetTime().AsTime()})
	}
	return hs, nil
}

// Turn is one recorded event rendered for a model's context.
type Turn struct {
	Seq  int64
	Type string
	Time time.Time
	Text string
}

// Context returns the session's recent turns within tokenBudget (0 = all
// of the recent window), oldest first.
func (c *Client) Context(ctx context.Context, sessionID string, tokenBudget int) ([]Turn, error) {
	out, err := c.memory.GetContext(ctx, &pb.GetContextRequest{SessionId: sessionID, TokenBudget: int32(tokenBudget)})
	if err != nil {
		return nil, err
	}
	return turnsFrom(out.GetTurns()), nil
}

// Search returns up to limit turns containing query, newest first.
func (c *Client) Search(ctx context.Context, sessionID, query string, limit int) ([]Turn, error) {
	out, err := c.memory.SearchHistory(ctx, &pb.SearchHistoryRequest{SessionId: sessionID, Query: query, Limit: int32(limit)})
	if err != nil {
		return nil, err
	}
	return turnsFrom(out.GetTurns()), nil
}

// Tool is one registered tool.
type Tool struct {
	Name        string
	Description string
	InputSchema json.RawMessage
	Idempotent  bool
	Timeout     time.Duration
	// Local is true when the server's process runs the tool itself.
	Local bool
}

// ListTools returns the registered tools, sorted by name.
func (c *Client) ListTools(ctx context.Context) ([]Tool, error) {
	out, err := c.tools.ListTools(ctx, &pb.ListToolsRequest{})
	if err != nil {
		return nil, err
	}
	ts := make([]Tool, len(out.GetTools()))
	for i, t := range out.GetTools() {
		ts[i] = Tool{Name: t.GetName(), Description: t.GetDescription(), InputSchema: json.RawMessage(t.GetInputSchema()),
			Idempotent: t.GetIdempotent(), Timeout: time.Duration(t.GetTimeoutMs()) * time.Millisecond, Local: t.GetLocal()}
	}
	return ts, nil
}

// Run submits prompt and waits for the session's end; see RunWith.
func (c *Client) Run(ctx context.Context, prompt string, opts ...RunOption) (Result, error) {
	return RunWith(ctx, c, prompt, opts...)
}

func decodeEvent(m *pb.Event) (event.Event, error) {
	var ev event.Event
	if err := json.Unmarshal([]byte(m.GetCloudEvent()), &ev); err != nil {
		return event.Event{}, fmt.Errorf("client: event %s from %s is not a CloudEvent: %w", m.GetId(), m.GetSource(), err)
	}
	return ev, nil
}

func turnsFrom(ts []*pb.Turn) []Turn {
	out := make([]Turn, len(ts))
	for i, t := range ts {
		out[i] = Turn{Seq: t.GetSeq(), Type: t.GetType(), Time: t.GetTime().AsTime(), Text: t.GetText()}
	}
	return out
}

func sessionFrom(s *pb.Session) Session {
	out := Session{ID: s.GetSessionId(), AgentName: s.GetAgentName(), Answer: s.GetAnswer(), Reason: s.GetReason(),
		Message: s.GetMessage(), Steps: int(s.GetSteps()),
		Usage: events.Usage{InputTokens: int(s.GetUsage().GetInputTokens()), OutputTokens: int(s.GetUsage().GetOutputTokens())}}
	if s.GetCreatedAt() != nil {
		out.CreatedAt = s.GetCreatedAt().AsTime()
	}
	if s.GetUpdatedAt() != nil {
		out.UpdatedAt = s.GetUpdatedAt().AsTime()
	}
	switch s.GetStatus() {
	case pb.Status_STATUS_PENDING:
		out.Status = StatusPending
	case pb.Status_STATUS_RUNNING:
		out.Status = StatusRunning
	case pb.Status_STATUS_COMPLETED:
		out.Status = StatusCompleted
	case pb.Status_STATUS_FAILED:
		out.Status = StatusFailed
	case pb.Status_STATUS_CANCELLED:
		out.Status = StatusCancelled
	}
	return out
}

func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("client: read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("client: %s holds no PEM certificate", file)
	}
	return pool, nil
}
