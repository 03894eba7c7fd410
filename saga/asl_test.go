package saga

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata (and terraform/sagas)")

// testQueueURL is the queue URL of the golden files.
const testQueueURL = "https://sqs.us-east-1.amazonaws.com/123456789012/agentbus-saga"

// goldenCases: the demo trip and the edge shapes in testdata.
var goldenCases = []struct{ name, def string }{
	{"book_trip", "../examples/sagas/book_trip.json"},
	{"one_step", "testdata/one_step.json"},
	{"without_compensation", "testdata/without_compensation.json"},
	{"nested_templates", "testdata/nested_templates.json"},
}

func mustParseFile(t testing.TB, path string) Definition {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return d
}

func TestASLGolden(t *testing.T) {
	t.Parallel()
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d := mustParseFile(t, c.def)
			got, err := ASL(d, testQueueURL)
			if err != nil {
				t.Fatal(err)
			}
			again, err := ASL(d, testQueueURL)
			if err != nil || !bytes.Equal(got, again) {
				t.Fatal("ASL is not deterministic")
			}
			golden := filepath.Join("testdata", c.name+".asl.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./saga -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("ASL of %s differs from %s (run go test ./saga -update and review the diff):\n%s", c.def, golden, got)
			}
			checkMachine(t, d, got)
		})
	}
}

// TestASLNestedTemplates pins the template translation: references become
// ".$" keys at any depth, literals (also "$"-strings that are not paths,
// arrays, numbers as written) stay as they are.
func TestASLNestedTemplates(t *testing.T) {
	t.Parallel()
	d := mustParseFile(t, "testdata/nested_templates.json")
	b, err := ASL(d, testQueueURL)
	if err != nil {
		t.Fatal(err)
	}
	m := decodeMachine(t, b)
	in, _ := json.Marshal(m.States["reserve"].Parameters.MessageBody["input"])
	want := `{"dollar":"$","literal":"$notapath","n":1.5e3,"nothing":null,"order":{"id.$":"$.input.order.id","lines.$":"$.input.order.lines","meta":{"customer":{"id.$":"$.input.order.customer.id"},"source":"agentbus"}},"t":true,"tags":["a","b",{"k":"v"}],"template":"${not_terraform} %{ if x }"}`
	if string(in) != want {
		t.Errorf("input parameters\n got %s\nwant %s", in, want)
	}
	var raw struct {
		States map[string]struct{ Parameters json.RawMessage }
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_ = json.Compact(&buf, raw.States[StateDone].Parameters)
	out := buf.String()
	if out != `{"kind":"shipment","shipment":{"id.$":"$.steps.ship.id","order.$":"$.input.order.id"}}` {
		t.Errorf("Done parameters = %s", out)
	}
}

func TestASLErrors(t *testing.T) {
	t.Parallel()
	good := mustParseFile(t, "testdata/one_step.json")
	if _, err := ASL(good, ""); err == nil {
		t.Error("ASL accepted an empty queue URL")
	}
	bad := good
	bad.Steps = nil
	if _, err := ASL(bad, testQueueURL); err == nil {
		t.Error("ASL accepted an invalid definition")
	}
}

// TestASLRandomShapes runs the structural check over many generated
// shapes: 1..7 steps, each with or without a compensation, inputs and
// outputs that read paths which may be missing (guarded) or not, retry
// policies with and without retries, heartbeats on some.
func TestASLRandomShapes(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	for n := range 300 {
		d := Definition{Name: fmt.Sprintf("random_%d", n)}
		steps := 1 + rng.IntN(7)
		for i := range steps {
			s := Step{Name: fmt.Sprintf("s%d", i), Action: Call{Tool: fmt.Sprintf("t%d", i)}}
			if i > 0 {
				field := []string{"", ".id", ".a.b"}[rng.IntN(3)]
				s.Action.Input = json.RawMessage(fmt.Sprintf(`{"prev":"$.steps.s%d%s","in":"$.input"}`, rng.IntN(i), field))
			}
			if rng.IntN(3) > 0 {
				s.Compensation = &Call{Tool: fmt.Sprintf("u%d", i), Input: json.RawMessage(fmt.Sprintf(`{"own":"$.steps.s%d.id"}`, i))}
			}
			s.Retry = Retry{MaxAttempts: rng.IntN(4), IntervalSeconds: rng.IntN(3), BackoffRate: 1 + float64(rng.IntN(3))}
			if rng.IntN(2) == 0 {
				s.TimeoutSeconds, s.HeartbeatSeconds = 30, 5
			}
			d.Steps = append(d.Steps, s)
		}
		switch rng.IntN(3) {
		case 0:
			d.Output = json.RawMessage(fmt.Sprintf(`{"last":"$.steps.s%d.id","x":{"in":"$.input.x"}}`, steps-1))
		case 1:
			d.Output = json.RawMessage(`{"all":"$.steps","in":"$.input"}`)
		}
		b, err := ASL(d, testQueueURL)
		if err != nil {
			t.Fatal(err)
		}
		checkMachine(t, d, b)
		if t.Failed() {
			t.Fatalf("shape %d failed:\n%s", n, b)
		}
	}
}

// The parts of a generated state machine the structural check reads.
type aslMachine struct {
	StartAt string              `json:"StartAt"`
	States  map[string]aslState `json:"States"`
}

type aslState struct {
	Type           string `json:"Type"`
	Resource       string `json:"Resource"`
	Next           string `json:"Next"`
	End            bool   `json:"End"`
	Default        string `json:"Default"`
	ResultPath     string `json:"ResultPath"`
	OutputPath     string `json:"OutputPath"`
	TimeoutSeconds int    `json:"TimeoutSeconds"`
	Heartbeat      int    `json:"HeartbeatSeconds"`
	Error          string `json:"Error"`
	ErrorPath      string `json:"ErrorPath"`
	CausePath      string `json:"CausePath"`
	Choices        []struct {
		Variable      string `json:"Variable"`
		IsPresent     *bool  `json:"IsPresent"`
		StringMatches string `json:"StringMatches"`
		And           []struct {
			Variable  string `json:"Variable"`
			IsPresent *bool  `json:"IsPresent"`
		} `json:"And"`
		Next string `json:"Next"`
	} `json:"Choices"`
	Catch []struct {
		ErrorEquals []string `json:"ErrorEquals"`
		ResultPath  string   `json:"ResultPath"`
		Next        string   `json:"Next"`
	} `json:"Catch"`
	Retry []struct {
		ErrorEquals     []string `json:"ErrorEquals"`
		IntervalSeconds int      `json:"IntervalSeconds"`
		MaxAttempts     int      `json:"MaxAttempts"`
		BackoffRate     float64  `json:"BackoffRate"`
	} `json:"Retry"`
	Parameters struct {
		QueueURL    string         `json:"QueueUrl"`
		MessageBody map[string]any `json:"MessageBody"`
		FailedStep  string         `json:"failedStep"`
		Extra       map[string]any `json:"-"`
	} `json:"Parameters"`
}

func decodeMachine(t testing.TB, b []byte) aslMachine {
	t.Helper()
	var m aslMachine
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("generated ASL is not JSON: %v", err)
	}
	return m
}

// mayMiss reports whether a reference can be missing at run time (and so
// needs a guard): anything but "$.input" and "$.steps.<step>" whole.
func mayMiss(ref string) bool {
	segs := strings.Split(strings.TrimPrefix(ref, "$."), ".")
	return !(segs[0] == "input" && len(segs) == 1) && !(segs[0] == "steps" && len(segs) <= 2)
}

// templateRefs lists a template's references that may be missing, sorted.
func templateRefs(t testing.TB, tmpl json.RawMessage) []string {
	t.Helper()
	if len(bytes.TrimSpace(tmpl)) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(tmpl, &v); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		case string:
			if strings.HasPrefix(v, "$.") && mayMiss(v) && !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
	}
	walk(v)
	slices.Sort(out)
	return out
}

// checkMachine walks a generated machine: every transition target exists,
// every state is reachable, the success path runs the steps in order, and
// for each step k the failure path visits the compensation of exactly the
// earlier steps with one, latest first — whether the undos succeed (ending
// in Compensated) or all fail (ending in CompensationFailed), and whether
// the step's Task fails or a path its input reads is missing. A missing
// output path compensates every step.
func checkMachine(t testing.TB, d Definition, b []byte) {
	t.Helper()
	m := decodeMachine(t, b)
	st := m.States
	targets := func(s aslState) []string {
		var ts []string
		if s.Next != "" {
			ts = append(ts, s.Next)
		}
		if s.Default != "" {
			ts = append(ts, s.Default)
		}
		for _, c := range s.Choices {
			ts = append(ts, c.Next)
		}
		for _, c := range s.Catch {
			ts = append(ts, c.Next)
		}
		return ts
	}
	for name, s := range st {
		for _, n := range targets(s) {
			if _, ok := st[n]; !ok {
				t.Errorf("state %s goes to %s, which does not exist", name, n)
			}
		}
		switch s.Type {
		case "Fail", "Succeed", "Choice":
		case "Task", "Pass":
			if s.Next == "" && !s.End {
				t.Errorf("state %s has neither Next nor End", name)
			}
		default:
			t.Errorf("state %s has unexpected type %s", name, s.Type)
		}
		if len(name) > 80 {
			t.Errorf("state name %s is longer than 80 characters", name)
		}
	}
	seen := map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		if seen[n] {
			return
		}
		seen[n] = true
		for _, x := range targets(st[n]) {
			visit(x)
		}
	}
	visit(m.StartAt)
	for name := range st {
		if !seen[name] {
			t.Errorf("state %s is unreachable", name)
		}
	}

	// guard checks a reference guard: a Choice that goes to next when every
	// path in refs IsPresent, else to a Pass that goes on to after; it
	// returns the Pass.
	guard := func(name string, refs []string, next string) aslState {
		t.Helper()
		g, ok := st[name]
		if !ok {
			t.Fatalf("guard %s is missing (refs %v)", name, refs)
		}
		var got []string
		for _, c := range g.Choices {
			if c.Variable != "" {
				got = append(got, c.Variable)
			}
			for _, a := range c.And {
				if a.IsPresent == nil || !*a.IsPresent {
					t.Errorf("%s: %+v is not an IsPresent test", name, a)
				}
				got = append(got, a.Variable)
			}
		}
		slices.Sort(got)
		if g.Type != "Choice" || len(g.Choices) != 1 || g.Choices[0].Next != next || !slices.Equal(got, refs) {
			t.Errorf("guard %s = %+v, want IsPresent %v → %s", name, g, refs, next)
		}
		return st[g.Default]
	}
	outRefs := templateRefs(t, d.Output)

	// Success: the steps in order (through their guards), then Done and
	// Succeeded.
	var path []string
	for n := m.StartAt; n != ""; {
		cur := st[n]
		if cur.Type == "Choice" {
			n = cur.Choices[0].Next // every path present
			continue
		}
		path = append(path, n)
		n = cur.Next
		if len(path) > len(st) {
			t.Fatal("the success path loops")
		}
	}
	var want []string
	for _, s := range d.Steps {
		want = append(want, s.Name)
	}
	want = append(want, StateDone, StateSucceeded)
	if !slices.Equal(path, want) {
		t.Errorf("success path = %v, want %v", path, want)
	}
	if st[StateSucceeded].Type != "Succeed" || st[StateDone].Type != "Pass" {
		t.Errorf("Done/Succeeded have types %s/%s", st[StateDone].Type, st[StateSucceeded].Type)
	}

	// walk follows a failure from state n through the compensation chain
	// and returns the steps whose compensation it visited and the Fail
	// state it ended in. With undosFail every compensation fails (its Task
	// through its Catch, or its guard finding a path missing).
	walk := func(n string, undosFail bool) (undone []string, end string) {
		failures := false
		for steps := 0; ; steps++ {
			if steps > len(st) {
				t.Fatalf("the failure path from %s loops", n)
			}
			cur := st[n]
			switch {
			case cur.Type == "Fail":
				return undone, n
			case strings.HasPrefix(n, prefixUndo):
				undone = append(undone, strings.TrimPrefix(n, prefixUndo))
			case strings.HasPrefix(n, prefixMissingUndo):
				undone = append(undone, strings.TrimPrefix(n, prefixMissingUndo))
			}
			switch {
			case n == StateCheckError:
				// The walk's errors are agentbus errors, which the
				// Compensated state raises as they are.
				if len(cur.Choices) != 1 || cur.Choices[0].Variable != "$.failure.error" || cur.Choices[0].StringMatches != "States.*" ||
					cur.Choices[0].Next != StateCompensatedRuntime || cur.Default != StateCompensated {
					t.Fatalf("%s = %+v", n, cur)
				}
				n = cur.Default
			case n == StateCheckCompensation:
				if len(cur.Choices) != 1 || cur.Choices[0].Variable != "$.failure.compensationFailures" || cur.Choices[0].IsPresent == nil || !*cur.Choices[0].IsPresent {
					t.Fatalf("%s: choices = %+v", n, cur.Choices)
				}
				n = cur.Default
				if failures {
					n = cur.Choices[0].Next
				}
			case strings.HasPrefix(n, prefixRefsUndo):
				n = cur.Choices[0].Next
				if undosFail {
					failures = true
					n = cur.Default
				}
			case strings.HasPrefix(n, prefixMissingUndo):
				if cur.Type != "Pass" || !strings.HasPrefix(cur.ResultPath, "$.failure.compensationFailures.") {
					t.Fatalf("%s = %+v", n, cur)
				}
				n = cur.Next
			case cur.Type == "Task" && undosFail:
				failures = true
				n = cur.Catch[0].Next
			case cur.Type == "Choice":
				t.Fatalf("unexpected Choice %s on a failure path", n)
			default:
				n = cur.Next
			}
		}
	}
	expect := func(from string, wantUndo []string) {
		t.Helper()
		for _, undosFail := range []bool{false, true} {
			got, end := walk(from, undosFail)
			if !slices.Equal(got, wantUndo) {
				t.Errorf("failure from %s (undos fail: %v) compensated %v, want %v", from, undosFail, got, wantUndo)
			}
			wantEnd := StateCompensated
			if undosFail && len(wantUndo) > 0 {
				wantEnd = StateCompensationFailed
			}
			if end != wantEnd {
				t.Errorf("failure from %s (undos fail: %v) ended in %s, want %s", from, undosFail, end, wantEnd)
			}
		}
	}
	compensable := func(before int) []string {
		var out []string
		for i := before - 1; i >= 0; i-- {
			if d.Steps[i].Compensation != nil {
				out = append(out, d.Steps[i].Name)
			}
		}
		return out
	}

	for k, s := range d.Steps {
		action, failed, undo := StateName(s.Name)
		a := st[action]
		checkTask(t, d, s, a, "action", s.Action, "$.steps."+s.Name)
		if len(a.Catch) != 1 || !slices.Equal(a.Catch[0].ErrorEquals, []string{"States.ALL"}) || a.Catch[0].ResultPath != "$.failure" || a.Catch[0].Next != failed {
			t.Errorf("%s: Catch = %+v", action, a.Catch)
		}
		if f := st[failed]; f.Type != "Pass" || f.Parameters.FailedStep != s.Name || f.ResultPath != "$.failure" {
			t.Errorf("%s = %+v", failed, f)
		}
		expect(failed, compensable(k))
		if refs := templateRefs(t, s.Action.Input); len(refs) > 0 {
			miss := guard(prefixRefs+s.Name, refs, action)
			if miss.Type != "Pass" || miss.ResultPath != "$.failure" || miss.Next != failed {
				t.Errorf("%s%s = %+v", prefixMissing, s.Name, miss)
			}
			expect(prefixMissing+s.Name, compensable(k))
		} else if _, ok := st[prefixRefs+s.Name]; ok {
			t.Errorf("%s%s exists, but the action reads no path that may be missing", prefixRefs, s.Name)
		}
		hasUndo := s.Compensation != nil && (k < len(d.Steps)-1 || len(outRefs) > 0)
		if !hasUndo {
			if _, ok := st[undo]; ok {
				t.Errorf("%s exists, but it can never run", undo)
			}
			continue
		}
		u, ok := st[undo]
		if !ok {
			t.Errorf("%s is missing", undo)
			continue
		}
		checkTask(t, d, s, u, "compensation", *s.Compensation, "$.failure.compensated."+s.Name)
		if len(u.Catch) != 1 || u.Catch[0].ResultPath != "$.failure.compensationFailures."+s.Name || u.Catch[0].Next != u.Next {
			t.Errorf("%s: Catch = %+v (must record the failure and go on to %s)", undo, u.Catch, u.Next)
		}
		if refs := templateRefs(t, s.Compensation.Input); len(refs) > 0 {
			miss := guard(prefixRefsUndo+s.Name, refs, undo)
			if miss.Next != u.Next {
				t.Errorf("%s%s goes to %s, the Undo to %s", prefixMissingUndo, s.Name, miss.Next, u.Next)
			}
		}
	}
	if len(outRefs) > 0 {
		miss := guard(stateRefsOutput, outRefs, StateDone)
		if miss.Type != "Pass" || miss.ResultPath != "$.failure" {
			t.Errorf("%s = %+v", stateMissingOutput, miss)
		}
		expect(stateMissingOutput, compensable(len(d.Steps)))
	} else if _, ok := st[stateRefsOutput]; ok {
		t.Errorf("%s exists, but the output reads no path that may be missing", stateRefsOutput)
	}
	if c := st[StateCompensated]; c.Type != "Fail" || c.ErrorPath != "$.failure.error" || c.CausePath != "States.JsonToString($.failure)" {
		t.Errorf("Compensated = %+v", c)
	}
	if c := st[StateCompensatedRuntime]; c.Type != "Fail" || c.Error != ErrorCompensatedRuntime || c.CausePath != "States.JsonToString($.failure)" {
		t.Errorf("CompensatedRuntimeError = %+v", c)
	}
	if c, ok := st[StateCompensationFailed]; ok && (c.Type != "Fail" || c.Error != ErrorCompensationFailed || c.CausePath != "States.JsonToString($.failure)") {
		t.Errorf("CompensationFailed = %+v", c)
	}
}

// checkTask: the SQS task of one call carries the task the worker decodes.
func checkTask(t testing.TB, d Definition, s Step, task aslState, kind string, c Call, resultPath string) {
	t.Helper()
	if task.Type != "Task" || task.Resource != ResourceSQSWaitForTaskToken || task.Parameters.QueueURL == "" {
		t.Errorf("%s %s: type %s resource %s queue %q", s.Name, kind, task.Type, task.Resource, task.Parameters.QueueURL)
	}
	body := task.Parameters.MessageBody
	for k, want := range map[string]string{
		"taskToken.$": "$$.Task.Token", "execution.$": "$$.Execution.Name", "session.$": "$.session",
		"attempt.$": "$$.State.RetryCount", "saga": d.Name, "step": s.Name, "kind": kind, "tool": c.Tool,
	} {
		if body[k] != want {
			t.Errorf("%s %s: MessageBody[%s] = %v, want %s", s.Name, kind, k, body[k], want)
		}
	}
	if fmt.Sprint(body["timeoutSeconds"]) != fmt.Sprint(s.EffectiveTimeoutSeconds()) || fmt.Sprint(body["heartbeatSeconds"]) != fmt.Sprint(s.HeartbeatSeconds) {
		t.Errorf("%s %s: body timeouts %v/%v", s.Name, kind, body["timeoutSeconds"], body["heartbeatSeconds"])
	}
	if task.ResultPath != resultPath {
		t.Errorf("%s %s: ResultPath = %s, want %s", s.Name, kind, task.ResultPath, resultPath)
	}
	if task.TimeoutSeconds != s.EffectiveTimeoutSeconds() || task.Heartbeat != s.HeartbeatSeconds {
		t.Errorf("%s %s: TimeoutSeconds/HeartbeatSeconds = %d/%d", s.Name, kind, task.TimeoutSeconds, task.Heartbeat)
	}
	r := s.EffectiveRetry()
	switch {
	case r.MaxAttempts == 0 && len(task.Retry) != 0:
		t.Errorf("%s %s: Retry %+v for a step without retries", s.Name, kind, task.Retry)
	case r.MaxAttempts > 0:
		if len(task.Retry) != 1 {
			t.Errorf("%s %s: Retry = %+v", s.Name, kind, task.Retry)
			return
		}
		got := task.Retry[0]
		if !slices.Equal(got.ErrorEquals, []string{ErrorTool}) || got.MaxAttempts != r.MaxAttempts || got.BackoffRate != r.BackoffRate || got.IntervalSeconds != max(1, r.IntervalSeconds) {
			t.Errorf("%s %s: Retry = %+v, want %+v (only %s)", s.Name, kind, got, r, ErrorTool)
		}
	}
}
