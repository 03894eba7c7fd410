// Package plugin serves agentbus tools from a process of their own: a
// plug-in. A plug-in owns one queue, fed by one rule that routes
// ToolInvocationRequested for its tool names (the catalog's rule format:
// `agentbus rules add` embedded, the Terraform subscriber module or `agentbus
// stack bootstrap --dir` on AWS). Serve registers the tools' specs where the
// planner finds them, then consumes the queue with the tool-gateway's own
// handler (services/toolgateway) over a registry holding only the plug-in's
// tools: the same validation, timeout, idempotency claim and outbox as the
// built-in tools, with the claim ledger in the plug-in's own state store.
//
// Two transports come with the package: DevServer (a running `agentbus dev`
// over its gRPC PluginService) and, on AWS, the plug-in's SQS queue, the
// EventBridge publisher and the agentbus state table as a Registrar
// (StoreRegistrar); examples/plugin-units wires both.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/platform/state/outbox"
	"github.com/agentbus/agentbus/services/toolgateway"
	"github.com/agentbus/agentbus/tools"
	"github.com/agentbus/agentbus/tools/builtin"
)

// SourcePrefix starts the CloudEvents source of a plug-in's events:
// "agentbus/plugin/<name>" (the dev server refuses other sources from a
// plug-in).
const SourcePrefix = "agentbus/plugin/"

// ErrUnknownQueue is returned (wrapped) when the plug-in's queue does not
// exist: its rule was not added (or the runtime not restarted since).
var ErrUnknownQueue = errors.New("plugin: unknown queue")

// ErrToolClash is returned (wrapped) when a tool's name is taken by a tool
// the runtime serves itself.
var ErrToolClash = errors.New("plugin: tool name taken by the runtime")

// Registrar makes the plug-in's tool specs known to the planner and the
// executor.
type Registrar interface {
	RegisterTools(ctx context.Context, plugin string, specs []tools.Spec) error
}

// Transport is where a plug-in meets the bus.
type Transport struct {
	// Queue is the plug-in's own queue.
	Queue bus.Queue
	// Publisher publishes the results (through the plug-in's outbox).
	Publisher bus.Publisher
	// Registrar registers the specs; nil skips registration (they were
	// registered otherwise, e.g. by deployment).
	Registrar Registrar
	// Visibility is the queue's visibility timeout (0: 30s).
	Visibility time.Duration
}

// Config configures Serve.
type Config struct {
	// Name names the plug-in: [a-z][a-z0-9-]{0,39}, used in its event
	// source (SourcePrefix+Name) and its claim holders. Required.
	Name string
	// Tools are the tools the plug-in serves. At least one.
	Tools []tools.Tool
	// Transport is the queue, publisher and registrar. Queue and Publisher
	// are required.
	Transport Transport
	// Store is the plug-in's own state store: the claim ledger and outbox
	// of its tool calls (a SQLite file locally, a DynamoDB table on AWS).
	// Required. Serve does not close it.
	Store state.Store
	// Concurrency is how many calls run at once (default 4).
	Concurrency int
	// Resolve, when set, resolves claim-checked deliveries before they are
	// validated and handled: claimcheck.Resolver.Middleware over the blob
	// store the runtime offloads to (S3 on AWS). Without it a request whose
	// input was offloaded fails validation and is dead-lettered. The dev
	// server resolves deliveries itself: leave it nil there.
	Resolve bus.Middleware
	// OnRequest, when set, is called with every ToolInvocationRequested the
	// queue delivers, before it is handled (logging, tests).
	OnRequest func(tool, callID string)
	Logger    *slog.Logger
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,39}$`)

// Serve registers the tools' specs and serves their calls until ctx ends;
// then it finishes (or releases) the calls in flight, publishes their
// results and returns nil. A configuration error, an unknown queue or a
// failed registration returns at once.
func Serve(ctx context.Context, cfg Config) error {
	if err := cfg.check(); err != nil {
		return err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := tools.NewRegistry()
	specs := make([]tools.Spec, 0, len(cfg.Tools))
	for _, t := range cfg.Tools {
		if err := reg.Register(t); err != nil {
			return fmt.Errorf("plugin %s: %w", cfg.Name, err)
		}
		specs = append(specs, t.Spec())
	}
	if r := cfg.Transport.Registrar; r != nil {
		if err := r.RegisterTools(ctx, cfg.Name, specs); err != nil {
			return fmt.Errorf("plugin %s: register tools: %w", cfg.Name, err)
		}
	}
	validator, err := events.NewValidator()
	if err != nil {
		return err
	}
	relay := outbox.NewRelay(cfg.Store, cfg.Transport.Publisher, outbox.Options{Interval: 200 * time.Millisecond, Logger: log.With("component", "outbox")})
	store := outbox.Notifying(cfg.Store, relay)
	gw, err := toolgateway.New(toolgateway.Config{
		Store: store, Registry: reg, Publisher: cfg.Transport.Publisher,
		Source: SourcePrefix + cfg.Name, InstanceID: cfg.Name, Logger: log,
	})
	if err != nil {
		return err
	}
	handler := gw.Handle
	if cfg.OnRequest != nil {
		next := handler
		handler = func(ctx context.Context, ev event.Event) error {
			if ev.Type() == events.TypeToolInvocationRequested {
				cfg.OnRequest(events.ToolName(ev), callID(ev))
			}
			return next(ctx, ev)
		}
	}
	vis := cfg.Transport.Visibility
	if vis <= 0 {
		vis = 30 * time.Second
	}
	conc := cfg.Concurrency
	if conc <= 0 {
		conc = 4
	}
	mws := []bus.Middleware{bus.Recoverer{}.Middleware}
	if cfg.Resolve != nil {
		mws = append(mws, cfg.Resolve)
	}
	mws = append(mws, validating(validator))
	w := bus.NewWorker(cfg.Transport.Queue, bus.Chain(handler, mws...),
		bus.WorkerConfig{Concurrency: conc, Visibility: vis, Logger: log.With("queue", cfg.Transport.Queue.Name())})

	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRelay()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = relay.Run(relayCtx) }()
	log.Info("plugin: serving", "plugin", cfg.Name, "queue", cfg.Transport.Queue.Name(), "tools", len(specs))
	runErr := w.Run(ctx)
	stopRelay()
	wg.Wait()
	// Publish what the last calls stored.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := relay.Flush(fctx); err != nil {
		log.Warn("plugin: final outbox flush failed; the next start publishes the rest", "err", err)
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return fmt.Errorf("plugin %s: %w", cfg.Name, runErr)
	}
	return nil
}

func (cfg Config) check() error {
	var errs []error
	if !nameRE.MatchString(cfg.Name) {
		errs = append(errs, fmt.Errorf("plugin: name %q must match %s", cfg.Name, nameRE))
	}
	if len(cfg.Tools) == 0 {
		errs = append(errs, errors.New("plugin: no tools"))
	}
	if cfg.Transport.Queue == nil {
		errs = append(errs, errors.New("plugin: no queue"))
	}
	if cfg.Transport.Publisher == nil {
		errs = append(errs, errors.New("plugin: no publisher"))
	}
	if cfg.Store == nil {
		errs = append(errs, errors.New("plugin: no state store for the claim ledger"))
	}
	return errors.Join(errs...)
}

func callID(ev event.Event) string {
	req, err := events.Decode[events.ToolInvocationRequested](ev)
	if err != nil {
		return ""
	}
	return req.CallID
}

// validating dead-letters an event that breaks its schema before the
// gateway sees it (as the runtime's services do).
func validating(v *events.Validator) bus.Middleware {
	return func(next bus.Handler) bus.Handler {
		return func(ctx context.Context, ev event.Event) error {
			if err := v.Validate(ev); err != nil {
				return fmt.Errorf("%w: %v", bus.ErrPermanent, err)
			}
			return next(ctx, ev)
		}
	}
}

// StoreRegistrar registers specs in a state store that keeps tool specs:
// on AWS, the agentbus state table, where `agentbus serve planner` and
// `serve executor` read them (at start and every 30s). A built-in tool's
// name (builtin.Names) is ErrToolClash.
type StoreRegistrar struct {
	Specs state.ToolSpecs
	// Reserved are further names the plug-in may not use.
	Reserved []string
}

// RegisterTools implements Registrar.
func (r StoreRegistrar) RegisterTools(ctx context.Context, plugin string, specs []tools.Spec) error {
	recs := make([]state.ToolSpec, 0, len(specs))
	for _, sp := range specs {
		for _, n := range append(builtin.Names(), r.Reserved...) {
			if sp.Name == n {
				return fmt.Errorf("%w: %s", ErrToolClash, sp.Name)
			}
		}
		b, err := sp.MarshalJSON()
		if err != nil {
			return err
		}
		recs = append(recs, state.ToolSpec{Name: sp.Name, Plugin: plugin, Spec: b})
	}
	return r.Specs.PutToolSpecs(ctx, recs...)
}
