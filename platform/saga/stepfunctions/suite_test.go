package stepfunctions

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/agentbus/agentbus/platform/saga"
	"github.com/agentbus/agentbus/platform/saga/sagatest"
	def "github.com/agentbus/agentbus/saga"
)

// Timings of the suite's stack on moto. The saga queue's visibility timeout
// is short so that a crashed worker's task comes back well within the crash
// sagas' step timeout (sagatest.CrashTimeoutSeconds).
const (
	suiteVisibility = 2 * time.Second
	suiteWait       = time.Second
)

// TestConformance runs the saga suite against Step Functions on moto: each
// case provisions its own queue and state machines (a fresh prefix), runs a
// Worker over the suite's reference Ledger, and its crash restarts the
// worker (the old one dies without answering; its task is redelivered after
// the visibility timeout).
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Step Functions executions on moto")
	}
	sagatest.Run(t, func(t *testing.T, tb *sagatest.Toolbox, defs []def.Definition) sagatest.Harness {
		skipMotoDifferences(t)
		sf, sq := motoClients(t)
		prov, err := Provision(context.Background(), ProvisionConfig{SFN: sf, SQS: sq, Prefix: uniquePrefix(t), RoleARN: testRoleARN,
			Definitions: defs, Visibility: suiteVisibility, MaxReceiveCount: 20})
		if err != nil {
			t.Fatal(err)
		}
		inv := sagatest.NewLedger(tb.Registry(), tb.Hook)
		cfg := WorkerConfig{SFN: sf, SQS: sq, QueueURL: prov.Queue.URL, DLQURL: prov.Queue.DLQURL, Invoker: inv,
			Concurrency: 2, Wait: suiteWait, Visibility: suiteVisibility, MinBackoff: 500 * time.Millisecond, MaxBackoff: 2 * time.Second,
			ShutdownTimeout: time.Millisecond, Logger: testLogger()}
		workers := &workerSet{t: t, cfg: cfg}
		workers.start()
		t.Cleanup(workers.stop)
		r, err := NewRunner(RunnerConfig{API: sf, StateMachines: prov.StateMachines, Definitions: sagatest.NewLookup(defs...),
			PollInterval: 100 * time.Millisecond, MaxPollInterval: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		// SF1: the cases that check a failed outcome run here too, without
		// the tool's message text, while moto still drops causes.
		return sagatest.Harness{Runner: r, Invoker: inv, CausesDropped: causeDropped(t), RetriesReplayFirstOutcome: retryReusesToken(t), Restart: func() saga.Runner {
			// A crash: the old worker stops at once (ShutdownTimeout 1ms
			// cancels what it still runs, unanswered) and a new one takes
			// over the same queue; the runner is stateless.
			workers.stop()
			workers.start()
			return r
		}}
	})
}

// workerSet runs one Worker at a time and replaces it on a crash.
type workerSet struct {
	t    *testing.T
	cfg  WorkerConfig
	mu   sync.Mutex
	halt func()
}

// start starts a new worker.
func (s *workerSet) start() {
	w, err := NewWorker(s.cfg)
	if err != nil {
		s.t.Error(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	s.mu.Lock()
	s.halt = func() { cancel(); <-done }
	s.mu.Unlock()
}

// stop stops the running worker, if any, and waits for it.
func (s *workerSet) stop() {
	s.mu.Lock()
	halt := s.halt
	s.halt = nil
	s.mu.Unlock()
	if halt != nil {
		halt()
	}
}

// Suite cases that cannot pass on moto 5.2.5 because of a difference from
// AWS that a probe shows is present (docs/moto-differences.md SF2; SF1 is
// handled by Harness.CausesDropped).
// Each is skipped only while its probe still sees the difference, so a
// fixed moto runs them again.
var motoBlocked = map[string]struct {
	difference string
	present    func(t *testing.T) bool
}{
	// They need a retried task to be able to succeed.
	"TestConformance/TransientFailureRetried": {"SF2: moto retries a waitForTaskToken task with the same token and fails the retry with the first attempt's outcome", retryReusesToken},
	"TestConformance/CompensationRetried":     {"SF2: moto retries a waitForTaskToken task with the same token and fails the retry with the first attempt's outcome", retryReusesToken},
}

func skipMotoDifferences(t *testing.T) {
	t.Helper()
	name := t.Name()
	for prefix, b := range motoBlocked {
		if name == prefix || len(name) > len(prefix) && name[:len(prefix)+1] == prefix+"/" {
			if b.present(t) {
				t.Skipf("moto 5.2.5 cannot run this case: %s (probed just now; see docs/moto-differences.md)", b.difference)
			}
		}
	}
}

// probes caches each probe's answer for the test binary.
var probes struct {
	sync.Mutex
	done map[string]bool
}

func probe(t *testing.T, name string, run func(t *testing.T) bool) bool {
	t.Helper()
	probes.Lock()
	defer probes.Unlock()
	if v, ok := probes.done[name]; ok {
		return v
	}
	v := run(t)
	if probes.done == nil {
		probes.done = map[string]bool{}
	}
	probes.done[name] = v
	return v
}

// probeMachine provisions a one-step saga whose step retries once on
// agentbus.ToolError and starts an execution of it; it returns the
// queue, the execution ARN and a function receiving the next task body.
func probeMachine(t *testing.T) (sf *sfn.Client, execARN string, next func() (string, map[string]any)) {
	t.Helper()
	sf, sq := motoClients(t)
	ctx := context.Background()
	d, err := def.Parse([]byte(`{"name":"probe","steps":[{"name":"a","action":{"tool":"t"},
		"retry":{"maxAttempts":1,"intervalSeconds":1,"backoffRate":1},"timeoutSeconds":20}]}`))
	if err != nil {
		t.Fatal(err)
	}
	prov, err := Provision(ctx, ProvisionConfig{SFN: sf, SQS: sq, Prefix: uniquePrefix(t), RoleARN: testRoleARN, Definitions: []def.Definition{d}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := sf.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(prov.StateMachines["probe"]), Name: aws.String(uniquePrefix(t)),
		Input: aws.String(`{"session":"s","saga":"probe","input":{},"steps":{}}`)})
	if err != nil {
		t.Fatal(err)
	}
	next = func() (string, map[string]any) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			r, err := sq.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(prov.Queue.URL), WaitTimeSeconds: 1, MaxNumberOfMessages: 1})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range r.Messages {
				_, _ = sq.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(prov.Queue.URL), ReceiptHandle: m.ReceiptHandle})
				var body map[string]any
				if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &body); err != nil {
					t.Fatal(err)
				}
				tok, _ := body["taskToken"].(string)
				return tok, body
			}
		}
		t.Fatal("probe: no task message")
		return "", nil
	}
	return sf, aws.ToString(out.ExecutionArn), next
}

func waitEnd(t *testing.T, sf *sfn.Client, arn string) *sfn.DescribeExecutionOutput {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		out, err := sf.DescribeExecution(context.Background(), &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
		if err != nil {
			t.Fatal(err)
		}
		if out.Status != types.ExecutionStatusRunning {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("probe: the execution did not end")
	return nil
}

// causeDropped: a task failed with a cause ends the execution with a report
// whose cause is empty.
func causeDropped(t *testing.T) bool {
	return probe(t, "cause", func(t *testing.T) bool {
		sf, arn, next := probeMachine(t)
		ctx := context.Background()
		for range 2 { // the attempt and its retry
			tok, _ := next()
			_, err := sf.SendTaskFailure(ctx, &sfn.SendTaskFailureInput{TaskToken: aws.String(tok), Error: aws.String(def.ErrorTool), Cause: aws.String("probe cause")})
			if err != nil && !isErr[*types.TaskDoesNotExist](err) && !isErr[*types.InvalidToken](err) {
				t.Fatal(err)
			}
		}
		var rep report
		if err := json.Unmarshal([]byte(aws.ToString(waitEnd(t, sf, arn).Cause)), &rep); err != nil {
			t.Fatal(err)
		}
		t.Logf("probe: the cause sent was %q, the report has %q", "probe cause", rep.Cause)
		return rep.Cause != "probe cause"
	})
}

// retryReusesToken: the retry of a failed task carries the first attempt's
// token, and answering it with success still fails the execution.
func retryReusesToken(t *testing.T) bool {
	return probe(t, "retry", func(t *testing.T) bool {
		sf, arn, next := probeMachine(t)
		ctx := context.Background()
		tok0, _ := next()
		if _, err := sf.SendTaskFailure(ctx, &sfn.SendTaskFailureInput{TaskToken: aws.String(tok0), Error: aws.String(def.ErrorTool), Cause: aws.String("x")}); err != nil {
			t.Fatal(err)
		}
		tok1, body := next()
		if _, err := sf.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String(tok1), Output: aws.String(`{}`)}); err != nil &&
			!errors.As(err, new(*types.InvalidToken)) && !isErr[*types.TaskDoesNotExist](err) {
			t.Fatal(err)
		}
		end := waitEnd(t, sf, arn)
		t.Logf("probe: retry attempt %v, same token %v, execution %s", body["attempt"], tok0 == tok1, end.Status)
		return tok0 == tok1 || end.Status != types.ExecutionStatusSucceeded
	})
}
