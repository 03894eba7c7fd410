package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/saga/stepfunctions"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/saga"
	"github.com/agentbus/agentbus/services/toolgateway"
	"github.com/agentbus/agentbus/tools"
	"github.com/agentbus/agentbus/tools/demo/trip"
)

// stateMachineARN is the form of a Step Functions state machine ARN.
var stateMachineARN = regexp.MustCompile(`^arn:aws[a-z-]*:states:[a-z0-9-]+:[0-9]{12}:stateMachine:[A-Za-z0-9_-]{1,80}$`)

// resolveSagaSettings fills c's saga settings from val and checks them:
// the queue URL, the state machines and the definitions folder go
// together, and only the tool-gateway runs sagas.
func resolveSagaSettings(c *serveConfig, val, name map[string]string) []error {
	c.SagaQueueURL, c.SagaDLQURL, c.SagasDir = val["saga-queue-url"], val["saga-dlq-url"], val["sagas-dir"]
	machines := val["saga-state-machines"]
	set := []string{}
	for _, f := range []string{"saga-queue-url", "saga-state-machines", "sagas-dir", "saga-dlq-url"} {
		if val[f] != "" {
			set = append(set, f)
		}
	}
	if len(set) == 0 {
		return nil
	}
	var errs []error
	if c.Service != "toolgateway" {
		for _, f := range set {
			errs = append(errs, fmt.Errorf("%s is set: only serve toolgateway runs sagas", name[f]))
		}
		return errs
	}
	for _, f := range []string{"saga-queue-url", "saga-state-machines", "sagas-dir"} {
		if val[f] == "" {
			errs = append(errs, fmt.Errorf("%s is missing: sagas need %s, %s and %s", name[f],
				name["saga-queue-url"], name["saga-state-machines"], name["sagas-dir"]))
		}
	}
	for _, f := range []string{"saga-queue-url", "saga-dlq-url"} {
		if v := val[f]; v != "" {
			if u, err := url.Parse(v); err != nil || u.Scheme == "" || u.Host == "" || strings.Trim(u.Path, "/") == "" {
				errs = append(errs, fmt.Errorf("%s is %q: want a queue URL like https://sqs.us-east-1.amazonaws.com/123456789012/agentbus-saga", name[f], v))
			}
		}
	}
	if machines != "" {
		c.SagaStateMachines = map[string]string{}
		for _, pair := range splitList(machines) {
			n, arn, ok := strings.Cut(pair, "=")
			n, arn = strings.TrimSpace(n), strings.TrimSpace(arn)
			switch {
			case !ok || n == "" || !stateMachineARN.MatchString(arn):
				errs = append(errs, fmt.Errorf("%s: %q: want name=arn:aws:states:<region>:<account>:stateMachine:<name>", name["saga-state-machines"], pair))
			case c.SagaStateMachines[n] != "":
				errs = append(errs, fmt.Errorf("%s: saga %q given twice", name["saga-state-machines"], n))
			default:
				c.SagaStateMachines[n] = arn
			}
		}
	}
	return errs
}

// sfnSagaConfig wires the tool-gateway's sagas on AWS.
type sfnSagaConfig struct {
	SFN interface {
		stepfunctions.API
		stepfunctions.TaskAPI
	}
	SQS           stepfunctions.QueueAPI
	QueueURL      string
	DLQURL        string
	StateMachines map[string]string
	Definitions   []saga.Definition
	// Invoker performs the tasks (the ledger Invoker over the state table).
	Invoker     *toolgateway.Invoker
	Concurrency int
	Logger      *slog.Logger
	// Worker adjusts the worker's configuration (tests: short waits).
	Worker func(*stepfunctions.WorkerConfig)
}

// sfnSagas is the saga side of `serve toolgateway`: the Step Functions
// runner the saga tools start executions with, and the worker that
// performs the executions' tasks from the saga queue.
type sfnSagas struct {
	Runner *stepfunctions.Runner
	Worker *stepfunctions.Worker
}

func newSFNSagas(c sfnSagaConfig) (*sfnSagas, error) {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	for _, d := range c.Definitions {
		if c.StateMachines[d.Name] == "" {
			errs = append(errs, fmt.Errorf("saga %s has no state machine in AGENTBUS_SAGA_STATE_MACHINES", d.Name))
		}
	}
	for n := range c.StateMachines {
		if !slices.ContainsFunc(c.Definitions, func(d saga.Definition) bool { return d.Name == n }) {
			errs = append(errs, fmt.Errorf("state machine of saga %s has no definition in AGENTBUS_SAGAS_DIR", n))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	r, err := stepfunctions.NewRunner(stepfunctions.RunnerConfig{API: c.SFN, StateMachines: c.StateMachines,
		Definitions: newSagaLookup(c.Definitions), Logger: c.Logger.With("component", "saga-runner")})
	if err != nil {
		return nil, err
	}
	wc := stepfunctions.WorkerConfig{SFN: c.SFN, SQS: c.SQS, QueueURL: c.QueueURL, DLQURL: c.DLQURL, Invoker: c.Invoker,
		Concurrency: c.Concurrency, Logger: c.Logger.With("component", "saga-worker")}
	if c.Worker != nil {
		c.Worker(&wc)
	}
	w, err := stepfunctions.NewWorker(wc)
	if err != nil {
		return nil, err
	}
	return &sfnSagas{Runner: r, Worker: w}, nil
}

// startServeSagas sets up sagas in `serve toolgateway` when configured:
// it loads the definitions, runs the saga worker until the returned stop
// is called, registers one saga tool per definition in reg (backed by the
// Step Functions runner) and stores their specs in the state table, where
// `serve planner` and `serve executor` find them (as they find plug-ins'),
// so the model is offered each saga and the executor waits as long as it
// may run. A saga's steps run the tools of reg (and the demo travel tools
// they name). With no saga settings it does nothing.
func startServeSagas(ctx context.Context, awsCfg aws.Config, cfg serveConfig, store state.Store, table any,
	reg *tools.Registry, publisher bus.Publisher, hooks serveHooks, log *slog.Logger) (stop func() error, err error) {
	if cfg.SagaQueueURL == "" {
		return func() error { return nil }, nil
	}
	defs, err := saga.Load(os.DirFS(cfg.SagasDir))
	if err != nil {
		return nil, usageErr(fmt.Errorf("AGENTBUS_SAGAS_DIR (--sagas-dir) %s: %w", cfg.SagasDir, err))
	}
	steps, err := sagaStepTools(defs, reg, trip.New())
	if err != nil {
		return nil, usageErr(err)
	}
	inv, err := toolgateway.NewInvoker(toolgateway.Config{Store: store, Registry: steps, Logger: log.With("component", "saga-invoker"),
		Hook: hooks.Crash.Point, LeaseMargin: hooks.LeaseMargin})
	if err != nil {
		return nil, err
	}
	s, err := newSFNSagas(sfnSagaConfig{SFN: sfn.NewFromConfig(awsCfg), SQS: awssqs.NewFromConfig(awsCfg), QueueURL: cfg.SagaQueueURL,
		DLQURL: cfg.SagaDLQURL, StateMachines: cfg.SagaStateMachines, Definitions: defs, Invoker: inv,
		Concurrency: cfg.Concurrency, Logger: log})
	if err != nil {
		return nil, usageErr(err)
	}
	var recs []state.ToolSpec
	for _, d := range defs {
		st, err := toolgateway.NewSagaTool(toolgateway.SagaToolConfig{Definition: d, Runner: s.Runner, Publisher: publisher, Logger: log})
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(st.Spec())
		if err != nil {
			return nil, err
		}
		recs = append(recs, state.ToolSpec{Name: d.Name, Plugin: "toolgateway-sagas", Spec: b})
		if err := reg.Register(st); err != nil {
			return nil, fmt.Errorf("saga %s: %w", d.Name, err)
		}
	}
	if ts, ok := table.(state.ToolSpecs); ok {
		if err := ts.PutToolSpecs(ctx, recs...); err != nil {
			return nil, fmt.Errorf("store the saga tools' specs: %w", err)
		}
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.Worker.Run(wctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("saga worker stopped", "err", err)
		}
	}()
	names := make([]string, len(defs))
	for i, d := range defs {
		names[i] = d.Name
	}
	log.Info("sagas", "sagas", names, "queue", queueNameFromURL(cfg.SagaQueueURL))
	return func() error { cancel(); wg.Wait(); return nil }, nil
}
