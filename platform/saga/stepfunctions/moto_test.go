package stepfunctions

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/agentbus/agentbus/internal/testenv"
	"github.com/agentbus/agentbus/platform/saga"
	def "github.com/agentbus/agentbus/saga"
)

// testRoleARN is a well-formed role ARN: moto checks the form only.
const testRoleARN = "arn:aws:iam::123456789012:role/agentbus-saga-test"

var motoOnce struct {
	sync.Mutex
	url string
}

// motoClients returns Step Functions and SQS clients on the local stand-in,
// with state machine execution switched on.
func motoClients(t testing.TB) (*sfn.Client, *sqs.Client) {
	t.Helper()
	ep := func() string {
		// Deferred: AWSEndpoint skips the test (runtime.Goexit) when no
		// stand-in runs outside CI, and the lock must not stay held.
		motoOnce.Lock()
		defer motoOnce.Unlock()
		if motoOnce.url == "" {
			ep := testenv.AWSEndpoint(t)
			testenv.MotoStepFunctions(t, ep)
			motoOnce.url = ep
		}
		return motoOnce.url
	}()
	cfg := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(ep),
	}
	return sfn.NewFromConfig(cfg), sqs.NewFromConfig(cfg)
}

func uniquePrefix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b)
}

func testLogger() *slog.Logger {
	if os.Getenv("SAGA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// motoSaga is one provisioned saga stack on moto with a running worker.
type motoSaga struct {
	runner *Runner
	prov   Provisioned
	sfn    *sfn.Client
	sqs    *sqs.Client
}

// startMotoSaga provisions defs under a fresh prefix, starts a worker with
// inv and returns the runner.
func startMotoSaga(t testing.TB, inv saga.Invoker, defs ...def.Definition) motoSaga {
	t.Helper()
	sf, sq := motoClients(t)
	ctx := context.Background()
	prov, err := Provision(ctx, ProvisionConfig{SFN: sf, SQS: sq, Prefix: uniquePrefix(t), RoleARN: testRoleARN,
		Definitions: defs, Visibility: 2 * time.Second, MaxReceiveCount: 10})
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWorker(WorkerConfig{SFN: sf, SQS: sq, QueueURL: prov.Queue.URL, DLQURL: prov.Queue.DLQURL, Invoker: inv,
		Wait: time.Second, Visibility: 2 * time.Second, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(wctx) }()
	t.Cleanup(func() { stop(); <-done })
	r, err := NewRunner(RunnerConfig{API: sf, StateMachines: prov.StateMachines, PollInterval: 100 * time.Millisecond, MaxPollInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return motoSaga{runner: r, prov: prov, sfn: sf, sqs: sq}
}

// memoInvoker is a trivial Invoker: tools are functions, and an outcome is
// stored by Task.Key so a redelivered task returns it without running the
// tool again (what the tool-gateway's ledger does).
type memoInvoker struct {
	mu    sync.Mutex
	tools map[string]func(in map[string]any, attempt int) (any, error)
	done  map[string]memoResult
	calls []string // "<tool>#<attempt>", in order
}

type memoResult struct {
	out json.RawMessage
	err error
}

func (m *memoInvoker) Invoke(_ context.Context, t saga.Task) (json.RawMessage, error) {
	m.mu.Lock()
	if r, ok := m.done[t.Key()]; ok {
		m.mu.Unlock()
		return r.out, r.err
	}
	tool := m.tools[t.Tool]
	m.calls = append(m.calls, fmt.Sprintf("%s#%d", t.Tool, t.Attempt))
	m.mu.Unlock()
	var in map[string]any
	if err := json.Unmarshal(t.Input, &in); err != nil {
		return nil, &saga.StepError{Name: def.ErrorInvalidInput, Cause: err.Error()}
	}
	var r memoResult
	if tool == nil {
		r.err = &saga.StepError{Name: def.ErrorInvalidInput, Cause: "no tool " + t.Tool}
	} else if v, err := tool(in, t.Attempt); err != nil {
		r.err = &saga.StepError{Name: def.ErrorTool, Cause: err.Error()}
	} else {
		r.out, _ = json.Marshal(v)
	}
	m.mu.Lock()
	m.done[t.Key()] = r
	m.mu.Unlock()
	return r.out, r.err
}

func (m *memoInvoker) log() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.calls)
}

// tripDefinition: reserve flight → reserve hotel (reads the flight) →
// charge card; each undoable; retry once after 1 s on a tool error.
func tripDefinition(t testing.TB, name string) def.Definition {
	t.Helper()
	d, err := def.Parse([]byte(`{
	  "name": "` + name + `",
	  "description": "book a trip",
	  "steps": [
	    {"name": "flight", "action": {"tool": "reserve_flight", "input": {"to": "$.input.to"}},
	     "compensation": {"tool": "cancel_flight", "input": {"id": "$.steps.flight.id"}},
	     "retry": {"maxAttempts": 1, "intervalSeconds": 1, "backoffRate": 1}, "timeoutSeconds": 30},
	    {"name": "hotel", "action": {"tool": "reserve_hotel", "input": {"flight": "$.steps.flight.id", "city": "$.input.to"}},
	     "compensation": {"tool": "cancel_hotel", "input": {"id": "$.steps.hotel.id"}},
	     "retry": {"maxAttempts": 1, "intervalSeconds": 1, "backoffRate": 1}, "timeoutSeconds": 30},
	    {"name": "charge", "action": {"tool": "charge_card", "input": {"amount": "$.input.amount", "hotel": "$.steps.hotel.id"}},
	     "retry": {"maxAttempts": 1, "intervalSeconds": 1, "backoffRate": 1}, "timeoutSeconds": 30}
	  ],
	  "output": {"flight": "$.steps.flight.id", "hotel": "$.steps.hotel.id", "paid": "$.steps.charge.paid"}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// tripTools are the trip's tools; failing names the actions that always
// fail (charge_card when chargeFails).
func tripTools(chargeFails, cancelHotelFails bool, failing ...string) *memoInvoker {
	fails := func(tool string) bool { return slices.Contains(failing, tool) }
	return &memoInvoker{done: map[string]memoResult{}, tools: map[string]func(map[string]any, int) (any, error){
		"reserve_flight": func(in map[string]any, _ int) (any, error) {
			if fails("reserve_flight") {
				return nil, errors.New("no seats")
			}
			return map[string]any{"id": "F-" + in["to"].(string)}, nil
		},
		"reserve_hotel": func(in map[string]any, _ int) (any, error) {
			if fails("reserve_hotel") {
				return nil, errors.New("no rooms")
			}
			return map[string]any{"id": "H-" + in["city"].(string) + "-" + in["flight"].(string)}, nil
		},
		"charge_card": func(in map[string]any, _ int) (any, error) {
			if chargeFails {
				return nil, errors.New("card declined")
			}
			return map[string]any{"paid": in["amount"]}, nil
		},
		"cancel_flight": func(in map[string]any, _ int) (any, error) { return map[string]any{"cancelled": in["id"]}, nil },
		"cancel_hotel": func(in map[string]any, _ int) (any, error) {
			if cancelHotelFails {
				return nil, errors.New("hotel system down")
			}
			return map[string]any{"cancelled": in["id"]}, nil
		},
	}}
}

// TestMotoSaga runs the trip saga on moto's Step Functions with a real
// worker: success, compensation, failed compensation.
func TestMotoSaga(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Step Functions executions on moto")
	}
	t.Parallel()
	cases := []struct {
		name             string
		chargeFails      bool
		cancelHotelFails bool
		failing          []string
		want             saga.Outcome
		wantCalls        []string
	}{
		// A failure at step k undoes k-1 … 1 in reverse order (the suite's
		// FailAtEachStep, which moto cannot run: see suite_test.go).
		{"fails at the first step", false, false, []string{"reserve_flight"},
			saga.Outcome{Status: saga.StatusCompensated, FailedStep: "flight", Error: "agentbus.ToolError: no seats"},
			[]string{"reserve_flight#0", "reserve_flight#1"}},
		{"fails at the second step", false, false, []string{"reserve_hotel"},
			saga.Outcome{Status: saga.StatusCompensated, FailedStep: "hotel", Error: "agentbus.ToolError: no rooms", Compensated: []string{"flight"}},
			[]string{"reserve_flight#0", "reserve_hotel#0", "reserve_hotel#1", "cancel_flight#0"}},
		{"succeeds", false, false, nil,
			saga.Outcome{Status: saga.StatusSucceeded, Output: json.RawMessage(`{"flight":"F-Oslo","hotel":"H-Oslo-F-Oslo","paid":120}`)},
			[]string{"reserve_flight#0", "reserve_hotel#0", "charge_card#0"}},
		{"compensates", true, false, nil,
			saga.Outcome{Status: saga.StatusCompensated, FailedStep: "charge", Error: "agentbus.ToolError: card declined", Compensated: []string{"hotel", "flight"}},
			[]string{"reserve_flight#0", "reserve_hotel#0", "charge_card#0", "charge_card#1", "cancel_hotel#0", "cancel_flight#0"}},
		{"compensation fails", true, true, nil,
			saga.Outcome{Status: saga.StatusCompensationFailed, FailedStep: "charge", Error: "agentbus.ToolError: card declined",
				Compensated: []string{"flight"}, Failures: []string{"hotel: agentbus.ToolError: hotel system down"}},
			[]string{"reserve_flight#0", "reserve_hotel#0", "charge_card#0", "charge_card#1", "cancel_hotel#0", "cancel_hotel#1", "cancel_flight#0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inv := tripTools(tc.chargeFails, tc.cancelHotelFails, tc.failing...)
			ms := startMotoSaga(t, inv, tripDefinition(t, "trip"))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			name := saga.ExecutionName("trip", "sess-1", 1, "call-1")
			req := saga.StartRequest{Saga: "trip", Name: name, Session: "sess-1", Input: json.RawMessage(`{"to":"Oslo","amount":120}`)}
			begin := time.Now()
			started, err := ms.runner.Start(ctx, req)
			if err != nil || !started {
				t.Fatalf("Start = %v, %v", started, err)
			}
			if started, err := ms.runner.Start(ctx, req); err != nil || started {
				t.Errorf("second Start = %v, %v; want not started", started, err)
			}
			got, err := ms.runner.Wait(ctx, name)
			if err != nil {
				t.Fatalf("Wait: %v (calls %v)", err, inv.log())
			}
			t.Logf("%s: execution took %s", tc.name, time.Since(begin).Round(time.Millisecond))
			tc.want.Execution, tc.want.Saga = name, "trip"
			if !outcomeEqual(got, tc.want) && outcomeEqual(got, withoutCauses(tc.want)) {
				// moto drops SendTaskFailure's cause (docs/moto-differences.md).
				t.Logf("the outcome lacks the causes the worker sent (moto drops them)")
				tc.want = withoutCauses(tc.want)
			}
			if !outcomeEqual(got, tc.want) {
				t.Errorf("outcome = %+v\nwant      %+v", got, tc.want)
			}
			if calls := inv.log(); !slices.Equal(calls, tc.wantCalls) {
				t.Errorf("calls = %v\nwant    %v", calls, tc.wantCalls)
			}
			// Ended: starting the name again still starts nothing, and a
			// different input is refused.
			if started, err := ms.runner.Start(ctx, req); err != nil || started {
				t.Errorf("Start after the end = %v, %v; want not started", started, err)
			}
			other := req
			other.Input = json.RawMessage(`{"to":"Rome","amount":1}`)
			if _, err := ms.runner.Start(ctx, other); !errors.Is(err, saga.ErrInputMismatch) {
				t.Errorf("Start with another input = %v, want ErrInputMismatch", err)
			}
		})
	}
}

// TestMotoUnknown: unknown saga and unknown execution on moto.
func TestMotoUnknown(t *testing.T) {
	if testing.Short() {
		t.Skip("uses moto")
	}
	t.Parallel()
	ms := startMotoSaga(t, tripTools(false, false), tripDefinition(t, "trip"))
	ctx := context.Background()
	if _, err := ms.runner.Start(ctx, saga.StartRequest{Saga: "nope", Name: "x", Input: json.RawMessage(`{}`)}); !errors.Is(err, saga.ErrUnknownSaga) {
		t.Errorf("Start of an unknown saga = %v, want ErrUnknownSaga", err)
	}
	if _, err := ms.runner.Describe(ctx, "trip-doesnotexist"); !errors.Is(err, saga.ErrUnknownExecution) {
		t.Errorf("Describe of an unknown execution = %v, want ErrUnknownExecution", err)
	}
	// A state machine deleted behind the runner's back is an unknown saga.
	r, err := NewRunner(RunnerConfig{API: ms.sfn, StateMachines: map[string]string{"gone": strings.Replace(ms.prov.StateMachines["trip"], "-saga-trip", "-saga-gone", 1)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Start(ctx, saga.StartRequest{Saga: "gone", Name: "x", Input: json.RawMessage(`{}`)}); !errors.Is(err, saga.ErrUnknownSaga) {
		t.Errorf("Start on a missing state machine = %v, want ErrUnknownSaga", err)
	}
}

// TestMotoProvisionConverges: provisioning again with a changed definition
// updates the state machine (moto's CreateStateMachine alone would keep the
// old one).
func TestMotoProvisionConverges(t *testing.T) {
	if testing.Short() {
		t.Skip("uses moto")
	}
	t.Parallel()
	sf, sq := motoClients(t)
	ctx := context.Background()
	cfg := ProvisionConfig{SFN: sf, SQS: sq, Prefix: uniquePrefix(t), RoleARN: testRoleARN, Definitions: []def.Definition{tripDefinition(t, "trip")}}
	first, err := Provision(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	changed := tripDefinition(t, "trip")
	changed.Steps = changed.Steps[:2]
	changed.Output = nil
	cfg.Definitions = []def.Definition{changed}
	second, err := Provision(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if first.StateMachines["trip"] != second.StateMachines["trip"] || first.Queue.URL != second.Queue.URL {
		t.Errorf("re-provisioning made new resources: %+v then %+v", first, second)
	}
	sm, err := sf.DescribeStateMachine(ctx, &sfn.DescribeStateMachineInput{StateMachineArn: aws.String(second.StateMachines["trip"])})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := def.ASL(changed, second.Queue.URL)
	if aws.ToString(sm.Definition) != string(want) {
		t.Errorf("state machine definition was not updated:\n%s", aws.ToString(sm.Definition))
	}
	if _, err := Provision(ctx, ProvisionConfig{SFN: sf, SQS: sq, Prefix: cfg.Prefix}); err == nil {
		t.Error("Provision without a role ARN succeeded")
	}
}

// withoutCauses is o as moto reports it: moto's SendTaskFailure ignores the
// cause, so "<error>: <cause>" ends at "<error>: " and "<step>: <error>:
// <cause>" at "<step>: <error>: ".
func withoutCauses(o saga.Outcome) saga.Outcome {
	// cut keeps s up to and including its n-th ": ".
	cut := func(s string, n int) string {
		at := 0
		for range n {
			i := strings.Index(s[at:], ": ")
			if i < 0 {
				return s
			}
			at += i + 2
		}
		return s[:at]
	}
	if o.Error != "" {
		o.Error = cut(o.Error, 1)
	}
	o.Failures = slices.Clone(o.Failures)
	for i, f := range o.Failures {
		o.Failures[i] = cut(f, 2)
	}
	return o
}

// BenchmarkMotoSaga measures one saga execution on moto end to end, from
// StartExecution to the outcome through the worker: the 3-step trip
// succeeding, and failing at its last step (one retry after 1 s, then two
// compensations). Run with -benchtime=Nx: each op is a real execution.
func BenchmarkMotoSaga(b *testing.B) {
	for _, bc := range []struct {
		name   string
		fails  bool
		status saga.Status
	}{{"succeeds", false, saga.StatusSucceeded}, {"compensates", true, saga.StatusCompensated}} {
		b.Run(bc.name, func(b *testing.B) {
			ms := startMotoSaga(b, tripTools(bc.fails, false), tripDefinition(b, "trip"))
			ctx := context.Background()
			i := 0
			for b.Loop() {
				i++
				name := fmt.Sprintf("bench-%s-%d", uniquePrefix(b), i)
				if _, err := ms.runner.Start(ctx, saga.StartRequest{Saga: "trip", Name: name, Session: "s", Input: json.RawMessage(`{"to":"Oslo","amount":1}`)}); err != nil {
					b.Fatal(err)
				}
				o, err := ms.runner.Wait(ctx, name)
				if err != nil || o.Status != bc.status {
					b.Fatalf("outcome %+v, %v", o, err)
				}
			}
		})
	}
}
