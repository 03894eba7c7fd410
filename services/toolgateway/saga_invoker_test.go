package toolgateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/bus"
	psaga "github.com/agentbus/agentbus/platform/saga"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/saga"
	"github.com/agentbus/agentbus/services/toolgateway"
	"github.com/agentbus/agentbus/tools/toolstest"
)

func (e *env) invoker(hook func(string)) *toolgateway.Invoker {
	e.t.Helper()
	iv, err := toolgateway.NewInvoker(toolgateway.Config{Store: e.store, Registry: e.reg, Hook: hook, LeaseMargin: e.margin, Now: e.clock.Now})
	if err != nil {
		e.t.Fatal(err)
	}
	return iv
}

func task(tool, input string, attempt int) psaga.Task {
	return psaga.Task{Execution: "trip-0123", Session: "sess-saga", Saga: "trip", Step: "pay", Kind: psaga.KindAction,
		Tool: tool, Input: json.RawMessage(input), Attempt: attempt}
}

func (e *env) taskCount(kind string, t psaga.Task) int {
	e.t.Helper()
	n, err := toolstest.Count(e.file, kind, t.Key())
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func stepErr(t *testing.T, err error) *psaga.StepError {
	t.Helper()
	var se *psaga.StepError
	if !errors.As(err, &se) {
		t.Fatalf("got %v (%T), want a *saga.StepError", err, err)
	}
	return se
}

// TestInvokerOutcomes: each kind of outcome is mapped to its saga error
// name, stored with the claim, and a repeated Invoke (a redelivery) returns
// the stored outcome without running the tool again.
func TestInvokerOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, tool, input string
		timeoutSeconds    int
		wantErr, mention  string // wantErr "" = success
		runs              int
	}{
		{"success", "charge_card", `{"note":"pay"}`, 0, "", "", 1},
		{"invalid input", "charge_card", `{"note":5}`, 0, saga.ErrorInvalidInput, "/note", 0},
		{"tool error", "calculator", `{"expression":"1/0"}`, 0, saga.ErrorTool, "division by zero", 0},
		{"timeout", "slow", `{}`, 0, saga.ErrorTimeout, "100ms", 0},
		{"panic of a non-idempotent tool", "panics", `{}`, 0, saga.ErrorOutcomeUnknown, "boom", 0},
		{"unknown tool", "no_such_tool", `{}`, 0, saga.ErrorTool, "no tool named", 0},
		{"plug-in tool", "plugin_tool", `{}`, 0, saga.ErrorTool, "no tool named", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			iv := e.invoker(nil)
			tk := task(tt.tool, tt.input, 0)
			tk.TimeoutSeconds = tt.timeoutSeconds
			for i := range 3 {
				out, err := iv.Invoke(context.Background(), tk)
				if tt.wantErr == "" {
					if err != nil {
						t.Fatalf("invoke %d: %v", i+1, err)
					}
					var o struct {
						Key string `json:"key"`
					}
					if err := json.Unmarshal(out, &o); err != nil || o.Key != tk.Key() {
						t.Fatalf("invoke %d: output %s: the tool did not get the task key %s", i+1, out, tk.Key())
					}
					continue
				}
				se := stepErr(t, err)
				if se.Name != tt.wantErr || !strings.Contains(se.Cause, tt.mention) {
					t.Fatalf("invoke %d: %s: %s, want %s mentioning %q", i+1, se.Name, se.Cause, tt.wantErr, tt.mention)
				}
			}
			if tt.tool == "charge_card" {
				if n := e.taskCount(toolstest.KindRun, tk); n != tt.runs {
					t.Fatalf("tool ran %d times, want %d", n, tt.runs)
				}
			}
			if tt.tool == "no_such_tool" || tt.tool == "plugin_tool" {
				return
			}
			cl, err := e.store.GetClaim(context.Background(), tk.Session, tk.Key())
			if err != nil || cl.State != state.ClaimDone {
				t.Fatalf("claim %+v %v", cl, err)
			}
			if p, _ := e.store.PendingOutbox(context.Background(), 10); len(p) != 0 {
				t.Fatalf("a saga task wrote %d outbox events; its outcome goes to the runner", len(p))
			}
		})
	}
}

// TestInvokerAttemptsAreDistinctCalls: a retry (the next attempt) is a new
// key and runs the tool again; the same attempt does not.
func TestInvokerAttemptsAreDistinctCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	iv := e.invoker(nil)
	ctx := context.Background()
	for _, attempt := range []int{0, 0, 1, 1} {
		if _, err := iv.Invoke(ctx, task("charge_card", `{}`, attempt)); err != nil {
			t.Fatal(err)
		}
	}
	for _, attempt := range []int{0, 1} {
		if n := e.taskCount(toolstest.KindEffect, task("charge_card", `{}`, attempt)); n != 1 {
			t.Fatalf("attempt %d: effect ran %d times", attempt, n)
		}
	}
}

func TestInvokerInProgressElsewhere(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	tk := task("charge_card", `{}`, 0)
	if _, ok, err := e.store.Claim(ctx, state.ClaimRequest{SessionID: tk.Session, Key: tk.Key(), Holder: "other", Lease: time.Minute, TTL: time.Hour}); err != nil || !ok {
		t.Fatal(ok, err)
	}
	_, err := e.invoker(nil).Invoke(ctx, tk)
	var ra *bus.RetryAfterError
	var se *psaga.StepError
	if !errors.As(err, &ra) || errors.As(err, &se) {
		t.Fatalf("got %v, want a retry-later error that is not a StepError", err)
	}
	if e.taskCount(toolstest.KindRun, tk) != 0 {
		t.Fatal("ran a task another holder holds")
	}
}

func TestInvokerBadSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tk := task("charge_card", `{}`, 0)
	tk.Session = "bad/session"
	if se := stepErr(t, func() error { _, err := e.invoker(nil).Invoke(context.Background(), tk); return err }()); se.Name != saga.ErrorInvalidInput {
		t.Fatalf("got %v", se)
	}
}

// TestInvokerCrashPoints: a worker dying at each crash point, then the task
// redelivered after the lease: a non-idempotent tool never runs twice (its
// outcome is unknown when the effect may have happened), an idempotent one
// is re-run with the same key.
func TestInvokerCrashPoints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		point, tool   string
		runs, effects int
		wantErr       string
	}{
		{toolgateway.PointAfterClaim, "charge_card", 0, 0, saga.ErrorOutcomeUnknown},
		{toolgateway.PointAfterSideEffect, "charge_card", 1, 1, saga.ErrorOutcomeUnknown},
		{toolgateway.PointAfterComplete, "charge_card", 1, 1, ""},
		{toolgateway.PointAfterSideEffect, "put_object", 2, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.point+"/"+tt.tool, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ctx := context.Background()
			tk := task(tt.tool, `{"note":"once"}`, 0)
			type crash struct{}
			dying := e.invoker(func(p string) {
				if p == tt.point {
					panic(crash{})
				}
			})
			func() {
				defer func() {
					if _, ok := recover().(crash); !ok {
						t.Fatalf("did not die at %s", tt.point)
					}
				}()
				_, _ = dying.Invoke(ctx, tk)
			}()
			iv := e.invoker(nil)
			// Only a claimed call leaves a lease to wait for: an idempotent
			// tool's call takes none.
			if tt.point != toolgateway.PointAfterComplete && tt.tool == "charge_card" {
				var ra *bus.RetryAfterError
				if _, err := iv.Invoke(ctx, tk); !errors.As(err, &ra) {
					t.Fatalf("redelivery during the lease: %v, want RetryAfter", err)
				}
				e.clock.Advance(5*time.Second + e.margin + time.Second)
			}
			for range 2 {
				_, err := iv.Invoke(ctx, tk)
				if tt.wantErr == "" && err != nil {
					t.Fatal(err)
				}
				if tt.wantErr != "" {
					if se := stepErr(t, err); se.Name != tt.wantErr {
						t.Fatalf("got %v, want %s", se, tt.wantErr)
					}
				}
			}
			if r, f := e.taskCount(toolstest.KindRun, tk), e.taskCount(toolstest.KindEffect, tk); r != tt.runs || f != tt.effects {
				t.Fatalf("runs %d effects %d, want %d and %d", r, f, tt.runs, tt.effects)
			}
		})
	}
}

// TestInvokerSharesTheLedger: a task key is an ordinary claim, so a
// gateway handling calls and an invoker on one store never confuse each
// other's outcomes.
func TestInvokerSharesTheLedger(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	tk := task("charge_card", `{}`, 0)
	// Another process stored an ordinary call's result under the key.
	if _, ok, err := e.store.Claim(ctx, state.ClaimRequest{SessionID: tk.Session, Key: tk.Key(), Holder: "h", Lease: time.Minute, TTL: time.Hour}); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if _, err := e.store.CompleteClaim(ctx, tk.Session, tk.Key(), "h", []byte(`not a task result`)); err != nil {
		t.Fatal(err)
	}
	if se := stepErr(t, func() error { _, err := e.invoker(nil).Invoke(ctx, tk); return err }()); se.Name != saga.ErrorOutcomeUnknown {
		t.Fatalf("got %v", se)
	}
	if e.taskCount(toolstest.KindRun, tk) != 0 {
		t.Fatal("ran a task whose key is done")
	}
}
