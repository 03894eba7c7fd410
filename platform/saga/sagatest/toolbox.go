package sagatest

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/agentbus/agentbus/tools"
)

// The Toolbox's tools. Every tool takes an object (see toolSchema) and
// returns {"ref": "ref_<tool>", "got": <its input>}, so a later step (or a
// compensation) can read "$.steps.<step>.ref" and the call log shows what
// each call received.
const (
	ToolStepA = "step_a"
	ToolStepB = "step_b"
	ToolStepC = "step_c"
	ToolStepD = "step_d"
	ToolUndoA = "undo_a"
	ToolUndoB = "undo_b"
	ToolUndoC = "undo_c"
	ToolUndoD = "undo_d"
	// ToolIdem is the one tool declared idempotent: it has its effect once
	// per idempotency key however often it runs.
	ToolIdem = "step_idem"
	// ToolSlow sleeps input.ms milliseconds (honouring its context) before
	// its effect: a long step (heartbeats) or one that times out.
	ToolSlow = "slow"
)

// Crash points Toolbox.Hook acts on. They are the tool-gateway's names, so
// its Config.Hook can be the Toolbox's Hook as it is.
const (
	// PointAfterSideEffect: the tool returned (its effect happened); the
	// outcome is not stored in the ledger yet.
	PointAfterSideEffect = "after_side_effect"
	// PointAfterComplete: the outcome is stored in the ledger; the runner
	// (or the worker's answer to Step Functions) has not got it yet.
	PointAfterComplete = "after_complete"
)

// Always makes Fail fail every run.
const Always = -1

// toolSchema accepts what the suite's templates send; "amount" has a type
// so that a wrong type is invalid input (the Invoker cases).
var toolSchema = json.RawMessage(`{"type":"object","properties":{` +
	`"amount":{"type":"number"},"prev":{"type":"string"},"ref":{"type":"string"},` +
	`"note":{"type":"string"},"ms":{"type":"integer","minimum":0,"maximum":600000}}}`)

// Call is one run of a Toolbox tool, in the order runs started.
type Call struct {
	Tool string
	// Key is the idempotency key the Invoker passed (Task.Key()).
	Key     string
	Session string
	Input   json.RawMessage
	// Effect reports that the run had its effect (an idempotent tool's
	// repeat of a key has none); Err is the error the run returned.
	Effect bool
	Err    string
}

// Toolbox is an instrumented tool set for the suite: a tools.Registry with
// the step_a..step_d and undo_a..undo_d tools (not idempotent), step_idem
// (idempotent) and slow, which counts every tool's effects by idempotency
// key, logs every run in order, fails runs on demand and turns a crash
// point into a restart of the runner (see CrashAt and Hook). It is safe for
// concurrent use.
type Toolbox struct {
	reg *tools.Registry

	mu      sync.Mutex
	calls   []Call
	effects map[string]map[string]int // tool → key → effects
	fails   map[string]int            // tool → failures left (Always: every run)
	// crashTool/crashPoint: armed by CrashAt until the tool's next effect,
	// which moves the point to pending until the matching Hook call.
	crashTool, crashPoint string
	pending               string
	crashDone             chan struct{}
	onCrash               func()
	crashes               int
	misuse                []string
}

// NewToolbox returns a Toolbox with all its tools registered.
func NewToolbox() *Toolbox {
	tb := &Toolbox{
		reg:     tools.NewRegistry(),
		effects: map[string]map[string]int{},
		fails:   map[string]int{},
	}
	names := []string{ToolStepA, ToolStepB, ToolStepC, ToolStepD, ToolUndoA, ToolUndoB, ToolUndoC, ToolUndoD, ToolIdem, ToolSlow}
	for _, n := range names {
		if err := tb.reg.Register(&tool{tb: tb, name: n, idempotent: n == ToolIdem}); err != nil {
			panic(fmt.Sprintf("sagatest: register %s: %v", n, err)) // a bug in this file, not a runtime condition
		}
	}
	return tb
}

// Registry is the registry holding the Toolbox's tools; the harness's
// Invoker runs tools from it.
func (tb *Toolbox) Registry() *tools.Registry { return tb.reg }

// Fail makes the next times runs of tool return an error before their
// effect (a saga tool's error means it did nothing); Always fails every run.
// Times 0 clears the injection. The Invoker reports these as
// agentbus.ToolError, which the step's retry policy retries.
func (tb *Toolbox) Fail(tool string, times int) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.fails[tool] = times
}

// SetCrashHandler sets what a crash point does once reached: Run sets it to
// the harness's Restart. It runs in its own goroutine.
func (tb *Toolbox) SetCrashHandler(f func()) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.onCrash = f
}

// CrashAt arms one crash: the next run of tool that has its effect arms
// point, and the Invoker's next Hook(point) call then crashes the worker
// that called it: the crash handler (the harness's Restart) starts in its
// own goroutine and the calling goroutine ends with runtime.Goexit, as if
// the process had died there (only deferred calls run). The returned
// channel is closed once the crash handler has returned. One crash may be
// armed at a time, and only one execution should use the tool meanwhile
// (the hook cannot tell executions apart).
func (tb *Toolbox) CrashAt(tool, point string) <-chan struct{} {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if point != PointAfterSideEffect && point != PointAfterComplete {
		tb.misuse = append(tb.misuse, fmt.Sprintf("CrashAt(%q, %q): unknown crash point", tool, point))
	}
	if tb.crashTool != "" || tb.pending != "" {
		tb.misuse = append(tb.misuse, fmt.Sprintf("CrashAt(%q, %q): a crash is already armed", tool, point))
	}
	tb.crashTool, tb.crashPoint, tb.pending = tool, point, ""
	tb.crashDone = make(chan struct{})
	return tb.crashDone
}

// Hook is the Invoker's crash-point hook: the Invoker calls it with
// PointAfterSideEffect once the tool returned and before its outcome is
// stored, and with PointAfterComplete once the outcome is stored and before
// Invoke returns, in the goroutine that called Invoke. Other points are
// ignored; so is every call unless CrashAt armed that point and the armed
// tool has since had its effect. When it crashes, Hook does not return.
func (tb *Toolbox) Hook(point string) {
	tb.mu.Lock()
	if tb.pending == "" || point != tb.pending {
		tb.mu.Unlock()
		return
	}
	tb.pending = ""
	tb.crashes++
	onCrash, done := tb.onCrash, tb.crashDone
	if onCrash == nil {
		tb.misuse = append(tb.misuse, "crash point reached with no crash handler set")
		tb.mu.Unlock()
		return
	}
	tb.mu.Unlock()
	go func() {
		defer close(done)
		onCrash()
	}()
	runtime.Goexit()
}

// Crashes is how many crashes Hook has set off.
func (tb *Toolbox) Crashes() int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.crashes
}

// Misuse lists wrong uses of the Toolbox (a crash without a handler, two
// crashes armed at once); the suite fails on any.
func (tb *Toolbox) Misuse() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.misuse...)
}

// Effects is how many effects tool had, over all keys.
func (tb *Toolbox) Effects(tool string) int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	n := 0
	for _, c := range tb.effects[tool] {
		n += c
	}
	return n
}

// EffectsByKey is tool's effects per idempotency key.
func (tb *Toolbox) EffectsByKey(tool string) map[string]int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	out := map[string]int{}
	for k, c := range tb.effects[tool] {
		out[k] = c
	}
	return out
}

// Runs is how many times tool ran (failed runs included).
func (tb *Toolbox) Runs(tool string) int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	n := 0
	for _, c := range tb.calls {
		if c.Tool == tool {
			n++
		}
	}
	return n
}

// Calls returns the call log, in the order runs started.
func (tb *Toolbox) Calls() []Call {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]Call(nil), tb.calls...)
}

// EffectOrder lists the tools whose runs had an effect, in order, keeping
// only those with one of the given prefixes (e.g. "undo_").
func (tb *Toolbox) EffectOrder(prefixes ...string) []string {
	var out []string
	for _, c := range tb.Calls() {
		if !c.Effect {
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(c.Tool, p) {
				out = append(out, c.Tool)
				break
			}
		}
	}
	return out
}

// String summarises effects and runs per tool (for failure messages).
func (tb *Toolbox) String() string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	runs := map[string]int{}
	for _, c := range tb.calls {
		runs[c.Tool]++
	}
	names := make([]string, 0, len(runs))
	for n := range runs {
		names = append(names, n)
	}
	sort.Strings(names)
	var sb strings.Builder
	for _, n := range names {
		e := 0
		for _, c := range tb.effects[n] {
			e += c
		}
		fmt.Fprintf(&sb, "%s: %d runs, %d effects; ", n, runs[n], e)
	}
	return strings.TrimSuffix(sb.String(), "; ")
}

// tool is one Toolbox tool.
type tool struct {
	tb         *Toolbox
	name       string
	idempotent bool
}

var _ tools.Tool = (*tool)(nil)

func (t *tool) Spec() tools.Spec {
	return tools.Spec{
		Name:        t.name,
		Description: "sagatest tool " + t.name + ": counts its effects by idempotency key.",
		InputSchema: toolSchema,
		Idempotent:  t.idempotent,
		Timeout:     time.Minute,
	}
}

func (t *tool) Run(ctx context.Context, call tools.Call) (json.RawMessage, error) {
	tb := t.tb
	in := call.Input
	if len(in) == 0 {
		in = json.RawMessage(`{}`)
	}
	rec := Call{Tool: t.name, Key: call.IdempotencyKey, Session: call.SessionID, Input: append(json.RawMessage(nil), in...)}

	tb.mu.Lock()
	idx := len(tb.calls)
	if left := tb.fails[t.name]; left != 0 {
		if left > 0 {
			tb.fails[t.name] = left - 1
		}
		err := fmt.Errorf("%s: injected failure (run %d)", t.name, idx+1)
		rec.Err = err.Error()
		tb.calls = append(tb.calls, rec)
		tb.mu.Unlock()
		return nil, err
	}
	tb.calls = append(tb.calls, rec)
	tb.mu.Unlock()

	if t.name == ToolSlow {
		var p struct {
			MS int `json:"ms"`
		}
		if err := json.Unmarshal(in, &p); err != nil {
			return nil, t.fail(idx, fmt.Errorf("%s: %w: %v", t.name, tools.ErrInvalidInput, err))
		}
		timer := time.NewTimer(time.Duration(p.MS) * time.Millisecond)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, t.fail(idx, fmt.Errorf("%s: stopped after less than %d ms: %w", t.name, p.MS, ctx.Err()))
		}
	}

	tb.mu.Lock()
	if tb.effects[t.name] == nil {
		tb.effects[t.name] = map[string]int{}
	}
	if !t.idempotent || tb.effects[t.name][call.IdempotencyKey] == 0 {
		tb.effects[t.name][call.IdempotencyKey]++
		tb.calls[idx].Effect = true
	}
	if tb.crashTool == t.name {
		tb.crashTool, tb.pending = "", tb.crashPoint
	}
	tb.mu.Unlock()

	return json.Marshal(map[string]any{"ref": "ref_" + t.name, "got": in})
}

// fail records err on run idx and returns it.
func (t *tool) fail(idx int, err error) error {
	t.tb.mu.Lock()
	defer t.tb.mu.Unlock()
	t.tb.calls[idx].Err = err.Error()
	return err
}
