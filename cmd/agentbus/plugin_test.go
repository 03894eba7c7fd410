package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentbus/agentbus/client"
	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/model/scripted"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/platform/state/sqlite"
	"github.com/agentbus/agentbus/plugin"
	pb "github.com/agentbus/agentbus/proto/agentbus/v1"
	"github.com/agentbus/agentbus/tools"
)

const (
	unitsDir  = "../../examples/plugin-units"
	unitsRule = unitsDir + "/plugin-units.json"
	unitsTool = "convert_units"
	unitsSrc  = plugin.SourcePrefix + "units"
)

// procOut collects a child process's output for concurrent reads.
type procOut struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (p *procOut) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.b.Write(b)
}

func (p *procOut) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.b.String()
}

// buildUnitsPlugin builds examples/plugin-units into a temporary folder.
func buildUnitsPlugin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "plugin-units")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = unitsDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build examples/plugin-units: %v\n%s", err, out)
	}
	return bin
}

// unitsRuntime starts the embedded runtime with the units script and the
// rules of dataDir, and its API on a free loopback port.
func unitsRuntime(t *testing.T, dataDir string) (*embedded, string) {
	t.Helper()
	ctx := context.Background()
	s, err := scripted.LoadFile(filepath.Join(unitsDir, "scripts", "units.json"))
	if err != nil {
		t.Fatal(err)
	}
	extra, err := dataDirRules(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := startEmbedded(ctx, embeddedConfig{DataDir: dataDir, Model: scripted.New(s), ExtraRules: extra,
		ExecutorGrace: 500 * time.Millisecond, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	l, err := startAPI(rt, serveFlags{listen: "127.0.0.1:0"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Stop(time.Second) })
	return rt, l.Addr().String()
}

// sessionEvents returns the recorded events of the runtime's only session.
func sessionEvents(t *testing.T, rt *embedded) []state.Entry {
	t.Helper()
	ctx := context.Background()
	rt.drain(ctx, 3*time.Second)
	page, err := rt.Store.ListSessions(ctx, "", 10)
	if err != nil || len(page.Sessions) != 1 {
		t.Fatalf("sessions = %+v, %v; want one", page.Sessions, err)
	}
	h, err := rt.Store.ReadHistory(ctx, page.Sessions[0].ID, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestPluginEmbedded: the units plug-in, a separate process, registers its
// tool with `agentbus dev`'s API and serves it from its own queue, fed by
// the rule added with `agentbus rules add`; a scripted run calls the tool
// and answers with the plug-in's output. The built-in tool-gateway never
// answers the call, and the spec survives a restart of the runtime.
func TestPluginEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the example plug-in")
	}
	bin := buildUnitsPlugin(t)
	dataDir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"rules", "add", unitsRule, "--data-dir", dataDir}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("rules add: exit %d: %s", code, stderr.String())
	}
	rt, addr := unitsRuntime(t, dataDir)

	ctx, cancel := context.WithCancel(context.Background())
	out := &procOut{}
	proc := exec.CommandContext(ctx, bin, "--addr", addr, "--data-dir", t.TempDir())
	proc.Stdout, proc.Stderr = out, out
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- proc.Wait() }()
	t.Cleanup(func() { cancel(); <-exited })

	// The plug-in registers its spec first, then consumes its queue.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if e, err := rt.Tools.Lookup(unitsTool); err == nil && !e.Local() {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("plug-in exited: %v\n%s", err, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plug-in did not register %s within 15s:\n%s", unitsTool, out)
		}
		time.Sleep(20 * time.Millisecond)
	}

	var answer bytes.Buffer
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	if err := runOnce(rctx, rt, &answer, "convert 5 km to mi", nil, false); err != nil {
		t.Fatalf("run: %v\n%s\nplug-in:\n%s", err, answer.String(), out)
	}
	if !strings.Contains(answer.String(), "answer: 5 km = 3.106855961 mi") {
		t.Errorf("answer does not carry the plug-in's output:\n%s", answer.String())
	}
	if !strings.Contains(out.String(), "request tool=convert_units call=") {
		t.Errorf("the plug-in process did not see the request:\n%s", out)
	}
	var fromPlugin, fromGateway int
	for _, e := range sessionEvents(t, rt) {
		if e.Type == events.TypeToolInvocationCompleted && e.Source == unitsSrc {
			fromPlugin++
		}
		if e.Source == events.SourceToolGateway {
			fromGateway++
		}
	}
	if fromPlugin != 1 || fromGateway != 0 {
		t.Errorf("results from the plug-in = %d (want 1), from the built-in tool-gateway = %d (want 0)", fromPlugin, fromGateway)
	}
	// A plug-in's tools cannot be listed as the runtime's own.
	c, err := client.Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ts, err := c.ListTools(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tl := range ts {
		if tl.Name == unitsTool {
			found = true
			if tl.Local {
				t.Errorf("ListTools: %s is local; want served elsewhere", unitsTool)
			}
		}
	}
	if !found {
		t.Errorf("ListTools does not show %s: %+v", unitsTool, ts)
	}

	// Stop the plug-in and the runtime; a restarted runtime still knows the
	// spec (persisted in the data folder).
	cancel()
	<-exited
	exited <- nil // for the cleanup
	rt.Close()
	rt2, err := startEmbedded(context.Background(), embeddedConfig{DataDir: dataDir, Model: scripted.New(&scripted.Script{})})
	if err != nil {
		t.Fatal(err)
	}
	defer rt2.Close()
	if e, err := rt2.Tools.Lookup(unitsTool); err != nil || e.Local() {
		t.Errorf("after a restart: Lookup(%s) = %v, %v; want the plug-in's spec", unitsTool, e, err)
	}
}

// TestPluginWithoutRule: without its rule the plug-in has no queue (it
// exits with status 2 and says so), and a call of its tool, whose spec is
// known, never reaches anyone: the executor reports the timeout and
// neither a plug-in nor the built-in tool-gateway answers.
func TestPluginWithoutRule(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the example plug-in")
	}
	bin := buildUnitsPlugin(t)
	rt, addr := unitsRuntime(t, t.TempDir())

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	proc := exec.CommandContext(ctx, bin, "--addr", addr, "--data-dir", t.TempDir())
	out, err := proc.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), `unknown queue "plugin-units"`) {
		t.Fatalf("plug-in without its rule: %v\n%s\nwant exit 2 naming the unknown queue", err, out)
	}
	if _, err := rt.Tools.Lookup(unitsTool); err == nil {
		t.Fatalf("the plug-in registered %s although it could not serve it", unitsTool)
	}

	// The spec is known (as if registered earlier) but no rule routes it.
	c, err := client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.PluginService().RegisterTools(ctx, &pb.RegisterToolsRequest{Plugin: "units", Tools: []*pb.Tool{{
		Name: unitsTool, Description: "converts", InputSchema: `{"type":"object"}`, Idempotent: true, TimeoutMs: 1000,
	}}}); err != nil {
		t.Fatal(err)
	}
	var answer bytes.Buffer
	if err := runOnce(ctx, rt, &answer, "convert 5 km to mi", nil, false); err != nil {
		t.Fatalf("run: %v\n%s", err, answer.String())
	}
	if !strings.Contains(answer.String(), "convert_units failed") || !strings.Contains(answer.String(), "timeout") {
		t.Errorf("want the tool reported timed out:\n%s", answer.String())
	}
	for _, e := range sessionEvents(t, rt) {
		if e.Source == unitsSrc || e.Source == events.SourceToolGateway {
			t.Errorf("%s from %s: the call reached a tool server without a rule", e.Type, e.Source)
		}
	}
}

// TestPluginServiceBadInput: the PluginService's refusals.
func TestPluginServiceBadInput(t *testing.T) {
	t.Parallel()
	rt, addr := unitsRuntime(t, t.TempDir())
	_ = rt
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	svc := c.PluginService()
	okSchema := `{"type":"object"}`
	validEvent, err := events.NewPayload(unitsSrc, "s-1", events.ToolInvocationCompleted{Step: 1, CallID: "c1", Tool: "x", Output: json.RawMessage(`1`)})
	if err != nil {
		t.Fatal(err)
	}
	impostor, err := events.NewPayload(events.SourceToolGateway, "s-1", events.ToolInvocationCompleted{Step: 1, CallID: "c1", Tool: "x", Output: json.RawMessage(`1`)})
	if err != nil {
		t.Fatal(err)
	}
	enc := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	cases := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"built-in name", func() error {
			_, err := svc.RegisterTools(ctx, &pb.RegisterToolsRequest{Tools: []*pb.Tool{{Name: "calculator", InputSchema: okSchema}}})
			return err
		}, codes.AlreadyExists},
		{"bad schema", func() error {
			_, err := svc.RegisterTools(ctx, &pb.RegisterToolsRequest{Tools: []*pb.Tool{{Name: "x", InputSchema: `{"type":"string"}`}}})
			return err
		}, codes.InvalidArgument},
		{"bad name", func() error {
			_, err := svc.RegisterTools(ctx, &pb.RegisterToolsRequest{Tools: []*pb.Tool{{Name: "no spaces", InputSchema: okSchema}}})
			return err
		}, codes.InvalidArgument},
		{"no tools", func() error { _, err := svc.RegisterTools(ctx, &pb.RegisterToolsRequest{}); return err }, codes.InvalidArgument},
		{"unknown queue", func() error {
			_, err := svc.Receive(ctx, &pb.ReceiveRequest{Queue: "plugin-nope"})
			return err
		}, codes.NotFound},
		{"a service's queue", func() error {
			_, err := svc.Receive(ctx, &pb.ReceiveRequest{Queue: "toolgateway"})
			return err
		}, codes.NotFound},
		{"describe unknown queue", func() error {
			_, err := svc.DescribeQueue(ctx, &pb.DescribeQueueRequest{Queue: "planner"})
			return err
		}, codes.NotFound},
		{"not a CloudEvent", func() error {
			_, err := svc.Publish(ctx, &pb.PublishRequest{CloudEvents: []string{"{nope"}})
			return err
		}, codes.InvalidArgument},
		{"impostor source", func() error {
			_, err := svc.Publish(ctx, &pb.PublishRequest{CloudEvents: []string{enc(impostor)}})
			return err
		}, codes.InvalidArgument},
		{"schema violation", func() error {
			bad := validEvent.Clone()
			_ = bad.SetData("application/json", map[string]any{"step": "one"})
			_, err := svc.Publish(ctx, &pb.PublishRequest{CloudEvents: []string{enc(bad)}})
			return err
		}, codes.InvalidArgument},
	}
	for _, tc := range cases {
		if got := status.Code(tc.call()); got != tc.want {
			t.Errorf("%s: code %v; want %v", tc.name, got, tc.want)
		}
	}
	if _, err := svc.Publish(ctx, &pb.PublishRequest{CloudEvents: []string{enc(validEvent)}}); err != nil {
		t.Errorf("a valid plug-in event: %v", err)
	}
	// The plugin package maps a clash to ErrToolClash.
	tr, err := plugin.DevServer(ctx, c, "plugin-nope")
	if !errors.Is(err, plugin.ErrUnknownQueue) {
		t.Errorf("DevServer(unknown queue) = %+v, %v; want ErrUnknownQueue", tr, err)
	}
}

// TestRulesAddBadInput: rules add and remove refuse bad input with status 2.
func TestRulesAddBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rule := func(name, queue string, vis int, pattern string) string {
		return `{"name":"` + name + `","description":"d","eventPattern":` + pattern +
			`,"target":{"queue":"` + queue + `","visibilityTimeoutSeconds":` + itoa(vis) + `}}`
	}
	pat := `{"detail-type":["agentbus.tool.invocation.requested.v1"],"detail":{"toolname":["t"]}}`
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing file", []string{"rules", "add", filepath.Join(dir, "nope.json")}, "rule file"},
		{"not JSON", []string{"rules", "add", write("a.json", "{")}, "invalid rule"},
		{"unknown field", []string{"rules", "add", write("b.json", `{"name":"p","description":"d","eventpattern":{}}`)}, "unknown field"},
		{"pattern does not compile", []string{"rules", "add", write("c.json", rule("p", "plugin-p", 30, `{"source":[{"nope":1}]}`))}, "rule \"p\""},
		{"catalog name", []string{"rules", "add", write("d.json", rule("planner-agent-requested", "plugin-p", 30, pat))}, "belongs to the catalog"},
		{"catalog queue conflict", []string{"rules", "add", write("e.json", rule("p", "toolgateway", 31, pat))}, "conflicting queue settings"},
		{"routes on data", []string{"rules", "add", write("f.json", rule("p", "plugin-p", 30, `{"detail":{"data":{"x":["y"]}}}`))}, "detail.data"},
		{"remove unknown", []string{"rules", "remove", "plugin-p"}, "no plug-in rule"},
		{"remove bad name", []string{"rules", "remove", "a/b"}, "rule name"},
		{"no argument", []string{"rules", "add"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			args := append(tc.args, "--data-dir", filepath.Join(dir, "data-"+strings.ReplaceAll(tc.name, " ", "-")))
			if code := run(context.Background(), args, nil, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d; want 2\n%s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not say %q", stderr.String(), tc.want)
			}
		})
	}
}

// TestRulesAddListRemove: add, replace, list, a second rule on the same
// queue with other settings refused, remove.
func TestRulesAddListRemove(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	cli := func(args ...string) (int, string) {
		var out bytes.Buffer
		code := run(context.Background(), append(args, "--data-dir", dataDir), nil, &out, &out)
		return code, out.String()
	}
	if code, out := cli("rules", "add", unitsRule); code != 0 {
		t.Fatalf("add: %d %s", code, out)
	}
	if code, out := cli("rules", "add", unitsRule); code != 0 {
		t.Fatalf("add again (replace): %d %s", code, out)
	}
	code, out := cli("rules", "list", "--json")
	if code != 0 || !strings.Contains(out, `"plugin-units"`) {
		t.Fatalf("list: %d %s", code, out)
	}
	other := filepath.Join(t.TempDir(), "x.json")
	if err := os.WriteFile(other, []byte(`{"name":"plugin-units-2","description":"d","eventPattern":{"detail-type":["x"]},"target":{"queue":"plugin-units","visibilityTimeoutSeconds":99}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := cli("rules", "add", other); code != 2 || !strings.Contains(out, "conflicting queue settings") {
		t.Errorf("a conflicting second rule: %d %s; want 2", code, out)
	}
	if code, out := cli("rules", "remove", "plugin-units"); code != 0 {
		t.Fatalf("remove: %d %s", code, out)
	}
	if code, out := cli("rules", "list"); code != 0 || strings.Contains(out, "plugin-units") {
		t.Errorf("after remove: %d %s", code, out)
	}
	if rs, err := dataDirRules(dataDir); err != nil || len(rs) != 0 {
		t.Errorf("dataDirRules after remove = %v, %v", rs, err)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// TestPluginServiceNeedsToken: the PluginService sits behind the same
// bearer-token check as the rest of the API.
func TestPluginServiceNeedsToken(t *testing.T) {
	t.Parallel()
	rt, err := startEmbedded(context.Background(), embeddedConfig{Model: scripted.New(&scripted.Script{})})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	const token = "plugin-test-token-0123456789"
	l, err := startAPI(rt, serveFlags{listen: "127.0.0.1:0", token: token}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop(time.Second)
	ctx := context.Background()
	for _, tc := range []struct {
		opts []client.Option
		want codes.Code
	}{
		{nil, codes.Unauthenticated},
		{[]client.Option{client.WithToken("wrong-token-0123456789")}, codes.Unauthenticated},
		{[]client.Option{client.WithToken(token)}, codes.NotFound}, // authenticated; no such queue
	} {
		c, err := client.Dial(ctx, l.Addr().String(), tc.opts...)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.PluginService().DescribeQueue(ctx, &pb.DescribeQueueRequest{Queue: "plugin-units"})
		if got := status.Code(err); got != tc.want {
			t.Errorf("DescribeQueue with %d option(s): %v; want %v", len(tc.opts), err, tc.want)
		}
		c.Close()
	}
}

// clashTool reuses a built-in's name.
type clashTool struct{}

func (clashTool) Spec() tools.Spec {
	return tools.Spec{Name: "calculator", Description: "an impostor", InputSchema: json.RawMessage(`{"type":"object"}`)}
}

func (clashTool) Run(context.Context, tools.Call) (json.RawMessage, error) { return nil, nil }

// TestPluginToolClash: a plug-in whose tool reuses a built-in's name is
// refused at registration (plugin.ErrToolClash: the example exits 2) and
// never serves.
func TestPluginToolClash(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	var out bytes.Buffer
	if code := run(context.Background(), []string{"rules", "add", unitsRule, "--data-dir", dataDir}, nil, &out, &out); code != 0 {
		t.Fatalf("rules add: %s", out.String())
	}
	rt, addr := unitsRuntime(t, dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tr, err := plugin.DevServer(ctx, c, "plugin-units")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Visibility != 30*time.Second {
		t.Errorf("visibility from the rule = %v; want 30s", tr.Visibility)
	}
	store, err := sqlite.OpenMemory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	err = plugin.Serve(ctx, plugin.Config{Name: "impostor", Tools: []tools.Tool{clashTool{}}, Transport: tr, Store: store})
	if !errors.Is(err, plugin.ErrToolClash) {
		t.Fatalf("Serve with a built-in's name: %v; want ErrToolClash", err)
	}
	if e, err := rt.Tools.Lookup("calculator"); err != nil || !e.Local() {
		t.Errorf("calculator after the clash: %v, %v; want the built-in", e, err)
	}
}

// TestPluginQueueResolvesClaimChecks: the dev server hands a plug-in its
// requests whole, even when the runtime offloaded the input to its blob
// folder (which the plug-in cannot read).
func TestPluginQueueResolvesClaimChecks(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	var out bytes.Buffer
	if code := run(context.Background(), []string{"rules", "add", unitsRule, "--data-dir", dataDir}, nil, &out, &out); code != 0 {
		t.Fatalf("rules add: %s", out.String())
	}
	rt, _ := unitsRuntime(t, dataDir)
	ctx := context.Background()
	big := `{"value":"` + strings.Repeat(" ", 300*1024) + `5","from":"km","to":"mi"}`
	req, err := events.NewPayload(events.SourceExecutor, "s-big", events.ToolInvocationRequested{Step: 1, CallID: "c1", Tool: unitsTool,
		Input: json.RawMessage(big), IdempotencyKey: tools.IdempotencyKey("s-big", 1, "c1")})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Publisher.Publish(ctx, req); err != nil {
		t.Fatal(err)
	}
	q, err := pluginHost{rt: rt}.PluginQueue("plugin-units")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := q.Queue.Receive(ctx, 1, 5*time.Second, 10*time.Second)
	if err != nil || len(msgs) != 1 || msgs[0].DecodeErr != nil {
		t.Fatalf("receive: %+v, %v", msgs, err)
	}
	d, err := events.Decode[events.ToolInvocationRequested](msgs[0].Event)
	if err != nil || string(d.Input) != big {
		t.Errorf("input of %d bytes, %v; want the whole %d-byte input", len(d.Input), err, len(big))
	}
}

// TestWatchPluginSpecs: `serve planner|executor` pick up a plug-in that
// registers after they started; a stored spec shadowed by a built-in or
// broken is skipped, not fatal.
func TestWatchPluginSpecs(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store, err := sqlite.OpenMemory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	reg := tools.NewRegistry()
	if err := registerBuiltins(reg, nil); err != nil {
		t.Fatal(err)
	}
	go watchPluginSpecs(ctx, store, reg, 10*time.Millisecond, slog.New(slog.DiscardHandler))
	if err := store.PutToolSpecs(ctx,
		state.ToolSpec{Name: "late_tool", Plugin: "p", Spec: []byte(`{"name":"late_tool","description":"d","inputSchema":{"type":"object"},"timeoutMs":1500}`)},
		state.ToolSpec{Name: "calculator", Plugin: "p", Spec: []byte(`{"name":"calculator","description":"impostor","inputSchema":{"type":"object"}}`)},
		state.ToolSpec{Name: "broken", Plugin: "p", Spec: []byte(`{"name":"broken","inputSchema":{"type":"string"}}`)},
	); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		e, err := reg.Lookup("late_tool")
		if err == nil {
			if e.Local() || e.Spec().Timeout != 1500*time.Millisecond {
				t.Errorf("late_tool = %+v; want the stored spec, served elsewhere", e.Spec())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("late_tool not picked up within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if e, err := reg.Lookup("calculator"); err != nil || !e.Local() {
		t.Errorf("calculator: %v, %v; want the built-in kept", e, err)
	}
	if _, err := reg.Lookup("broken"); err == nil {
		t.Error("a spec that does not compile was registered")
	}
}
