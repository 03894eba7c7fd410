package saga_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"

	"github.com/agentbus/agentbus/internal/testenv"
	"github.com/agentbus/agentbus/saga"
)

// These tests hand the generated ASL to moto's Step Functions, which embeds
// LocalStack's ASL interpreter: CreateStateMachine must accept every
// golden shape, and executions must take the paths the generator promises
// (ResultPath into objects that do not exist yet, $$.State.RetryCount in
// Parameters, the IsPresent Choice, ErrorPath / CausePath with
// States.JsonToString). The runner conformance suite lives in
// platform/saga/stepfunctions; this is the generator's own check.

type motoClients struct {
	sfn *sfn.Client
	sqs *sqs.Client
}

func newMoto(t *testing.T) motoClients {
	t.Helper()
	ep := testenv.AWSEndpoint(t)
	// Without this moto stores definitions unchecked and runs nothing
	// (scripts/stack.sh sets it too; it is idempotent).
	resp, err := http.Post(strings.TrimSuffix(ep, "/")+"/moto-api/config", "application/json",
		strings.NewReader(`{"stepfunctions":{"execute_state_machine":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cfg := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(ep),
	}
	return motoClients{sfn: sfn.NewFromConfig(cfg), sqs: sqs.NewFromConfig(cfg)}
}

func (m motoClients) queue(t *testing.T, ctx context.Context) string {
	t.Helper()
	out, err := m.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("saga-asl-" + uuid.NewString()[:8])})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = m.sqs.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: out.QueueUrl}) })
	return *out.QueueUrl
}

// deploy creates a fresh task queue and a state machine from d's ASL for
// it, and returns both.
func (m motoClients) deploy(t *testing.T, ctx context.Context, d saga.Definition) (queueURL, arn string) {
	t.Helper()
	q := m.queue(t, ctx)
	asl, err := saga.ASL(d, q)
	if err != nil {
		t.Fatal(err)
	}
	arn, err = m.machine(t, ctx, d.Name, asl)
	if err != nil {
		t.Fatal(err)
	}
	return q, arn
}

func (m motoClients) machine(t *testing.T, ctx context.Context, name string, asl []byte) (string, error) {
	t.Helper()
	out, err := m.sfn.CreateStateMachine(ctx, &sfn.CreateStateMachineInput{
		Name:       aws.String(name + "-" + uuid.NewString()[:8]),
		Definition: aws.String(string(asl)),
		RoleArn:    aws.String("arn:aws:iam::123456789012:role/agentbus-saga"),
	})
	if err != nil {
		return "", err
	}
	t.Cleanup(func() {
		_, _ = m.sfn.DeleteStateMachine(context.Background(), &sfn.DeleteStateMachineInput{StateMachineArn: out.StateMachineArn})
	})
	return *out.StateMachineArn, nil
}

func parseFile(t *testing.T, path string) saga.Definition {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := saga.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestASLAcceptedByMoto(t *testing.T) {
	m := newMoto(t)
	ctx := context.Background()
	q := m.queue(t, ctx)
	for _, f := range []string{"../examples/sagas/book_trip.json", "testdata/one_step.json", "testdata/without_compensation.json", "testdata/nested_templates.json"} {
		d := parseFile(t, f)
		asl, err := saga.ASL(d, q)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.machine(t, ctx, d.Name, asl); err != nil {
			t.Errorf("%s: CreateStateMachine rejected the generated ASL: %v", f, err)
		}
	}
	// The negative control: moto does validate definitions, so the
	// acceptance above means something.
	// (moto parses definitions but does not check transitions, so the
	// control is a retrier ASL forbids.)
	broken := []byte(`{"StartAt":"a","States":{"a":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage.waitForTaskToken","Parameters":{"QueueUrl":"q","MessageBody":{}},"Retry":[{"ErrorEquals":["x"],"IntervalSeconds":0}],"End":true}}}`)
	if _, err := m.machine(t, ctx, "broken", broken); err == nil {
		t.Error("moto accepted IntervalSeconds 0: definitions are not validated")
	}
}

// task is the message body the generated Task states send.
type task struct {
	TaskToken        string          `json:"taskToken"`
	Execution        string          `json:"execution"`
	Session          string          `json:"session"`
	Saga             string          `json:"saga"`
	Step             string          `json:"step"`
	Kind             string          `json:"kind"`
	Tool             string          `json:"tool"`
	Input            json.RawMessage `json:"input"`
	TimeoutSeconds   int             `json:"timeoutSeconds"`
	HeartbeatSeconds int             `json:"heartbeatSeconds"`
	Attempt          int             `json:"attempt"`
}

// answer decides a task's reply: an output, or an error name and cause.
type answer func(tk task) (output string, errName, cause string)

// work answers the queue's tasks until ctx ends, logging each task it saw.
func (m motoClients) work(ctx context.Context, t *testing.T, q string, ans answer) func() []task {
	var mu sync.Mutex
	var seen []task
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			out, err := m.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q), WaitTimeSeconds: 1, MaxNumberOfMessages: 10})
			if err != nil {
				continue
			}
			for _, msg := range out.Messages {
				var tk task
				if err := json.Unmarshal([]byte(*msg.Body), &tk); err != nil {
					t.Errorf("task message is not JSON: %s", *msg.Body)
					continue
				}
				mu.Lock()
				seen = append(seen, tk)
				mu.Unlock()
				output, errName, cause := ans(tk)
				if errName != "" {
					_, err = m.sfn.SendTaskFailure(ctx, &sfn.SendTaskFailureInput{TaskToken: aws.String(tk.TaskToken), Error: aws.String(errName), Cause: aws.String(cause)})
				} else {
					_, err = m.sfn.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String(tk.TaskToken), Output: aws.String(output)})
				}
				if err != nil && ctx.Err() == nil {
					t.Errorf("answering %s/%s: %v", tk.Step, tk.Kind, err)
				}
				_, _ = m.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q), ReceiptHandle: msg.ReceiptHandle})
			}
		}
	}()
	return func() []task {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
}

func (m motoClients) run(t *testing.T, ctx context.Context, machine string, input string) *sfn.DescribeExecutionOutput {
	t.Helper()
	start, err := m.sfn.StartExecution(ctx, &sfn.StartExecutionInput{
		StateMachineArn: aws.String(machine), Name: aws.String("x-" + uuid.NewString()[:12]), Input: aws.String(input),
	})
	if err != nil {
		t.Fatal(err)
	}
	for {
		out, err := m.sfn.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: start.ExecutionArn})
		if err != nil {
			t.Fatal(err)
		}
		if out.Status != "RUNNING" {
			return out
		}
		select {
		case <-ctx.Done():
			t.Fatalf("execution still running: %v", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// execDef: a (undo) → b (no undo, reads a) → c (undo, no retries) → d
// (retried once). The test makes d fail and decides how undo_c behaves.
const execDef = `{
  "name": "exec_check",
  "steps": [
    {"name": "a", "action": {"tool": "step_a", "input": {"x": "$.input.x"}},
     "compensation": {"tool": "undo_a", "input": {"id": "$.steps.a.id"}}, "retry": {"maxAttempts": 1, "intervalSeconds": 1, "backoffRate": 1}},
    {"name": "b", "action": {"tool": "step_b", "input": {"from_a": "$.steps.a.id", "nested": {"x": "$.input.x"}}}},
    {"name": "c", "action": {"tool": "step_c"}, "compensation": {"tool": "undo_c"}, "retry": {"maxAttempts": 0}},
    {"name": "d", "action": {"tool": "step_d"}, "retry": {"maxAttempts": 1, "intervalSeconds": 1, "backoffRate": 1}}
  ],
  "output": {"a": "$.steps.a.id", "d": "$.steps.d"}
}`

func TestASLExecutesOnMoto(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Step Functions executions on moto")
	}
	m := newMoto(t)
	d, err := saga.Parse([]byte(execDef))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		failD      bool
		failUndoC  bool
		wantStatus string
		wantError  string
		check      func(t *testing.T, out *sfn.DescribeExecutionOutput, tasks []task)
	}{
		{name: "succeeds", wantStatus: "SUCCEEDED", check: func(t *testing.T, out *sfn.DescribeExecutionOutput, tasks []task) {
			if got := aws.ToString(out.Output); !jsonEqual(got, `{"a":"id-a","d":{"id":"id-d"}}`) {
				t.Errorf("output = %s", got)
			}
			var b task
			for _, tk := range tasks {
				if tk.Step == "b" {
					b = tk
				}
			}
			if !jsonEqual(string(b.Input), `{"from_a":"id-a","nested":{"x":7}}`) || b.Session != "sess-1" || b.Saga != "exec_check" || b.Execution == "" || b.TimeoutSeconds != 60 {
				t.Errorf("task b = %+v (input %s)", b, b.Input)
			}
		}},
		{name: "compensated", failD: true, wantStatus: "FAILED", wantError: saga.ErrorTool, check: func(t *testing.T, out *sfn.DescribeExecutionOutput, tasks []task) {
			var rep map[string]json.RawMessage
			if err := json.Unmarshal([]byte(aws.ToString(out.Cause)), &rep); err != nil {
				t.Fatalf("cause is not JSON: %q", aws.ToString(out.Cause))
			}
			if string(rep["failedStep"]) != `"d"` || string(rep["error"]) != `"agentbus.ToolError"` || !motoCause(string(rep["cause"]), `"d is down"`) {
				t.Errorf("cause = %s", aws.ToString(out.Cause))
			}
			if _, ok := rep["compensationFailures"]; ok {
				t.Errorf("cause has compensationFailures: %s", aws.ToString(out.Cause))
			}
			if !jsonEqual(string(rep["compensated"]), `{"c":{"undone":"c"},"a":{"undone":"a"}}`) {
				t.Errorf("compensated = %s", rep["compensated"])
			}
		}},
		{name: "compensation failed", failD: true, failUndoC: true, wantStatus: "FAILED", wantError: saga.ErrorCompensationFailed, check: func(t *testing.T, out *sfn.DescribeExecutionOutput, tasks []task) {
			var rep struct {
				FailedStep           string
				Error                string
				CompensationFailures map[string]struct{ Error, Cause string }
				Compensated          map[string]json.RawMessage
			}
			if err := json.Unmarshal([]byte(aws.ToString(out.Cause)), &rep); err != nil {
				t.Fatalf("cause is not JSON: %q", aws.ToString(out.Cause))
			}
			if rep.FailedStep != "d" || rep.Error != saga.ErrorTool || rep.CompensationFailures["c"].Error != saga.ErrorTool ||
				!motoCause(rep.CompensationFailures["c"].Cause, "cannot undo c") || len(rep.CompensationFailures) != 1 || len(rep.Compensated) != 1 || rep.Compensated["a"] == nil {
				t.Errorf("cause = %s", aws.ToString(out.Cause))
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			q, arn := m.deploy(t, ctx, d)
			wctx, stop := context.WithCancel(ctx)
			tasks := m.work(wctx, t, q, func(tk task) (string, string, string) {
				switch {
				case tk.Step == "d" && tk.Kind == "action" && c.failD:
					return "", saga.ErrorTool, "d is down"
				case tk.Step == "c" && tk.Kind == "compensation" && c.failUndoC:
					return "", saga.ErrorTool, "cannot undo c"
				case tk.Kind == "compensation":
					return fmt.Sprintf(`{"undone":%q}`, tk.Step), "", ""
				}
				return fmt.Sprintf(`{"id":"id-%s"}`, tk.Step), "", ""
			})
			out := m.run(t, ctx, arn, `{"session":"sess-1","saga":"exec_check","input":{"x":7},"steps":{}}`)
			stop()
			seen := tasks()
			if string(out.Status) != c.wantStatus || aws.ToString(out.Error) != c.wantError {
				t.Fatalf("status %s error %q cause %q, want %s %q", out.Status, aws.ToString(out.Error), aws.ToString(out.Cause), c.wantStatus, c.wantError)
			}
			var order []string
			for _, tk := range seen {
				order = append(order, fmt.Sprintf("%s/%s/%d", tk.Step, tk.Kind, tk.Attempt))
			}
			want := "a/action/0 b/action/0 c/action/0 d/action/0"
			if c.failD {
				// d is retried once (attempt 1, from $$.State.RetryCount), then
				// c and a are undone in reverse order; b has no compensation.
				want += " d/action/1 c/compensation/0"
				// undo_c is not retried either way: c's policy has no retries.
				want += " a/compensation/0"
			}
			if got := strings.Join(order, " "); got != want {
				t.Errorf("tasks ran %s, want %s", got, want)
			}
			c.check(t, out, seen)
		})
	}
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// motoCause: moto 5.2.5's SendTaskFailure handler drops the cause
// (responses.py passes only the error on), so a task's cause arrives as
// null / "" there; AWS delivers it.
func motoCause(got, want string) bool {
	return got == want || got == "null" || got == ""
}

// missingDef reads paths of step outputs that the test's tools may leave
// out: b reads a's id, the output reads c's id, undo_c reads c's id.
const missingDef = `{
  "name": "missing_paths",
  "steps": [
    {"name": "a", "action": {"tool": "step_a"}, "compensation": {"tool": "undo_a", "input": {"ref": "$.steps.a"}}, "retry": {"maxAttempts": 0}},
    {"name": "b", "action": {"tool": "step_b", "input": {"x": "$.steps.a.id"}}, "compensation": {"tool": "undo_b", "input": {"id": "$.steps.b.id"}}, "retry": {"maxAttempts": 0}},
    {"name": "c", "action": {"tool": "step_c"}, "compensation": {"tool": "undo_c", "input": {"id": "$.steps.c.id"}}, "retry": {"maxAttempts": 0}}
  ],
  "output": {"c": "$.steps.c.id"}
}`

// TestASLMissingPathsOnMoto: a template path missing at run time fails
// like the embedded runner's agentbus.InvalidInput and is compensated (on
// AWS an unguarded Parameters path would end the execution with
// States.Runtime, which Catch does not catch).
func TestASLMissingPathsOnMoto(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Step Functions executions on moto")
	}
	m := newMoto(t)
	d, err := saga.Parse([]byte(missingDef))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		noID      string // the step whose action output lacks "id"
		wantError string
		wantTasks string
		wantRep   string
	}{
		{"action input", "a", saga.ErrorInvalidInput, "a/action a/compensation",
			`{"failedStep":"b","error":"agentbus.InvalidInput","cause":"action input: template path not found: one of $.steps.a.id","compensated":{"a":{"undone":"a"}}}`},
		{"output and compensation input", "c", saga.ErrorCompensationFailed, "a/action b/action c/action b/compensation a/compensation",
			`{"failedStep":"","error":"agentbus.InvalidInput","cause":"output template: template path not found: one of $.steps.c.id",` +
				`"compensationFailures":{"c":{"Error":"agentbus.InvalidInput","Cause":"compensation input: template path not found: one of $.steps.c.id"}},` +
				`"compensated":{"b":{"undone":"b"},"a":{"undone":"a"}}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			q, arn := m.deploy(t, ctx, d)
			wctx, stop := context.WithCancel(ctx)
			tasks := m.work(wctx, t, q, func(tk task) (string, string, string) {
				switch {
				case tk.Kind == "compensation":
					return fmt.Sprintf(`{"undone":%q}`, tk.Step), "", ""
				case tk.Step == c.noID:
					return `{}`, "", ""
				}
				return fmt.Sprintf(`{"id":"id-%s"}`, tk.Step), "", ""
			})
			out := m.run(t, ctx, arn, `{"session":"s","saga":"missing_paths","input":{},"steps":{}}`)
			stop()
			var order []string
			for _, tk := range tasks() {
				order = append(order, tk.Step+"/"+tk.Kind)
			}
			if got := strings.Join(order, " "); got != c.wantTasks {
				t.Errorf("tasks ran %s, want %s", got, c.wantTasks)
			}
			if string(out.Status) != "FAILED" || aws.ToString(out.Error) != c.wantError || !jsonEqual(aws.ToString(out.Cause), c.wantRep) {
				t.Errorf("status %s error %q cause %s, want FAILED %q %s", out.Status, aws.ToString(out.Error), aws.ToString(out.Cause), c.wantError, c.wantRep)
			}
		})
	}
}
