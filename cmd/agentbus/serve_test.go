package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sqssdk "github.com/aws/aws-sdk-go-v2/service/sqs"

	awsclient "github.com/agentbus/agentbus/client/aws"
	"github.com/agentbus/agentbus/deploy"
	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/events/rules"
	"github.com/agentbus/agentbus/internal/testenv"
	"github.com/agentbus/agentbus/platform/bus/sqs"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/platform/state/dynamodb"
	"github.com/agentbus/agentbus/platform/state/outbox"
	"github.com/agentbus/agentbus/platform/state/sqlite"
	"github.com/agentbus/agentbus/tools"
)

func TestResolveServeConfig(t *testing.T) {
	t.Parallel()
	full := map[string]string{
		"AGENTBUS_MODE":             "aws",
		"AGENTBUS_BUS_NAME":         "agentbus",
		"AGENTBUS_QUEUE_URL":        "http://127.0.0.1:5000/123456789012/agentbus-planner",
		"AGENTBUS_DLQ_URL":          "http://127.0.0.1:5000/123456789012/agentbus-planner-dlq",
		"AGENTBUS_TABLE":            "agentbus-state",
		"AGENTBUS_BUCKET":           "agentbus-blobs",
		"AGENTBUS_REDIS_ADDR":       "127.0.0.1:6379",
		"AGENTBUS_BEDROCK_MODEL_ID": "anthropic.claude",
	}
	without := func(keys ...string) map[string]string {
		m := map[string]string{}
		for k, v := range full {
			m[k] = v
		}
		for _, k := range keys {
			delete(m, k)
		}
		return m
	}
	with := func(k, v string) map[string]string { m := without(); m[k] = v; return m }
	tests := []struct {
		name    string
		service string
		env     map[string]string
		flags   map[string]string
		wantErr []string // substrings of the error; nil: no error
		check   func(t *testing.T, c serveConfig)
	}{
		{name: "planner complete", service: "planner", env: full, check: func(t *testing.T, c serveConfig) {
			if c.BusName != "agentbus" || c.BedrockModelID != "anthropic.claude" || c.Concurrency != 8 || c.OutboxInterval != 2*time.Second || c.MaxEventSize != 0 || c.RedisTLS {
				t.Errorf("config %+v", c)
			}
		}},
		{name: "executor needs neither redis nor bedrock", service: "executor",
			env: without("AGENTBUS_REDIS_ADDR", "AGENTBUS_BEDROCK_MODEL_ID", "AGENTBUS_MODE")},
		{name: "planner without model", service: "planner", env: without("AGENTBUS_BEDROCK_MODEL_ID"),
			wantErr: []string{"AGENTBUS_BEDROCK_MODEL_ID (--bedrock-model-id)", "AGENTBUS_MODEL_SCRIPT (--model-script)"}},
		{name: "planner with the scripted model", service: "planner",
			env: func() map[string]string {
				m := without("AGENTBUS_BEDROCK_MODEL_ID")
				m["AGENTBUS_MODEL_SCRIPT"] = "builtin"
				return m
			}(),
			check: func(t *testing.T, c serveConfig) {
				if c.ModelScript != "builtin" || c.BedrockModelID != "" {
					t.Errorf("config %+v", c)
				}
				m, name, err := serveModel(aws.Config{}, c, slog.New(slog.DiscardHandler))
				if err != nil || m == nil || name != "scripted" {
					t.Errorf("serveModel = %v, %q, %v", m, name, err)
				}
			}},
		{name: "planner with a missing script file", service: "planner",
			env: func() map[string]string {
				m := without("AGENTBUS_BEDROCK_MODEL_ID")
				m["AGENTBUS_MODEL_SCRIPT"] = "/nonexistent/script.json"
				return m
			}(),
			check: func(t *testing.T, c serveConfig) {
				if _, _, err := serveModel(aws.Config{}, c, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "model script") {
					t.Errorf("serveModel with a missing script = %v, want an error naming the model script", err)
				}
			}},
		{name: "planner with both models", service: "planner", env: with("AGENTBUS_MODEL_SCRIPT", "builtin"),
			wantErr: []string{"both set"}},
		{name: "memory without redis", service: "memory", env: without("AGENTBUS_REDIS_ADDR"),
			wantErr: []string{"AGENTBUS_REDIS_ADDR"}},
		{name: "nothing set names every required variable", service: "toolgateway", env: map[string]string{},
			wantErr: []string{"AGENTBUS_BUS_NAME", "AGENTBUS_QUEUE_URL", "AGENTBUS_DLQ_URL", "AGENTBUS_TABLE", "AGENTBUS_BUCKET"}},
		{name: "unknown service", service: "gateway", env: full, wantErr: []string{`unknown service "gateway"`}},
		{name: "embedded mode refused", service: "executor", env: with("AGENTBUS_MODE", "embedded"), wantErr: []string{"AGENTBUS_MODE"}},
		{name: "bad queue url", service: "executor", env: with("AGENTBUS_QUEUE_URL", "agentbus-executor"), wantErr: []string{"AGENTBUS_QUEUE_URL"}},
		{name: "bad max event size", service: "executor", env: with("AGENTBUS_MAX_EVENT_SIZE", "big"), wantErr: []string{"AGENTBUS_MAX_EVENT_SIZE"}},
		{name: "tiny max event size", service: "executor", env: with("AGENTBUS_MAX_EVENT_SIZE", "10"), wantErr: []string{"AGENTBUS_MAX_EVENT_SIZE"}},
		{name: "bad redis tls", service: "memory", env: with("AGENTBUS_REDIS_TLS", "yes please"), wantErr: []string{"AGENTBUS_REDIS_TLS"}},
		{name: "bad outbox interval", service: "memory", env: with("AGENTBUS_OUTBOX_INTERVAL", "often"), wantErr: []string{"AGENTBUS_OUTBOX_INTERVAL"}},
		{name: "bad executor grace", service: "executor", env: with("AGENTBUS_EXECUTOR_GRACE", "-1s"), wantErr: []string{"AGENTBUS_EXECUTOR_GRACE"}},
		{name: "bad visibility", service: "memory", env: with("AGENTBUS_VISIBILITY", "10ms"), wantErr: []string{"AGENTBUS_VISIBILITY"}},
		{name: "values parsed", service: "memory", env: func() map[string]string {
			m := with("AGENTBUS_REDIS_TLS", "true")
			m["AGENTBUS_MAX_EVENT_SIZE"] = "100000"
			m["AGENTBUS_VISIBILITY"] = "45s"
			m["AGENTBUS_REDIS_PASSWORD"] = "s3cret"
			m["AGENTBUS_OUTBOX_INTERVAL"] = "500ms"
			return m
		}(), check: func(t *testing.T, c serveConfig) {
			if c.OutboxInterval != 500*time.Millisecond {
				t.Errorf("outbox interval %v", c.OutboxInterval)
			}
			if !c.RedisTLS || c.MaxEventSize != 100000 || c.Visibility != 45*time.Second || c.RedisPassword != "s3cret" {
				t.Errorf("config %+v", c)
			}
			o := redisOptions(c)
			if o.TLSConfig == nil || o.TLSConfig.ServerName != "127.0.0.1" || o.Password != "s3cret" {
				t.Errorf("redis options %+v", o)
			}
		}},
		{name: "flag wins over environment", service: "planner", env: full,
			flags: map[string]string{"bus": "other", "concurrency": "3"}, check: func(t *testing.T, c serveConfig) {
				if c.BusName != "other" || c.Concurrency != 3 {
					t.Errorf("config %+v", c)
				}
			}},
		{name: "flag supplies a missing variable", service: "planner", env: without("AGENTBUS_TABLE"),
			flags: map[string]string{"table": "t"}, check: func(t *testing.T, c serveConfig) {
				if c.Table != "t" {
					t.Errorf("table %q", c.Table)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := resolveServeConfig(tt.service, tt.flags, func(k string) string { return tt.env[k] })
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if tt.check != nil {
					tt.check(t, c)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

// TestServeCLIMissingConfig runs the command: missing configuration is a
// usage error (exit 2) naming the variables.
func TestServeCLIMissingConfig(t *testing.T) {
	for _, s := range serveSettings {
		if s.env != "" {
			t.Setenv(s.env, "")
		}
	}
	for _, args := range [][]string{{"serve", "planner"}, {"serve"}, {"serve", "nosuch"}, {"serve", "executor", "--concurrency", "x", "--bus", "b"}} {
		var out, errb bytes.Buffer
		code := run(context.Background(), args, strings.NewReader(""), &out, &errb)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2; stderr %s", args, code, errb.String())
		}
		if args[len(args)-1] == "planner" && !strings.Contains(errb.String(), "AGENTBUS_QUEUE_URL") {
			t.Errorf("%v: stderr does not name AGENTBUS_QUEUE_URL: %s", args, errb.String())
		}
	}
}

// ---- end to end on moto + Redis, one process per service

const (
	// envServeChild makes TestServeChild run `serve <service>`.
	envServeChild = "AGENTBUS_SERVE_CHILD"
	// envServeCharges enables the test-only side-effect tool "charge"
	// (appending to this file). It exists only in this test binary.
	envServeCharges = "AGENTBUS_SERVE_CHARGES"
	// envServeCrash is a crash point ("name" or "name#n") at which the
	// child SIGKILLs itself.
	envServeCrash = "AGENTBUS_SERVE_CRASH"
)

// slowCharge is the crash test's charge tool with a 3 s timeout: its lease
// (timeout + 0.5 s) outlives the killed gateway's 3 s message visibility, so
// the restarted gateway finds a live claim first and answers outcome_unknown
// when the lease ends, well before the executor's deadline (timeout + the
// 10 s grace the test configures).
type slowCharge struct{ chargeTool }

func (c slowCharge) Spec() tools.Spec {
	s := c.chargeTool.Spec()
	s.Timeout = 3 * time.Second
	return s
}

// TestServeChild is one service process of TestServeAWSEndToEnd.
func TestServeChild(t *testing.T) {
	svc := os.Getenv(envServeChild)
	if svc == "" {
		t.Skip("service process of TestServeAWSEndToEnd (runs only when re-executed by it)")
	}
	cfg, err := resolveServeConfig(svc, nil, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	reg := tools.NewRegistry()
	if err := reg.Register(slowCharge{chargeTool{path: os.Getenv(envServeCharges)}}); err != nil {
		t.Fatal(err)
	}
	crash := killAt(os.Getenv(envServeCrash))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: childLogLevel()})).With("service", svc)
	if err := serveService(ctx, cfg, serveHooks{Tools: reg, Crash: crash, LeaseMargin: 500 * time.Millisecond}, log); err != nil {
		t.Fatal(err)
	}
	fmt.Println("SERVE-EXIT ok")
}

// serveProc is a running child service.
type serveProc struct {
	svc  string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startServe(t *testing.T, svc string, env []string) *serveProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestServeChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	cmd.Env = append(cmd.Env, envServeChild+"="+svc)
	p := &serveProc{svc: svc, cmd: cmd, out: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() || os.Getenv("AGENTBUS_E2E_LOGS") != "" {
			t.Logf("--- %s output:\n%s", svc, p.out.String())
		}
	})
	deadline := time.After(20 * time.Second)
	for !strings.Contains(p.out.String(), `"msg":"ready"`) {
		select {
		case <-p.done:
			t.Fatalf("%s exited before ready: %v\n%s", svc, p.err, p.out.String())
		case <-deadline:
			t.Fatalf("%s not ready within 20s:\n%s", svc, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return p
}

// fakeBedrock answers Converse per conversation turn: turn 0 asks for charge
// a and calculator b (charge a alone when the prompt says "charge only"), turn 1 for charge c and clock d, turn 2 answers with
// each call's outcome ("ok" or the failure reason) and b's output.
func fakeBedrock(t *testing.T) *httptest.Server {
	t.Helper()
	type block = map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Messages []struct {
				Role    string `json:"role"`
				Content []struct {
					Text       *string `json:"text"`
					ToolResult *struct {
						ToolUseID string `json:"toolUseId"`
						Status    string `json:"status"`
						Content   []struct {
							JSON json.RawMessage `json:"json"`
							Text *string         `json:"text"`
						} `json:"content"`
					} `json:"toolResult"`
				} `json:"content"`
			} `json:"messages"`
		}
		if !strings.HasSuffix(r.URL.Path, "/converse") || json.NewDecoder(r.Body).Decode(&req) != nil {
			w.Header().Set("X-Amzn-ErrorType", "ValidationException")
			http.Error(w, `{"message":"bad request"}`, http.StatusBadRequest)
			return
		}
		turn := 0
		outcome := map[string]string{}
		crashRun := false
		for _, m := range req.Messages {
			if m.Role == "assistant" {
				turn++
			}
			for _, c := range m.Content {
				if c.Text != nil && m.Role == "user" && strings.Contains(*c.Text, "charge only") {
					crashRun = true
				}
				if tr := c.ToolResult; tr != nil {
					var body []byte
					for _, rc := range tr.Content {
						if rc.JSON != nil {
							body = append(body, rc.JSON...)
						} else if rc.Text != nil {
							body = append(body, *rc.Text...)
						}
					}
					if tr.Status == "error" {
						var f struct{ Reason string }
						_ = json.Unmarshal(body, &f)
						outcome[tr.ToolUseID] = f.Reason
					} else {
						outcome[tr.ToolUseID] = "ok " + string(body)
					}
				}
			}
		}
		use := func(id, name string, input any) block {
			return block{"toolUse": block{"toolUseId": id, "name": name, "input": input}}
		}
		var content []block
		stop := "tool_use"
		switch turn {
		case 0:
			content = []block{{"text": "charging and computing"}, use("a", "charge", block{"amount": 1}), use("b", "calculator", block{"expression": "6*7"})}
			if crashRun {
				// Alone, so that the gateway's first claim and first side
				// effect are this charge's.
				content = []block{use("a", "charge", block{"amount": 1})}
			}
		case 1:
			content = []block{use("c", "charge", block{"amount": 3}), use("d", "clock", block{})}
		default:
			stop = "end_turn"
			short := func(id string) string { s, _, _ := strings.Cut(outcome[id], " "); return s }
			content = []block{{"text": fmt.Sprintf("a=%s b=%s c=%s d=%s calc=%s", short("a"), short("b"), short("c"), short("d"), outcome["b"])}}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(block{
			"output":     block{"message": block{"role": "assistant", "content": content}},
			"stopReason": stop,
			"usage":      block{"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
			"metrics":    block{"latencyMs": 1},
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func randSuffix(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestServeAWSEndToEnd runs the four services as separate processes on
// moto + Redis (they share nothing but EventBridge→SQS, DynamoDB, S3 and
// Redis), a Converse httptest server as the model, and drives a two-step,
// four-call run through the AWS client; then kills the tool-gateway with
// SIGKILL after a claim and after a side effect and shows each run still
// completes with no side effect run twice; then stops everything with
// SIGTERM.
func TestServeAWSEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end on moto with four service processes; skipped in -short")
	}
	// moto 5.2's TransactWriteItems restores a copy of the whole table when
	// a transaction fails, erasing concurrent writes of the other services
	// (docs/moto-differences.md D3). The DynamoDB store no longer sends the
	// transactions that fail in normal operation (an opened or done step, an
	// existing session), which made this test flaky before; the timeouts
	// below are generous because a loaded moto answers in hundreds of ms.
	endpoint := testenv.AWSEndpoint(t)
	redisAddr := testenv.RedisAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	prefix := "e2e" + randSuffix(t)
	names := awsNames{endpoint: endpoint, prefix: prefix, bucket: prefix + "-blobs", table: prefix + "-state"}
	awsCfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(endpoint)}
	catalog, err := rules.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	// The test-only charge tool is routed to the tool-gateway by its own
	// rule, as a plug-in's tool would be.
	chargeRule := rules.Rule{Name: "toolgateway-test-charge", Description: "test-only side-effect tool",
		EventPattern: json.RawMessage(`{"detail-type":["` + events.TypeToolInvocationRequested + `"],"detail":{"toolname":["charge"]}}`),
		Target:       rules.Target{Queue: "toolgateway", MaxReceiveCount: 5, VisibilityTimeoutSeconds: 120}}
	if err := bootstrap(ctx, awsCfg, names, append(catalog, chargeRule), io.Discard); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	charges := filepath.Join(dir, "charges.log")
	model := fakeBedrock(t)
	common := []string{
		"AWS_ENDPOINT_URL=" + endpoint, "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		"AWS_ENDPOINT_URL_BEDROCK_RUNTIME=" + model.URL,
		"AGENTBUS_MODE=aws", "AGENTBUS_BUS_NAME=" + prefix, "AGENTBUS_TABLE=" + names.table, "AGENTBUS_BUCKET=" + names.bucket,
		"AGENTBUS_REDIS_ADDR=" + redisAddr, "AGENTBUS_BEDROCK_MODEL_ID=e2e.fake-model",
		envServeCharges + "=" + charges,
		// The executor waits 10s past a tool's timeout: a loaded moto must
		// not turn a slow delivery into a timeout in the plain run, and in
		// the crash runs the restarted gateway's verdict (outcome_unknown,
		// when the dead holder's lease ends) comes first.
		"AGENTBUS_EXECUTOR_GRACE=10s",
	}
	sq := sqssdk.NewFromConfig(awsCfg)
	envFor := func(svc string, extra ...string) []string {
		info, err := sqs.Lookup(ctx, sq, sqs.QueueName(prefix, svc))
		if err != nil {
			t.Fatal(err)
		}
		env := append(append([]string{}, common...), "AGENTBUS_QUEUE_URL="+info.URL, "AGENTBUS_DLQ_URL="+info.DLQURL)
		if svc == "toolgateway" {
			// A killed gateway's messages come back after 3 s, not the
			// catalog's 120 s.
			env = append(env, "AGENTBUS_VISIBILITY=3s")
		}
		return append(env, extra...)
	}
	procs := map[string]*serveProc{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, svc := range serveServices {
		env := envFor(svc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := startServe(t, svc, env)
			mu.Lock()
			procs[svc] = p
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	callerID := "e2e-" + randSuffix(t)
	q, err := awsclient.EnsureCallerQueue(ctx, awsCfg, prefix, callerID)
	if err != nil {
		t.Fatal(err)
	}
	if q2, err := awsclient.EnsureCallerQueue(ctx, awsCfg, prefix, callerID); err != nil || q2 != q {
		t.Fatalf("EnsureCallerQueue not idempotent: %+v %v (first %+v)", q2, err, q)
	}
	client, err := awsclient.New(ctx, awsclient.Config{AWS: awsCfg, Bus: prefix, CallerID: callerID, Queue: q, Bucket: names.bucket})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	table, err := dynamodb.New(awsCfg, names.table)
	if err != nil {
		t.Fatal(err)
	}

	runOnce := func(t *testing.T) (awsclient.Result, time.Duration) {
		t.Helper()
		start := time.Now()
		sid, err := client.Submit(ctx, events.AgentRequested{Prompt: "please charge and compute"})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		res, err := client.Await(rctx, sid)
		if err != nil {
			t.Fatal(err)
		}
		if res.SessionID != sid {
			t.Fatalf("result for %q, want %q", res.SessionID, sid)
		}
		return res, time.Since(start)
	}
	checkCharges := func(t *testing.T) map[string]int {
		t.Helper()
		b, _ := os.ReadFile(charges)
		count := map[string]int{}
		for _, k := range strings.Fields(string(b)) {
			count[k]++
			if count[k] > 1 {
				t.Fatalf("call %s charged %d times", k, count[k])
			}
		}
		return count
	}

	// 1. A multi-step, multi-tool run.
	res, took := runOnce(t)
	if res.Completed == nil {
		t.Fatalf("run did not complete: %+v", res)
	}
	if want := "a=ok b=ok c=ok d=ok"; !strings.HasPrefix(res.Completed.Answer, want) || !strings.Contains(res.Completed.Answer, "42") {
		t.Fatalf("answer %q, want %q and calculator output 42", res.Completed.Answer, want)
	}
	if res.Completed.Steps < 2 {
		t.Errorf("steps %d, want >= 2", res.Completed.Steps)
	}
	for _, call := range []string{"a", "c"} {
		if n := checkCharges(t)[events.IdempotencyKey(res.SessionID, map[string]int{"a": 1, "c": 2}[call], call)]; n != 1 {
			t.Errorf("call %s charged %d times, want 1", call, n)
		}
	}
	t.Logf("publish→AgentCompleted through moto, 2 tool steps (4 tool calls, 3 model turns): %v", took)
	// The memory service (its own process) recorded the session's history
	// in DynamoDB, the completion included.
	waitFor(t, 15*time.Second, "memory service to record AgentCompleted", func() bool {
		h, err := table.ReadHistory(ctx, res.SessionID, 0, state.MaxPageSize)
		if err != nil {
			return false
		}
		for _, e := range h {
			if e.Type == events.TypeAgentCompleted {
				return true
			}
		}
		return false
	})

	// 2. Crash points: the tool-gateway dies (SIGKILL) right after a claim
	// and right after a side effect; a new one takes over.
	for _, point := range []string{"after_claim", "after_side_effect"} {
		start := time.Now()
		old := procs["toolgateway"]
		_ = old.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-old.done:
		case <-time.After(20 * time.Second):
			t.Fatal("tool-gateway did not stop on SIGTERM")
		}
		crashing := startServe(t, "toolgateway", envFor("toolgateway", envServeCrash+"="+point))
		sid, err := client.Submit(ctx, events.AgentRequested{Prompt: "please charge only"})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-crashing.done:
		case <-time.After(20 * time.Second):
			t.Fatalf("tool-gateway never reached %s", point)
		}
		if !strings.Contains(crashing.out.String(), "CRASH "+point) {
			t.Fatalf("tool-gateway exited without reaching %s:\n%s", point, crashing.out.String())
		}
		procs["toolgateway"] = startServe(t, "toolgateway", envFor("toolgateway"))
		rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		res, err := client.Await(rctx, sid)
		cancel()
		if err != nil {
			t.Fatalf("crash at %s: %v", point, err)
		}
		if res.Completed == nil {
			t.Fatalf("after a crash at %s the run did not complete: %+v", point, res)
		}
		count := checkCharges(t)
		ans := res.Completed.Answer
		// The killed attempt held charge a's claim: the restarted gateway
		// must not run it again and reports outcome_unknown; it ran once if
		// the crash came after the side effect, never if before.
		wantCharged := map[string]int{"after_claim": 0, "after_side_effect": 1}[point]
		if got := count[events.IdempotencyKey(sid, 1, "a")]; !strings.Contains(ans, "a=outcome_unknown") || got != wantCharged {
			t.Errorf("crash at %s: call a charged %d times (want %d), answer %q (want a=outcome_unknown)", point, got, wantCharged, ans)
		}
		if got := count[events.IdempotencyKey(sid, 2, "c")]; !strings.Contains(ans, "c=ok") || got != 1 {
			t.Errorf("crash at %s: call c after the restart charged %d times (want 1), answer %q", point, got, ans)
		}
		t.Logf("crash at %s: run completed %v after submit (incl. restart): %s", point, time.Since(start), ans)
	}

	// 3. Graceful shutdown on SIGTERM.
	for svc, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s did not stop within 20s of SIGTERM", svc)
		}
		if p.err != nil || !strings.Contains(p.out.String(), "SERVE-EXIT ok") || !strings.Contains(p.out.String(), `"msg":"stopped"`) {
			t.Errorf("%s did not stop cleanly: %v\n%s", svc, p.err, p.out.String())
		}
	}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// childLogLevel is Debug when AGENTBUS_E2E_LOGS=debug.
func childLogLevel() slog.Level {
	if os.Getenv("AGENTBUS_E2E_LOGS") == "debug" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// TestServeAdaptersMatchDeploy keeps the services' IAM roles (generated
// from deploy.ServiceAdapters) equal to what serve wires.
func TestServeAdaptersMatchDeploy(t *testing.T) {
	t.Parallel()
	want := deploy.ServiceAdapters()
	if len(want) != len(serveServices) {
		t.Errorf("deploy knows services %v, serve runs %v", want, serveServices)
	}
	for _, svc := range serveServices {
		got := serveAdapters(svc)
		w := slices.Clone(want[svc])
		slices.Sort(w)
		slices.Sort(got)
		if !slices.Equal(got, w) {
			t.Errorf("%s: serve wires %v, deploy grants %v", svc, got, w)
		}
	}
}

// TestLocalOutbox: a relay gets its own process's events at once and another
// process's only after they have been pending for the grace period; a write
// that stored nothing (a step completed by someone else) records nothing.
func TestLocalOutbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	shared, err := sqlite.OpenMemory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	now := time.Unix(1000, 0)
	l := newLocalOutbox(shared, 5*time.Second)
	l.now = func() time.Time { return now }
	w := outbox.AfterWrite(l, l.record) // this process's writes, as serve wires them
	ids := func() []string {
		t.Helper()
		es, err := l.PendingOutbox(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	ev := func(id string) state.OutboxEvent { return state.OutboxEvent{ID: id, Payload: []byte(`{}`)} }
	if _, err := w.CreateSession(ctx, state.Session{ID: "s-own", Status: state.StatusRunning}, ev("own")); err != nil {
		t.Fatal(err)
	}
	// Another process writes through its own store.
	if _, err := shared.CreateSession(ctx, state.Session{ID: "s-other", Status: state.StatusRunning}, ev("other")); err != nil {
		t.Fatal(err)
	}
	// A conflicting write stores nothing and records nothing.
	if _, err := w.CreateSession(ctx, state.Session{ID: "s-own", Status: state.StatusRunning}, ev("lost")); err == nil {
		t.Fatal("second CreateSession of one id succeeded")
	}
	if got := ids(); !slices.Equal(got, []string{"own"}) {
		t.Fatalf("pending %v, want [own] (another process's is held back)", got)
	}
	if err := l.MarkSent(ctx, "own"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(4 * time.Second) // within the grace period
	if got := ids(); len(got) != 0 {
		t.Fatalf("after 4s: pending %v, want none", got)
	}
	now = now.Add(2 * time.Second) // pending 6s: the safety net publishes it
	if got := ids(); !slices.Equal(got, []string{"other"}) {
		t.Fatalf("after 6s: pending %v, want [other]", got)
	}
	if err := l.MarkSent(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	if got := ids(); len(got) != 0 {
		t.Fatalf("after mark sent: %v", got)
	}
	if len(l.own) != 0 || len(l.foreign) != 0 {
		t.Errorf("bookkeeping not released: own %v foreign %v", l.own, l.foreign)
	}
}
