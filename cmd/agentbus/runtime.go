package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/events/rules"
	"github.com/agentbus/agentbus/platform/blob"
	"github.com/agentbus/agentbus/platform/blob/localfs"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/bus/claimcheck"
	"github.com/agentbus/agentbus/platform/bus/local"
	cachemem "github.com/agentbus/agentbus/platform/cache/memory"
	"github.com/agentbus/agentbus/platform/model"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/platform/state/outbox"
	"github.com/agentbus/agentbus/platform/state/sqlite"
	"github.com/agentbus/agentbus/services/executor"
	"github.com/agentbus/agentbus/services/memory"
	"github.com/agentbus/agentbus/services/planner"
	"github.com/agentbus/agentbus/services/toolgateway"
	"github.com/agentbus/agentbus/tools"
)

// embeddedConfig configures the embedded runtime: the four services in one
// process over the local bus, SQLite state, a blob folder and an in-process
// cache.
type embeddedConfig struct {
	// DataDir holds bus.db, state.db and blobs/; "" keeps the bus and the
	// state in memory and blobs in a temporary folder (tests).
	DataDir string
	Model   model.Model
	// Tools holds extra tools (tests, plug-in specs); the built-ins are
	// added to it. nil means a fresh registry.
	Tools   *tools.Registry
	Planner planner.Config
	// Concurrency is the handlers per service queue (default 8).
	Concurrency int
	// MaxEventSize is the claim-check limit (default 256 KiB).
	MaxEventSize int
	// ExtraRules are plug-in rules added to the catalog.
	ExtraRules []rules.Rule
	// Sagas are offered as tools and run by the embedded saga runner.
	Sagas sagaConfig
	// ExecutorGrace is how long past a tool's timeout the executor waits for
	// a result before it reports timeout (default executor.DefaultGrace).
	ExecutorGrace time.Duration
	// LeaseMargin is added to a tool's timeout to make its idempotency
	// lease (default: the tool-gateway's); crash tests shorten it.
	LeaseMargin time.Duration
	// Hooks are crash-test hooks: called at named points; nil in production.
	Hooks  crashHooks
	Logger *slog.Logger
}

// crashHooks name the points where the crash test kills the runtime.
type crashHooks struct {
	// Point is called with the name of the point reached; a test hook exits
	// the process there.
	Point func(name string)
}

func (h crashHooks) at(name string) {
	if h.Point != nil {
		h.Point(name)
	}
}

// embedded is a running embedded runtime.
type embedded struct {
	Bus       *local.Bus
	Store     state.Store
	Blobs     blob.Store
	Publisher bus.Publisher
	Validator *events.Validator
	Memory    *memory.Service
	Tools     *tools.Registry
	Rules     []rules.Rule
	// ToolSpecs keeps plug-in tool specs (the SQLite state store).
	ToolSpecs state.ToolSpecs

	log     *slog.Logger
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closers []func() error
}

// startEmbedded opens the stores and starts every service's workers and the
// outbox relay; Close stops them.
func startEmbedded(ctx context.Context, cfg embeddedConfig) (_ *embedded, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Model == nil {
		return nil, errors.New("runtime: no model configured")
	}
	if cfg.Tools == nil {
		cfg.Tools = tools.NewRegistry()
	}
	rt := &embedded{log: cfg.Logger, Tools: cfg.Tools}
	defer func() {
		if err != nil {
			rt.Close()
		}
	}()

	if rt.Validator, err = events.NewValidator(); err != nil {
		return nil, err
	}
	catalog, err := rules.Catalog()
	if err != nil {
		return nil, err
	}
	if rt.Rules, err = rules.Merge(catalog, cfg.ExtraRules); err != nil {
		return nil, err
	}
	// Tools registered in this process beyond the built-ins (tests, embedded
	// plug-ins) are served by this process's tool-gateway: route them to it,
	// as a plug-in's own rule would.
	if r, ok := localToolsRule(cfg.Tools); ok {
		rt.Rules = append(rt.Rules, r)
	}
	if r, ok := sagaToolsRule(cfg.Sagas.Definitions); ok {
		rt.Rules = append(rt.Rules, r)
	}
	qspecs, err := rules.Queues(rt.Rules)
	if err != nil {
		return nil, err
	}

	var busPath, statePath, blobDir string
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("runtime: data dir: %w", err)
		}
		busPath = filepath.Join(cfg.DataDir, "bus.db")
		statePath = filepath.Join(cfg.DataDir, "state.db")
		blobDir = filepath.Join(cfg.DataDir, "blobs")
	} else {
		if blobDir, err = os.MkdirTemp("", "agentbus-blobs-*"); err != nil {
			return nil, err
		}
		rt.closers = append(rt.closers, func() error { return os.RemoveAll(blobDir) })
	}
	if err := os.MkdirAll(blobDir, 0o755); err != nil {
		return nil, err
	}
	blobs, err := localfs.New(blobDir)
	if err != nil {
		return nil, err
	}
	rt.Blobs = blobs
	rt.closers = append(rt.closers, blobs.Close)

	opts := local.Options{Path: busPath, Logger: cfg.Logger, MaxEventSize: max(cfg.MaxEventSize, claimcheck.DefaultLimit) + 64*1024}
	for _, r := range rt.Rules {
		opts.Rules = append(opts.Rules, local.Rule{Name: r.Name, Pattern: r.EventPattern, Queue: r.Target.Queue})
	}
	for _, q := range qspecs {
		opts.Queues = append(opts.Queues, local.QueueConfig{Name: q.Name, MaxReceiveCount: q.MaxReceiveCount,
			Visibility: time.Duration(q.VisibilityTimeoutSeconds) * time.Second})
	}
	if rt.Bus, err = local.Open(ctx, opts); err != nil {
		return nil, err
	}
	rt.closers = append(rt.closers, rt.Bus.Close)

	var store state.Store
	if statePath != "" {
		store, err = sqlite.Open(ctx, statePath)
	} else {
		store, err = sqlite.OpenMemory(ctx)
	}
	if err != nil {
		return nil, err
	}
	rt.closers = append(rt.closers, store.Close)

	var ccOpts []claimcheck.Option
	if cfg.MaxEventSize > 0 {
		ccOpts = append(ccOpts, claimcheck.WithLimit(cfg.MaxEventSize))
	}
	checked, err := claimcheck.NewPublisher(rt.Bus, blobs, ccOpts...)
	if err != nil {
		return nil, err
	}
	resolver, err := claimcheck.NewResolver(blobs, ccOpts...)
	if err != nil {
		return nil, err
	}
	rt.Publisher = validatingPublisher(rt.Validator, checked)

	// The relay's publisher is where "a state write committed but its events
	// are not yet published" lives: the crash test kills the runtime there.
	relayPub := bus.PublisherFunc(func(ctx context.Context, evs ...event.Event) error {
		cfg.Hooks.at("before_outbox_publish")
		return rt.Publisher.Publish(ctx, evs...)
	})
	// One process writes everything here: each write hands its events to
	// the relay right after its commit (no read back; several writers' in
	// one publish), and they are marked sent a few at a time.
	relay := outbox.NewRelay(store, relayPub, outbox.Options{Logger: cfg.Logger, Interval: 100 * time.Millisecond,
		HandOff: true, MarkDelay: 5 * time.Millisecond})
	rt.Store = outbox.Notifying(store, relay)
	if err := registerBuiltins(cfg.Tools, rt.Store); err != nil {
		return nil, err
	}
	// Plug-in specs registered earlier (PluginService.RegisterTools) are
	// kept in the state store: a restarted runtime offers them again.
	rt.ToolSpecs, _ = store.(state.ToolSpecs)
	if _, err := loadPluginSpecs(ctx, store, cfg.Tools, cfg.Logger); err != nil {
		return nil, err
	}
	if err := rt.startSagas(ctx, cfg); err != nil {
		return nil, err
	}

	hot := memory.CacheHot(cachemem.New(cachemem.Options{}), 10*time.Minute, cfg.Logger)
	// History may lag the loop by a few milliseconds; in exchange five
	// events of a tool step share about one write (docs/bus.md).
	rt.Memory = memory.New(rt.Store, hot, cfg.Logger, memory.WithBatching(5*time.Millisecond, cfg.Concurrency))
	pcfg := cfg.Planner
	if pcfg.CacheRuns == 0 {
		// This process's planner writes every session of the data folder
		// (the bus file is locked to one process), so the runs it wrote
		// are current.
		pcfg.CacheRuns = 4096
	}
	pl := planner.New(rt.Store, cfg.Model, cfg.Tools, pcfg, nil, cfg.Logger)
	ex := executor.New(executorStore{Store: rt.Store, hooks: cfg.Hooks}, cfg.Tools, cfg.ExecutorGrace, nil, cfg.Logger)
	gw, err := toolgateway.New(toolgateway.Config{
		Store:       rt.Store,
		Registry:    cfg.Tools,
		Logger:      cfg.Logger,
		Hook:        cfg.Hooks.Point,
		LeaseMargin: cfg.LeaseMargin,
	})
	if err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	rt.cancel = cancel
	rt.wg.Add(1)
	go func() { defer rt.wg.Done(); _ = relay.Run(runCtx) }()

	handlers := map[string]bus.Handler{
		"planner":     pl.Handle,
		"executor":    ex.Handle,
		"toolgateway": gw.Handle,
		"memory":      rt.Memory.Handle,
	}
	for _, q := range qspecs {
		h, ok := handlers[q.Name]
		if !ok {
			continue // a plug-in's queue: its own process consumes it
		}
		h = bus.Chain(h, bus.Recoverer{}.Middleware, resolver.Middleware, validating(rt.Validator))
		wcfg := bus.WorkerConfig{
			Concurrency: cfg.Concurrency,
			Visibility:  time.Duration(q.VisibilityTimeoutSeconds) * time.Second,
			Logger:      cfg.Logger.With("queue", q.Name),
		}
		if q.Name == "memory" {
			wcfg.BatchWindow = memoryBatchWindow
		}
		w := bus.NewWorker(rt.Bus.Queue(q.Name), h, wcfg)
		rt.wg.Add(1)
		go func() { defer rt.wg.Done(); _ = w.Run(runCtx) }()
	}
	return rt, nil
}

// memoryBatchWindow is how long the memory service's worker gathers events
// before recording them, when they come slower than it takes them (a
// full batch is followed by the next receive at once, so it keeps up). The
// service is off the loop's critical path, yet on two cores it ran beside
// it, event by event, and slowed it: gathered, the events of a few steps
// share one receive, one history write and one ack, and the loop's p50 per
// tool step fell ~0.15 ms (docs/bus.md, eighth round). History and the hot
// context lag by up to this much more. (64 handlers, a window's events in
// one receive, gave the same p50 and 15% fewer steps/s at 100 sessions.)
const memoryBatchWindow = 20 * time.Millisecond

// drain waits, up to within, until the service queues are empty, so that a
// short-lived `agentbus run` leaves a complete history behind (the memory
// service records the final events after the caller has seen them).
func (rt *embedded) drain(ctx context.Context, within time.Duration) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		busy := false
		for _, q := range []string{"planner", "executor", "toolgateway", "memory"} {
			st, err := rt.Bus.Stats(ctx, q)
			if err == nil && st.Ready+st.InFlight > 0 {
				busy = true
			}
		}
		if !busy {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// localToolsRule routes calls of the registry's local, non-built-in tools
// to the toolgateway queue.
func localToolsRule(reg *tools.Registry) (rules.Rule, bool) {
	var names []string
	for _, sp := range reg.All() {
		e, err := reg.Lookup(sp.Name)
		if err != nil || !e.Local() || slices.Contains(builtinToolNames, sp.Name) {
			continue
		}
		names = append(names, sp.Name)
	}
	if len(names) == 0 {
		return rules.Rule{}, false
	}
	return toolGatewayRule("toolgateway-embedded-tools",
		"Calls of tools registered in this process beyond the built-ins.", names), true
}

// toolGatewayRule routes ToolInvocationRequested for the named tools to the
// tool-gateway's queue (with the catalog's settings for that queue), as a
// plug-in's rule routes its tools to its own.
func toolGatewayRule(name, description string, toolNames []string) rules.Rule {
	pattern, _ := json.Marshal(map[string]any{
		"detail-type": []string{events.TypeToolInvocationRequested},
		"detail":      map[string]any{events.ExtToolName: toolNames},
	})
	return rules.Rule{
		Name:         name,
		Description:  description,
		EventPattern: pattern,
		Target:       rules.Target{Queue: "toolgateway", MaxReceiveCount: 5, VisibilityTimeoutSeconds: 120},
	}
}

// Close stops the workers and the relay and closes the stores.
func (rt *embedded) Close() error {
	if rt.cancel != nil {
		rt.cancel()
	}
	rt.wg.Wait()
	var errs []error
	for i := len(rt.closers) - 1; i >= 0; i-- {
		errs = append(errs, rt.closers[i]())
	}
	return errors.Join(errs...)
}

// executorStore lets the crash test stop the runtime in the middle of a
// fan-in: after a result's write, before the handler acks (for all but a
// step's last result, also before the step transition).
type executorStore struct {
	state.Store
	hooks crashHooks
}

func (s executorStore) RecordResult(ctx context.Context, key state.StepKey, callID string, result []byte) (state.StepState, error) {
	st, err := s.Store.RecordResult(ctx, key, callID, result)
	if err == nil {
		s.hooks.at("mid_fan_in")
	}
	return st, err
}

func (s executorStore) RecordAndComplete(ctx context.Context, key state.StepKey, callID string, result []byte, complete func(state.StepState) ([]state.OutboxEvent, error)) (state.StepState, bool, error) {
	st, completed, err := s.Store.RecordAndComplete(ctx, key, callID, result, complete)
	if err == nil {
		s.hooks.at("mid_fan_in")
	}
	return st, completed, err
}
