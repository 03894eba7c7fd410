package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/events/rules"
	psaga "github.com/agentbus/agentbus/platform/saga"
	"github.com/agentbus/agentbus/platform/saga/local"
	"github.com/agentbus/agentbus/saga"
	"github.com/agentbus/agentbus/services/toolgateway"
	"github.com/agentbus/agentbus/tools"
	"github.com/agentbus/agentbus/tools/demo/trip"
)

// sagaConfig is what the embedded runtime runs sagas with.
type sagaConfig struct {
	// Definitions are offered to the model, one tool each, and run by the
	// embedded runner (sagas.db in the data folder).
	Definitions []saga.Definition
	// Trip backs the demo travel tools a saga may name (tools/demo/trip);
	// nil means fresh providers. Tests pass their own to count effects.
	Trip *trip.Providers
}

// sagaLookup finds definitions by name for a runner.
type sagaLookup map[string]saga.Definition

func (l sagaLookup) Lookup(name string) (saga.Definition, bool) {
	d, ok := l[name]
	return d, ok
}

var _ psaga.Definitions = sagaLookup(nil)

func newSagaLookup(defs []saga.Definition) sagaLookup {
	l := sagaLookup{}
	for _, d := range defs {
		l[d.Name] = d
	}
	return l
}

// sagaToolsRule routes calls of the saga tools to the toolgateway queue,
// where the saga tool runs (as a plug-in's rule routes its tools).
func sagaToolsRule(defs []saga.Definition) (rules.Rule, bool) {
	if len(defs) == 0 {
		return rules.Rule{}, false
	}
	names := make([]string, len(defs))
	for i, d := range defs {
		names[i] = d.Name
	}
	return toolGatewayRule("toolgateway-sagas",
		"Calls of saga tools: the tool-gateway starts the saga and reports its outcome.", names), true
}

// sagaStepTools is the registry the saga Invoker runs steps from: a tool
// this process serves (built-in or registered), else a demo travel tool
// (registered only because a saga names it). The steps' tools are not
// offered to the model: it books a trip through the saga, never by
// calling charge_card itself.
func sagaStepTools(defs []saga.Definition, main *tools.Registry, tp *trip.Providers) (*tools.Registry, error) {
	steps := tools.NewRegistry()
	for _, d := range defs {
		for _, s := range d.Steps {
			calls := []saga.Call{s.Action}
			if s.Compensation != nil {
				calls = append(calls, *s.Compensation)
			}
			for _, c := range calls {
				if _, err := steps.Lookup(c.Tool); err == nil {
					continue
				}
				if e, err := main.Lookup(c.Tool); err == nil && e.Local() {
					if err := steps.Register(e.Tool()); err != nil {
						return nil, err
					}
					continue
				}
				if slices.Contains(trip.Names(), c.Tool) {
					if err := tp.Register(steps, c.Tool); err != nil {
						return nil, err
					}
					continue
				}
				return nil, fmt.Errorf("saga %s, step %s: tool %q is not served in this process (not a built-in, a registered tool or a demo tool: %v)",
					d.Name, s.Name, c.Tool, trip.Names())
			}
		}
	}
	return steps, nil
}

// startSagas opens the embedded saga runner (sagas.db in the data folder;
// in memory without one) with the tool-gateway's ledger Invoker on the
// runtime's state store, and registers one saga tool per definition. The
// runner resumes the executions a previous run left running.
func (rt *embedded) startSagas(ctx context.Context, cfg embeddedConfig) error {
	defs := cfg.Sagas.Definitions
	if len(defs) == 0 {
		return nil
	}
	tp := cfg.Sagas.Trip
	if tp == nil {
		tp = trip.New()
	}
	steps, err := sagaStepTools(defs, cfg.Tools, tp)
	if err != nil {
		return err
	}
	inv, err := toolgateway.NewInvoker(toolgateway.Config{Store: rt.Store, Registry: steps,
		Logger: cfg.Logger.With("component", "saga-invoker"), Hook: cfg.Hooks.Point, LeaseMargin: cfg.LeaseMargin})
	if err != nil {
		return err
	}
	path := ""
	if cfg.DataDir != "" {
		path = filepath.Join(cfg.DataDir, "sagas.db")
	}
	runner, err := local.New(ctx, local.Config{Path: path, Definitions: newSagaLookup(defs), Invoker: inv,
		Logger: cfg.Logger.With("component", "saga-runner")})
	if err != nil {
		return fmt.Errorf("saga runner: %w", err)
	}
	rt.closers = append(rt.closers, runner.Close)
	for _, d := range defs {
		st, err := toolgateway.NewSagaTool(toolgateway.SagaToolConfig{Definition: d, Runner: runner, Publisher: rt.Publisher, Logger: cfg.Logger})
		if err != nil {
			return err
		}
		if err := cfg.Tools.Register(st); err != nil {
			return fmt.Errorf("saga %s: %w", d.Name, err)
		}
	}
	return nil
}

// printSaga writes one progress line for a Saga* event.
func printSaga(w io.Writer, ev event.Event) {
	switch ev.Type() {
	case events.TypeSagaStarted:
		d, _ := events.Decode[events.SagaStarted](ev)
		fmt.Fprintf(w, "step %d · %s saga %s started · execution %s\n", d.Step, d.CallID, d.Saga, d.ExecutionID)
	case events.TypeSagaCompleted:
		d, _ := events.Decode[events.SagaCompleted](ev)
		fmt.Fprintf(w, "saga %s completed · execution %s\n", d.Saga, d.ExecutionID)
	case events.TypeSagaCompensated:
		d, _ := events.Decode[events.SagaCompensated](ev)
		fmt.Fprintf(w, "saga %s compensated · failed at %s (%s) · undone: %s\n", d.Saga, d.FailedStep, d.Error, strings.Join(d.Compensated, ", "))
	case events.TypeSagaCompensationFailed:
		d, _ := events.Decode[events.SagaCompensationFailed](ev)
		fmt.Fprintf(w, "saga %s COMPENSATION FAILED · failed at %s (%s) · NOT undone: %s\n", d.Saga, d.FailedStep, d.Error, strings.Join(d.Failures, "; "))
	}
}
