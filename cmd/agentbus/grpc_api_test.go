package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentbus/agentbus/client"
	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/model/scripted"
	"github.com/agentbus/agentbus/services/api"
	"github.com/agentbus/agentbus/tools"
)

// serveAPI serves rt's API on a loopback port for the test's lifetime.
func serveAPI(t *testing.T, rt *embedded, sec api.Security) string {
	t.Helper()
	srv, err := newAPIServer(rt, nil)
	if err != nil {
		t.Fatal(err)
	}
	return listenAPI(t, srv, sec)
}

func listenAPI(t *testing.T, srv *api.Server, sec api.Security) string {
	t.Helper()
	l, err := api.Listen("127.0.0.1:0", sec, srv, nil)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { l.Stop(time.Second) })
	return l.Addr().String()
}

func dialAPI(t *testing.T, addr string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.Dial(context.Background(), addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// collect reads a Watch stream to its end.
func collect(t *testing.T, c *client.Client, sid string, within time.Duration) []event.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	st, err := c.Watch(ctx, sid)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer st.Close()
	var out []event.Event
	for {
		ev, err := st.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("watch %s: %v (after %d events)", sid, err, len(out))
		}
		out = append(out, ev)
	}
}

// checkStream asserts a complete session stream: every event once, the
// terminal event last, and the demo's two steps in between.
func checkStream(t *testing.T, evs []event.Event, terminal string) {
	t.Helper()
	seen := map[string]bool{}
	count := map[string]int{}
	for i, ev := range evs {
		k := ev.Source() + " " + ev.ID()
		if seen[k] {
			t.Fatalf("event %d (%s %s) sent twice", i, ev.Type(), k)
		}
		seen[k] = true
		count[ev.Type()]++
	}
	if len(evs) == 0 || evs[len(evs)-1].Type() != terminal {
		t.Fatalf("stream does not end with %s: %v", terminal, typesOf(evs))
	}
	if count[events.TypeAgentRequested] != 1 {
		t.Fatalf("AgentRequested missing from the stream: %v", typesOf(evs))
	}
}

func typesOf(evs []event.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = strings.TrimPrefix(ev.Type(), "agentbus.")
	}
	return out
}

func TestAPISubmitWatchGet(t *testing.T) {
	t.Parallel()
	rt := startLoop(t, "", nil)
	c := dialAPI(t, serveAPI(t, rt, api.Security{}))
	ctx := context.Background()

	var streamed []event.Event
	res, err := c.Run(ctx, "What is 6*7, and what time is it in Europe/Paris?", client.OnEvent(func(ev event.Event) { streamed = append(streamed, ev) }))
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if res.Status != client.StatusCompleted || res.Steps != 2 || !strings.Contains(res.Answer, "6*7 = 42") || res.Usage.OutputTokens == 0 {
		t.Fatalf("result %+v", res)
	}
	checkStream(t, streamed, events.TypeAgentCompleted)
	var planned, stepDone int
	for _, ev := range streamed {
		switch ev.Type() {
		case events.TypeStepPlanned:
			planned++
		case events.TypeStepCompleted:
			stepDone++
		}
	}
	if planned != 2 || stepDone != 2 {
		t.Fatalf("%d StepPlanned, %d StepCompleted, want 2 each: %v", planned, stepDone, typesOf(streamed))
	}

	got, err := c.Get(ctx, res.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != client.StatusCompleted || got.Answer != res.Answer || got.Steps != 2 || got.Usage != res.Usage || got.AgentName == "" || got.CreatedAt.IsZero() {
		t.Fatalf("get %+v, run %+v", got, res)
	}

	// Memory reads and tools through the same API.
	turns, err := c.Context(ctx, res.SessionID, 0)
	if err != nil || len(turns) == 0 || turns[len(turns)-1].Type != events.TypeAgentCompleted {
		t.Fatalf("context: %v %+v", err, turns)
	}
	small, err := c.Context(ctx, res.SessionID, 300)
	if err != nil || len(small) == 0 || len(small) >= len(turns) {
		t.Fatalf("a 300-token budget kept %d of %d turns (%v)", len(small), len(turns), err)
	}
	found, err := c.Search(ctx, res.SessionID, "europe/PARIS", 10)
	if err != nil || len(found) == 0 {
		t.Fatalf("search: %v %+v", err, found)
	}
	ts, err := c.ListTools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range ts {
		names = append(names, tl.Name)
		if !json.Valid(tl.InputSchema) || tl.Timeout <= 0 || !tl.Local {
			t.Fatalf("tool %+v", tl)
		}
	}
	if !slices.Contains(names, "calculator") || !slices.Contains(names, "clock") {
		t.Fatalf("tools %v", names)
	}
}

func TestAPIWatchAfterCompletionReplaysHistory(t *testing.T) {
	t.Parallel()
	rt := startLoop(t, "", nil)
	c := dialAPI(t, serveAPI(t, rt, api.Security{}))
	ctx := context.Background()
	res, err := c.Run(ctx, "compute 2+3 and 10/4")
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the history holds everything, then watch the ended session.
	var hist []client.HistoryEvent
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if hist, err = c.History(ctx, res.SessionID, 0, 0); err != nil {
			t.Fatal(err)
		}
		if len(hist) > 0 && hist[len(hist)-1].Event.Type() == events.TypeAgentCompleted {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	replayed := collect(t, c, res.SessionID, 5*time.Second)
	checkStream(t, replayed, events.TypeAgentCompleted)
	if len(replayed) != len(hist) {
		t.Fatalf("replayed %d events, history holds %d", len(replayed), len(hist))
	}
	for i := range hist {
		if hist[i].Seq != int64(i+1) || hist[i].Event.ID() != replayed[i].ID() {
			t.Fatalf("replay %d: %s, history %d: %s (seq %d)", i, replayed[i].ID(), i, hist[i].Event.ID(), hist[i].Seq)
		}
	}
}

// deafSubscriber never delivers a live event: Watch must still deliver the
// whole session from the history.
type deafSubscriber struct{}

func (deafSubscriber) Subscribe(context.Context, string) (api.Subscription, error) {
	return deafSub{}, nil
}

type deafSub struct{}

func (deafSub) Next(ctx context.Context) ([]event.Event, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(20 * time.Millisecond):
		return nil, nil
	}
}
func (deafSub) Close(context.Context) {}

// A watcher that did not submit the session and receives no live event at
// all (here: another API server whose subscriber is deaf) still gets the
// whole session, from the history.
func TestAPIWatchMissesNothingWithoutLiveEvents(t *testing.T) {
	t.Parallel()
	rt := startLoop(t, "", nil)
	deaf, err := api.New(api.Config{Publisher: rt.Publisher, Validator: rt.Validator, Sessions: rt.Store,
		Subscriber: deafSubscriber{}, Memory: memoryReads{rt.Memory}, Tools: rt.Tools, HistoryPoll: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	submitter := dialAPI(t, serveAPI(t, rt, api.Security{}))
	watcher := dialAPI(t, listenAPI(t, deaf, api.Security{}))
	ctx := context.Background()
	sid, err := submitter.Submit(ctx, client.Request{Prompt: "What is 6*7, and what time is it in Europe/Paris?"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := client.Await(ctx, watcher, sid, nil)
	if err != nil || res.Steps != 2 {
		t.Fatalf("await %+v: %v", res, err)
	}
	checkStream(t, collect(t, watcher, sid, 5*time.Second), events.TypeAgentCompleted)
}

func TestAPICancel(t *testing.T) {
	t.Parallel()
	reg := tools.NewRegistry()
	if err := reg.RegisterSpec(tools.Spec{Name: "silent_plugin", Description: "never answers",
		InputSchema: json.RawMessage(`{"type":"object"}`), Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	rt := startLoop(t, loopScript, reg)
	c := dialAPI(t, serveAPI(t, rt, api.Security{}))
	ctx := context.Background()
	sid, err := c.Submit(ctx, client.Request{Prompt: "call the silent plug-in"})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithTimeout(ctx, 15*time.Second)
	defer stop()
	st, err := c.Watch(wctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for {
		ev, err := st.Next()
		if err != nil {
			t.Fatalf("before the step was planned: %v", err)
		}
		if ev.Type() == events.TypeStepPlanned {
			break
		}
	}
	if err := c.Cancel(ctx, sid, "user pressed stop"); err != nil {
		t.Fatal(err)
	}
	var last event.Event
	for {
		ev, err := st.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		last = ev
	}
	if last.Type() != events.TypeAgentCancelled {
		t.Fatalf("ended with %s", last.Type())
	}
	got, err := c.Get(ctx, sid)
	if err != nil || got.Status != client.StatusCancelled || got.Reason != "user pressed stop" || got.Steps != 1 {
		t.Fatalf("get %+v: %v", got, err)
	}
	// Cancelling an ended session says so.
	if err := c.Cancel(ctx, sid, "again"); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("second cancel: %v, want FailedPrecondition", err)
	}
}

func TestAPIErrors(t *testing.T) {
	t.Parallel()
	rt := startLoop(t, "", nil)
	c := dialAPI(t, serveAPI(t, rt, api.Security{}))
	ctx := context.Background()
	done, err := c.Run(ctx, "compute 2+3 and 10/4")
	if err != nil {
		t.Fatal(err)
	}
	unknown := uuid.NewString()
	cases := []struct {
		name string
		call func() error
		code codes.Code
		msg  string // part of the message a person acts on
	}{
		{"empty prompt", func() error { _, err := c.Submit(ctx, client.Request{Prompt: "  "}); return err }, codes.InvalidArgument, "prompt is empty"},
		{"unknown tool", func() error {
			_, err := c.Submit(ctx, client.Request{Prompt: "hi", Agent: &events.AgentSpec{Tools: []string{"calculator", "teleport"}}})
			return err
		}, codes.InvalidArgument, "teleport"},
		{"negative limit", func() error {
			_, err := c.Submit(ctx, client.Request{Prompt: "hi", Agent: &events.AgentSpec{Limits: &events.Limits{MaxSteps: -1}}})
			return err
		}, codes.InvalidArgument, "maxSteps"},
		{"bad session id", func() error { _, err := c.Submit(ctx, client.Request{Prompt: "hi", SessionID: "a/b"}); return err }, codes.InvalidArgument, "session_id"},
		{"session id in use", func() error {
			_, err := c.Submit(ctx, client.Request{Prompt: "hi", SessionID: done.SessionID})
			return err
		}, codes.AlreadyExists, "already exists"},
		{"bad traceparent", func() error { _, err := c.Submit(ctx, client.Request{Prompt: "hi", TraceParent: "nope"}); return err }, codes.InvalidArgument, "traceparent"},
		{"get unknown", func() error { _, err := c.Get(ctx, unknown); return err }, codes.NotFound, unknown},
		{"get empty id", func() error { _, err := c.Get(ctx, ""); return err }, codes.InvalidArgument, "session_id is empty"},
		{"cancel unknown", func() error { return c.Cancel(ctx, unknown, "") }, codes.NotFound, unknown},
		{"watch unknown", func() error {
			st, err := c.Watch(ctx, unknown)
			if err != nil {
				return err
			}
			defer st.Close()
			_, err = st.Next()
			return err
		}, codes.NotFound, unknown},
		{"history unknown", func() error { _, err := c.History(ctx, unknown, 0, 0); return err }, codes.NotFound, unknown},
		{"search empty query", func() error { _, err := c.Search(ctx, done.SessionID, "", 0); return err }, codes.InvalidArgument, "query is empty"},
		{"search negative limit", func() error { _, err := c.Search(ctx, done.SessionID, "x", -1); return err }, codes.InvalidArgument, "limit"},
		{"context negative budget", func() error { _, err := c.Context(ctx, done.SessionID, -5); return err }, codes.InvalidArgument, "token_budget"},
		{"context unknown", func() error { _, err := c.Context(ctx, unknown, 0); return err }, codes.NotFound, unknown},
		{"list negative page", func() error { _, _, err := c.ListSessions(ctx, "", -1); return err }, codes.InvalidArgument, "page_size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.call()
			st := status.Convert(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
		})
	}
}

func TestAPITokenAuth(t *testing.T) {
	t.Parallel()
	rt := startLoop(t, "", nil)
	const token = "0123456789abcdef-secret"
	addr := serveAPI(t, rt, api.Security{Token: token})
	ctx := context.Background()
	cases := []struct {
		name  string
		token string
		code  codes.Code
	}{
		{"no token", "", codes.Unauthenticated},
		{"wrong token", "0123456789abcdef-secreT", codes.Unauthenticated},
		{"prefix of the token", "0123456789abcdef", codes.Unauthenticated},
		{"right token", token, codes.OK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var opts []client.Option
			if tc.token != "" {
				opts = append(opts, client.WithToken(tc.token))
			}
			c := dialAPI(t, addr, opts...)
			_, err := c.ListTools(ctx)
			if status.Code(err) != tc.code {
				t.Fatalf("unary: %v, want %v", err, tc.code)
			}
			// The stream is checked too.
			st, err := c.Watch(ctx, uuid.NewString())
			if err == nil {
				_, err = st.Next()
				st.Close()
			}
			want := tc.code
			if want == codes.OK {
				want = codes.NotFound
			}
			if status.Code(err) != want {
				t.Fatalf("watch: %v, want %v", err, want)
			}
		})
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 (its own CA).
func writeCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agentbus test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestAPISecurityDefaults(t *testing.T) {
	t.Parallel()
	cert, key := writeCert(t)
	const token = "0123456789abcdef0123"
	cases := []struct {
		name     string
		addr     string
		sec      api.Security
		insecure bool // refused with ErrInsecure
		bad      bool // refused for another reason
	}{
		{"loopback, nothing", "127.0.0.1:0", api.Security{}, false, false},
		{"localhost, nothing", "localhost:7421", api.Security{}, false, false},
		{"ipv6 loopback", "[::1]:7421", api.Security{}, false, false},
		{"all interfaces, nothing", "0.0.0.0:7421", api.Security{}, true, false},
		{"empty host", ":7421", api.Security{}, true, false},
		{"host name", "example.com:7421", api.Security{Token: token}, true, false},
		{"LAN, token without TLS", "192.168.1.5:7421", api.Security{Token: token}, true, false},
		{"LAN, TLS without auth", "192.168.1.5:7421", api.Security{CertFile: cert, KeyFile: key}, true, false},
		{"LAN, TLS and token", "192.168.1.5:7421", api.Security{CertFile: cert, KeyFile: key, Token: token}, false, false},
		{"LAN, mTLS", "192.168.1.5:7421", api.Security{CertFile: cert, KeyFile: key, ClientCAFile: cert}, false, false},
		{"cert without key", "127.0.0.1:0", api.Security{CertFile: cert}, false, true},
		{"client CA without TLS", "127.0.0.1:0", api.Security{ClientCAFile: cert}, false, true},
		{"short token", "127.0.0.1:0", api.Security{Token: "short"}, false, true},
		{"missing cert file", "192.168.1.5:7421", api.Security{CertFile: "/nonexistent.pem", KeyFile: key, Token: token}, false, true},
		{"no port", "127.0.0.1", api.Security{}, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := api.ServerOptions(tc.addr, tc.sec, nil)
			switch {
			case tc.insecure && !errors.Is(err, api.ErrInsecure):
				t.Fatalf("err %v, want ErrInsecure", err)
			case tc.bad && (err == nil || errors.Is(err, api.ErrInsecure)):
				t.Fatalf("err %v, want a configuration error", err)
			case !tc.insecure && !tc.bad && err != nil:
				t.Fatalf("refused: %v", err)
			}
		})
	}
}

func TestDevRefusesInsecureNonLoopback(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"dev", "--listen", "0.0.0.0:0", "--data-dir", t.TempDir()}, strings.NewReader(""), &out, &errOut)
	if code != 2 || !strings.Contains(errOut.String(), "TLS is required") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

func TestAPIOverTLSWithToken(t *testing.T) {
	t.Parallel()
	rt := startLoop(t, "", nil)
	cert, key := writeCert(t)
	const token = "0123456789abcdef0123"
	addr := serveAPI(t, rt, api.Security{CertFile: cert, KeyFile: key, Token: token})
	ctx := context.Background()
	c := dialAPI(t, addr, client.WithTLSCAFile(cert), client.WithToken(token))
	res, err := c.Run(ctx, "compute 2+3 and 10/4")
	if err != nil || !strings.Contains(res.Answer, "2+3 = 5") {
		t.Fatalf("run over TLS: %+v %v", res, err)
	}
	// A plaintext client cannot talk to the TLS server.
	plain := dialAPI(t, addr, client.WithToken(token))
	if _, err := plain.ListTools(ctx); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext to TLS: %v", err)
	}
	// And the client will not send a token in clear to another host.
	if _, err := client.Dial(ctx, "192.0.2.1:7421", client.WithToken(token)); !errors.Is(err, client.ErrInsecureToken) {
		t.Fatalf("dial: %v, want ErrInsecureToken", err)
	}
}

// TestCLIRunAddr runs the same prompt in process and through --addr and
// compares the progress output, then sessions list/show through the API
// against the same data folder read directly.
func TestCLIRunAddr(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("-short: starts two runtimes")
	}
	ctx := context.Background()
	s, err := scripted.Default()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rt, err := startEmbedded(ctx, embeddedConfig{DataDir: dir, Model: scripted.New(s)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	addr := serveAPI(t, rt, api.Security{})
	const prompt = "compute 2+3 and 10/4"

	cli := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(ctx, args, strings.NewReader(""), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, remote, stderr := cli("run", "--addr", addr, prompt)
	if code != 0 {
		t.Fatalf("run --addr: exit %d: %s", code, stderr)
	}
	code, local, stderr := cli("run", "--data-dir", t.TempDir(), prompt)
	if code != 0 {
		t.Fatalf("run: exit %d: %s", code, stderr)
	}
	// Line 1 names the model (in process) or the server; line 2 the session.
	rl, ll := strings.Split(remote, "\n"), strings.Split(local, "\n")
	if rl[0] != "server "+addr || !strings.HasPrefix(rl[1], "session ") {
		t.Fatalf("remote header %q", rl[:2])
	}
	if !slices.Equal(rl[2:], ll[2:]) {
		t.Fatalf("outputs differ:\n--addr:\n%s\nin process:\n%s", remote, local)
	}
	sid := strings.TrimPrefix(rl[1], "session ")

	// JSON mode prints every event, ending with the terminal one.
	code, jsonOut, stderr := cli("run", "--addr", addr, "--json", prompt)
	lines := strings.Split(strings.TrimSpace(jsonOut), "\n")
	if code != 0 || !strings.Contains(lines[len(lines)-1], events.TypeAgentCompleted) {
		t.Fatalf("run --json --addr: exit %d %s\n%s", code, stderr, jsonOut)
	}

	// A failed agent exits 1 in both paths; bad input 2.
	if code, _, stderr := cli("run", "--addr", addr, "--script", "x.json", prompt); code != 2 || !strings.Contains(stderr, "--script") {
		t.Fatalf("--script with --addr: exit %d %s", code, stderr)
	}
	if code, _, stderr := cli("run", "--addr", "127.0.0.1:1", prompt); code != 1 || !strings.Contains(stderr, "cannot reach") {
		t.Fatalf("nothing listening: exit %d %s", code, stderr)
	}

	// sessions list/show through the API print what reading the folder prints.
	waitHistory(t, rt, sid)
	for _, args := range [][]string{{"sessions", "show", sid}, {"sessions", "show", "--json", sid}, {"sessions", "list"}} {
		code, viaAPI, stderr := cli(append(args, "--addr", addr)...)
		if code != 0 {
			t.Fatalf("%v --addr: exit %d %s", args, code, stderr)
		}
		code, direct, stderr := cli(append(args, "--data-dir", dir)...)
		if code != 0 {
			t.Fatalf("%v: exit %d %s", args, code, stderr)
		}
		if viaAPI != direct {
			t.Fatalf("%v differs:\n--addr:\n%s\ndirect:\n%s", args, viaAPI, direct)
		}
	}
	if code, _, stderr := cli("sessions", "show", "--addr", addr, uuid.NewString()); code != 2 || !strings.Contains(stderr, "no session") {
		t.Fatalf("show unknown: exit %d %s", code, stderr)
	}
}

// waitHistory waits until the session's history holds its terminal event.
func waitHistory(t *testing.T, rt *embedded, sid string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		hist, err := readAllHistory(context.Background(), rt.Store, sid)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range hist {
			if e.Type == events.TypeAgentCompleted {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("history of %s never recorded its end", sid)
}

// TestDevServesTheAPI runs `agentbus dev` in process on a free port, runs
// a prompt through the API, and stops it as Ctrl-C would.
func TestDevServesTheAPI(t *testing.T) {
	t.Parallel()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	pr, pw := io.Pipe()
	var errOut bytes.Buffer
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"dev", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, strings.NewReader(""), pw, &errOut)
		pw.Close()
	}()
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "API listening on "); ok {
				addrCh <- a
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrCh:
	case code := <-exit:
		t.Fatalf("dev exited %d: %s", code, errOut.String())
	case <-time.After(20 * time.Second):
		t.Fatal("dev did not report its address")
	}
	c := dialAPI(t, addr)
	res, err := c.Run(context.Background(), "compute 2+3 and 10/4")
	if err != nil || !strings.Contains(res.Answer, "2+3 = 5") {
		t.Fatalf("run: %+v %v", res, err)
	}
	stop()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("dev exited %d after interrupt: %s", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dev did not stop on interrupt")
	}
}

func TestDevStdinMode(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	in := strings.NewReader("compute 2+3 and 10/4\n\n")
	code := run(context.Background(), []string{"dev", "--stdin", "--listen", "", "--data-dir", t.TempDir()}, in, &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), "answer: 2+3 = 5") || strings.Contains(out.String(), "API listening") {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	code = run(context.Background(), []string{"dev", "--listen", "", "--data-dir", t.TempDir()}, strings.NewReader(""), &out, &errOut)
	if code != 2 || !strings.Contains(errOut.String(), "nothing to serve") {
		t.Fatalf("no API, no stdin: exit %d %s", code, errOut.String())
	}
}

// TestCLITokenFromEnv: run --addr takes the token from $AGENTBUS_TOKEN, and
// a wrong --token is a usage error naming the problem. Not parallel:
// it sets the environment.
func TestCLITokenFromEnv(t *testing.T) {
	rt := startLoop(t, "", nil)
	const token = "0123456789abcdef-env"
	addr := serveAPI(t, rt, api.Security{Token: token})
	t.Setenv("AGENTBUS_TOKEN", token)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"run", "--addr", addr, "compute 2+3 and 10/4"}, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("token from env: exit %d %s", code, errOut.String())
	}
	errOut.Reset()
	code := run(context.Background(), []string{"run", "--addr", addr, "--token", "wrong-token-0123456789", "hi"}, strings.NewReader(""), &out, &errOut)
	if code != 2 || !strings.Contains(errOut.String(), "invalid bearer token") {
		t.Fatalf("wrong token: exit %d %s", code, errOut.String())
	}
	t.Setenv("AGENTBUS_TOKEN", "")
	errOut.Reset()
	code = run(context.Background(), []string{"sessions", "list", "--addr", addr}, strings.NewReader(""), &out, &errOut)
	if code != 2 || !strings.Contains(errOut.String(), "missing bearer token") {
		t.Fatalf("no token: exit %d %s", code, errOut.String())
	}
}

// TestCLIRunAddrInterrupt: interrupting `run --addr` cancels the run on
// the server and exits 130, as the in-process path does.
func TestCLIRunAddrInterrupt(t *testing.T) {
	t.Parallel()
	reg := tools.NewRegistry()
	if err := reg.RegisterSpec(tools.Spec{Name: "silent_plugin", Description: "never answers",
		InputSchema: json.RawMessage(`{"type":"object"}`), Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	rt := startLoop(t, loopScript, reg)
	addr := serveAPI(t, rt, api.Security{})
	ctx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	pr, pw := io.Pipe()
	var errOut bytes.Buffer
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"run", "--addr", addr, "call the silent plug-in"}, strings.NewReader(""), pw, &errOut)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var sid string
	for sc.Scan() {
		line := sc.Text()
		if s, ok := strings.CutPrefix(line, "session "); ok {
			sid = s
		}
		if strings.Contains(line, "call s silent_plugin") {
			interrupt()
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	select {
	case code := <-exit:
		if code != 130 || !strings.Contains(errOut.String(), "cancelled") {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run --addr did not end after the interrupt")
	}
	c := dialAPI(t, addr)
	got, err := c.Get(context.Background(), sid)
	if err != nil || got.Status != client.StatusCancelled || got.Reason != "interrupted by the user" {
		t.Fatalf("session after interrupt: %+v %v", got, err)
	}
}
