package local_test

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

	psaga "github.com/agentbus/agentbus/platform/saga"
	"github.com/agentbus/agentbus/platform/saga/local"
	"github.com/agentbus/agentbus/platform/saga/sagatest"
	"github.com/agentbus/agentbus/saga"
)

// harness runs the conformance suite's case on a local runner: durable in
// the file path, or (path "") in an in-memory database kept across
// restarts. Restart closes the runner mid-flight and opens a new one on the
// same database and ledger.
func harness(path string) sagatest.NewHarness {
	return func(t *testing.T, tb *sagatest.Toolbox, defs []saga.Definition) sagatest.Harness {
		inv := sagatest.NewLedger(tb.Registry(), tb.Hook)
		cfg := local.Config{Definitions: sagatest.NewLookup(defs...), Invoker: inv}
		if path == "" {
			db, err := local.OpenDB("")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			cfg.DB = db
		} else {
			cfg.Path = filepath.Join(t.TempDir(), path)
		}
		r, err := local.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		t.Cleanup(func() {
			mu.Lock()
			defer mu.Unlock()
			r.Close()
		})
		return sagatest.Harness{
			Runner:      r,
			Invoker:     inv,
			WaitTimeout: 30 * time.Second,
			Restart: func() psaga.Runner {
				mu.Lock()
				defer mu.Unlock()
				if err := r.Close(); err != nil {
					t.Errorf("close before restart: %v", err)
				}
				n, err := local.New(context.Background(), cfg)
				if err != nil {
					t.Errorf("restart: %v", err)
					return nil
				}
				r = n
				return n
			},
		}
	}
}

func TestConformanceMemory(t *testing.T) {
	t.Parallel()
	sagatest.Run(t, harness(""))
}

func TestConformanceFile(t *testing.T) {
	if testing.Short() {
		t.Skip("the suite again on a file (TestConformanceMemory runs it in memory)")
	}
	t.Parallel()
	sagatest.Run(t, harness("sagas.db"))
}

// open opens a runner on path with the suite's definitions.
func open(t *testing.T, path string, inv psaga.Invoker) *local.Runner {
	t.Helper()
	defs := sagatest.Definitions()
	list := make([]saga.Definition, 0, len(defs))
	for _, d := range defs {
		list = append(list, d)
	}
	r, err := local.New(context.Background(), local.Config{Path: path, Definitions: sagatest.NewLookup(list...), Invoker: inv})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func start(t *testing.T, r *local.Runner, sagaName, input string) string {
	t.Helper()
	name := fmt.Sprintf("t-%d", time.Now().UnixNano())
	if _, err := r.Start(context.Background(), psaga.StartRequest{Saga: sagaName, Name: name, Session: "s1", Input: json.RawMessage(input)}); err != nil {
		t.Fatal(err)
	}
	return name
}

func wait(t *testing.T, r *local.Runner, name string) psaga.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o, err := r.Wait(ctx, name)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return o
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRestartFromFile closes the runner in the middle of an execution (no
// crash hook: an ordinary Close) and reopens the file: the execution
// resumes where it stood.
func TestRestartFromFile(t *testing.T) {
	t.Parallel()
	t.Run("during a retry wait", func(t *testing.T) {
		t.Parallel()
		tb := sagatest.NewToolbox()
		inv := sagatest.NewLedger(tb.Registry(), nil)
		path := filepath.Join(t.TempDir(), "s.db")
		tb.Fail(sagatest.ToolStepB, 1)
		r := open(t, path, inv)
		name := start(t, r, sagatest.SagaLinear, `{"amount":1}`)
		eventually(t, "step_b's failed first attempt", func() bool { return tb.Runs(sagatest.ToolStepB) == 1 })
		r.Close()
		if _, err := r.Describe(context.Background(), name); !errors.Is(err, local.ErrClosed) {
			t.Errorf("Describe after Close: %v, want ErrClosed", err)
		}
		r2 := open(t, path, inv)
		o := wait(t, r2, name)
		if o.Status != psaga.StatusSucceeded {
			t.Fatalf("outcome %+v, want succeeded", o)
		}
		for _, tool := range []string{sagatest.ToolStepA, sagatest.ToolStepB, sagatest.ToolStepC, sagatest.ToolStepD} {
			if n := tb.Effects(tool); n != 1 {
				t.Errorf("%s: %d effects, want 1", tool, n)
			}
		}
		h, err := r2.History(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range h {
			if a.Finished.IsZero() {
				t.Errorf("attempt %+v not finished", a)
			}
			got = append(got, fmt.Sprintf("%s/%s/%d=%s", a.Step, a.Kind, a.Attempt, a.Outcome))
		}
		want := "a/action/0=ok b/action/0=agentbus.ToolError b/action/1=ok c/action/0=ok d/action/0=ok"
		if strings.Join(got, " ") != want {
			t.Errorf("history = %s\nwant      %s", strings.Join(got, " "), want)
		}
	})
	t.Run("during a non-idempotent step", func(t *testing.T) {
		t.Parallel()
		tb := sagatest.NewToolbox()
		inv := sagatest.NewLedger(tb.Registry(), nil)
		path := filepath.Join(t.TempDir(), "s.db")
		r := open(t, path, inv)
		name := start(t, r, sagatest.SagaSlow, `{"amount":1,"ms":60000}`)
		eventually(t, "the slow step", func() bool { return tb.Runs(sagatest.ToolSlow) == 1 })
		r.Close()
		// The interrupted call's claim stays pending until its lease (the
		// step's 10 s timeout) ends: shorten the wait with a clock ahead.
		inv.Now = func() time.Time { return time.Now().Add(11 * time.Second) }
		r2 := open(t, path, inv)
		o := wait(t, r2, name)
		if o.Status != psaga.StatusCompensated || o.FailedStep != "slow" || !strings.HasPrefix(o.Error, saga.ErrorOutcomeUnknown+":") {
			t.Fatalf("outcome %+v, want compensated at slow with %s", o, saga.ErrorOutcomeUnknown)
		}
		if tb.Runs(sagatest.ToolSlow) != 1 || tb.Effects(sagatest.ToolUndoA) != 1 {
			t.Errorf("tools: %s; want slow run once and undo_a once", tb)
		}
	})
	t.Run("after the end", func(t *testing.T) {
		t.Parallel()
		tb := sagatest.NewToolbox()
		inv := sagatest.NewLedger(tb.Registry(), nil)
		path := filepath.Join(t.TempDir(), "s.db")
		r := open(t, path, inv)
		name := start(t, r, sagatest.SagaLinear, `{"amount":9}`)
		o := wait(t, r, name)
		r.Close()
		r2 := open(t, path, inv)
		d, err := r2.Describe(context.Background(), name)
		if err != nil || d.Status != psaga.StatusSucceeded || string(d.Output) != string(o.Output) {
			t.Fatalf("Describe after reopening = %+v, %v; want %+v", d, err, o)
		}
		started, err := r2.Start(context.Background(), psaga.StartRequest{Saga: sagatest.SagaLinear, Name: name, Session: "s1", Input: json.RawMessage(`{"amount": 9}`)})
		if err != nil || started {
			t.Errorf("Start again after reopening = %v, %v; want false, nil", started, err)
		}
	})
}

// TestKillLoop closes and reopens the runner at arbitrary moments while
// executions run: every execution ends succeeded and every effect happened
// exactly once.
func TestKillLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a runner many times")
	}
	t.Parallel()
	tb := sagatest.NewToolbox()
	inv := sagatest.NewLedger(tb.Registry(), nil)
	path := filepath.Join(t.TempDir(), "s.db")
	r := open(t, path, inv)
	const n = 6
	var names []string
	for i := 0; i < n; i++ {
		names = append(names, start(t, r, sagatest.SagaLinear, fmt.Sprintf(`{"amount":%d}`, i)))
	}
	for i := 0; i < 15; i++ {
		time.Sleep(time.Duration(i%4) * time.Millisecond)
		r.Close()
		r = open(t, path, inv)
	}
	for _, name := range names {
		if o := wait(t, r, name); o.Status != psaga.StatusSucceeded {
			t.Errorf("%s: %+v", name, o)
		}
	}
	for _, tool := range []string{sagatest.ToolStepA, sagatest.ToolStepB, sagatest.ToolStepC, sagatest.ToolStepD} {
		byKey := tb.EffectsByKey(tool)
		if len(byKey) != n {
			t.Errorf("%s: %d keys with effects, want %d", tool, len(byKey), n)
		}
		for k, c := range byKey {
			if c != 1 {
				t.Errorf("%s: key %s: %d effects", tool, k, c)
			}
		}
	}
}

// invokerFunc adapts a function to psaga.Invoker.
type invokerFunc func(ctx context.Context, t psaga.Task) (json.RawMessage, error)

func (f invokerFunc) Invoke(ctx context.Context, t psaga.Task) (json.RawMessage, error) {
	return f(ctx, t)
}

// oneStep is a saga of one step with a compensation-free action "x".
func oneStep(timeout int) saga.Definition {
	return saga.Definition{Name: "one", InputSchema: json.RawMessage(`{"type":"object"}`),
		Steps: []saga.Step{{Name: "x", Action: saga.Call{Tool: "t", Input: json.RawMessage(`{"v":"$.input.v"}`)},
			Retry: saga.Retry{MaxAttempts: 1, IntervalSeconds: 1, BackoffRate: 1}, TimeoutSeconds: timeout}}}
}

func openWith(t *testing.T, d saga.Definition, inv psaga.Invoker) *local.Runner {
	t.Helper()
	r, err := local.New(context.Background(), local.Config{Definitions: sagatest.NewLookup(d), Invoker: inv})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestAttemptRecordedBeforeInvoke: when the Invoker is called, the attempt
// is already in the history, unfinished.
func TestAttemptRecordedBeforeInvoke(t *testing.T) {
	t.Parallel()
	var r *local.Runner
	ready := make(chan struct{})
	var seen atomic.Value
	r = openWith(t, oneStep(5), invokerFunc(func(ctx context.Context, task psaga.Task) (json.RawMessage, error) {
		<-ready
		h, err := r.History(ctx, task.Execution)
		if err != nil {
			return nil, err
		}
		seen.Store(h)
		return json.RawMessage(`{"ok":true}`), nil
	}))
	name := start(t, r, "one", `{"v":1}`)
	close(ready)
	o := wait(t, r, name)
	if o.Status != psaga.StatusSucceeded || string(o.Output) != `{"x":{"ok":true}}` {
		t.Fatalf("outcome %+v (output %s)", o, o.Output)
	}
	h, _ := seen.Load().([]local.Attempt)
	if len(h) != 1 || h[0].Attempt != 0 || !h[0].Finished.IsZero() || h[0].Started.IsZero() || string(h[0].Input) != `{"v":1}` {
		t.Errorf("history seen by the Invoker = %+v; want one unfinished attempt 0 with the resolved input", h)
	}
}

// TestInvokerBehaviour: the runner's own handling of what an Invoker does.
func TestInvokerBehaviour(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		timeout int
		invoke  func(calls int, ctx context.Context, task psaga.Task) (json.RawMessage, error)
		status  psaga.Status
		errName string
		calls   int
		// attempts is the Task.Attempt of each call.
		attempts string
	}{
		{"infrastructure errors ask the same attempt again", 5, func(n int, _ context.Context, _ psaga.Task) (json.RawMessage, error) {
			if n < 3 {
				return nil, errors.New("store unavailable")
			}
			return json.RawMessage(`1`), nil
		}, psaga.StatusSucceeded, "", 3, "0 0 0"},
		{"an Invoker ignoring the deadline times out, not retried", 1, func(_ int, ctx context.Context, _ psaga.Task) (json.RawMessage, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}, psaga.StatusCompensated, saga.ErrorTimeout, 1, "0"},
		{"a tool error is retried as the next attempt", 5, func(n int, _ context.Context, _ psaga.Task) (json.RawMessage, error) {
			return nil, &psaga.StepError{Name: saga.ErrorTool, Cause: "no"}
		}, psaga.StatusCompensated, saga.ErrorTool, 2, "0 1"},
		{"invalid input is not retried", 5, func(int, context.Context, psaga.Task) (json.RawMessage, error) {
			return nil, &psaga.StepError{Name: saga.ErrorInvalidInput, Cause: "bad"}
		}, psaga.StatusCompensated, saga.ErrorInvalidInput, 1, "0"},
		{"output that is not JSON is a tool error (retried)", 5, func(int, context.Context, psaga.Task) (json.RawMessage, error) {
			return json.RawMessage(`{nope`), nil
		}, psaga.StatusCompensated, saga.ErrorTool, 2, "0 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var attempts []string
			r := openWith(t, oneStep(tc.timeout), invokerFunc(func(ctx context.Context, task psaga.Task) (json.RawMessage, error) {
				mu.Lock()
				attempts = append(attempts, fmt.Sprint(task.Attempt))
				n := len(attempts)
				mu.Unlock()
				return tc.invoke(n, ctx, task)
			}))
			o := wait(t, r, start(t, r, "one", `{"v":1}`))
			if o.Status != tc.status || (tc.errName != "" && !strings.HasPrefix(o.Error, tc.errName+":")) {
				t.Errorf("outcome %+v, want %s with %s", o, tc.status, tc.errName)
			}
			mu.Lock()
			defer mu.Unlock()
			if got := strings.Join(attempts, " "); len(attempts) != tc.calls || got != tc.attempts {
				t.Errorf("calls with attempts %q, want %q", got, tc.attempts)
			}
		})
	}
}

// TestTemplateMiss: a template path missing from a step's output fails the
// step as invalid input (compensating), instead of calling a tool with a
// wrong input.
func TestTemplateMiss(t *testing.T) {
	t.Parallel()
	d := saga.Definition{Name: "miss", InputSchema: json.RawMessage(`{"type":"object"}`), Steps: []saga.Step{
		{Name: "a", Action: saga.Call{Tool: "t"}, Compensation: &saga.Call{Tool: "u"}},
		{Name: "b", Action: saga.Call{Tool: "t", Input: json.RawMessage(`{"v":"$.steps.a.missing"}`)}},
	}}
	var calls atomic.Int32
	r := openWith(t, d, invokerFunc(func(_ context.Context, task psaga.Task) (json.RawMessage, error) {
		calls.Add(1)
		return json.RawMessage(`{}`), nil
	}))
	o := wait(t, r, start(t, r, "miss", `{}`))
	if o.Status != psaga.StatusCompensated || o.FailedStep != "b" || !strings.HasPrefix(o.Error, saga.ErrorInvalidInput) ||
		len(o.Compensated) != 1 || o.Compensated[0] != "a" {
		t.Errorf("outcome %+v", o)
	}
	if n := calls.Load(); n != 2 { // a's action and its compensation
		t.Errorf("%d Invoker calls, want 2", n)
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	inv := invokerFunc(func(context.Context, psaga.Task) (json.RawMessage, error) { return json.RawMessage(`{}`), nil })
	defs := sagatest.NewLookup(oneStep(5))
	ctx := context.Background()
	if _, err := local.New(ctx, local.Config{Invoker: inv}); err == nil {
		t.Error("New without Definitions: no error")
	}
	if _, err := local.New(ctx, local.Config{Definitions: defs}); err == nil {
		t.Error("New without Invoker: no error")
	}
	if _, err := local.New(ctx, local.Config{Path: filepath.Join(t.TempDir(), "no", "such", "dir", "s.db"), Definitions: defs, Invoker: inv}); err == nil {
		t.Error("New with a path in a missing folder: no error")
	}
	r := openWith(t, oneStep(5), inv)
	good := psaga.StartRequest{Saga: "one", Name: "n1", Session: "s", Input: json.RawMessage(`{}`)}
	for _, tc := range []struct {
		name string
		edit func(*psaga.StartRequest)
		want error
	}{
		{"bad name", func(q *psaga.StartRequest) { q.Name = "has space" }, local.ErrInvalidRequest},
		{"long name", func(q *psaga.StartRequest) { q.Name = strings.Repeat("x", 81) }, local.ErrInvalidRequest},
		{"no session", func(q *psaga.StartRequest) { q.Session = "" }, local.ErrInvalidRequest},
		{"not JSON", func(q *psaga.StartRequest) { q.Input = json.RawMessage(`{"a":`) }, local.ErrInvalidRequest},
		{"not an object", func(q *psaga.StartRequest) { q.Input = json.RawMessage(`[]`) }, local.ErrInvalidRequest},
		{"trailing data", func(q *psaga.StartRequest) { q.Input = json.RawMessage(`{} {}`) }, local.ErrInvalidRequest},
		{"unknown saga", func(q *psaga.StartRequest) { q.Saga = "two" }, psaga.ErrUnknownSaga},
	} {
		q := good
		tc.edit(&q)
		if started, err := r.Start(ctx, q); !errors.Is(err, tc.want) || started {
			t.Errorf("%s: Start = %v, %v; want %v", tc.name, started, err, tc.want)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := r.Wait(wctx, "n1"); !errors.Is(err, psaga.ErrUnknownExecution) {
		t.Errorf("Wait of a name never started: %v", err)
	}
	if _, err := r.History(ctx, "n1"); !errors.Is(err, psaga.ErrUnknownExecution) {
		t.Errorf("History of a name never started: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := r.Start(ctx, good); !errors.Is(err, local.ErrClosed) {
		t.Errorf("Start after Close: %v", err)
	}
	if _, err := r.Describe(ctx, "n1"); !errors.Is(err, local.ErrClosed) {
		t.Errorf("Describe after Close: %v", err)
	}
	if _, err := r.Wait(ctx, "n1"); !errors.Is(err, local.ErrClosed) {
		t.Errorf("Wait after Close: %v", err)
	}
}

// TestWaitUnblocksOnClose: a Wait on a running execution returns when the
// runner closes; a Wait whose context ends returns its error.
func TestWaitUnblocksOnClose(t *testing.T) {
	t.Parallel()
	r := openWith(t, oneStep(30), invokerFunc(func(ctx context.Context, _ psaga.Task) (json.RawMessage, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}))
	name := start(t, r, "one", `{"v":1}`)
	wctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := r.Wait(wctx, name); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with an ending context: %v", err)
	}
	errc := make(chan error, 1)
	go func() {
		o, err := r.Wait(context.Background(), name)
		if err == nil {
			err = fmt.Errorf("no error, outcome %+v", o)
		}
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	r.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, local.ErrClosed) {
			t.Errorf("Wait across Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after Close")
	}
}
