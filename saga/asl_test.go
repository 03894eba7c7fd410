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
// shapes: 1..7 steps, each with or without a compensation, retry policies
// with and without retries, heartbeats on some.
func TestASLRandomShapes(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	for n := range 300 {
		d := Definition{Name: fmt.Sprintf("random_%d", n)}
		steps := 1 + rng.IntN(7)
		for i := range steps {
			s := Step{Name: fmt.Sprintf("s%d", i), Action: Call{Tool: fmt.Sprintf("t%d", i)}}
			if i > 0 {
				s.Action.Input = json.RawMessage(fmt.Sprintf(`{"prev":"$.steps.s%d"}`, rng.IntN(i)))
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
		Next          string `json:"Next"`
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

// checkMachine walks a generated machine: every transition target exists,
// every state is reachable, the success path runs the steps in order, and
// for each step k the failure path visits the Undo of exactly the earlier
// steps with a compensation, latest first — whether the undos succeed
// (ending in Compensated) or all fail (ending in CompensationFailed).
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

	// Success: the steps in order, then Done and Succeeded.
	var path []string
	for n := m.StartAt; n != ""; n = st[n].Next {
		path = append(path, n)
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
		if s.Compensation != nil && k < len(d.Steps)-1 {
			u, ok := st[undo]
			if !ok {
				t.Errorf("%s is missing", undo)
				continue
			}
			checkTask(t, d, s, u, "compensation", *s.Compensation, "$.failure.compensated."+s.Name)
			if len(u.Catch) != 1 || u.Catch[0].ResultPath != "$.failure.compensationFailures."+s.Name || u.Catch[0].Next != u.Next {
				t.Errorf("%s: Catch = %+v (must record the failure and go on to %s)", undo, u.Catch, u.Next)
			}
		} else if _, ok := st[undo]; ok {
			t.Errorf("%s exists, but the step has no compensation or is the last step", undo)
		}

		var wantUndo []string
		for i := k - 1; i >= 0; i-- {
			if d.Steps[i].Compensation != nil {
				_, _, u := StateName(d.Steps[i].Name)
				wantUndo = append(wantUndo, u)
			}
		}
		for _, undosFail := range []bool{false, true} {
			var got []string
			failures := false
			n := a.Catch[0].Next
			for steps := 0; ; steps++ {
				if steps > len(st) {
					t.Fatalf("the failure path of %s loops", s.Name)
				}
				cur := st[n]
				if cur.Type == "Fail" {
					break
				}
				if strings.HasPrefix(n, prefixUndo) {
					got = append(got, n)
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
				case cur.Type == "Choice":
					n = cur.Default
					if failures {
						if len(cur.Choices) != 1 || cur.Choices[0].Variable != "$.failure.compensationFailures" || cur.Choices[0].IsPresent == nil || !*cur.Choices[0].IsPresent {
							t.Fatalf("%s: choices = %+v", n, cur.Choices)
						}
						n = cur.Choices[0].Next
					}
				case cur.Type == "Task" && undosFail:
					failures = true
					n = cur.Catch[0].Next
				default:
					n = cur.Next
				}
			}
			if !slices.Equal(got, wantUndo) {
				t.Errorf("failure at %s (undos fail: %v) ran %v, want %v", s.Name, undosFail, got, wantUndo)
			}
			end := StateCompensated
			if undosFail && len(wantUndo) > 0 {
				end = StateCompensationFailed
			}
			if n != end {
				t.Errorf("failure at %s (undos fail: %v) ended in %s, want %s", s.Name, undosFail, n, end)
			}
		}
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
