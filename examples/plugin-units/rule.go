package main

import (
	_ "embed"
	"fmt"
	"time"

	"github.com/agentbus/agentbus/events/rules"
)

//go:embed plugin-units.json
var ruleFile []byte

// ruleVisibility is the visibility timeout the plug-in's rule gives its
// queue: the worker renews deliveries at a third of it.
func ruleVisibility() (time.Duration, error) {
	r, err := rules.Parse(ruleFile)
	if err != nil {
		return 0, fmt.Errorf("plugin-units.json: %w", err)
	}
	return time.Duration(r.Target.VisibilityTimeoutSeconds) * time.Second, nil
}
