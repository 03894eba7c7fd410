package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentbus/agentbus/client"
	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus/claimcheck"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/services/api"
	"github.com/agentbus/agentbus/services/memory"
)

// defaultListen is where `agentbus dev` serves the API.
const defaultListen = "127.0.0.1:7421"

// memoryReads adapts the memory service to the API's Memory interface (the
// API package may not import a service).
type memoryReads struct{ m *memory.Service }

func (r memoryReads) Context(ctx context.Context, sid string, budget int) ([]api.Turn, error) {
	ts, err := r.m.Context(ctx, sid, budget)
	return apiTurns(ts), err
}

func (r memoryReads) Search(ctx context.Context, sid, query string, limit int) ([]api.Turn, error) {
	ts, err := r.m.Search(ctx, sid, query, limit)
	return apiTurns(ts), err
}

func apiTurns(ts []memory.Turn) []api.Turn {
	out := make([]api.Turn, len(ts))
	for i, t := range ts {
		out[i] = api.Turn{Seq: t.Seq, Type: t.Type, Time: t.Time, Text: t.Text}
	}
	return out
}

var _ api.Memory = memoryReads{}

// newAPIServer wires the API onto a running embedded runtime.
func newAPIServer(rt *embedded, log *slog.Logger) (*api.Server, error) {
	resolver, err := claimcheck.NewResolver(rt.Blobs)
	if err != nil {
		return nil, err
	}
	return api.New(api.Config{
		Publisher:  rt.Publisher,
		Validator:  rt.Validator,
		Sessions:   rt.Store,
		Subscriber: &api.LocalSubscriber{Bus: rt.Bus, Resolve: resolver.Resolve},
		Memory:     memoryReads{rt.Memory},
		Tools:      rt.Tools,
		Plugins:    pluginHost{rt: rt, log: log},
		Logger:     log,
	})
}

// serveFlags are the API server options of `agentbus dev`.
type serveFlags struct {
	listen                 string
	token                  string
	tlsCert, tlsKey, tlsCA string
}

func (f *serveFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.listen, "listen", defaultListen, "address of the gRPC API (\"\" = no API); a non-loopback address requires --tls-cert/--tls-key and --token or --tls-client-ca")
	fs.StringVar(&f.token, "token", "", "bearer token callers must send (default $AGENTBUS_TOKEN); required with TLS off loopback unless --tls-client-ca")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "server TLS certificate (PEM)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "server TLS private key (PEM)")
	fs.StringVar(&f.tlsCA, "tls-client-ca", "", "require client certificates signed by these CAs (PEM; mTLS)")
}

func (f *serveFlags) security() api.Security {
	return api.Security{CertFile: f.tlsCert, KeyFile: f.tlsKey, ClientCAFile: f.tlsCA, Token: tokenOrEnv(f.token)}
}

// tokenOrEnv is the --token value, else $AGENTBUS_TOKEN. The environment
// is read here rather than as the flag's default so that --help never
// prints the secret.
func tokenOrEnv(flag string) string {
	if flag != "" {
		return flag
	}
	return os.Getenv("AGENTBUS_TOKEN")
}

// startAPI serves the API of rt on f.listen.
func startAPI(rt *embedded, f serveFlags, log *slog.Logger) (*api.Listener, error) {
	srv, err := newAPIServer(rt, log)
	if err != nil {
		return nil, err
	}
	l, err := api.Listen(f.listen, f.security(), srv, log)
	if errors.Is(err, api.ErrInsecure) {
		return nil, usageErr(err)
	}
	return l, err
}

// apiFlags are the client options of the commands that talk to a running
// `agentbus dev` (run, sessions).
type apiFlags struct {
	addr            string
	token           string
	tlsCA           string
	tls             bool
	tlsCert, tlsKey string
}

func (f *apiFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "", "talk to a running `agentbus dev` at host:port through its gRPC API instead of the local data folder")
	fs.StringVar(&f.token, "token", "", "bearer token for --addr (default $AGENTBUS_TOKEN)")
	fs.BoolVar(&f.tls, "tls", false, "use TLS for --addr, trusting the system's CAs")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "use TLS for --addr, trusting this CA certificate (PEM)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "client certificate for mTLS (PEM; with --tls-key)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "client key for mTLS (PEM)")
}

func (f *apiFlags) dial(ctx context.Context) (*client.Client, error) {
	var opts []client.Option
	if tok := tokenOrEnv(f.token); tok != "" {
		opts = append(opts, client.WithToken(tok))
	}
	if f.tls || f.tlsCA != "" || f.tlsCert != "" {
		cfg := &tls.Config{}
		if f.tlsCert != "" || f.tlsKey != "" {
			cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
			if err != nil {
				return nil, usageErr(fmt.Errorf("client certificate: %w", err))
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, client.WithTLS(cfg))
		if f.tlsCA != "" {
			opts = append(opts, client.WithTLSCAFile(f.tlsCA))
		}
	}
	c, err := client.Dial(ctx, f.addr, opts...)
	if err != nil {
		return nil, usageErr(err)
	}
	return c, nil
}

// apiErr turns an API error into a CLI error: the caller's mistakes exit 2.
func apiErr(err error, addr string) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition, codes.Unauthenticated, codes.PermissionDenied:
		return usageErr(errors.New(st.Message()))
	case codes.Unavailable:
		return fmt.Errorf("cannot reach the agentbus API at %s (is `agentbus dev` running there?): %s", addr, st.Message())
	}
	return fmt.Errorf("%s: %s", st.Code(), st.Message())
}

// runRemote is `agentbus run --addr`: the same output as the in-process
// path, with the server named in place of the model.
func runRemote(ctx context.Context, stdout io.Writer, prompt string, spec *events.AgentSpec, f runFlags) error {
	c, err := f.api.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	sid, err := c.Submit(ctx, client.Request{Prompt: prompt, Agent: spec})
	if err != nil {
		return apiErr(err, f.api.addr)
	}
	if !f.jsonOut {
		fmt.Fprintf(stdout, "server %s\n", f.api.addr)
		fmt.Fprintf(stdout, "session %s\n", sid)
	}
	out := &progress{w: stdout, json: f.jsonOut, seen: map[string]bool{}}
	return followRemote(ctx, c, f.api.addr, sid, out)
}

// followRemote prints a session's events from the API until it ends. On
// ctx's end it asks for a cancel and waits (briefly) for AgentCancelled.
func followRemote(ctx context.Context, c *client.Client, addr, sid string, p *progress) error {
	bg := context.WithoutCancel(ctx)
	wctx, stop := context.WithCancel(bg)
	defer stop()
	st, err := c.Watch(wctx, sid)
	if err != nil {
		return apiErr(err, addr)
	}
	defer st.Close()
	interrupted := make(chan error, 1)
	go func() {
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(bg, 5*time.Second)
			err := c.Cancel(cctx, sid, "interrupted by the user")
			cancel()
			interrupted <- err
			if err == nil {
				select {
				case <-time.After(5 * time.Second):
				case <-wctx.Done():
				}
			}
			stop()
		case <-wctx.Done():
		}
	}()
	for {
		ev, err := st.Next()
		if err != nil {
			select {
			case cerr := <-interrupted:
				if cerr != nil {
					return &exitError{code: 130, err: fmt.Errorf("interrupted; cancel failed: %w", cerr)}
				}
				return &exitError{code: 130, err: errors.New("interrupted; the run did not confirm the cancel in time")}
			default:
			}
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("session %s: %w", sid, client.ErrStreamEnded)
			}
			return apiErr(err, addr)
		}
		if done, err := p.print(ev); done {
			return err
		}
	}
}

// remoteSessions reads sessions through the API, for `agentbus sessions
// --addr`: it has the methods the in-process listing and timeline use.
type remoteSessions struct{ c *client.Client }

func (r remoteSessions) ListSessions(ctx context.Context, cursor string, limit int) (state.SessionPage, error) {
	ss, next, err := r.c.ListSessions(ctx, cursor, limit)
	if err != nil {
		return state.SessionPage{}, err
	}
	page := state.SessionPage{Next: next}
	for _, s := range ss {
		page.Sessions = append(page.Sessions, stateSession(s))
	}
	return page, nil
}

func (r remoteSessions) GetSession(ctx context.Context, id string) (state.Session, error) {
	s, err := r.c.Get(ctx, id)
	if status.Code(err) == codes.NotFound {
		return state.Session{}, fmt.Errorf("%w: %s", state.ErrNotFound, status.Convert(err).Message())
	}
	if err != nil {
		return state.Session{}, err
	}
	return stateSession(s), nil
}

func (r remoteSessions) ReadHistory(ctx context.Context, sid string, after int64, limit int) ([]state.Entry, error) {
	hs, err := r.c.History(ctx, sid, after, limit)
	if err != nil {
		return nil, err
	}
	out := make([]state.Entry, 0, len(hs))
	for _, h := range hs {
		out = append(out, historyEntry(h))
	}
	return out, nil
}

func historyEntry(h client.HistoryEvent) state.Entry {
	return state.Entry{Seq: h.Seq, Source: h.Event.Source(), ID: h.Event.ID(), Type: h.Event.Type(), Time: h.Time, Data: h.Raw}
}

func stateSession(s client.Session) state.Session {
	return state.Session{ID: s.ID, Status: state.Status(s.Status), AgentName: s.AgentName, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}
}

// withRemote runs f against the API at flags.addr, mapping API errors to
// CLI errors.
func withRemote(ctx context.Context, flags apiFlags, f func(remoteSessions) error) error {
	c, err := flags.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := f(remoteSessions{c}); err != nil {
		return apiErr(err, flags.addr)
	}
	return nil
}
