package sagatest_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	psaga "github.com/agentbus/agentbus/platform/saga"
	"github.com/agentbus/agentbus/platform/saga/sagatest"
	"github.com/agentbus/agentbus/saga"
	"github.com/agentbus/agentbus/tools"
)

// The suite's definitions are valid sagas, and Step Functions' ASL can be
// generated from them (the SFN runner provisions them).
func TestDefinitionsValid(t *testing.T) {
	t.Parallel()
	defs := sagatest.Definitions()
	if len(defs) != 8 {
		t.Fatalf("%d definitions, want 8", len(defs))
	}
	for name, d := range defs {
		if d.Name != name {
			t.Errorf("definition %q keyed as %q", d.Name, name)
		}
		if err := d.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := saga.ASL(d, "https://sqs.us-east-1.amazonaws.com/000000000000/q"); err != nil {
			t.Errorf("%s: ASL: %v", name, err)
		}
		for _, s := range d.Steps {
			r := s.EffectiveRetry()
			if r.IntervalSeconds > 1 || r.BackoffRate != 1 {
				t.Errorf("%s.%s: retry %+v is slow for the suite", name, s.Name, r)
			}
		}
	}
	if _, ok := sagatest.NewLookup(defs[sagatest.SagaLinear]).Lookup(sagatest.SagaLinear); !ok {
		t.Error("Lookup misses a definition it was given")
	}
	if _, ok := sagatest.NewLookup().Lookup("x"); ok {
		t.Error("empty Lookup finds something")
	}
}

func run(t *testing.T, tb *sagatest.Toolbox, tool, key, input string) (json.RawMessage, error) {
	t.Helper()
	e, err := tb.Registry().Lookup(tool)
	if err != nil {
		t.Fatal(err)
	}
	return e.Run(context.Background(), tools.Call{Input: json.RawMessage(input), IdempotencyKey: key, SessionID: "s"})
}

func TestToolboxCountsAndFailures(t *testing.T) {
	t.Parallel()
	tb := sagatest.NewToolbox()
	tb.Fail(sagatest.ToolStepA, 2)
	for i := 0; i < 2; i++ {
		if _, err := run(t, tb, sagatest.ToolStepA, "k1", `{}`); err == nil || !strings.Contains(err.Error(), "injected failure") {
			t.Errorf("run %d: err = %v, want an injected failure", i+1, err)
		}
	}
	out, err := run(t, tb, sagatest.ToolStepA, "k1", `{"amount":2}`)
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		Ref string          `json:"ref"`
		Got json.RawMessage `json:"got"`
	}
	if err := json.Unmarshal(out, &o); err != nil || o.Ref != "ref_step_a" || string(o.Got) != `{"amount":2}` {
		t.Errorf("output %s (%v)", out, err)
	}
	if _, err := run(t, tb, sagatest.ToolStepA, "k1", `{}`); err != nil {
		t.Fatal(err)
	}
	if tb.Runs(sagatest.ToolStepA) != 4 || tb.Effects(sagatest.ToolStepA) != 2 || tb.EffectsByKey(sagatest.ToolStepA)["k1"] != 2 {
		t.Errorf("not idempotent: runs/effects %s, want 4 runs and 2 effects on k1", tb)
	}
	// The idempotent tool has one effect per key.
	for _, k := range []string{"x", "x", "y"} {
		if _, err := run(t, tb, sagatest.ToolIdem, k, `{}`); err != nil {
			t.Fatal(err)
		}
	}
	if got := tb.EffectsByKey(sagatest.ToolIdem); len(got) != 2 || got["x"] != 1 || got["y"] != 1 {
		t.Errorf("idempotent effects by key = %v", got)
	}
	tb.Fail(sagatest.ToolUndoB, sagatest.Always)
	for i := 0; i < 3; i++ {
		if _, err := run(t, tb, sagatest.ToolUndoB, "u", `{}`); err == nil {
			t.Error("Always: a run succeeded")
		}
	}
	tb.Fail(sagatest.ToolUndoB, 0)
	if _, err := run(t, tb, sagatest.ToolUndoB, "u", `{}`); err != nil {
		t.Errorf("after clearing the injection: %v", err)
	}
	if _, err := run(t, tb, sagatest.ToolStepB, "b", `{"amount":"x"}`); !errors.Is(err, tools.ErrInvalidInput) {
		t.Errorf("wrong type: err = %v, want invalid input", err)
	}
	order := tb.EffectOrder("undo_", "step_idem")
	if strings.Join(order, ",") != "step_idem,step_idem,undo_b" {
		t.Errorf("EffectOrder = %v", order)
	}
	if n := len(tb.Calls()); n != 11 {
		t.Errorf("%d calls logged, want 11 (an invalid input never reaches the tool)", n)
	}
}

func TestToolboxSlowHonoursContext(t *testing.T) {
	t.Parallel()
	tb := sagatest.NewToolbox()
	e, _ := tb.Registry().Lookup(sagatest.ToolSlow)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := e.Run(ctx, tools.Call{Input: json.RawMessage(`{"ms":10000}`), IdempotencyKey: "k"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v", err)
	}
	if time.Since(start) > 5*time.Second || tb.Effects(sagatest.ToolSlow) != 0 {
		t.Errorf("slow did not stop at its deadline (%s)", tb)
	}
}

// The crash hook ends the calling goroutine (nothing after Hook runs),
// starts the handler and closes the channel once it returned; unarmed
// points and points before the armed tool's effect do nothing.
func TestToolboxCrashHook(t *testing.T) {
	t.Parallel()
	tb := sagatest.NewToolbox()
	var handled atomic.Int32
	tb.SetCrashHandler(func() { handled.Add(1) })
	done := tb.CrashAt(sagatest.ToolStepB, sagatest.PointAfterComplete)
	tb.Hook(sagatest.PointAfterComplete) // step_b has not run yet: nothing
	if _, err := run(t, tb, sagatest.ToolStepA, "a", `{}`); err != nil {
		t.Fatal(err)
	}
	tb.Hook(sagatest.PointAfterComplete) // another tool ran: nothing
	if _, err := run(t, tb, sagatest.ToolStepB, "b", `{}`); err != nil {
		t.Fatal(err)
	}
	tb.Hook(sagatest.PointAfterSideEffect) // not the armed point
	if tb.Crashes() != 0 {
		t.Fatal("crashed early")
	}
	var after atomic.Bool
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		tb.Hook(sagatest.PointAfterComplete)
		after.Store(true)
	}()
	<-exited
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("crash handler not done")
	}
	if after.Load() || handled.Load() != 1 || tb.Crashes() != 1 {
		t.Errorf("after Hook ran = %v, handled = %d, crashes = %d", after.Load(), handled.Load(), tb.Crashes())
	}
	tb.Hook(sagatest.PointAfterComplete) // disarmed
	if len(tb.Misuse()) != 0 {
		t.Errorf("misuse: %v", tb.Misuse())
	}
	tb.CrashAt(sagatest.ToolStepC, "nowhere")
	if len(tb.Misuse()) != 1 {
		t.Errorf("an unknown crash point is not reported: %v", tb.Misuse())
	}
}

func stepErrName(err error) string {
	var se *psaga.StepError
	if errors.As(err, &se) {
		return se.Name
	}
	return ""
}

// The reference ledger's claim semantics, beyond what the suite's Invoker
// case checks: a call whose worker died keeps its lease; after it, a
// non-idempotent tool is OutcomeUnknown (stored), an idempotent one runs
// again with the same key; an interrupted call (context cancelled) stores
// nothing.
func TestLedgerTakeover(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		tool      string
		wantAfter string // StepError name after the takeover ("" = success)
		runs      int
	}{{sagatest.ToolStepA, saga.ErrorOutcomeUnknown, 1}, {sagatest.ToolIdem, "", 2}} {
		t.Run(tc.tool, func(t *testing.T) {
			t.Parallel()
			tb := sagatest.NewToolbox()
			l := sagatest.NewLedger(tb.Registry(), tb.Hook)
			var now atomic.Int64
			now.Store(time.Now().UnixNano())
			l.Now = func() time.Time { return time.Unix(0, now.Load()) }
			tb.SetCrashHandler(func() {})
			done := tb.CrashAt(tc.tool, sagatest.PointAfterSideEffect)
			tk := psaga.Task{Execution: "e", Session: "s", Step: "x", Kind: psaga.KindAction, Tool: tc.tool, Input: json.RawMessage(`{}`), TimeoutSeconds: 10}
			go func() { _, _ = l.Invoke(context.Background(), tk) }() // dies in the hook
			<-done
			if _, err := l.Invoke(context.Background(), tk); !errors.Is(err, sagatest.ErrInProgress) {
				t.Errorf("Invoke within the dead holder's lease: %v, want ErrInProgress", err)
			}
			now.Add(int64(11 * time.Second))
			for i := 0; i < 2; i++ { // the takeover, then its stored outcome
				_, err := l.Invoke(context.Background(), tk)
				if stepErrName(err) != tc.wantAfter || (tc.wantAfter == "" && err != nil) {
					t.Errorf("Invoke %d after the lease: %v, want %q", i+1, err, tc.wantAfter)
				}
			}
			if tb.Runs(tc.tool) != tc.runs || tb.Effects(tc.tool) != 1 {
				t.Errorf("%s; want %d runs and 1 effect", tb, tc.runs)
			}
		})
	}
	t.Run("interrupted", func(t *testing.T) {
		t.Parallel()
		tb := sagatest.NewToolbox()
		l := sagatest.NewLedger(tb.Registry(), nil)
		var now atomic.Int64
		now.Store(time.Now().UnixNano())
		l.Now = func() time.Time { return time.Unix(0, now.Load()) }
		tk := psaga.Task{Execution: "e", Session: "s", Step: "x", Kind: psaga.KindAction, Tool: sagatest.ToolSlow, Input: json.RawMessage(`{"ms":60000}`), TimeoutSeconds: 10}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { _, err := l.Invoke(ctx, tk); errc <- err }()
		for tb.Runs(sagatest.ToolSlow) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		if _, err := l.Invoke(context.Background(), tk); !errors.Is(err, sagatest.ErrInProgress) {
			t.Errorf("second Invoke during the first: %v, want ErrInProgress", err)
		}
		cancel()
		if err := <-errc; err == nil || stepErrName(err) != "" {
			t.Errorf("interrupted Invoke: %v, want an infrastructure error", err)
		}
		if _, err := l.Invoke(context.Background(), tk); !errors.Is(err, sagatest.ErrInProgress) {
			t.Errorf("Invoke within the interrupted call's lease: %v, want ErrInProgress", err)
		}
		now.Add(int64(11 * time.Second))
		if _, err := l.Invoke(context.Background(), tk); stepErrName(err) != saga.ErrorOutcomeUnknown {
			t.Errorf("after the lease: %v, want %s", err, saga.ErrorOutcomeUnknown)
		}
	})
	t.Run("no session", func(t *testing.T) {
		t.Parallel()
		l := sagatest.NewLedger(sagatest.NewToolbox().Registry(), nil)
		if _, err := l.Invoke(context.Background(), psaga.Task{Tool: sagatest.ToolStepA}); stepErrName(err) != saga.ErrorInvalidInput {
			t.Errorf("err = %v", err)
		}
		if _, err := l.Invoke(context.Background(), psaga.Task{Session: "s", Tool: "nope"}); stepErrName(err) != saga.ErrorTool {
			t.Errorf("unknown tool: err = %v", err)
		}
	})
}
