// Package sagatest is the one conformance suite every saga runner passes
// (platform/saga/local; platform/saga/stepfunctions with its SQS task
// worker), run from each implementation's tests:
//
//	sagatest.Run(t, func(t *testing.T, tb *sagatest.Toolbox, defs []saga.Definition) sagatest.Harness {
//		inv := sagatest.NewLedger(tb.Registry(), tb.Hook) // or the tool-gateway's ledger with Hook: tb.Hook
//		r := newRunner(t, defs, inv)                    // a runner running exactly defs, with inv
//		return sagatest.Harness{Runner: r, Invoker: inv, Restart: func() psaga.Runner { ...; return r2 }}
//	})
//
// The Toolbox holds the tools the suite's sagas (Definitions) call and
// records their effects; the harness's Invoker must run the Toolbox's
// tools and call Toolbox.Hook at its crash points. Every case builds its
// own Toolbox and Harness and runs in parallel with the others.
//
// Ledger is an in-memory reference Invoker (the tool-gateway ledger's
// semantics without services/), for runners' own tests.
package sagatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	psaga "github.com/agentbus/agentbus/platform/saga"
	"github.com/agentbus/agentbus/saga"
)

// DefaultWaitTimeout bounds each Wait of the suite when the harness sets
// none.
const DefaultWaitTimeout = 2 * time.Minute

// Harness is what the suite runs against, built by the caller for each
// case.
type Harness struct {
	// Runner runs exactly the definitions given to the constructor, its
	// tasks performed by Invoker. Required.
	Runner psaga.Runner
	// Invoker performs the runner's tasks (the same value its worker
	// uses): it runs the Toolbox's tools under a claim ledger and calls
	// Toolbox.Hook at PointAfterSideEffect and PointAfterComplete in the
	// goroutine that called Invoke. The suite also calls it directly.
	// Required.
	Invoker psaga.Invoker
	// Restart is a crash and restart of what runs tasks (the local runner;
	// the Step Functions task worker): the old one stops at once, as a
	// killed process would (running tasks' contexts are cancelled and
	// nothing more is recorded by it), and a new one starts on the same
	// durable state (database file, state machine, queue, ledger) and
	// resumes. It returns the runner to use from then on (the same value
	// when the runner itself survives). The Toolbox calls it from its own
	// goroutine while the crashed goroutine is ending. Required by the
	// crash cases.
	Restart func() psaga.Runner
	// WaitTimeout bounds each Wait; zero means DefaultWaitTimeout.
	WaitTimeout time.Duration
	// CausesDropped says the runtime loses a failed task's message (the
	// cause of SendTaskFailure: moto, docs/moto-differences.md SF1). The
	// suite then checks every field of a failed outcome except the tool's
	// message text, instead of skipping those cases.
	CausesDropped bool
	// RetriesReplayFirstOutcome says a retried task ends at once with its
	// first attempt's outcome while the retry's task is still delivered
	// (moto, docs/moto-differences.md SF2): whether the worker runs that
	// retry before the execution ends is a race. The suite then accepts
	// either count of runs of a retried tool that keeps failing.
	RetriesReplayFirstOutcome bool
}

// NewHarness builds a harness for one case: a runner of defs whose
// Invoker runs tb's tools. It is called from parallel subtests and
// registers its clean-up with t.Cleanup.
type NewHarness func(t *testing.T, tb *Toolbox, defs []saga.Definition) Harness

// Lookup is a psaga.Definitions over a list of definitions (for harnesses
// and small programs).
type Lookup map[string]saga.Definition

// NewLookup indexes defs by name.
func NewLookup(defs ...saga.Definition) Lookup {
	l := Lookup{}
	for _, d := range defs {
		l[d.Name] = d
	}
	return l
}

// Lookup returns the definition named name.
func (l Lookup) Lookup(name string) (saga.Definition, bool) {
	d, ok := l[name]
	return d, ok
}

var _ psaga.Definitions = Lookup(nil)

// Run runs every case against harnesses from newHarness, each case in its
// own parallel subtest.
func Run(t *testing.T, newHarness NewHarness) {
	cases := []struct {
		name string
		fn   func(t *testing.T, nh NewHarness)
	}{
		{"HappyPath", testHappyPath},
		{"FailAtEachStep", testFailAtEachStep},
		{"StepWithoutCompensationSkipped", testGap},
		{"TransientFailureRetried", testTransientRetried},
		{"CompensationRetried", testCompensationRetried},
		{"CompensationKeepsFailing", testCompensationFails},
		{"OutputTemplateMissingPath", testMissingOutput},
		{"InputTemplateMissingPath", testMissingInput},
		{"TimeoutNotRetried", testTimeout},
		{"SlowStepHeartbeats", testSlow},
		{"CrashAfterSideEffect", testCrashAfterSideEffect},
		{"CrashAfterComplete", testCrashAfterComplete},
		{"CrashInCompensation", testCrashInCompensation},
		{"CrashIdempotentStep", testCrashIdempotent},
		{"StartTwice", testStartTwice},
		{"ConcurrentExecutions", testConcurrent},
		{"UnknownNames", testUnknown},
		{"BadInput", testBadInput},
		{"InvokerExactlyOnce", testInvoker},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, newHarness)
		})
	}
}

// env is one case's toolbox, harness and current runner.
type env struct {
	t  *testing.T
	tb *Toolbox
	h  Harness

	mu     sync.Mutex
	runner psaga.Runner
}

func setup(t *testing.T, nh NewHarness, sagas ...string) *env {
	t.Helper()
	all := Definitions()
	defs := make([]saga.Definition, 0, len(sagas))
	for _, s := range sagas {
		defs = append(defs, all[s])
	}
	tb := NewToolbox()
	h := nh(t, tb, defs)
	if h.Runner == nil || h.Invoker == nil {
		t.Fatal("sagatest: Harness.Runner and Harness.Invoker are required")
	}
	if h.WaitTimeout <= 0 {
		h.WaitTimeout = DefaultWaitTimeout
	}
	e := &env{t: t, tb: tb, h: h, runner: h.Runner}
	tb.SetCrashHandler(func() {
		r := h.Restart()
		e.mu.Lock()
		defer e.mu.Unlock()
		if r != nil {
			e.runner = r
		}
	})
	t.Cleanup(func() {
		for _, m := range tb.Misuse() {
			t.Errorf("sagatest: toolbox misuse: %s", m)
		}
	})
	return e
}

func (e *env) current() psaga.Runner {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.runner
}

// unique returns prefix-<16 hex>, a fresh execution or session name.
func unique(prefix string) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return prefix + "-" + hex.EncodeToString(b)
}

// start starts saga with input and returns the request.
func (e *env) start(sagaName, input string) psaga.StartRequest {
	e.t.Helper()
	req := psaga.StartRequest{Saga: sagaName, Name: unique("sagatest"), Session: unique("sess"), Input: json.RawMessage(input)}
	started, err := e.current().Start(context.Background(), req)
	if err != nil {
		e.t.Fatalf("Start(%s): %v", sagaName, err)
	}
	if !started {
		e.t.Fatalf("Start(%s) of a new name: started = false", sagaName)
	}
	return req
}

// wait waits for the execution's end on the current runner.
func (e *env) wait(name string) psaga.Outcome {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e.h.WaitTimeout)
	defer cancel()
	o, err := e.current().Wait(ctx, name)
	if err != nil {
		e.t.Fatalf("Wait(%s): %v (tools: %s)", name, err, e.tb)
	}
	if o.Execution != name {
		e.t.Errorf("outcome.Execution = %q, want %q", o.Execution, name)
	}
	if o.Status == psaga.StatusRunning {
		e.t.Fatalf("Wait returned a running execution: %+v", o)
	}
	return o
}

// crashedRun starts sagaName with input, has the worker crash when tool
// reaches point, and returns the outcome the restarted harness reaches.
func (e *env) crashedRun(sagaName, input, tool, point, what string) psaga.Outcome {
	e.t.Helper()
	done := e.tb.CrashAt(tool, point)
	req := e.start(sagaName, input)
	e.awaitCrash(req.Name, done, what)
	return e.wait(req.Name)
}

// awaitCrash waits until the armed crash happened and the harness
// restarted. An execution that ends first never reached the crash point
// (the Invoker does not call Toolbox.Hook): that fails at once.
func (e *env) awaitCrash(name string, done <-chan struct{}, what string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e.h.WaitTimeout)
	defer cancel()
	ended := make(chan psaga.Outcome, 1)
	r := e.current()
	go func() {
		// On a runner that a crash replaces, this Wait ends with an error.
		if o, err := r.Wait(ctx, name); err == nil {
			ended <- o
		}
	}()
	fail := func(why string) {
		e.t.Fatalf("the crash %s never happened (%s): the Invoker must call Toolbox.Hook(point) at %s and %s in the goroutine that called Invoke (tools: %s)",
			what, why, PointAfterSideEffect, PointAfterComplete, e.tb)
	}
	select {
	case <-done:
	case o := <-ended:
		if e.tb.Crashes() == 0 {
			fail(fmt.Sprintf("the execution ended first: %s", o.Status))
		}
		select { // crashed; the restart may still be returning
		case <-done:
		case <-ctx.Done():
			fail("the restart did not return")
		}
	case <-ctx.Done():
		fail("timed out")
	}
	if n := e.tb.Crashes(); n != 1 {
		e.t.Fatalf("crashes = %d, want 1", n)
	}
}

var allTools = []string{ToolStepA, ToolStepB, ToolStepC, ToolStepD, ToolUndoA, ToolUndoB, ToolUndoC, ToolUndoD, ToolIdem, ToolSlow}

// expectEffects checks every tool's effect count: want lists the tools
// with effects, every other tool must have none.
func (e *env) expectEffects(want map[string]int) {
	e.t.Helper()
	for _, tool := range allTools {
		if got := e.tb.Effects(tool); got != want[tool] {
			e.t.Errorf("%s: %d effects, want %d (tools: %s)", tool, got, want[tool], e.tb)
		}
		for k, n := range e.tb.EffectsByKey(tool) {
			if n > 1 {
				e.t.Errorf("%s: key %s had %d effects: a side effect ran twice", tool, k, n)
			}
		}
	}
}

// expectRetriedRuns checks a tool that failed every attempt of a step
// whose policy allows one retry: two runs (see
// Harness.RetriesReplayFirstOutcome for the one exception).
func (e *env) expectRetriedRuns(tool string) {
	e.t.Helper()
	if got := e.tb.Runs(tool); e.h.RetriesReplayFirstOutcome && got == 1 {
		return
	}
	e.expectRuns(tool, 2)
}

func (e *env) expectRuns(tool string, want int) {
	e.t.Helper()
	if got := e.tb.Runs(tool); got != want {
		e.t.Errorf("%s ran %d times, want %d (tools: %s)", tool, got, want, e.tb)
	}
}

// inputOf returns the input of tool's last run that had its effect.
func (e *env) inputOf(tool string) json.RawMessage {
	calls := e.tb.Calls()
	for i := len(calls) - 1; i >= 0; i-- {
		if calls[i].Tool == tool && calls[i].Effect {
			return calls[i].Input
		}
	}
	return nil
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func (e *env) expectJSON(what string, got []byte, want string) {
	e.t.Helper()
	if !jsonEqual(got, []byte(want)) {
		e.t.Errorf("%s = %s, want %s", what, got, want)
	}
}

func expectStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

// expectCompensated checks a compensated outcome.
func expectCompensated(t *testing.T, o psaga.Outcome, failedStep string, errPrefixes []string, compensated []string) {
	t.Helper()
	if o.Status != psaga.StatusCompensated {
		t.Fatalf("status = %s, want %s (outcome %+v)", o.Status, psaga.StatusCompensated, o)
	}
	if o.FailedStep != failedStep {
		t.Errorf("FailedStep = %q, want %q", o.FailedStep, failedStep)
	}
	expectErrorPrefix(t, "Error", o.Error, errPrefixes)
	expectStrings(t, "Compensated", o.Compensated, compensated)
	if len(o.Failures) > 0 {
		t.Errorf("Failures = %q, want none", o.Failures)
	}
	if len(o.Output) > 0 && !jsonEqual(o.Output, []byte("null")) {
		t.Errorf("Output = %s on a compensated execution, want none", o.Output)
	}
}

func expectErrorPrefix(t *testing.T, what, got string, prefixes []string) {
	t.Helper()
	for _, p := range prefixes {
		if strings.HasPrefix(got, p+":") || got == p {
			return
		}
	}
	t.Errorf("%s = %q, want it to start with one of %q", what, got, prefixes)
}

var (
	toolErr     = []string{saga.ErrorTool}
	timeoutErrs = []string{saga.ErrorTimeout, "States.Timeout", "States.HeartbeatTimeout"}
)

// linearSteps are SagaLinear's steps and their tools.
var (
	linearSteps = []string{"a", "b", "c", "d"}
	stepTools   = []string{ToolStepA, ToolStepB, ToolStepC, ToolStepD}
	undoTools   = []string{ToolUndoA, ToolUndoB, ToolUndoC, ToolUndoD}
)

// testHappyPath: every step runs once, in order, each reading the earlier
// outputs its template names; the output template is resolved; the task
// keys are Task.Key() of attempt 0; Describe agrees with Wait.
func testHappyPath(t *testing.T, nh NewHarness) {
	e := setup(t, nh, SagaLinear)
	req := e.start(SagaLinear, `{"amount":5}`)
	o := e.wait(req.Name)
	if o.Status != psaga.StatusSucceeded {
		t.Fatalf("status = %s, want succeeded (outcome %+v)", o.Status, o)
	}
	if o.Saga != SagaLinear {
		t.Errorf("Saga = %q, want %q", o.Saga, SagaLinear)
	}
	e.expectJSON("Output", o.Output, `{"a":"ref_step_a","amount":5,"d":{"ref":"ref_step_d","got":{"prev":"ref_step_c","note":"literal"}}}`)
	if o.FailedStep != "" || o.Error != "" || len(o.Compensated) > 0 || len(o.Failures) > 0 {
		t.Errorf("succeeded outcome carries failure fields: %+v", o)
	}
	e.expectEffects(map[string]int{ToolStepA: 1, ToolStepB: 1, ToolStepC: 1, ToolStepD: 1})
	e.expectJSON("step_a input", e.inputOf(ToolStepA), `{"amount":5}`)
	e.expectJSON("step_b input", e.inputOf(ToolStepB), `{"prev":"ref_step_a","amount":5}`)
	e.expectJSON("step_c input", e.inputOf(ToolStepC), `{"prev":"ref_step_b"}`)
	e.expectJSON("step_d input", e.inputOf(ToolStepD), `{"prev":"ref_step_c","note":"literal"}`)
	var order []string
	for _, c := range e.tb.Calls() {
		order = append(order, c.Tool)
		step := strings.TrimPrefix(c.Tool, "step_")
		want := psaga.Task{Execution: req.Name, Step: step, Kind: psaga.KindAction}.Key()
		if c.Key != want {
			t.Errorf("%s ran with idempotency key %q, want Task.Key() %q", c.Tool, c.Key, want)
		}
	}
	expectStrings(t, "tool order", order, stepTools)
	d, err := e.current().Describe(context.Background(), req.Name)
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	if d.Status != o.Status || !jsonEqual(d.Output, o.Output) || d.Saga != o.Saga {
		t.Errorf("Describe = %+v, Wait = %+v", d, o)
	}
}

// testFailAtEachStep: an action failing at step k (after its retry)
// compensates exactly k-1 … 1, once each, in reverse order, each
// compensation reading its own step's output; nothing after k runs.
func testFailAtEachStep(t *testing.T, nh NewHarness) {
	for k := 1; k <= len(linearSteps); k++ {
		t.Run(fmt.Sprintf("k=%d", k), func(t *testing.T) {
			t.Parallel()
			e := setup(t, nh, SagaLinear)
			e.tb.Fail(stepTools[k-1], Always)
			req := e.start(SagaLinear, `{"amount":2}`)
			o := e.wait(req.Name)
			var wantComp, wantUndo []string
			want := map[string]int{}
			for j := k - 1; j >= 1; j-- {
				wantComp = append(wantComp, linearSteps[j-1])
				wantUndo = append(wantUndo, undoTools[j-1])
				want[stepTools[j-1]] = 1
				want[undoTools[j-1]] = 1
			}
			expectCompensated(t, o, linearSteps[k-1], toolErr, wantComp)
			if !e.h.CausesDropped && !strings.Contains(o.Error, "injected failure") {
				t.Errorf("Error = %q, want the tool's message in it", o.Error)
			}
			e.expectEffects(want)
			e.expectRetriedRuns(stepTools[k-1]) // the first attempt and its one retry
			for j := k + 1; j <= len(linearSteps); j++ {
				e.expectRuns(stepTools[j-1], 0)
			}
			for j := k; j <= len(linearSteps); j++ {
				e.expectRuns(undoTools[j-1], 0)
			}
			expectStrings(t, "compensation order", e.tb.EffectOrder("undo_"), wantUndo)
			for j := 1; j < k; j++ {
				e.expectJSON(undoTools[j-1]+" input", e.inputOf(undoTools[j-1]), `{"ref":"ref_`+stepTools[j-1]+`"}`)
			}
		})
	}
}

// testGap: a step without a compensation is skipped in the chain.
func testGap(t *testing.T, nh NewHarness) {
	e := setup(t, nh, SagaGap)
	e.tb.Fail(ToolStepD, Always)
	req := e.start(SagaGap, `{"amount":1}`)
	o := e.wait(req.Name)
	expectCompensated(t, o, "d", toolErr, []string{"c", "a"})
	e.expectEffects(map[string]int{ToolStepA: 1, ToolStepB: 1, ToolStepC: 1, ToolUndoC: 1, ToolUndoA: 1})
	expectStrings(t, "compensation order", e.tb.EffectOrder("undo_"), []string{ToolUndoC, ToolUndoA})
}

// testTransientRetried: an agentbus.ToolError is retried as a new attempt
// (a new key) and the saga goes on; the effect happens once.
func testTransientRetried(t *testing.T, nh NewHarness) {
	e := setup(t, nh, SagaLinear)
	e.tb.Fail(ToolStepB, 1)
	req := e.start(SagaLinear, `{"amount":3}`)
	o := e.wait(req.Name)
	if o.Status != psaga.StatusSucceeded {
		t.Fatalf("status = %s, want succeeded (outcome %+v)", o.Status, o)
	}
	e.expectEffects(map[string]int{ToolStepA: 1, ToolStepB: 1, ToolStepC: 1, ToolStepD: 1})
	e.expectRuns(ToolStepB, 2)
	var keys []string
	for _, c := range e.tb.Calls() {
		if c.Tool == ToolStepB {
			keys = append(keys, c.Key)
		}
	}
	base := psaga.Task{Execution: req.Name, Step: "b", Kind: psaga.KindAction}
	retry := base
	retry.Attempt = 1
	expectStrings(t, "step_b keys", keys, []string{base.Key(), retry.Key()})
}

// testCompensationRetried: a compensation failing once is retried and
// succeeds; each compensation has its effect once.
func testCompensationRetried(t *testing.T, nh NewHarness) {
	e := setup(t, nh, SagaLinear)
	e.tb.Fail(ToolStepC, Always)
	e.tb.Fail(ToolUndoA, 1)
	req := e.start(SagaLinear, `{"amount":4}`)
	o := e.wait(req.Name)
	expectCompensated(t, o, "c", toolErr, []string{"b", "a"})
	e.expectEffects(map[string]int{ToolStepA: 1, ToolStepB: 1, ToolUndoB: 1, ToolUndoA: 1})
	e.expectRuns(ToolUndoA, 2)
	e.expectRuns(ToolUndoB, 1)
}

// testCompensationFails: a compensation failing after its retries ends the
// saga compensation_failed, naming it, with the original error kept and
// every other compensation still run, in order.
func testCompensationFails(t *testing.T, nh NewHarness) {
	e := setup(t, nh, SagaLinear)
	e.tb.Fail(ToolStepD, Always)
	e.tb.Fail(ToolUndoB, Always)
	req := e.start(SagaLinear, `{"amount":4}`)
	o := e.wait(req.Name)
	if o.Status != psaga.StatusCompensationFailed {
		t.Fatalf("status = %s, want %s (outcome %+v)", o.Status, psaga.StatusCompensationFailed, o)
	}
	if o.FailedStep != "d" {
		t.Errorf("FailedStep = %q, want d", o.FailedStep)
	}
	expectErrorPrefix(t, "Error", o.Error, toolErr)
	expectStrings(t, "Compensated", o.Compensated, []string{"c", "a"})
	if len(o.Failures) != 1 || !strings.HasPrefix(o.Failures[0], "b: "+saga.ErrorTool) ||
		!e.h.CausesDropped && !strings.Contains(o.Failures[0], "injected failure") {
		t.Errorf(`Failures = %q, want one "b: %s: …injected failure…"`, o.Failures, saga.ErrorTool)
	}
	e.expectEffects(map[string]int{ToolStepA: 1, ToolStepB: 1, ToolStepC: 1, ToolUndoC: 1, ToolUndoA: 1})
	e.expectRetriedRuns(ToolUndoB)
	var undos []string
	for _, c := range e.tb.Calls() {
		if strings.HasPrefix(c.Tool, "undo_") {
			undos = append(undos, c.Tool)
		}
	}
	expectStrings(t, "compensation runs", undos, []string{ToolUndoC, ToolUndoB, ToolUndoB, ToolUndoA})
}

// testTimeout: an attempt that outlives the step's timeout fails with a
// timeout, is not retried (it may have had its effect) and compensates.
// testMissingOutput: every step succeeded but the output template reads a
// field no step returned. Both runners report it as invalid input with no
// failed step ("") and undo every step, the last one included.
func testMissingOutput(t *testing.T, nh NewHarness) {
	e := setup(t, nh, SagaMissingOutput)
	req := e.start(SagaMissingOutput, `{"amount":5}`)
	o := e.wait(req.Name)
	expectCompensated(t, o, "", []string{saga.ErrorInvalidInput}, []string{"b", "a"})
	if !strings.HasPrefix(o.Error, saga.ErrorInvalidInput+": output template: ") || !strings.Contains(o.Error, "$.steps.b."+MissingField) {
		t.Errorf("Error = %q, want %q naming the path $.steps.b.%s", o.Error, saga.ErrorInvalidInput+": output template: …", MissingField)
	}
	e.expectEffects(map[string]int{ToolStepA: 1, ToolStepB: 1, ToolUndoB: 1, ToolUndoA: 1})
	expectStrings(t, "compensation order", e.tb.EffectOrder("undo_"), []string{ToolUndoB, ToolUndoA})
}

// testMissingInput: a step's input reads a field the earlier step did not
// return: the step fails as invalid input without its tool running (not
// retried) and the earlier step is undone.
func testMissingInput(t *testing.T, nh NewHarness) {
	e := setup(t, nh, SagaMissingInput)
	req := e.start(SagaMissingInput, `{"amount":5}`)
	o := e.wait(req.Name)
	expectCompensated(t, o, "b", []string{saga.ErrorInvalidInput}, []string{"a"})
	if !strings.Contains(o.Error, "$.steps.a."+MissingField) {
		t.Errorf("Error = %q, want it to name the path $.steps.a.%s", o.Error, MissingField)
	}
	e.expectEffects(map[string]int{ToolStepA: 1, ToolUndoA: 1})
	e.expectRuns(ToolStepB, 0)
	e.expectRuns(ToolStepC, 0)
}

func testTimeout(t *testing.T, nh NewHarness) {
	e := setup(t, nh, SagaTimeout)
	req := e.start(SagaTimeout, `{"amount":1,"ms":4000}`)
	o := e.wait(req.Name)
	expectCompensated(t, o, "slow", timeoutErrs, []string{"a"})
	e.expectEffects(map[string]int{ToolStepA: 1, ToolUndoA: 1})
	e.expectRuns(ToolSlow, 1)
}

// testSlow: a step longer than its heartbeat interval (but within its
// timeout) succeeds: the worker reports liveness while it runs; Describe
// reports the execution running meanwhile.
func testSlow(t *testing.T, nh NewHarness) {
	e := setup(t, nh, SagaSlow)
	// 5 s: the step lives only if the worker heartbeats (2 s timeout).
	req := e.start(SagaSlow, `{"amount":1,"ms":5000}`)
	d, err := e.current().Describe(context.Background(), req.Name)
	if err != nil {
		t.Fatalf("Describe of a running execution: %v", err)
	}
	if d.Status != psaga.StatusRunning || d.Saga != SagaSlow {
		t.Errorf("Describe while the slow step runs = %+v, want running %s", d, SagaSlow)
	}
	o := e.wait(req.Name)
	if o.Status != psaga.StatusSucceeded {
		t.Fatalf("status = %s, want succeeded (outcome %+v)", o.Status, o)
	}
	e.expectJSON("Output", o.Output, `{"slow":"ref_slow","b":"ref_step_b"}`)
	e.expectEffects(map[string]int{ToolStepA: 1, ToolSlow: 1, ToolStepB: 1})
	e.expectRuns(ToolSlow, 1)
}

// testCrashAfterSideEffect: the worker dies after step b's effect, before
// its outcome is stored. The resumed task finds the claim of a dead holder
// of a non-idempotent tool: b is not run again, its outcome is unknown (or
// the step timed out first, on Step Functions), and a is compensated.
func testCrashAfterSideEffect(t *testing.T, nh NewHarness) {
	e := setup(t, nh, SagaCrash)
	requireRestart(t, e)
	o := e.crashedRun(SagaCrash, `{"amount":1}`, ToolStepB, PointAfterSideEffect, "after step_b's side effect")
	expectCompensated(t, o, "b", append([]string{saga.ErrorOutcomeUnknown}, timeoutErrs...), []string{"a"})
	e.expectEffects(map[string]int{ToolStepA: 1, ToolStepB: 1, ToolUndoA: 1})
	e.expectRuns(ToolStepB, 1)
}

// testCrashAfterComplete: the worker dies after step b's outcome is stored,
// before the runner got it. The resumed task gets the stored outcome and
// the saga continues: every effect once.
func testCrashAfterComplete(t *testing.T, nh NewHarness) {
	e := setup(t, nh, SagaCrash)
	requireRestart(t, e)
	o := e.crashedRun(SagaCrash, `{"amount":1}`, ToolStepB, PointAfterComplete, "after step_b's outcome was stored")
	if o.Status != psaga.StatusSucceeded {
		t.Fatalf("status = %s, want succeeded (outcome %+v)", o.Status, o)
	}
	e.expectJSON("Output", o.Output, `{"a":"ref_step_a","b":"ref_step_b","c":"ref_step_c"}`)
	e.expectEffects(map[string]int{ToolStepA: 1, ToolStepB: 1, ToolStepC: 1})
	e.expectRuns(ToolStepB, 1)
}

// testCrashInCompensation: a crash after a compensation's outcome is stored
// resumes the chain without undoing anything twice.
func testCrashInCompensation(t *testing.T, nh NewHarness) {
	e := setup(t, nh, SagaCrash)
	requireRestart(t, e)
	e.tb.Fail(ToolStepC, Always)
	o := e.crashedRun(SagaCrash, `{"amount":1}`, ToolUndoB, PointAfterComplete, "after undo_b's outcome was stored")
	expectCompensated(t, o, "c", toolErr, []string{"b", "a"})
	e.expectEffects(map[string]int{ToolStepA: 1, ToolStepB: 1, ToolUndoB: 1, ToolUndoA: 1})
	e.expectRuns(ToolUndoB, 1)
	expectStrings(t, "compensation order", e.tb.EffectOrder("undo_"), []string{ToolUndoB, ToolUndoA})
}

// testCrashIdempotent: a crash after an idempotent step's effect: the
// ledger may run it again with the same key (no second effect) and the
// saga succeeds; on Step Functions the step may time out first and the
// saga compensates. Either way no key has two effects.
func testCrashIdempotent(t *testing.T, nh NewHarness) {
	e := setup(t, nh, SagaIdem)
	requireRestart(t, e)
	o := e.crashedRun(SagaIdem, `{"amount":1}`, ToolIdem, PointAfterSideEffect, "after step_idem's side effect")
	switch o.Status {
	case psaga.StatusSucceeded:
		e.expectEffects(map[string]int{ToolStepA: 1, ToolIdem: 1, ToolStepB: 1})
		if r := e.tb.Runs(ToolIdem); r != 2 {
			t.Errorf("step_idem ran %d times, want 2 (re-run with the same key after the takeover)", r)
		}
	case psaga.StatusCompensated:
		expectCompensated(t, o, "idem", timeoutErrs, []string{"a"})
		e.expectEffects(map[string]int{ToolStepA: 1, ToolIdem: 1, ToolUndoA: 1})
	default:
		t.Fatalf("status = %s, want succeeded (or compensated after a timeout): %+v", o.Status, o)
	}
}

func requireRestart(t *testing.T, e *env) {
	t.Helper()
	if e.h.Restart == nil {
		t.Fatal("sagatest: Harness.Restart is required by the crash cases")
	}
}

// testStartTwice: Start is idempotent by name: the same input starts
// nothing (running or finished), a different input is ErrInputMismatch.
func testStartTwice(t *testing.T, nh NewHarness) {
	e := setup(t, nh, SagaLinear)
	ctx := context.Background()
	req := e.start(SagaLinear, `{"amount":6}`)
	r := e.current()
	again, err := r.Start(ctx, req)
	if err != nil || again {
		t.Errorf("second Start with the same name and input = %v, %v; want false, nil", again, err)
	}
	other := req
	other.Input = json.RawMessage(`{"amount":7}`)
	if _, err := r.Start(ctx, other); !errors.Is(err, psaga.ErrInputMismatch) {
		t.Errorf("Start with the same name and another input: err = %v, want ErrInputMismatch", err)
	}
	o := e.wait(req.Name)
	if o.Status != psaga.StatusSucceeded {
		t.Fatalf("status = %s, want succeeded (outcome %+v)", o.Status, o)
	}
	again, err = r.Start(ctx, req)
	if err != nil || again {
		t.Errorf("Start of a finished execution's name and input = %v, %v; want false, nil", again, err)
	}
	if _, err := r.Start(ctx, other); !errors.Is(err, psaga.ErrInputMismatch) {
		t.Errorf("Start of a finished execution's name with another input: err = %v, want ErrInputMismatch", err)
	}
	o2 := e.wait(req.Name)
	if o2.Status != o.Status || !jsonEqual(o2.Output, o.Output) {
		t.Errorf("outcome after the repeated Start = %+v, want %+v", o2, o)
	}
	e.expectEffects(map[string]int{ToolStepA: 1, ToolStepB: 1, ToolStepC: 1, ToolStepD: 1})
}

// testConcurrent: executions of one saga run side by side, each with its
// own keys.
func testConcurrent(t *testing.T, nh NewHarness) {
	e := setup(t, nh, SagaLinear)
	const n = 4
	reqs := make([]psaga.StartRequest, n)
	for i := range reqs {
		reqs[i] = e.start(SagaLinear, fmt.Sprintf(`{"amount":%d}`, i))
	}
	for i, req := range reqs {
		o := e.wait(req.Name)
		if o.Status != psaga.StatusSucceeded {
			t.Errorf("execution %d: status = %s, want succeeded (%+v)", i, o.Status, o)
			continue
		}
		var out struct {
			Amount int `json:"amount"`
		}
		if err := json.Unmarshal(o.Output, &out); err != nil || out.Amount != i {
			t.Errorf("execution %d: output %s does not carry its own input (%v)", i, o.Output, err)
		}
	}
	e.expectEffects(map[string]int{ToolStepA: n, ToolStepB: n, ToolStepC: n, ToolStepD: n})
	for _, tool := range stepTools {
		if k := len(e.tb.EffectsByKey(tool)); k != n {
			t.Errorf("%s: %d distinct keys, want %d", tool, k, n)
		}
	}
}

// testUnknown: unknown saga and execution names are reported with the
// contract's errors.
func testUnknown(t *testing.T, nh NewHarness) {
	e := setup(t, nh, SagaLinear)
	ctx := context.Background()
	r := e.current()
	name := unique("sagatest")
	_, err := r.Start(ctx, psaga.StartRequest{Saga: "sagatest_no_such_saga", Name: name, Session: unique("sess"), Input: json.RawMessage(`{}`)})
	if !errors.Is(err, psaga.ErrUnknownSaga) {
		t.Errorf("Start of an unknown saga: err = %v, want ErrUnknownSaga", err)
	}
	if _, err := r.Describe(ctx, name); !errors.Is(err, psaga.ErrUnknownExecution) {
		t.Errorf("Describe after a failed Start: err = %v, want ErrUnknownExecution", err)
	}
	wctx, cancel := context.WithTimeout(ctx, e.h.WaitTimeout)
	defer cancel()
	if _, err := r.Wait(wctx, unique("sagatest")); !errors.Is(err, psaga.ErrUnknownExecution) {
		t.Errorf("Wait of an unknown execution: err = %v, want ErrUnknownExecution", err)
	}
	e.expectEffects(nil)
}

// testBadInput: an input that is not a JSON object starts nothing.
func testBadInput(t *testing.T, nh NewHarness) {
	e := setup(t, nh, SagaLinear)
	ctx := context.Background()
	r := e.current()
	for _, in := range []string{`{"amount":`, `[1,2]`, `"text"`, ``} {
		name := unique("sagatest")
		started, err := r.Start(ctx, psaga.StartRequest{Saga: SagaLinear, Name: name, Session: unique("sess"), Input: json.RawMessage(in)})
		if err == nil || started {
			t.Errorf("Start with input %q = %v, %v; want an error", in, started, err)
		}
		if errors.Is(err, psaga.ErrUnknownSaga) {
			t.Errorf("Start with input %q: err = %v, not an unknown saga", in, err)
		}
		if _, err := r.Describe(ctx, name); !errors.Is(err, psaga.ErrUnknownExecution) {
			t.Errorf("Describe after Start with input %q: err = %v, want ErrUnknownExecution", in, err)
		}
	}
	e.expectEffects(nil)
}

// testInvoker: the Invoker runs a task's tool at most once per key: a
// repeated task returns the stored outcome (success or StepError), a new
// attempt runs again, a task still running elsewhere is an infrastructure
// error (not a StepError), and failures carry the contract's names.
func testInvoker(t *testing.T, nh NewHarness) {
	e := setup(t, nh, SagaLinear)
	ctx := context.Background()
	inv := e.h.Invoker
	exec, sess := unique("sagatest-inv"), unique("sess")
	task := func(step, tool, input string, timeout, attempt int) psaga.Task {
		return psaga.Task{Execution: exec, Session: sess, Saga: SagaLinear, Step: step, Kind: psaga.KindAction,
			Tool: tool, Input: json.RawMessage(input), TimeoutSeconds: timeout, Attempt: attempt}
	}
	stepErrName := func(err error) string {
		var se *psaga.StepError
		if errors.As(err, &se) {
			return se.Name
		}
		return fmt.Sprintf("not a *StepError: %v", err)
	}

	a := task("a", ToolStepA, `{"amount":1}`, 10, 0)
	out1, err := inv.Invoke(ctx, a)
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	out2, err := inv.Invoke(ctx, a)
	if err != nil || !jsonEqual(out1, out2) {
		t.Errorf("repeated Invoke = %s, %v; want the stored %s", out2, err, out1)
	}
	e.expectRuns(ToolStepA, 1)
	a.Attempt = 1
	if _, err := inv.Invoke(ctx, a); err != nil {
		t.Fatalf("Invoke of the next attempt: %v", err)
	}
	e.expectRuns(ToolStepA, 2)

	e.tb.Fail(ToolStepB, 1)
	b := task("b", ToolStepB, `{"prev":"x"}`, 10, 0)
	for i := 0; i < 2; i++ {
		if _, err := inv.Invoke(ctx, b); stepErrName(err) != saga.ErrorTool {
			t.Errorf("Invoke %d of a failing tool: %v, want a StepError %s", i+1, err, saga.ErrorTool)
		}
	}
	e.expectRuns(ToolStepB, 1) // the failure is stored too

	if _, err := inv.Invoke(ctx, task("c", ToolStepC, `{"amount":"not a number"}`, 10, 0)); stepErrName(err) != saga.ErrorInvalidInput {
		t.Errorf("Invoke with invalid input: %v, want a StepError %s", err, saga.ErrorInvalidInput)
	}
	e.expectRuns(ToolStepC, 0)

	if _, err := inv.Invoke(ctx, task("slow", ToolSlow, `{"ms":5000}`, 1, 0)); stepErrName(err) != saga.ErrorTimeout {
		t.Errorf("Invoke past the task's timeout: %v, want a StepError %s", err, saga.ErrorTimeout)
	}

	// A second delivery while the first still runs must not run the tool.
	long := task("long", ToolSlow, `{"ms":1500}`, 10, 0)
	first := make(chan error, 1)
	go func() {
		_, err := inv.Invoke(ctx, long)
		first <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for e.tb.Runs(ToolSlow) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	_, err = inv.Invoke(ctx, long)
	var se *psaga.StepError
	if err == nil || errors.As(err, &se) {
		t.Errorf("Invoke of a task running elsewhere = %v; want an infrastructure error (retry later)", err)
	}
	if err := <-first; err != nil {
		t.Errorf("the first Invoke of the long task: %v", err)
	}
	e.expectRuns(ToolSlow, 2)
	e.expectEffects(map[string]int{ToolStepA: 2, ToolSlow: 1})
}
