package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events/rules"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/bus/claimcheck"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/services/api"
	"github.com/agentbus/agentbus/tools"
)

// serviceQueues are the catalog's service queues: never handed to a plug-in.
var serviceQueues = []string{"planner", "executor", "toolgateway", "memory"}

// pluginQueues returns the queues the runtime's rules feed that no service
// of this process consumes: the plug-ins' own queues.
func pluginQueues(rs []rules.Rule) (map[string]rules.QueueSpec, error) {
	qs, err := rules.Queues(rs)
	if err != nil {
		return nil, err
	}
	out := map[string]rules.QueueSpec{}
	for _, q := range qs {
		if !slices.Contains(serviceQueues, q.Name) {
			out[q.Name] = q
		}
	}
	return out, nil
}

// pluginHost is the embedded runtime's side of the PluginService.
type pluginHost struct {
	rt  *embedded
	log *slog.Logger
}

var _ api.PluginHost = pluginHost{}

// RegisterTools validates every spec first (all or nothing), persists them
// in the state store (so a restarted `dev` or a later `run` knows them) and
// adds them to the live registry.
func (h pluginHost) RegisterTools(ctx context.Context, plugin string, specs []tools.Spec) error {
	return registerPluginSpecs(ctx, h.rt.ToolSpecs, h.rt.Tools, plugin, specs)
}

// PluginQueue implements api.PluginHost.
func (h pluginHost) PluginQueue(name string) (api.PluginQueue, error) {
	qs, err := pluginQueues(h.rt.Rules)
	if err != nil {
		return api.PluginQueue{}, err
	}
	q, ok := qs[name]
	if !ok {
		return api.PluginQueue{}, fmt.Errorf("%w: no plug-in rule targets it", api.ErrUnknownQueue)
	}
	resolver, err := claimcheck.NewResolver(h.rt.Blobs)
	if err != nil {
		return api.PluginQueue{}, err
	}
	return api.PluginQueue{Queue: resolvingQueue{Queue: h.rt.Bus.Queue(name), resolve: resolver.Resolve},
		VisibilityTimeoutSeconds: q.VisibilityTimeoutSeconds, MaxReceiveCount: q.MaxReceiveCount, Rules: q.Rules}, nil
}

// resolvingQueue puts claim-checked data back into the events it delivers:
// a plug-in in another process cannot read the runtime's blob folder.
type resolvingQueue struct {
	bus.Queue
	resolve func(ctx context.Context, ev event.Event) (event.Event, error)
}

// Receive implements bus.Queue. A delivery whose blob cannot be read is
// handed over as undecodable (the plug-in dead-letters it with the reason).
func (q resolvingQueue) Receive(ctx context.Context, max int, wait, visibility time.Duration) ([]bus.Message, error) {
	msgs, err := q.Queue.Receive(ctx, max, wait, visibility)
	for i, m := range msgs {
		if m.DecodeErr != nil {
			continue
		}
		ev, rerr := q.resolve(ctx, m.Event)
		if rerr != nil {
			msgs[i].DecodeErr = fmt.Errorf("resolve claim check: %w", rerr)
			msgs[i].Event = event.Event{}
			continue
		}
		msgs[i].Event = ev
	}
	return msgs, err
}

// registerPluginSpecs checks specs against reg (a built-in's name is
// tools.ErrDuplicate, a bad spec tools.ErrInvalidSpec), stores them when
// store keeps tool specs, then registers them.
func registerPluginSpecs(ctx context.Context, store any, reg *tools.Registry, plugin string, specs []tools.Spec) error {
	seen := map[string]bool{}
	scratch := tools.NewRegistry()
	recs := make([]state.ToolSpec, 0, len(specs))
	for _, sp := range specs {
		if seen[sp.Name] {
			return fmt.Errorf("%w: %s given twice", tools.ErrInvalidSpec, sp.Name)
		}
		seen[sp.Name] = true
		if e, err := reg.Lookup(sp.Name); err == nil && e.Local() {
			return fmt.Errorf("%w: %s is a tool of this runtime; name the plug-in's tool differently", tools.ErrDuplicate, sp.Name)
		}
		if err := scratch.RegisterSpec(sp); err != nil {
			return err
		}
		b, err := json.Marshal(sp)
		if err != nil {
			return err
		}
		recs = append(recs, state.ToolSpec{Name: sp.Name, Plugin: plugin, Spec: b})
	}
	if ts, ok := store.(state.ToolSpecs); ok {
		if err := ts.PutToolSpecs(ctx, recs...); err != nil {
			return fmt.Errorf("persist tool specs: %w", err)
		}
	}
	for _, sp := range specs {
		if err := reg.RegisterSpec(sp); err != nil {
			return err
		}
	}
	return nil
}

// loadPluginSpecs registers the plug-in specs stored in store. A stored spec
// that no longer compiles or that a local tool now shadows is skipped with
// a warning: one bad record must not keep the runtime from starting.
func loadPluginSpecs(ctx context.Context, store any, reg *tools.Registry, log *slog.Logger) (int, error) {
	ts, ok := store.(state.ToolSpecs)
	if !ok {
		return 0, nil
	}
	recs, err := ts.ListToolSpecs(ctx)
	if err != nil {
		return 0, fmt.Errorf("plug-in tool specs: %w", err)
	}
	n := 0
	for _, r := range recs {
		var sp tools.Spec
		if err := json.Unmarshal(r.Spec, &sp); err != nil {
			log.Warn("plug-in tool spec skipped", "tool", r.Name, "plugin", r.Plugin, "err", err)
			continue
		}
		if e, err := reg.Lookup(sp.Name); err == nil && e.Local() {
			log.Warn("plug-in tool spec skipped: a local tool has its name", "tool", r.Name, "plugin", r.Plugin)
			continue
		}
		if err := reg.RegisterSpec(sp); err != nil {
			log.Warn("plug-in tool spec skipped", "tool", r.Name, "plugin", r.Plugin, "err", err)
			continue
		}
		n++
	}
	return n, nil
}

// watchPluginSpecs re-reads the stored plug-in specs every interval until
// ctx ends, so that `agentbus serve planner|executor` offer and route a
// plug-in registered after they started. Specs are only added or updated
// here, never removed: a run in flight may still call a tool.
func watchPluginSpecs(ctx context.Context, store any, reg *tools.Registry, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := loadPluginSpecs(ctx, store, reg, log); err != nil && !errors.Is(err, context.Canceled) {
				log.Warn("plug-in tool specs refresh failed", "err", err)
			}
		}
	}
}

// pluginSpecsRefresh is how often `serve planner|executor` re-read the
// plug-in specs from the state table.
const pluginSpecsRefresh = 30 * time.Second
