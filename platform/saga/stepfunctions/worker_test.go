package stepfunctions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/agentbus/agentbus/platform/bus"
	busqs "github.com/agentbus/agentbus/platform/bus/sqs"
	"github.com/agentbus/agentbus/platform/saga"
	def "github.com/agentbus/agentbus/saga"
)

// fakeQueue hands out queued bodies one receive at a time and records what
// the worker did with each.
type fakeQueue struct {
	in      chan sqstypes.Message
	mu      sync.Mutex
	deleted []string           // receipt handles
	vis     map[string][]int32 // receipt → visibility changes
	dlq     []*sqs.SendMessageInput
	sendErr error
	seq     int
}

func newFakeQueue() *fakeQueue {
	return &fakeQueue{in: make(chan sqstypes.Message, 100), vis: map[string][]int32{}}
}

func (q *fakeQueue) put(body string) string {
	q.mu.Lock()
	q.seq++
	r := fmt.Sprintf("r%d", q.seq)
	q.mu.Unlock()
	q.in <- sqstypes.Message{Body: aws.String(body), ReceiptHandle: aws.String(r), MessageId: aws.String("m" + r),
		Attributes: map[string]string{"ApproximateReceiveCount": "2"}}
	return r
}

func (q *fakeQueue) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	select {
	case m := <-q.in:
		return &sqs.ReceiveMessageOutput{Messages: []sqstypes.Message{m}}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(20 * time.Millisecond):
		return &sqs.ReceiveMessageOutput{}, nil
	}
}

func (q *fakeQueue) DeleteMessage(_ context.Context, in *sqs.DeleteMessageInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deleted = append(q.deleted, *in.ReceiptHandle)
	return &sqs.DeleteMessageOutput{}, nil
}

func (q *fakeQueue) ChangeMessageVisibility(_ context.Context, in *sqs.ChangeMessageVisibilityInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.vis[*in.ReceiptHandle] = append(q.vis[*in.ReceiptHandle], in.VisibilityTimeout)
	return &sqs.ChangeMessageVisibilityOutput{}, nil
}

func (q *fakeQueue) SendMessage(_ context.Context, in *sqs.SendMessageInput, _ ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.sendErr != nil {
		return nil, q.sendErr
	}
	q.dlq = append(q.dlq, in)
	return &sqs.SendMessageOutput{}, nil
}

func (q *fakeQueue) isDeleted(r string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, d := range q.deleted {
		if d == r {
			return true
		}
	}
	return false
}

// answer is one call the worker made to Step Functions.
type answer struct {
	kind, token, output, error, cause string
}

type fakeTasks struct {
	mu      sync.Mutex
	answers []answer
	beats   atomic.Int32
	ansErr  error // returned by success/failure
	beatErr error
}

func (f *fakeTasks) add(a answer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers = append(f.answers, a)
	return f.ansErr
}

func (f *fakeTasks) SendTaskSuccess(_ context.Context, in *sfn.SendTaskSuccessInput, _ ...func(*sfn.Options)) (*sfn.SendTaskSuccessOutput, error) {
	return &sfn.SendTaskSuccessOutput{}, f.add(answer{kind: "success", token: *in.TaskToken, output: *in.Output})
}

func (f *fakeTasks) SendTaskFailure(_ context.Context, in *sfn.SendTaskFailureInput, _ ...func(*sfn.Options)) (*sfn.SendTaskFailureOutput, error) {
	return &sfn.SendTaskFailureOutput{}, f.add(answer{kind: "failure", token: *in.TaskToken, error: *in.Error, cause: *in.Cause})
}

func (f *fakeTasks) SendTaskHeartbeat(context.Context, *sfn.SendTaskHeartbeatInput, ...func(*sfn.Options)) (*sfn.SendTaskHeartbeatOutput, error) {
	f.beats.Add(1)
	return &sfn.SendTaskHeartbeatOutput{}, f.beatErr
}

func (f *fakeTasks) list() []answer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]answer(nil), f.answers...)
}

type invokerFunc func(ctx context.Context, t saga.Task) (json.RawMessage, error)

func (f invokerFunc) Invoke(ctx context.Context, t saga.Task) (json.RawMessage, error) {
	return f(ctx, t)
}

func taskBody(token string, mut func(map[string]any)) string {
	m := map[string]any{"taskToken": token, "execution": "ex-1", "session": "s", "saga": "trip", "step": "a",
		"kind": "action", "tool": "step_a", "input": map[string]any{"x": 1}, "timeoutSeconds": 30, "heartbeatSeconds": 0, "attempt": 0}
	if mut != nil {
		mut(m)
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// runWorker runs a worker until stop is called; stop waits for Run.
func runWorker(t *testing.T, cfg WorkerConfig) (stop func()) {
	t.Helper()
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run = %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewWorkerRejectsBadConfig(t *testing.T) {
	t.Parallel()
	inv := invokerFunc(func(context.Context, saga.Task) (json.RawMessage, error) { return nil, nil })
	full := WorkerConfig{SFN: &fakeTasks{}, SQS: newFakeQueue(), QueueURL: "q", Invoker: inv}
	for name, mut := range map[string]func(*WorkerConfig){
		"no SFN":     func(c *WorkerConfig) { c.SFN = nil },
		"no SQS":     func(c *WorkerConfig) { c.SQS = nil },
		"no queue":   func(c *WorkerConfig) { c.QueueURL = "" },
		"no invoker": func(c *WorkerConfig) { c.Invoker = nil },
	} {
		c := full
		mut(&c)
		if _, err := NewWorker(c); err == nil {
			t.Errorf("%s: NewWorker succeeded", name)
		}
	}
}

// TestWorkerAnswers: each way an invocation ends, and what the worker tells
// Step Functions and does with the message.
func TestWorkerAnswers(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", maxCauseLen) // 2 bytes each: must be cut on a rune boundary
	cases := []struct {
		name       string
		result     func(saga.Task) (json.RawMessage, error)
		ansErr     error
		want       answer // kind "" = no answer
		deleted    bool
		visibility int32 // last visibility change; -1 = none
	}{
		{"success", func(saga.Task) (json.RawMessage, error) { return json.RawMessage(`{"id":"F1"}`), nil },
			nil, answer{kind: "success", output: `{"id":"F1"}`}, true, -1},
		{"success with no output", func(saga.Task) (json.RawMessage, error) { return nil, nil },
			nil, answer{kind: "success", output: `null`}, true, -1},
		{"step error", func(saga.Task) (json.RawMessage, error) {
			return nil, &saga.StepError{Name: def.ErrorTool, Cause: "card declined"}
		}, nil, answer{kind: "failure", error: def.ErrorTool, cause: "card declined"}, true, -1},
		{"wrapped step error, long cause", func(saga.Task) (json.RawMessage, error) {
			return nil, fmt.Errorf("invoke: %w", &saga.StepError{Name: def.ErrorTimeout, Cause: long})
		}, nil, answer{kind: "failure", error: def.ErrorTimeout, cause: truncate(long, maxCauseLen)}, true, -1},
		{"output too large", func(saga.Task) (json.RawMessage, error) {
			return json.RawMessage(`"` + strings.Repeat("x", maxOutputLen) + `"`), nil
		}, nil, answer{kind: "failure", error: ErrorInvalidOutput}, true, -1},
		{"output not JSON", func(saga.Task) (json.RawMessage, error) { return json.RawMessage(`{"a":`), nil },
			nil, answer{kind: "failure", error: ErrorInvalidOutput, cause: "tool step_a returned an output that is not JSON"}, true, -1},
		{"infrastructure error", func(saga.Task) (json.RawMessage, error) { return nil, errors.New("ledger down") },
			nil, answer{}, false, 2}, // MinBackoff 1s doubled for the 2nd receive
		{"retry after", func(saga.Task) (json.RawMessage, error) { return nil, bus.RetryAfter(5*time.Second, "claim held") },
			nil, answer{}, false, 5},
		{"task timed out", func(saga.Task) (json.RawMessage, error) { return json.RawMessage(`{}`), nil },
			&sfntypes.TaskTimedOut{Message: aws.String("timed out")}, answer{kind: "success", output: `{}`}, true, -1},
		{"task does not exist", func(saga.Task) (json.RawMessage, error) { return json.RawMessage(`{}`), nil },
			&sfntypes.TaskDoesNotExist{}, answer{kind: "success", output: `{}`}, true, -1},
		{"invalid token", func(saga.Task) (json.RawMessage, error) { return nil, &saga.StepError{Name: def.ErrorTool} },
			&sfntypes.InvalidToken{}, answer{kind: "failure", error: def.ErrorTool}, true, -1},
		{"answer fails", func(saga.Task) (json.RawMessage, error) { return json.RawMessage(`{}`), nil },
			errors.New("throttled"), answer{kind: "success", output: `{}`}, false, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q, tasks := newFakeQueue(), &fakeTasks{ansErr: tc.ansErr}
			var got atomic.Value
			inv := invokerFunc(func(_ context.Context, task saga.Task) (json.RawMessage, error) {
				got.Store(task)
				return tc.result(task)
			})
			r := q.put(taskBody("tok-1", func(m map[string]any) { m["attempt"] = 2 }))
			stop := runWorker(t, WorkerConfig{SFN: tasks, SQS: q, QueueURL: "q", Invoker: inv, Concurrency: 1})
			if tc.want.kind != "" {
				eventually(t, "an answer", func() bool { return len(tasks.list()) > 0 })
			}
			eventually(t, "the message settled", func() bool {
				q.mu.Lock()
				defer q.mu.Unlock()
				return len(q.deleted) > 0 || len(q.vis[r]) > 0
			})
			stop()
			if task, _ := got.Load().(saga.Task); task.TaskToken != "tok-1" || task.Attempt != 2 || task.Tool != "step_a" || string(task.Input) != `{"x":1}` {
				t.Errorf("Invoke got %+v", task)
			}
			as := tasks.list()
			if tc.want.kind == "" {
				if len(as) != 0 {
					t.Errorf("answers = %+v, want none", as)
				}
			} else {
				if len(as) != 1 {
					t.Fatalf("answers = %+v, want one", as)
				}
				a := as[0]
				if a.kind != tc.want.kind || a.token != "tok-1" || a.error != tc.want.error ||
					(tc.want.output != "" && a.output != tc.want.output) || (tc.want.cause != "" && a.cause != tc.want.cause) {
					t.Errorf("answer = %.200v, want %.200v", a, tc.want)
				}
				if len(a.cause) > maxCauseLen || len(a.error) > maxErrorLen {
					t.Errorf("answer exceeds the API limits: error %d, cause %d bytes", len(a.error), len(a.cause))
				}
			}
			if q.isDeleted(r) != tc.deleted {
				t.Errorf("deleted = %v, want %v", q.isDeleted(r), tc.deleted)
			}
			q.mu.Lock()
			defer q.mu.Unlock()
			vis := q.vis[r]
			switch {
			case tc.visibility < 0 && len(vis) > 0:
				t.Errorf("visibility changed to %v, want untouched", vis)
			case tc.visibility >= 0 && (len(vis) == 0 || vis[len(vis)-1] != tc.visibility):
				t.Errorf("visibility changes = %v, want last %d", vis, tc.visibility)
			}
		})
	}
}

// TestWorkerMalformed: a body that is not a task never reaches the Invoker
// and never loops: it goes to the DLQ with its reason (or is dropped without
// a DLQ), and a salvageable token fails the task at once.
func TestWorkerMalformed(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		body      string
		dlq       bool
		failToken string
		reason    string
	}{
		{"not JSON", "hello", true, "", "not a task JSON object"},
		{"wrong types", `{"taskToken":"tok-2","attempt":"zero"}`, true, "tok-2", "not a task JSON object"},
		{"missing fields", taskBody("tok-3", func(m map[string]any) { delete(m, "tool"); delete(m, "step") }), true, "tok-3", "lacks [step tool]"},
		{"bad kind", taskBody("tok-4", func(m map[string]any) { m["kind"] = "undo" }), true, "tok-4", "task kind"},
		{"input not an object", taskBody("tok-5", func(m map[string]any) { m["input"] = []int{1} }), true, "tok-5", "input is not a JSON object"},
		{"negative attempt", taskBody("tok-6", func(m map[string]any) { m["attempt"] = -1 }), true, "tok-6", "negative"},
		{"no token", taskBody("", nil), true, "", "lacks [taskToken]"},
		{"no DLQ", "hello", false, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q, tasks := newFakeQueue(), &fakeTasks{}
			var invoked atomic.Bool
			inv := invokerFunc(func(context.Context, saga.Task) (json.RawMessage, error) { invoked.Store(true); return nil, nil })
			cfg := WorkerConfig{SFN: tasks, SQS: q, QueueURL: "q", Invoker: inv, Concurrency: 1}
			if tc.dlq {
				cfg.DLQURL = "q-dlq"
			}
			r := q.put(tc.body)
			stop := runWorker(t, cfg)
			eventually(t, "the message deleted", func() bool { return q.isDeleted(r) })
			stop()
			if invoked.Load() {
				t.Error("the Invoker ran for a malformed message")
			}
			as := tasks.list()
			if tc.failToken == "" && len(as) != 0 {
				t.Errorf("answers = %+v, want none", as)
			}
			if tc.failToken != "" && (len(as) != 1 || as[0].kind != "failure" || as[0].token != tc.failToken || as[0].error != def.ErrorInvalidInput) {
				t.Errorf("answers = %+v, want one %s failure for %s", as, def.ErrorInvalidInput, tc.failToken)
			}
			if !tc.dlq {
				if len(q.dlq) != 0 {
					t.Errorf("sent to a DLQ that is not configured: %+v", q.dlq)
				}
				return
			}
			if len(q.dlq) != 1 {
				t.Fatalf("DLQ got %d messages, want 1", len(q.dlq))
			}
			m := q.dlq[0]
			if *m.QueueUrl != "q-dlq" || *m.MessageBody != tc.body || !strings.Contains(*m.MessageAttributes[busqs.AttrReason].StringValue, tc.reason) {
				t.Errorf("DLQ message = %s %q reason %q, want the body and a reason containing %q", *m.QueueUrl, *m.MessageBody, *m.MessageAttributes[busqs.AttrReason].StringValue, tc.reason)
			}
		})
	}
}

// TestWorkerMalformedDLQDown: when the DLQ send fails, the message stays
// (the queue's redrive policy is the backstop) instead of being lost.
func TestWorkerMalformedDLQDown(t *testing.T) {
	t.Parallel()
	q, tasks := newFakeQueue(), &fakeTasks{}
	q.sendErr = errors.New("dlq down")
	inv := invokerFunc(func(context.Context, saga.Task) (json.RawMessage, error) { return nil, nil })
	r := q.put("garbage")
	stop := runWorker(t, WorkerConfig{SFN: tasks, SQS: q, QueueURL: "q", DLQURL: "d", Invoker: inv, Concurrency: 1})
	time.Sleep(100 * time.Millisecond)
	stop()
	if q.isDeleted(r) {
		t.Error("deleted a malformed message that could not be dead-lettered")
	}
}

// TestWorkerHeartbeats: a task with heartbeatSeconds 3 is heartbeaten every
// second while it runs, and its message's visibility is renewed.
func TestWorkerHeartbeats(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 2.5s")
	}
	t.Parallel()
	q, tasks := newFakeQueue(), &fakeTasks{}
	inv := invokerFunc(func(ctx context.Context, _ saga.Task) (json.RawMessage, error) {
		time.Sleep(2500 * time.Millisecond)
		return json.RawMessage(`{}`), nil
	})
	r := q.put(taskBody("tok", func(m map[string]any) { m["heartbeatSeconds"] = 3 }))
	stop := runWorker(t, WorkerConfig{SFN: tasks, SQS: q, QueueURL: "q", Invoker: inv, Concurrency: 1, Visibility: 1500 * time.Millisecond})
	eventually(t, "deleted", func() bool { return q.isDeleted(r) })
	stop()
	if n := tasks.beats.Load(); n < 2 || n > 3 {
		t.Errorf("heartbeats = %d, want 2 (every second for 2.5s)", n)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.vis[r]) < 3 {
		t.Errorf("visibility renewals = %v, want every 0.5s", q.vis[r])
	}
	for _, v := range q.vis[r] {
		if v != 2 {
			t.Errorf("renewed visibility to %ds, want 2 (1.5s rounded up)", v)
		}
	}
	// No heartbeats for a task that asks for none.
	q2, tasks2 := newFakeQueue(), &fakeTasks{}
	q2.put(taskBody("tok", nil))
	inv2 := invokerFunc(func(context.Context, saga.Task) (json.RawMessage, error) {
		time.Sleep(1200 * time.Millisecond)
		return json.RawMessage(`{}`), nil
	})
	stop2 := runWorker(t, WorkerConfig{SFN: tasks2, SQS: q2, QueueURL: "q", Invoker: inv2, Concurrency: 1})
	eventually(t, "answered", func() bool { return len(tasks2.list()) == 1 })
	stop2()
	if n := tasks2.beats.Load(); n != 0 {
		t.Errorf("heartbeats = %d for a task without heartbeatSeconds", n)
	}
}

// TestWorkerShutdown: a graceful stop lets a running task answer; past
// ShutdownTimeout the task is cancelled and its message released
// unanswered, whatever error the cancelled Invoker returns.
func TestWorkerShutdown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		run     time.Duration
		timeout time.Duration
		answer  bool
	}{
		{"finishes within the timeout", 100 * time.Millisecond, 5 * time.Second, true},
		{"cut short", 10 * time.Second, 50 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q, tasks := newFakeQueue(), &fakeTasks{}
			started := make(chan struct{})
			inv := invokerFunc(func(ctx context.Context, _ saga.Task) (json.RawMessage, error) {
				close(started)
				select {
				case <-time.After(tc.run):
					return json.RawMessage(`{}`), nil
				case <-ctx.Done():
					// An Invoker may well map cancellation to a step error.
					return nil, &saga.StepError{Name: def.ErrorTimeout, Cause: ctx.Err().Error()}
				}
			})
			r := q.put(taskBody("tok", nil))
			stop := runWorker(t, WorkerConfig{SFN: tasks, SQS: q, QueueURL: "q", Invoker: inv, Concurrency: 1, ShutdownTimeout: tc.timeout})
			<-started
			stop()
			as := tasks.list()
			if tc.answer {
				if len(as) != 1 || as[0].kind != "success" || !q.isDeleted(r) {
					t.Errorf("answers %+v, deleted %v; want answered and deleted", as, q.isDeleted(r))
				}
				return
			}
			q.mu.Lock()
			defer q.mu.Unlock()
			if len(as) != 0 || len(q.deleted) != 0 || len(q.vis[r]) == 0 || q.vis[r][len(q.vis[r])-1] != 0 {
				t.Errorf("answers %+v, deleted %v, visibility %v; want unanswered and released", as, q.deleted, q.vis[r])
			}
		})
	}
}

// TestWorkerConcurrency: Concurrency tasks run at the same time.
func TestWorkerConcurrency(t *testing.T) {
	t.Parallel()
	q, tasks := newFakeQueue(), &fakeTasks{}
	var running, peak atomic.Int32
	inv := invokerFunc(func(context.Context, saga.Task) (json.RawMessage, error) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
		running.Add(-1)
		return json.RawMessage(`{}`), nil
	})
	for i := range 6 {
		q.put(taskBody(fmt.Sprint("tok", i), nil))
	}
	stop := runWorker(t, WorkerConfig{SFN: tasks, SQS: q, QueueURL: "q", Invoker: inv, Concurrency: 3})
	eventually(t, "all answered", func() bool { return len(tasks.list()) == 6 })
	stop()
	if p := peak.Load(); p != 3 {
		t.Errorf("peak concurrency = %d, want 3", p)
	}
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdefghij", 10, "abcdefghij"},
		{"abcdefghijk", 10, "abcdefg…"},
		{"ééééé", 7, "éé…"}, // 10 bytes; the cut at 4 is a rune start
		{"ééééé", 8, "éé…"}, // the cut at 5 is mid-rune: back to 4
	} {
		got := truncate(tc.in, tc.n)
		if got != tc.want || len(got) > tc.n {
			t.Errorf("truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestBeatInterval(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		hb   int
		want time.Duration
	}{{1, 333333333}, {2, 666666666}, {3, time.Second}, {30, 10 * time.Second}} {
		if got := beatInterval(tc.hb); got != tc.want {
			t.Errorf("beatInterval(%d) = %s, want %s", tc.hb, got, tc.want)
		}
	}
}

// TestWorkerGoexitStopsKeepAlive: a task goroutine killed inside Invoke (a
// crash test's runtime.Goexit) stops renewing its message's visibility, so
// the message is redelivered.
func TestWorkerGoexitStopsKeepAlive(t *testing.T) {
	t.Parallel()
	q, tasks := newFakeQueue(), &fakeTasks{}
	exited := make(chan struct{})
	inv := invokerFunc(func(context.Context, saga.Task) (json.RawMessage, error) {
		time.Sleep(700 * time.Millisecond) // a few renewals
		close(exited)
		runtime.Goexit()
		return nil, nil
	})
	r := q.put(taskBody("tok", func(m map[string]any) { m["heartbeatSeconds"] = 1 }))
	stop := runWorker(t, WorkerConfig{SFN: tasks, SQS: q, QueueURL: "q", Invoker: inv, Concurrency: 1, Visibility: 600 * time.Millisecond})
	<-exited
	time.Sleep(50 * time.Millisecond)
	q.mu.Lock()
	renewals := len(q.vis[r])
	q.mu.Unlock()
	beats := tasks.beats.Load()
	time.Sleep(700 * time.Millisecond)
	stop()
	q.mu.Lock()
	defer q.mu.Unlock()
	if renewals == 0 || beats == 0 {
		t.Fatalf("renewals %d, heartbeats %d while the task ran; want some", renewals, beats)
	}
	if len(q.vis[r]) != renewals || tasks.beats.Load() != beats {
		t.Errorf("after the goroutine died: renewals %d → %d, heartbeats %d → %d; want no more", renewals, len(q.vis[r]), beats, tasks.beats.Load())
	}
	if len(tasks.list()) != 0 || len(q.deleted) != 0 {
		t.Errorf("a killed task was answered or deleted")
	}
}
