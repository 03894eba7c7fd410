package stepfunctions

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"

	def "github.com/agentbus/agentbus/saga"

	"github.com/agentbus/agentbus/platform/saga"
)

const smARN = "arn:aws:states:us-east-1:123456789012:stateMachine:agentbus-saga-trip"

// fakeSFN is an in-memory Step Functions with AWS's StartExecution rules:
// the same name and input as a RUNNING execution returns it again; any
// other reuse of a name is ExecutionAlreadyExists.
type fakeSFN struct {
	mu         sync.Mutex
	execs      map[string]*sfn.DescribeExecutionOutput // by ARN
	starts     int
	describes  int
	startErr   error
	describeFn func(n int) (*sfn.DescribeExecutionOutput, error) // overrides when set
}

func newFakeSFN() *fakeSFN { return &fakeSFN{execs: map[string]*sfn.DescribeExecutionOutput{}} }

func (f *fakeSFN) StartExecution(_ context.Context, in *sfn.StartExecutionInput, _ ...func(*sfn.Options)) (*sfn.StartExecutionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts++
	if f.startErr != nil {
		return nil, f.startErr
	}
	if *in.StateMachineArn != smARN {
		return nil, &types.StateMachineDoesNotExist{Message: aws.String("no such state machine")}
	}
	arn := ExecutionARN(*in.StateMachineArn, *in.Name)
	if e, ok := f.execs[arn]; ok {
		if e.Status == types.ExecutionStatusRunning && *e.Input == *in.Input {
			return &sfn.StartExecutionOutput{ExecutionArn: aws.String(arn)}, nil
		}
		return nil, &types.ExecutionAlreadyExists{Message: aws.String("exists")}
	}
	f.execs[arn] = &sfn.DescribeExecutionOutput{ExecutionArn: aws.String(arn), Name: in.Name, Input: in.Input, Status: types.ExecutionStatusRunning}
	return &sfn.StartExecutionOutput{ExecutionArn: aws.String(arn)}, nil
}

func (f *fakeSFN) DescribeExecution(_ context.Context, in *sfn.DescribeExecutionInput, _ ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.describes++
	if f.describeFn != nil {
		return f.describeFn(f.describes)
	}
	e, ok := f.execs[*in.ExecutionArn]
	if !ok {
		return nil, &types.ExecutionDoesNotExist{Message: aws.String("does not exist")}
	}
	c := *e
	return &c, nil
}

func (f *fakeSFN) set(name string, mut func(*sfn.DescribeExecutionOutput)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	mut(f.execs[ExecutionARN(smARN, name)])
}

func newTestRunner(t *testing.T, api API) *Runner {
	t.Helper()
	r, err := NewRunner(RunnerConfig{API: api, StateMachines: map[string]string{"trip": smARN}, PollInterval: time.Millisecond, MaxPollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewRunnerRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]RunnerConfig{
		"no API":  {StateMachines: map[string]string{"trip": smARN}},
		"bad ARN": {API: newFakeSFN(), StateMachines: map[string]string{"trip": "arn:aws:sqs:us-east-1:1:q"}},
	} {
		if _, err := NewRunner(cfg); err == nil {
			t.Errorf("%s: NewRunner succeeded", name)
		}
	}
}

func TestStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFakeSFN()
	r := newTestRunner(t, f)
	req := saga.StartRequest{Saga: "trip", Name: "trip-1", Session: "s1", Input: json.RawMessage(`{"to":"Oslo"}`)}

	started, err := r.Start(ctx, req)
	if err != nil || !started {
		t.Fatalf("first Start = %v, %v; want started", started, err)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(*f.execs[ExecutionARN(smARN, "trip-1")].Input), &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"session": "s1", "saga": "trip", "input": map[string]any{"to": "Oslo"}, "steps": map[string]any{}}
	if !jsonEqual(doc, want) {
		t.Errorf("execution input = %v, want %v", doc, want)
	}

	// Same name, same input (key order differs): nothing new starts.
	again := req
	again.Input = json.RawMessage(` { "to" : "Oslo" } `)
	started, err = r.Start(ctx, again)
	if err != nil || started {
		t.Errorf("second Start = %v, %v; want not started, no error", started, err)
	}
	// It stays so once the execution has ended.
	f.set("trip-1", func(e *sfn.DescribeExecutionOutput) { e.Status = types.ExecutionStatusSucceeded })
	if started, err = r.Start(ctx, req); err != nil || started {
		t.Errorf("Start of an ended execution = %v, %v; want not started, no error", started, err)
	}
	if f.starts != 1 {
		t.Errorf("StartExecution called %d times, want 1", f.starts)
	}

	bad := []struct {
		name string
		req  saga.StartRequest
		want error
	}{
		{"different input", saga.StartRequest{Saga: "trip", Name: "trip-1", Session: "s1", Input: json.RawMessage(`{"to":"Rome"}`)}, saga.ErrInputMismatch},
		{"different session", saga.StartRequest{Saga: "trip", Name: "trip-1", Session: "s2", Input: json.RawMessage(`{"to":"Oslo"}`)}, saga.ErrInputMismatch},
		{"unknown saga", saga.StartRequest{Saga: "nope", Name: "x", Input: json.RawMessage(`{}`)}, saga.ErrUnknownSaga},
		{"bad name", saga.StartRequest{Saga: "trip", Name: "has space", Input: json.RawMessage(`{}`)}, nil},
		{"input not an object", saga.StartRequest{Saga: "trip", Name: "trip-2", Input: json.RawMessage(`[1]`)}, nil},
		{"input not JSON", saga.StartRequest{Saga: "trip", Name: "trip-3", Input: json.RawMessage(`{`)}, nil},
	}
	for _, tc := range bad {
		started, err := r.Start(ctx, tc.req)
		if err == nil || started {
			t.Errorf("%s: Start = %v, %v; want an error", tc.name, started, err)
			continue
		}
		if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: Start error = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestStartRace: the execution appears between the Runner's describe and
// its StartExecution (another caller won): the outcome is the same as if it
// had been there first.
func TestStartRace(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		input     string
		wantErr   error
		wantStart bool
	}{
		{"same input", `{"session":"s","saga":"trip","input":{},"steps":{}}`, nil, false},
		{"different input", `{"session":"s","saga":"trip","input":{"x":1},"steps":{}}`, saga.ErrInputMismatch, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeSFN()
			f.startErr = &types.ExecutionAlreadyExists{Message: aws.String("exists")}
			f.describeFn = func(n int) (*sfn.DescribeExecutionOutput, error) {
				if n == 1 {
					return nil, &types.ExecutionDoesNotExist{Message: aws.String("no")}
				}
				return &sfn.DescribeExecutionOutput{Status: types.ExecutionStatusRunning, Input: aws.String(tc.input)}, nil
			}
			started, err := newTestRunner(t, f).Start(context.Background(), saga.StartRequest{Saga: "trip", Name: "n", Session: "s", Input: json.RawMessage(`{}`)})
			if started != tc.wantStart || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Errorf("Start = %v, %v; want %v, %v", started, err, tc.wantStart, tc.wantErr)
			}
		})
	}
}

func TestStartOtherErrors(t *testing.T) {
	t.Parallel()
	f := newFakeSFN()
	f.startErr = errors.New("throttled")
	if _, err := newTestRunner(t, f).Start(context.Background(), saga.StartRequest{Saga: "trip", Name: "n", Input: json.RawMessage(`{}`)}); err == nil || errors.Is(err, saga.ErrInputMismatch) {
		t.Errorf("Start with a failing StartExecution = %v, want that error", err)
	}
	g := newFakeSFN()
	g.describeFn = func(int) (*sfn.DescribeExecutionOutput, error) { return nil, errors.New("network down") }
	if _, err := newTestRunner(t, g).Start(context.Background(), saga.StartRequest{Saga: "trip", Name: "n", Input: json.RawMessage(`{}`)}); err == nil || g.starts != 0 {
		t.Errorf("Start with a failing describe = %v after %d starts, want the error and no start", err, g.starts)
	}
	// A state machine that was deleted is an unknown saga.
	h := newFakeSFN()
	r, _ := NewRunner(RunnerConfig{API: h, StateMachines: map[string]string{"gone": smARN + "-gone"}})
	if _, err := r.Start(context.Background(), saga.StartRequest{Saga: "gone", Name: "n", Input: json.RawMessage(`{}`)}); !errors.Is(err, saga.ErrUnknownSaga) {
		t.Errorf("Start on a missing state machine = %v, want ErrUnknownSaga", err)
	}
}

func TestDescribeOutcomes(t *testing.T) {
	t.Parallel()
	input := aws.String(`{"session":"s","saga":"trip","input":{},"steps":{}}`)
	cases := []struct {
		name     string
		out      sfn.DescribeExecutionOutput
		want     saga.Outcome
		abnormal bool
	}{
		{"running", sfn.DescribeExecutionOutput{Status: types.ExecutionStatusRunning},
			saga.Outcome{Status: saga.StatusRunning}, false},
		{"succeeded", sfn.DescribeExecutionOutput{Status: types.ExecutionStatusSucceeded, Output: aws.String(`{"a":1}`)},
			saga.Outcome{Status: saga.StatusSucceeded, Output: json.RawMessage(`{"a":1}`)}, false},
		{"compensated (full report)", sfn.DescribeExecutionOutput{Status: types.ExecutionStatusFailed, Error: aws.String(def.ErrorTool),
			Cause: aws.String(`{"failedStep":"c","error":"agentbus.ToolError","cause":"card declined","compensated":{"b":{"ok":1},"a":null}}`)},
			saga.Outcome{Status: saga.StatusCompensated, FailedStep: "c", Error: "agentbus.ToolError: card declined", Compensated: []string{"b", "a"}}, false},
		{"compensated (minimal report)", sfn.DescribeExecutionOutput{Status: types.ExecutionStatusFailed, Error: aws.String("States.Timeout"),
			Cause: aws.String(`{"failedStep":"a","error":"States.Timeout","cause":"timed out"}`)},
			saga.Outcome{Status: saga.StatusCompensated, FailedStep: "a", Error: "States.Timeout: timed out"}, false},
		{"compensated after a runtime error", sfn.DescribeExecutionOutput{Status: types.ExecutionStatusFailed, Error: aws.String(def.ErrorCompensatedRuntime),
			Cause: aws.String(`{"failedStep":"b","error":"States.Timeout","cause":"","compensated":{"a":{}}}`)},
			saga.Outcome{Status: saga.StatusCompensated, FailedStep: "b", Error: "States.Timeout: ", Compensated: []string{"a"}}, false},
		{"compensation failed (full report)", sfn.DescribeExecutionOutput{Status: types.ExecutionStatusFailed, Error: aws.String(def.ErrorCompensationFailed),
			Cause: aws.String(`{"failedStep":"c","error":"agentbus.ToolError","cause":"declined","compensated":{"a":{}},"compensationFailures":{"b":{"Error":"agentbus.ToolError","Cause":"hotel down"}}}`)},
			saga.Outcome{Status: saga.StatusCompensationFailed, FailedStep: "c", Error: "agentbus.ToolError: declined", Compensated: []string{"a"}, Failures: []string{"b: agentbus.ToolError: hotel down"}}, false},
		{"compensation failed (failures only)", sfn.DescribeExecutionOutput{Status: types.ExecutionStatusFailed, Error: aws.String(def.ErrorCompensationFailed),
			Cause: aws.String(`{"b":{"Error":"agentbus.ToolError","Cause":"hotel down"},"a":{"Error":"States.Timeout","Cause":""}}`)},
			saga.Outcome{Status: saga.StatusCompensationFailed, Failures: []string{"b: agentbus.ToolError: hotel down", "a: States.Timeout: "}}, false},
		// The output template read a missing path after every step
		// succeeded: every step was undone and no step failed (the embedded
		// runner reports the same: FailedStep "", Error InvalidInput).
		{"compensated after the output template failed", sfn.DescribeExecutionOutput{Status: types.ExecutionStatusFailed, Error: aws.String(def.ErrorInvalidInput),
			Cause: aws.String(`{"failedStep":"","error":"agentbus.InvalidInput","cause":"output template: template path not found: one of $.steps.b.x","compensated":{"b":{},"a":{}}}`)},
			saga.Outcome{Status: saga.StatusCompensated, FailedStep: "", Error: "agentbus.InvalidInput: output template: template path not found: one of $.steps.b.x", Compensated: []string{"b", "a"}}, false},
		{"compensation failed after the output template failed", sfn.DescribeExecutionOutput{Status: types.ExecutionStatusFailed, Error: aws.String(def.ErrorCompensationFailed),
			Cause: aws.String(`{"failedStep":"","error":"agentbus.InvalidInput","cause":"output template: missing","compensated":{"a":{}},"compensationFailures":{"b":{"Error":"agentbus.ToolError","Cause":"down"}}}`)},
			saga.Outcome{Status: saga.StatusCompensationFailed, FailedStep: "", Error: "agentbus.InvalidInput: output template: missing", Compensated: []string{"a"}, Failures: []string{"b: agentbus.ToolError: down"}}, false},
		{"failed, report without failedStep", sfn.DescribeExecutionOutput{Status: types.ExecutionStatusFailed, Error: aws.String(def.ErrorTool),
			Cause: aws.String(`{"error":"agentbus.ToolError","cause":"x"}`)}, saga.Outcome{}, true},
		{"failed, report without error", sfn.DescribeExecutionOutput{Status: types.ExecutionStatusFailed, Error: aws.String(def.ErrorInvalidInput),
			Cause: aws.String(`{"failedStep":""}`)}, saga.Outcome{}, true},
		{"failed without our report", sfn.DescribeExecutionOutput{Status: types.ExecutionStatusFailed, Error: aws.String("States.Runtime"), Cause: aws.String("path $.x not found")}, saga.Outcome{}, true},
		{"failed, JSON cause but not ours", sfn.DescribeExecutionOutput{Status: types.ExecutionStatusFailed, Error: aws.String("X"), Cause: aws.String(`{"a":1}`)}, saga.Outcome{}, true},
		{"compensation failed, empty failures", sfn.DescribeExecutionOutput{Status: types.ExecutionStatusFailed, Error: aws.String(def.ErrorCompensationFailed), Cause: aws.String(`{}`)}, saga.Outcome{}, true},
		{"timed out", sfn.DescribeExecutionOutput{Status: types.ExecutionStatusTimedOut}, saga.Outcome{}, true},
		{"aborted", sfn.DescribeExecutionOutput{Status: types.ExecutionStatusAborted, Cause: aws.String("stopped by hand")}, saga.Outcome{}, true},
		{"succeeded with non-JSON output", sfn.DescribeExecutionOutput{Status: types.ExecutionStatusSucceeded, Output: aws.String(`{`)}, saga.Outcome{}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeSFN()
			out := tc.out
			out.Input = input
			f.describeFn = func(int) (*sfn.DescribeExecutionOutput, error) { return &out, nil }
			got, err := newTestRunner(t, f).Describe(context.Background(), "trip-x")
			if tc.abnormal {
				if err == nil {
					t.Fatalf("Describe = %+v, want an error", got)
				}
				if tc.name == "succeeded with non-JSON output" {
					return
				}
				var ee *EndError
				if !errors.Is(err, ErrAbnormalEnd) || !errors.As(err, &ee) || ee.Status != string(tc.out.Status) {
					t.Fatalf("Describe error = %v, want an *EndError with status %s", err, tc.out.Status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Execution, tc.want.Saga = "trip-x", "trip"
			if !outcomeEqual(got, tc.want) {
				t.Errorf("Describe = %+v\nwant       %+v", got, tc.want)
			}
		})
	}
}

// TestCompensatedOrderFromDefinition: with the definition known, the
// compensated steps come in reverse step order whatever the report's order.
func TestCompensatedOrderFromDefinition(t *testing.T) {
	t.Parallel()
	f := newFakeSFN()
	f.describeFn = func(int) (*sfn.DescribeExecutionOutput, error) {
		return &sfn.DescribeExecutionOutput{Status: types.ExecutionStatusFailed, Error: aws.String(def.ErrorTool),
			Input: aws.String(`{"saga":"trip"}`),
			Cause: aws.String(`{"failedStep":"d","error":"e","cause":"c","compensated":{"a":1,"c":1,"b":1}}`)}, nil
	}
	r, err := NewRunner(RunnerConfig{API: f, StateMachines: map[string]string{"trip": smARN}, Definitions: defsOf{
		"trip": {Name: "trip", Steps: []def.Step{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	o, err := r.Describe(context.Background(), "trip-1")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"c", "b", "a"}; !slices.Equal(o.Compensated, want) {
		t.Errorf("Compensated = %v, want %v", o.Compensated, want)
	}
}

type defsOf map[string]def.Definition

func (d defsOf) Lookup(name string) (def.Definition, bool) { v, ok := d[name]; return v, ok }

func TestDescribeUnknown(t *testing.T) {
	t.Parallel()
	r := newTestRunner(t, newFakeSFN())
	for _, name := range []string{"trip-nothere", "other-name", "bad name!"} {
		if _, err := r.Describe(context.Background(), name); !errors.Is(err, saga.ErrUnknownExecution) {
			t.Errorf("Describe(%q) = %v, want ErrUnknownExecution", name, err)
		}
	}
	f := newFakeSFN()
	f.describeFn = func(int) (*sfn.DescribeExecutionOutput, error) { return nil, errors.New("boom") }
	if _, err := newTestRunner(t, f).Describe(context.Background(), "trip-1"); err == nil || errors.Is(err, saga.ErrUnknownExecution) {
		t.Errorf("Describe with a failing API = %v, want that error", err)
	}
}

// TestDescribeFindsByName: an execution the Runner did not start is found
// among the state machines, the saga whose name prefixes it first.
func TestDescribeFindsByName(t *testing.T) {
	t.Parallel()
	f := newFakeSFN()
	other := "arn:aws:states:us-east-1:123456789012:stateMachine:agentbus-saga-other"
	name := saga.ExecutionName("trip", "s", 1, "c")
	f.execs[ExecutionARN(smARN, name)] = &sfn.DescribeExecutionOutput{Status: types.ExecutionStatusRunning, Input: aws.String(`{"saga":"trip"}`)}
	var asked []string
	api := describeSpy{fakeSFN: f, asked: &asked}
	r, err := NewRunner(RunnerConfig{API: api, StateMachines: map[string]string{"a-other": other, "trip": smARN}})
	if err != nil {
		t.Fatal(err)
	}
	o, err := r.Describe(context.Background(), name)
	if err != nil || o.Status != saga.StatusRunning || o.Saga != "trip" {
		t.Fatalf("Describe = %+v, %v", o, err)
	}
	if len(asked) != 1 {
		t.Errorf("asked %v, want the trip state machine first", asked)
	}
	// A second Describe goes straight to the remembered ARN.
	if _, err := r.Describe(context.Background(), name); err != nil || len(asked) != 2 || asked[1] != asked[0] {
		t.Errorf("second Describe asked %v, %v", asked, err)
	}
}

type describeSpy struct {
	*fakeSFN
	asked *[]string
}

func (d describeSpy) DescribeExecution(ctx context.Context, in *sfn.DescribeExecutionInput, o ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error) {
	*d.asked = append(*d.asked, *in.ExecutionArn)
	return d.fakeSFN.DescribeExecution(ctx, in, o...)
}

func TestWait(t *testing.T) {
	t.Parallel()
	f := newFakeSFN()
	f.describeFn = func(n int) (*sfn.DescribeExecutionOutput, error) {
		if n < 4 {
			return &sfn.DescribeExecutionOutput{Status: types.ExecutionStatusRunning}, nil
		}
		return &sfn.DescribeExecutionOutput{Status: types.ExecutionStatusSucceeded, Output: aws.String(`{}`)}, nil
	}
	o, err := newTestRunner(t, f).Wait(context.Background(), "trip-1")
	if err != nil || o.Status != saga.StatusSucceeded || f.describes != 4 {
		t.Errorf("Wait = %+v, %v after %d describes; want succeeded after 4", o, err, f.describes)
	}

	g := newFakeSFN()
	g.describeFn = func(int) (*sfn.DescribeExecutionOutput, error) {
		return &sfn.DescribeExecutionOutput{Status: types.ExecutionStatusRunning}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := newTestRunner(t, g).Wait(ctx, "trip-1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait past the deadline = %v, want DeadlineExceeded", err)
	}

	// Transient describe failures are ridden out; persistent ones are not.
	flaky := newFakeSFN()
	flaky.describeFn = func(n int) (*sfn.DescribeExecutionOutput, error) {
		switch {
		case n%2 == 1 && n < 12:
			return nil, errors.New("throttled")
		case n < 12:
			return &sfn.DescribeExecutionOutput{Status: types.ExecutionStatusRunning}, nil
		}
		return &sfn.DescribeExecutionOutput{Status: types.ExecutionStatusSucceeded, Output: aws.String(`{}`)}, nil
	}
	if o, err := newTestRunner(t, flaky).Wait(context.Background(), "trip-1"); err != nil || o.Status != saga.StatusSucceeded {
		t.Errorf("Wait through transient failures = %+v, %v; want succeeded", o, err)
	}
	down := newFakeSFN()
	down.describeFn = func(int) (*sfn.DescribeExecutionOutput, error) { return nil, errors.New("access denied") }
	if _, err := newTestRunner(t, down).Wait(context.Background(), "trip-1"); err == nil || down.describes != waitAttempts {
		t.Errorf("Wait with describe always failing = %v after %d describes; want the error after %d", err, down.describes, waitAttempts)
	}

	h := newFakeSFN()
	h.describeFn = func(int) (*sfn.DescribeExecutionOutput, error) {
		return &sfn.DescribeExecutionOutput{Status: types.ExecutionStatusTimedOut}, nil
	}
	if _, err := newTestRunner(t, h).Wait(context.Background(), "trip-1"); !errors.Is(err, ErrAbnormalEnd) {
		t.Errorf("Wait on a timed-out execution = %v, want ErrAbnormalEnd", err)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func outcomeEqual(a, b saga.Outcome) bool {
	if len(a.Output) > 0 || len(b.Output) > 0 {
		var x, y any
		if json.Unmarshal(a.Output, &x) != nil || json.Unmarshal(b.Output, &y) != nil || !jsonEqual(x, y) {
			return false
		}
	}
	a.Output, b.Output = nil, nil
	return jsonEqual(a, b)
}
