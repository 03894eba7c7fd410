package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/internal/testenv"
	"github.com/agentbus/agentbus/platform/bus"
	psaga "github.com/agentbus/agentbus/platform/saga"
	"github.com/agentbus/agentbus/platform/saga/sagatest"
	"github.com/agentbus/agentbus/platform/saga/stepfunctions"
	"github.com/agentbus/agentbus/platform/state/dynamodb"
	"github.com/agentbus/agentbus/saga"
	"github.com/agentbus/agentbus/services/toolgateway"
	"github.com/agentbus/agentbus/tools"
)

func TestServeSagaSettings(t *testing.T) {
	t.Parallel()
	base := map[string]string{
		"AGENTBUS_BUS_NAME":  "agentbus",
		"AGENTBUS_QUEUE_URL": "http://127.0.0.1:5000/123456789012/agentbus-toolgateway",
		"AGENTBUS_DLQ_URL":   "http://127.0.0.1:5000/123456789012/agentbus-toolgateway-dlq",
		"AGENTBUS_TABLE":     "agentbus-state",
		"AGENTBUS_BUCKET":    "agentbus-blobs",
	}
	const arn = "arn:aws:states:us-east-1:123456789012:stateMachine:agentbus-saga-book_trip"
	sagas := map[string]string{
		"AGENTBUS_SAGA_QUEUE_URL":      "http://127.0.0.1:5000/123456789012/agentbus-saga",
		"AGENTBUS_SAGA_STATE_MACHINES": "book_trip=" + arn + ", refund = " + arn,
		"AGENTBUS_SAGAS_DIR":           "/etc/agentbus/sagas",
	}
	env := func(service string, edit func(m map[string]string)) (string, map[string]string) {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range sagas {
			m[k] = v
		}
		edit(m)
		return service, m
	}
	tests := []struct {
		name    string
		service string
		env     map[string]string
		wantErr []string
	}{}
	add := func(name string, wantErr []string, service string, m map[string]string) {
		tests = append(tests, struct {
			name    string
			service string
			env     map[string]string
			wantErr []string
		}{name, service, m, wantErr})
	}
	s, m := env("toolgateway", func(map[string]string) {})
	add("complete", nil, s, m)
	s, m = env("toolgateway", func(m map[string]string) {
		m["AGENTBUS_SAGA_DLQ_URL"] = "http://127.0.0.1:5000/123456789012/agentbus-saga-dlq"
	})
	add("with a DLQ", nil, s, m)
	s, m = env("toolgateway", func(m map[string]string) { delete(m, "AGENTBUS_SAGAS_DIR") })
	add("without definitions", []string{"AGENTBUS_SAGAS_DIR (--sagas-dir) is missing"}, s, m)
	s, m = env("toolgateway", func(m map[string]string) { delete(m, "AGENTBUS_SAGA_QUEUE_URL") })
	add("without the queue", []string{"AGENTBUS_SAGA_QUEUE_URL (--saga-queue-url) is missing"}, s, m)
	s, m = env("toolgateway", func(m map[string]string) { m["AGENTBUS_SAGA_STATE_MACHINES"] = "book_trip" })
	add("machine without arn", []string{"AGENTBUS_SAGA_STATE_MACHINES", `"book_trip": want name=arn`}, s, m)
	s, m = env("toolgateway", func(m map[string]string) { m["AGENTBUS_SAGA_STATE_MACHINES"] = "a=arn:aws:sqs:x" })
	add("not a state machine", []string{`"a=arn:aws:sqs:x"`}, s, m)
	s, m = env("toolgateway", func(m map[string]string) { m["AGENTBUS_SAGA_STATE_MACHINES"] = "a=" + arn + ",a=" + arn })
	add("one saga twice", []string{`saga "a" given twice`}, s, m)
	s, m = env("toolgateway", func(m map[string]string) { m["AGENTBUS_SAGA_QUEUE_URL"] = "agentbus-saga" })
	add("bad queue url", []string{"AGENTBUS_SAGA_QUEUE_URL (--saga-queue-url) is \"agentbus-saga\""}, s, m)
	s, m = env("executor", func(map[string]string) {})
	add("not the tool-gateway", []string{"AGENTBUS_SAGA_QUEUE_URL (--saga-queue-url) is set: only serve toolgateway runs sagas"}, s, m)
	s, m = env("toolgateway", func(m map[string]string) {
		for k := range sagas {
			delete(m, k)
		}
	})
	add("no sagas", nil, s, m)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := resolveServeConfig(tt.service, nil, func(k string) string { return tt.env[k] })
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if tt.name == "no sagas" {
					if c.SagaQueueURL != "" || c.SagaStateMachines != nil {
						t.Fatalf("sagas configured: %+v", c)
					}
					return
				}
				if c.SagaQueueURL != sagas["AGENTBUS_SAGA_QUEUE_URL"] || c.SagasDir != "/etc/agentbus/sagas" ||
					len(c.SagaStateMachines) != 2 || c.SagaStateMachines["book_trip"] != arn || c.SagaStateMachines["refund"] != arn {
					t.Fatalf("config %+v", c)
				}
				return
			}
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("got %v, want an error mentioning %q", err, w)
				}
			}
		})
	}
}

// sfnSuiteTable is the one state table the Step Functions suite's cases
// share on moto (each case's sessions and executions are its own).
var sfnSuiteTable struct {
	sync.Mutex
	store *dynamodb.Store
}

// sagaTestTable returns the state table the saga tests share on moto.
func sagaTestTable(t *testing.T, awsCfg aws.Config) *dynamodb.Store {
	t.Helper()
	sfnSuiteTable.Lock()
	defer sfnSuiteTable.Unlock()
	if sfnSuiteTable.store == nil {
		st, err := dynamodb.New(awsCfg, "sagasuite-"+randHex(t)+"-state")
		if err != nil {
			t.Fatal(err)
		}
		if err := st.EnsureTable(context.Background()); err != nil {
			t.Fatal(err)
		}
		sfnSuiteTable.store = st
	}
	return sfnSuiteTable.store
}

func motoSagaClients(t *testing.T) (aws.Config, *sfn.Client, *awssqs.Client) {
	t.Helper()
	ep := testenv.AWSEndpoint(t)
	testenv.MotoStepFunctions(t, ep)
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(ep)}
	return cfg, sfn.NewFromConfig(cfg), awssqs.NewFromConfig(cfg)
}

func randHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestStepFunctionsWithLedgerConformance runs the saga suite against what
// `serve toolgateway` wires for sagas (newSFNSagas): the Step Functions
// runner and its SQS task worker on moto, with the tool-gateway's ledger
// Invoker over the DynamoDB state table (on moto). A crash restarts the
// worker; its task comes back after the queue's visibility timeout.
func TestStepFunctionsWithLedgerConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs Step Functions executions on moto")
	}
	awsCfg, sf, sq := motoSagaClients(t)
	table := sagaTestTable(t, awsCfg)

	diffs := probeMotoSagaDifferences(t, sf, sq, table)
	sagatest.Run(t, func(t *testing.T, tb *sagatest.Toolbox, defs []saga.Definition) sagatest.Harness {
		for prefix, why := range map[string]string{
			// They need a retried task to be able to succeed.
			"TransientFailureRetried": diffs.retrySameToken, "CompensationRetried": diffs.retrySameToken,
		} {
			if why != "" && strings.HasPrefix(strings.TrimPrefix(t.Name(), "TestStepFunctionsWithLedgerConformance/"), prefix) {
				t.Skipf("moto cannot run this case: %s (probed just now through the same wiring; docs/moto-differences.md)", why)
			}
		}
		const visibility = 2 * time.Second
		prov, err := stepfunctions.Provision(context.Background(), stepfunctions.ProvisionConfig{SFN: sf, SQS: sq,
			Prefix: "ss" + randHex(t), RoleARN: "arn:aws:iam::123456789012:role/agentbus-saga-test",
			Definitions: defs, Visibility: visibility, MaxReceiveCount: 20})
		if err != nil {
			t.Fatal(err)
		}
		inv, err := toolgateway.NewInvoker(toolgateway.Config{Store: table, Registry: tb.Registry(), Hook: tb.Hook,
			LeaseMargin: sagatest.DefaultLeaseMargin})
		if err != nil {
			t.Fatal(err)
		}
		newSagas := func() *sfnSagas {
			s, err := newSFNSagas(sfnSagaConfig{SFN: sf, SQS: sq, QueueURL: prov.Queue.URL, DLQURL: prov.Queue.DLQURL,
				StateMachines: prov.StateMachines, Definitions: defs, Invoker: inv, Concurrency: 2,
				Worker: func(c *stepfunctions.WorkerConfig) {
					c.Wait, c.Visibility, c.MinBackoff, c.MaxBackoff, c.ShutdownTimeout = time.Second, visibility, 500*time.Millisecond, 2*time.Second, time.Millisecond
				}})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		var (
			mu   sync.Mutex
			halt func()
		)
		startWorker := func(s *sfnSagas) {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = s.Worker.Run(ctx) }()
			mu.Lock()
			halt = func() { cancel(); <-done }
			mu.Unlock()
		}
		stopWorker := func() {
			mu.Lock()
			h := halt
			halt = nil
			mu.Unlock()
			if h != nil {
				h()
			}
		}
		s := newSagas()
		startWorker(s)
		t.Cleanup(stopWorker)
		// SF1: the cases that check a failed outcome run without the tool's
		// message text while moto drops causes.
		return sagatest.Harness{Runner: s.Runner, Invoker: inv, CausesDropped: diffs.causeDropped != "",
			RetriesReplayFirstOutcome: diffs.retrySameToken != "", Restart: func() psaga.Runner {
				// The old worker dies without answering; a new one (and a new,
				// stateless runner) takes over the same queue and ledger.
				stopWorker()
				s2 := newSagas()
				startWorker(s2)
				return s2.Runner
			}}
	})
}

// motoDifferences says which Step Functions differences of moto (see
// docs/moto-differences.md) are present: a non-empty string describes one.
type motoDifferences struct {
	// causeDropped (SF1): SendTaskFailure's cause does not reach the
	// execution's outcome.
	causeDropped string
	// retrySameToken (SF2): a retried waitForTaskToken task is sent again
	// with the same token and attempt, so it cannot succeed.
	retrySameToken string
}

// probeMotoSagaDifferences runs one-step sagas through the same wiring as
// the suite; on AWS both succeed as written, and where they do not the
// outcome shows which difference is present. SF1: a tool that always fails,
// without retry — the outcome's error carries its message. SF2: a tool that
// fails its first run and succeeds after, with one retry — the saga
// succeeds. moto's SF2 has been seen to depend on timing (on a loaded
// machine one probe succeeded and the retry cases then failed), so up to
// three SF2 probes run and any failed one counts.
func probeMotoSagaDifferences(t *testing.T, sf *sfn.Client, sq *awssqs.Client, table *dynamodb.Store) motoDifferences {
	t.Helper()
	var diffs motoDifferences
	o, _ := runProbeSaga(t, sf, sq, table, false)
	if !strings.Contains(o.Error, "probe tool fails") {
		diffs.causeDropped = fmt.Sprintf("SF1: the task failure's cause is not in the outcome's error %q", o.Error)
	}
	for range 3 {
		o, runs := runProbeSaga(t, sf, sq, table, true)
		if o.Status != psaga.StatusSucceeded {
			diffs.retrySameToken = fmt.Sprintf("SF2: a retried task could not succeed (outcome %s, the tool ran %d times)", o.Status, runs)
			break
		}
	}
	return diffs
}

// runProbeSaga runs a one-step saga whose tool fails (retry: its first run
// only, and the step is retried once) and returns its outcome and how many
// times the tool ran.
func runProbeSaga(t *testing.T, sf *sfn.Client, sq *awssqs.Client, table *dynamodb.Store, retry bool) (psaga.Outcome, int32) {
	t.Helper()
	def := `{"name":"probe","steps":[{"name":"a","action":{"tool":"flaky"},"timeoutSeconds":20}]}`
	if retry {
		def = `{"name":"probe","steps":[{"name":"a","action":{"tool":"flaky"},
		"retry":{"maxAttempts":1,"intervalSeconds":1,"backoffRate":1},"timeoutSeconds":20}]}`
	}
	d, err := saga.Parse([]byte(def))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	prov, err := stepfunctions.Provision(ctx, stepfunctions.ProvisionConfig{SFN: sf, SQS: sq, Prefix: "sp" + randHex(t),
		RoleARN: "arn:aws:iam::123456789012:role/agentbus-saga-test", Definitions: []saga.Definition{d}, Visibility: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	reg := tools.NewRegistry()
	var calls atomic.Int32
	failFirst := int32(1)
	if !retry {
		failFirst = math.MaxInt32
	}
	if err := reg.Register(flakyTool{calls: &calls, failures: failFirst}); err != nil {
		t.Fatal(err)
	}
	inv, err := toolgateway.NewInvoker(toolgateway.Config{Store: table, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSFNSagas(sfnSagaConfig{SFN: sf, SQS: sq, QueueURL: prov.Queue.URL, StateMachines: prov.StateMachines,
		Definitions: []saga.Definition{d}, Invoker: inv, Worker: func(c *stepfunctions.WorkerConfig) { c.Wait = time.Second }})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Worker.Run(wctx) }()
	defer func() { stop(); <-done }()
	name := "probe-" + randHex(t)
	if _, err := s.Runner.Start(ctx, psaga.StartRequest{Saga: "probe", Name: name, Session: "probe-" + randHex(t), Input: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	wctx2, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	o, err := s.Runner.Wait(wctx2, name)
	if err != nil {
		t.Fatal(err)
	}
	return o, calls.Load()
}

// flakyTool fails its first failures runs with a known message.
type flakyTool struct {
	calls    *atomic.Int32
	failures int32
}

func (f flakyTool) Spec() tools.Spec {
	return tools.Spec{Name: "flaky", InputSchema: json.RawMessage(`{"type":"object"}`)}
}

func (f flakyTool) Run(context.Context, tools.Call) (json.RawMessage, error) {
	if f.calls.Add(1) <= f.failures {
		return nil, errors.New("probe tool fails")
	}
	return json.RawMessage(`{}`), nil
}

// TestServeSagasOnStepFunctions sets up sagas as `serve toolgateway` does
// (startServeSagas) for the book_trip demo on moto: the saga tool is
// registered, its spec is stored for the planner and the executor, and a
// call books the trip — or, with the declined card, compensates the hotel
// and the flight.
func TestServeSagasOnStepFunctions(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs Step Functions executions on moto")
	}
	awsCfg, sf, sq := motoSagaClients(t)
	table := sagaTestTable(t, awsCfg)
	ctx := context.Background()
	d, err := loadSagaFile(bookTripFile)
	if err != nil {
		t.Fatal(err)
	}
	prov, err := stepfunctions.Provision(ctx, stepfunctions.ProvisionConfig{SFN: sf, SQS: sq, Prefix: "st" + randHex(t),
		RoleARN: "arn:aws:iam::123456789012:role/agentbus-saga-test", Definitions: []saga.Definition{d}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := serveConfig{Service: "toolgateway", SagaQueueURL: prov.Queue.URL, SagaDLQURL: prov.Queue.DLQURL,
		SagaStateMachines: prov.StateMachines, SagasDir: filepath.Dir(bookTripFile), Concurrency: 2}
	reg := tools.NewRegistry()
	var (
		mu        sync.Mutex
		published []string
	)
	pub := bus.PublisherFunc(func(_ context.Context, evs ...event.Event) error {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range evs {
			published = append(published, ev.Type()+" "+ev.ID())
		}
		return nil
	})
	stop, err := startServeSagas(ctx, awsCfg, cfg, table, table, reg, pub, serveHooks{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	e, err := reg.Lookup("book_trip")
	if err != nil || !e.Local() || !e.Spec().Idempotent || e.Spec().Timeout != toolgateway.SagaTimeout(d) {
		t.Fatalf("book_trip tool: %v", err)
	}
	specs, err := table.ListToolSpecs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored := false
	for _, sp := range specs {
		if sp.Name == "book_trip" && sp.Plugin == "toolgateway-sagas" {
			var got tools.Spec
			stored = json.Unmarshal(sp.Spec, &got) == nil && got.Timeout == e.Spec().Timeout && got.Idempotent
		}
	}
	if !stored {
		t.Fatalf("book_trip's spec is not in the state table: %v", specs)
	}

	session := "serve-saga-" + randHex(t)
	book := func(callID, card string) (json.RawMessage, error) {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		return e.Tool().Run(rctx, tools.Call{SessionID: session, Step: 1, CallID: callID,
			Input: json.RawMessage(`{"from":"LIS","to":"NRT","nights":2,"card":"` + card + `"}`)})
	}
	out, err := book("ok", "4242424242424242")
	if err != nil {
		t.Fatal(err)
	}
	var trip struct {
		Charge struct {
			Amount float64 `json:"amount"`
		} `json:"charge"`
		Hotel struct {
			Nights int `json:"nights"`
		} `json:"hotel"`
	}
	if err := json.Unmarshal(out, &trip); err != nil || trip.Charge.Amount != 420+2*95 || trip.Hotel.Nights != 2 {
		t.Fatalf("output %s (%v)", out, err)
	}
	_, err = book("declined", "4000000000000002")
	if err == nil || !strings.Contains(err.Error(), "failed at step charge_card") ||
		!strings.Contains(err.Error(), "Undone (compensated, in this order): reserve_hotel, reserve_flight") {
		t.Fatalf("declined card: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{events.TypeSagaStarted, events.TypeSagaCompleted, events.TypeSagaCompensated}
	for _, typ := range want {
		if !slices.ContainsFunc(published, func(p string) bool { return strings.HasPrefix(p, typ+" ") }) {
			t.Errorf("%s not published: %v", typ, published)
		}
	}
}
