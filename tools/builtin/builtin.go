// Package builtin registers agentbus's built-in tools (calculator, clock,
// http_get, memory_search) in a tools.Registry.
package builtin

import (
	"fmt"
	"time"

	"github.com/agentbus/agentbus/tools"
	"github.com/agentbus/agentbus/tools/builtin/calculator"
	"github.com/agentbus/agentbus/tools/builtin/clock"
	"github.com/agentbus/agentbus/tools/builtin/httpget"
	"github.com/agentbus/agentbus/tools/builtin/memorysearch"
)

// Names lists the built-in tools, sorted.
func Names() []string {
	return []string{calculator.Name, clock.Name, httpget.Name, memorysearch.Name}
}

// Config carries what the built-ins need.
type Config struct {
	// HTTP is http_get's policy (allow-listed hosts, limits).
	HTTP httpget.Config
	// Searcher backs memory_search. When nil, memory_search's spec is
	// registered without an implementation: this process offers it to the
	// model but does not serve it (another process does).
	Searcher memorysearch.Searcher
	// Now is the clock tool's time source; nil means time.Now.
	Now func() time.Time
}

// Register adds every built-in tool to r.
func Register(r *tools.Registry, cfg Config) error {
	hg, err := httpget.New(cfg.HTTP)
	if err != nil {
		return fmt.Errorf("builtin: %w", err)
	}
	for _, t := range []tools.Tool{calculator.Tool{}, &clock.Tool{Now: cfg.Now}, hg} {
		if err := r.Register(t); err != nil {
			return fmt.Errorf("builtin: %w", err)
		}
	}
	if cfg.Searcher == nil {
		if err := r.RegisterSpec((&memorysearch.Tool{}).Spec()); err != nil {
			return fmt.Errorf("builtin: %w", err)
		}
		return nil
	}
	ms, err := memorysearch.New(cfg.Searcher)
	if err != nil {
		return fmt.Errorf("builtin: %w", err)
	}
	if err := r.Register(ms); err != nil {
		return fmt.Errorf("builtin: %w", err)
	}
	return nil
}
