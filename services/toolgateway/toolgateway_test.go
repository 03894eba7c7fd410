package toolgateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/platform/state/sqlite"
	"github.com/agentbus/agentbus/services/toolgateway"
	"github.com/agentbus/agentbus/tools"
	"github.com/agentbus/agentbus/tools/builtin/calculator"
	"github.com/agentbus/agentbus/tools/toolstest"
)

// clock is a settable clock for the state store's leases.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeTool is a tool whose Run is a function.
type fakeTool struct {
	spec tools.Spec
	run  func(ctx context.Context, c tools.Call) (json.RawMessage, error)
}

func (f fakeTool) Spec() tools.Spec { return f.spec }
func (f fakeTool) Run(ctx context.Context, c tools.Call) (json.RawMessage, error) {
	return f.run(ctx, c)
}

func fake(name string, idempotent bool, timeout time.Duration, run func(ctx context.Context, c tools.Call) (json.RawMessage, error)) fakeTool {
	return fakeTool{spec: tools.Spec{Name: name, InputSchema: json.RawMessage(`{"type":"object"}`), Idempotent: idempotent, Timeout: timeout}, run: run}
}

// recorder is a bus.Publisher that keeps what it got.
type recorder struct {
	mu  sync.Mutex
	evs []event.Event
}

func (r *recorder) Publish(_ context.Context, evs ...event.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, evs...)
	return nil
}

type env struct {
	t      *testing.T
	store  *sqlite.Store
	clock  *clock
	reg    *tools.Registry
	file   string // side-effect record file
	pub    *recorder
	plain  *toolstest.SideEffect // non-idempotent
	idem   *toolstest.SideEffect // idempotent
	margin time.Duration
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clk := &clock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	st, err := sqlite.OpenMemory(context.Background(), sqlite.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, store: st, clock: clk, reg: tools.NewRegistry(), file: filepath.Join(t.TempDir(), "effects.log"), pub: &recorder{}, margin: time.Second}
	e.plain = &toolstest.SideEffect{ToolName: "charge_card", Path: e.file}
	e.idem = &toolstest.SideEffect{ToolName: "put_object", Path: e.file, Idempotent: true}
	for _, tl := range []tools.Tool{calculator.Tool{}, e.plain, e.idem,
		fake("slow", true, 100*time.Millisecond, func(ctx context.Context, _ tools.Call) (json.RawMessage, error) {
			<-ctx.Done()
			return nil, fmt.Errorf("slow: %w", ctx.Err())
		}),
		fake("deaf", true, 100*time.Millisecond, func(context.Context, tools.Call) (json.RawMessage, error) {
			time.Sleep(time.Second) // ignores its context
			return json.RawMessage(`1`), nil
		}),
		fake("panics", false, time.Second, func(context.Context, tools.Call) (json.RawMessage, error) { panic("boom") }),
		fake("panics_idem", true, time.Second, func(context.Context, tools.Call) (json.RawMessage, error) { panic("boom") }),
		fake("bad_json", true, time.Second, func(context.Context, tools.Call) (json.RawMessage, error) { return json.RawMessage(`{`), nil }),
		fake("empty", true, time.Second, func(context.Context, tools.Call) (json.RawMessage, error) { return nil, nil }),
		fake("huge", true, time.Second, func(context.Context, tools.Call) (json.RawMessage, error) {
			return json.Marshal(strings.Repeat("x", state.MaxInlineValue))
		}),
		fake("long_error", true, time.Second, func(context.Context, tools.Call) (json.RawMessage, error) {
			return nil, errors.New(strings.Repeat("é", 5000))
		}),
		fake("echo_key", true, time.Second, func(_ context.Context, c tools.Call) (json.RawMessage, error) {
			return json.Marshal(map[string]any{"key": c.IdempotencyKey, "session": c.SessionID, "step": c.Step, "call": c.CallID})
		}),
	} {
		if err := e.reg.Register(tl); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.reg.RegisterSpec(tools.Spec{Name: "plugin_tool", InputSchema: json.RawMessage(`{"type":"object"}`)}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) gateway(hook func(string), pub bus.Publisher) *toolgateway.Gateway {
	e.t.Helper()
	cfg := toolgateway.Config{Store: e.store, Registry: e.reg, Hook: hook, LeaseMargin: e.margin, Now: e.clock.Now}
	if pub != nil {
		cfg.Publisher = pub
	}
	g, err := toolgateway.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return g
}

func request(t testing.TB, session string, step int, callID, tool, input string) event.Event {
	t.Helper()
	ev, err := events.NewPayload(events.SourceExecutor, session, events.ToolInvocationRequested{
		Step: step, CallID: callID, Tool: tool, Input: json.RawMessage(input),
		IdempotencyKey: tools.IdempotencyKey(session, step, callID),
	})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// results returns the result events in the outbox for a call.
func (e *env) results(session string, step int, callID string) []event.Event {
	e.t.Helper()
	pending, err := e.store.PendingOutbox(context.Background(), 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []event.Event
	for _, p := range pending {
		var ev event.Event
		if err := json.Unmarshal(p.Payload, &ev); err != nil {
			e.t.Fatal(err)
		}
		if events.SessionID(ev) != session {
			continue
		}
		if s, _ := events.Step(ev); s != step {
			continue
		}
		var d struct {
			CallID string `json:"callId"`
		}
		_ = json.Unmarshal(ev.Data(), &d)
		if d.CallID == callID {
			if p.ID != ev.Source()+" "+ev.ID() {
				e.t.Errorf("outbox id %q is not source+id of %s/%s", p.ID, ev.Source(), ev.ID())
			}
			out = append(out, ev)
		}
	}
	return out
}

// only returns the one result event of a call, failing if there is not
// exactly one.
func (e *env) only(session string, step int, callID string) event.Event {
	e.t.Helper()
	rs := e.results(session, step, callID)
	if len(rs) != 1 {
		e.t.Fatalf("%d result events for %s/%d/%s, want 1", len(rs), session, step, callID)
	}
	return rs[0]
}

func (e *env) count(kind, session string, step int, callID string) int {
	e.t.Helper()
	n, err := toolstest.Count(e.file, kind, tools.IdempotencyKey(session, step, callID))
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func failure(t *testing.T, ev event.Event) events.ToolInvocationFailed {
	t.Helper()
	f, err := events.Decode[events.ToolInvocationFailed](ev)
	if err != nil {
		t.Fatalf("result is not ToolInvocationFailed: %s: %v", ev.Type(), err)
	}
	return f
}

func completed(t *testing.T, ev event.Event) events.ToolInvocationCompleted {
	t.Helper()
	c, err := events.Decode[events.ToolInvocationCompleted](ev)
	if err != nil {
		t.Fatalf("result is not ToolInvocationCompleted: %s (%s): %v", ev.Type(), ev.Data(), err)
	}
	return c
}

func TestCompletedEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.gateway(nil, nil)
	req := request(t, "sess-1", 2, "call-a", "calculator", `{"expression":"(1+2)*3"}`)
	if err := g.Handle(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	ev := e.only("sess-1", 2, "call-a")
	c := completed(t, ev)
	var out calculator.Output
	if err := json.Unmarshal(c.Output, &out); err != nil || out.Result != 9 {
		t.Fatalf("output %s (%v)", c.Output, err)
	}
	if c.Tool != "calculator" || c.Step != 2 || c.CallID != "call-a" || c.DurationMs < 0 {
		t.Fatalf("completed %+v", c)
	}
	if ev.Source() != events.SourceToolGateway || events.ToolName(ev) != "calculator" || events.SessionID(ev) != "sess-1" {
		t.Fatalf("attributes: source %s toolname %s session %s", ev.Source(), events.ToolName(ev), events.SessionID(ev))
	}
	// Same trace, new span.
	if tp, rtp := events.TraceParent(ev), events.TraceParent(req); tp[:35] != rtp[:35] || tp == rtp {
		t.Fatalf("traceparent %s does not continue %s", tp, rtp)
	}
	v, err := events.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(ev); err != nil {
		t.Fatalf("result event does not validate: %v", err)
	}
	cl, err := e.store.GetClaim(context.Background(), "sess-1", "sess-1/2/call-a")
	if err != nil || cl.State != state.ClaimDone || cl.Attempt != 1 {
		t.Fatalf("claim %+v %v", cl, err)
	}
	// The tool receives the call's key and identity.
	if err := g.Handle(context.Background(), request(t, "sess-1", 3, "k", "echo_key", `{}`)); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	_ = json.Unmarshal(completed(t, e.only("sess-1", 3, "k")).Output, &got)
	if got["key"] != "sess-1/3/k" || got["session"] != "sess-1" || got["step"] != float64(3) || got["call"] != "k" {
		t.Fatalf("tool saw %v", got)
	}
}

func TestFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.gateway(nil, nil)
	tests := []struct {
		tool, input string
		timeoutMs   int64
		reason      events.ToolFailureReason
		mention     string
	}{
		{"calculator", `{}`, 0, events.ToolInvalidInput, "expression"},
		{"calculator", `{"expression":7}`, 0, events.ToolInvalidInput, "/expression"},
		{"calculator", `{"expression":"1+"}`, 0, events.ToolInvalidInput, "end of expression"},
		{"calculator", `{"expression":"1/0"}`, 0, events.ToolError, "division by zero"},
		{"charge_card", `{"note":5}`, 0, events.ToolInvalidInput, "/note"},
		{"slow", `{}`, 0, events.ToolTimeout, "100ms"},
		{"deaf", `{}`, 0, events.ToolTimeout, "100ms"},
		{"slow", `{}`, 20, events.ToolTimeout, "20ms"}, // the request's shorter timeout wins
		{"panics", `{}`, 0, events.ToolOutcomeUnknown, "boom"},
		{"panics_idem", `{}`, 0, events.ToolError, "boom"},
		{"bad_json", `{}`, 0, events.ToolError, "not JSON"},
		{"huge", `{}`, 0, events.ToolError, "too large"},
		{"long_error", `{}`, 0, events.ToolError, "… (truncated)"},
	}
	v, err := events.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%s %s", tt.tool, tt.input), func(t *testing.T) {
			t.Parallel()
			call := fmt.Sprintf("c%d", i)
			req := request(t, "sess-f", 1, call, tt.tool, tt.input)
			if tt.timeoutMs > 0 {
				d, _ := events.Decode[events.ToolInvocationRequested](req)
				d.TimeoutMs = tt.timeoutMs
				req, _ = events.NewPayload(events.SourceExecutor, "sess-f", d)
			}
			start := time.Now()
			if err := g.Handle(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			if tt.reason == events.ToolTimeout && time.Since(start) > 900*time.Millisecond {
				t.Errorf("took %v: timeout not enforced", time.Since(start))
			}
			ev := e.only("sess-f", 1, call)
			if err := v.Validate(ev); err != nil {
				t.Fatalf("result event does not validate: %v", err)
			}
			f := failure(t, ev)
			if f.Reason != tt.reason || !strings.Contains(f.Message, tt.mention) || f.Tool != tt.tool {
				t.Fatalf("failure %.300v, want reason %s mentioning %q", f, tt.reason, tt.mention)
			}
			if len(f.Message) > 4200 || !utf8.ValidString(f.Message) {
				t.Fatalf("message of %d bytes (valid UTF-8: %v)", len(f.Message), utf8.ValidString(f.Message))
			}
		})
	}
	if got := e.count(toolstest.KindRun, "sess-f", 1, "c4"); got != 0 {
		t.Errorf("invalid input ran the tool %d times", got)
	}
	// An empty output is JSON null, not an error.
	if err := g.Handle(context.Background(), request(t, "sess-f", 2, "e", "empty", `{}`)); err != nil {
		t.Fatal(err)
	}
	if c := completed(t, e.only("sess-f", 2, "e")); string(c.Output) != "null" {
		t.Fatalf("empty output = %s", c.Output)
	}
}

func TestIgnoresWhatItDoesNotServe(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.gateway(nil, nil)
	other, err := events.NewPayload(events.SourcePlanner, "sess-i", events.StepPlanned{Step: 1, Calls: []events.ToolCall{{ID: "x", Name: "calculator", Input: json.RawMessage(`{}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []event.Event{
		other,
		request(t, "sess-i", 1, "p", "plugin_tool", `{}`),
		request(t, "sess-i", 1, "u", "no_such_tool", `{}`),
	} {
		if err := g.Handle(context.Background(), ev); err != nil {
			t.Fatalf("%s: %v", ev.Type(), err)
		}
	}
	if p, _ := e.store.PendingOutbox(context.Background(), 10); len(p) != 0 {
		t.Fatalf("%d events emitted for requests it does not serve", len(p))
	}
	if _, err := e.store.GetClaim(context.Background(), "sess-i", "sess-i/1/p"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("claim taken for a plug-in tool: %v", err)
	}
	if !g.Serves("calculator") || g.Serves("plugin_tool") || g.Serves("no_such_tool") {
		t.Fatal("Serves is wrong")
	}
}

func TestMalformedRequestsArePermanent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.gateway(nil, nil)
	noCall := request(t, "sess-m", 1, "c", "calculator", `{}`)
	_ = noCall.SetData(events.ContentTypeJSON, map[string]any{"step": 1, "tool": "calculator", "input": map[string]any{}})
	notJSON := request(t, "sess-m", 1, "c", "calculator", `{}`)
	notJSON.DataEncoded = []byte(`{"step":"one"`)
	badSession := request(t, "bad/session", 1, "c", "calculator", `{"expression":"1"}`)
	for name, ev := range map[string]event.Event{"no callId": noCall, "data not JSON": notJSON, "session id with slash": badSession} {
		if err := g.Handle(context.Background(), ev); !errors.Is(err, bus.ErrPermanent) {
			t.Errorf("%s: %v, want ErrPermanent", name, err)
		}
	}
	if _, err := toolgateway.New(toolgateway.Config{Registry: e.reg}); err == nil {
		t.Error("New without Store")
	}
	if _, err := toolgateway.New(toolgateway.Config{Store: e.store}); err == nil {
		t.Error("New without Registry")
	}
}

// countingStore counts the claim writes and reads the gateway makes.
type countingStore struct {
	toolgateway.Store
	claims, reads atomic.Int32
}

func (c *countingStore) Claim(ctx context.Context, req state.ClaimRequest) (state.Claim, bool, error) {
	c.claims.Add(1)
	return c.Store.Claim(ctx, req)
}

func (c *countingStore) GetClaim(ctx context.Context, sessionID, key string) (state.Claim, error) {
	c.reads.Add(1)
	return c.Store.GetClaim(ctx, sessionID, key)
}

// TestIdempotentCallTakesNoClaim: an idempotent tool's first delivery runs
// with one state write (the outcome) and no read; a duplicate delivered as
// a new message may run it again but keeps the stored outcome; a
// redelivery finds the outcome and does not run the tool. A
// non-idempotent tool's call is claimed first.
func TestIdempotentCallTakesNoClaim(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cs := &countingStore{Store: e.store}
	pub := &recorder{}
	g, err := toolgateway.New(toolgateway.Config{Store: cs, Registry: e.reg, LeaseMargin: e.margin, Now: e.clock.Now, Publisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	req := request(t, "sess-u", 1, "c", "put_object", `{"note":"once"}`)
	for i, tc := range []struct {
		receives                  int
		claims, reads, runs, pubs int32
	}{
		{1, 0, 0, 1, 0}, // first delivery: run, store
		{1, 0, 0, 2, 1}, // a duplicate message: runs again, the stored outcome is re-published
		{2, 0, 1, 2, 2}, // a redelivery: finds the outcome, does not run
	} {
		if err := g.Handle(bus.WithReceiveCount(context.Background(), tc.receives), req); err != nil {
			t.Fatalf("delivery %d: %v", i+1, err)
		}
		pub.mu.Lock()
		pubs := int32(len(pub.evs))
		pub.mu.Unlock()
		runs := int32(e.count(toolstest.KindRun, "sess-u", 1, "c"))
		if cs.claims.Load() != tc.claims || cs.reads.Load() != tc.reads || runs != tc.runs || pubs != tc.pubs {
			t.Fatalf("after delivery %d: %d claims, %d reads, %d runs, %d re-publishes; want %d, %d, %d, %d",
				i+1, cs.claims.Load(), cs.reads.Load(), runs, pubs, tc.claims, tc.reads, tc.runs, tc.pubs)
		}
	}
	if n := e.count(toolstest.KindEffect, "sess-u", 1, "c"); n != 1 {
		t.Fatalf("effect happened %d times, want once", n)
	}
	completed(t, e.only("sess-u", 1, "c"))
	if err := g.Handle(bus.WithReceiveCount(context.Background(), 1), request(t, "sess-u", 2, "c", "charge_card", `{}`)); err != nil {
		t.Fatal(err)
	}
	if cs.claims.Load() != 1 {
		t.Fatalf("a non-idempotent call took %d claims, want 1", cs.claims.Load())
	}
}

func TestRedeliveryOfDoneCall(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pub := &recorder{}
	g := e.gateway(nil, pub)
	req := request(t, "sess-r", 1, "c", "charge_card", `{"note":"pay 10"}`)
	for i := range 3 {
		if err := g.Handle(context.Background(), req); err != nil {
			t.Fatalf("delivery %d: %v", i+1, err)
		}
	}
	if n := e.count(toolstest.KindEffect, "sess-r", 1, "c"); n != 1 {
		t.Fatalf("effect ran %d times, want 1", n)
	}
	stored := e.only("sess-r", 1, "c")
	completed(t, stored)
	// Each redelivery re-published the stored event, byte for byte.
	if len(pub.evs) != 2 {
		t.Fatalf("re-published %d times, want 2", len(pub.evs))
	}
	for _, ev := range pub.evs {
		a, _ := json.Marshal(ev)
		b, _ := json.Marshal(stored)
		if string(a) != string(b) {
			t.Fatalf("re-published\n%s\nstored\n%s", a, b)
		}
	}
}

func TestCallInProgressElsewhere(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.gateway(nil, nil)
	ctx := context.Background()
	if _, ok, err := e.store.Claim(ctx, state.ClaimRequest{SessionID: "sess-p", Key: "sess-p/1/c", Holder: "other", Lease: 40 * time.Second, TTL: time.Hour}); err != nil || !ok {
		t.Fatal(ok, err)
	}
	err := g.Handle(ctx, request(t, "sess-p", 1, "c", "charge_card", `{}`))
	var ra *bus.RetryAfterError
	if !errors.As(err, &ra) || ra.Delay < 30*time.Second || ra.Delay > 41*time.Second {
		t.Fatalf("got %v, want RetryAfter about the lease's remaining 40s", err)
	}
	if e.count(toolstest.KindRun, "sess-p", 1, "c") != 0 || len(e.results("sess-p", 1, "c")) != 0 {
		t.Fatal("ran or reported a call another holder holds")
	}
}

// TestCrashPoints kills the gateway (a panic from the hook, like the
// process dying there) at each named point, then redelivers the request to
// a fresh gateway: for a claimed (non-idempotent) call it must wait before
// the lease ends, and after it finish the call without ever running the
// tool twice; an idempotent tool's call has no lease to wait for.
func TestCrashPoints(t *testing.T) {
	t.Parallel()
	type want struct {
		runs, effects int
		reason        events.ToolFailureReason // "" means Completed
	}
	tests := []struct {
		point string
		tool  string
		want  want
	}{
		{toolgateway.PointAfterClaim, "charge_card", want{0, 0, events.ToolOutcomeUnknown}},
		{toolgateway.PointAfterSideEffect, "charge_card", want{1, 1, events.ToolOutcomeUnknown}},
		{toolgateway.PointAfterComplete, "charge_card", want{1, 1, ""}},
		// An idempotent tool's call takes no claim (no after_claim), so a
		// redelivery does not wait for a lease: it re-runs the call with the
		// same key (the effect happens once) or finds its stored outcome.
		{toolgateway.PointAfterSideEffect, "put_object", want{2, 1, ""}},
		{toolgateway.PointAfterComplete, "put_object", want{1, 1, ""}},
	}
	if len(toolgateway.Points()) != 3 {
		t.Fatalf("points %v: update this test", toolgateway.Points())
	}
	for _, tt := range tests {
		t.Run(tt.point+"/"+tt.tool, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ctx := context.Background()
			req := request(t, "sess-c", 1, "c", tt.tool, `{"note":"once"}`)
			type crash struct{ point string }
			dying := e.gateway(func(p string) {
				if p == tt.point {
					panic(crash{p})
				}
			}, nil)
			func() {
				defer func() {
					r := recover()
					if c, ok := r.(crash); !ok || c.point != tt.point {
						t.Fatalf("gateway did not die at %s (recovered %v)", tt.point, r)
					}
				}()
				_ = dying.Handle(ctx, req)
			}()

			g := e.gateway(nil, nil)
			if tt.point != toolgateway.PointAfterComplete && tt.tool == "charge_card" {
				// Redelivered while the dead holder's lease is live: wait.
				var ra *bus.RetryAfterError
				if err := g.Handle(ctx, req); !errors.As(err, &ra) {
					t.Fatalf("redelivery during the lease: %v, want RetryAfter", err)
				}
				if len(e.results("sess-c", 1, "c")) != 0 {
					t.Fatal("result reported while the lease was live")
				}
				e.clock.Advance(5*time.Second + e.margin + time.Second) // past timeout+margin
			}
			for i := range 3 { // the redelivery, then duplicates of it
				if err := g.Handle(ctx, req); err != nil {
					t.Fatalf("redelivery %d: %v", i+1, err)
				}
			}
			ev := e.only("sess-c", 1, "c")
			if tt.want.reason == "" {
				c := completed(t, ev)
				var out struct {
					Key string `json:"key"`
				}
				_ = json.Unmarshal(c.Output, &out)
				if out.Key != "sess-c/1/c" {
					t.Fatalf("tool got key %q", out.Key)
				}
			} else if f := failure(t, ev); f.Reason != tt.want.reason {
				t.Fatalf("reason %s, want %s (%s)", f.Reason, tt.want.reason, f.Message)
			}
			runs, effects := e.count(toolstest.KindRun, "sess-c", 1, "c"), e.count(toolstest.KindEffect, "sess-c", 1, "c")
			if runs != tt.want.runs || effects != tt.want.effects {
				t.Fatalf("runs %d effects %d, want %d and %d", runs, effects, tt.want.runs, tt.want.effects)
			}
		})
	}
}

// TestConcurrentDeliveries hands one request to many gateway instances at
// once: the side effect happens once and one result is recorded.
func TestConcurrentDeliveries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.plain.Delay = 50 * time.Millisecond
	req := request(t, "sess-x", 1, "c", "charge_card", `{}`)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.gateway(nil, nil).Handle(context.Background(), req)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		var ra *bus.RetryAfterError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &ra):
		default:
			t.Fatalf("unexpected error %v", err)
		}
	}
	if ok < 1 {
		t.Fatal("no delivery succeeded")
	}
	if n := e.count(toolstest.KindRun, "sess-x", 1, "c"); n != 1 {
		t.Fatalf("tool ran %d times", n)
	}
	completed(t, e.only("sess-x", 1, "c"))
}

// TestLostLease: a holder that overran its lease and lost the call to a
// takeover must not overwrite the new holder's outcome.
func TestLostLease(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.plain.Delay = 300 * time.Millisecond
	ctx := context.Background()
	req := request(t, "sess-l", 1, "c", "charge_card", `{}`)
	slow := make(chan error, 1)
	go func() { slow <- e.gateway(nil, nil).Handle(ctx, req) }()
	deadline := time.Now().Add(5 * time.Second)
	for e.count(toolstest.KindRun, "sess-l", 1, "c") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("tool never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.clock.Advance(time.Hour)
	if err := e.gateway(nil, nil).Handle(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := <-slow; err != nil {
		t.Fatalf("slow holder: %v", err)
	}
	if f := failure(t, e.only("sess-l", 1, "c")); f.Reason != events.ToolOutcomeUnknown {
		t.Fatalf("reason %s", f.Reason)
	}
	if n := e.count(toolstest.KindEffect, "sess-l", 1, "c"); n != 1 {
		t.Fatalf("effect ran %d times", n)
	}
}

// TestShutdownMidCall: a handler stopped while the tool runs reports
// nothing and leaves the claim pending for its lease.
func TestShutdownMidCall(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	if err := e.reg.Register(fake("blocks", false, time.Minute, func(ctx context.Context, _ tools.Call) (json.RawMessage, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})); err != nil {
		t.Fatal(err)
	}
	go func() { <-started; cancel() }()
	err := e.gateway(nil, nil).Handle(ctx, request(t, "sess-s", 1, "c", "blocks", `{}`))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	cl, err := e.store.GetClaim(context.Background(), "sess-s", "sess-s/1/c")
	if err != nil || cl.State != state.ClaimPending {
		t.Fatalf("claim %+v %v", cl, err)
	}
	if len(e.results("sess-s", 1, "c")) != 0 {
		t.Fatal("reported an interrupted call")
	}
}

// TestLongCallLeaseRenewed: a call whose timeout is far longer than the
// renewal period (a saga tool's) holds a short lease that the live holder
// keeps renewing, so another delivery never takes it over while it runs,
// and a dead holder's lease would end soon rather than after the timeout.
func TestLongCallLeaseRenewed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	release := make(chan struct{})
	started := make(chan struct{})
	if err := e.reg.Register(fake("long", false, 10*time.Minute, func(ctx context.Context, _ tools.Call) (json.RawMessage, error) {
		close(started)
		select {
		case <-release:
			return json.RawMessage(`"done"`), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})); err != nil {
		t.Fatal(err)
	}
	renewal := 50 * time.Millisecond
	g, err := toolgateway.New(toolgateway.Config{Store: e.store, Registry: e.reg, LeaseMargin: e.margin, LeaseRenewal: renewal, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	req := request(t, "sess-lr", 1, "c", "long", `{}`)
	done := make(chan error, 1)
	go func() { done <- g.Handle(ctx, req) }()
	<-started
	cl, err := e.store.GetClaim(ctx, "sess-lr", "sess-lr/1/c")
	if err != nil {
		t.Fatal(err)
	}
	if want := e.clock.Now().Add(3*renewal + e.margin); !cl.LeaseUntil.Equal(want) {
		t.Fatalf("lease until %v, want %v (three renewal periods + margin, not the 10-minute timeout)", cl.LeaseUntil, want)
	}
	// Time passes well beyond the first lease; the holder keeps renewing.
	for range 4 {
		e.clock.Advance(time.Second)
		time.Sleep(3 * renewal)
		var ra *bus.RetryAfterError
		if err := e.gateway(nil, nil).Handle(ctx, req); !errors.As(err, &ra) {
			t.Fatalf("a delivery while the holder runs: %v, want RetryAfter", err)
		}
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c := completed(t, e.only("sess-lr", 1, "c")); string(c.Output) != `"done"` {
		t.Fatalf("output %s", c.Output)
	}
}
