package local

import (
	"fmt"
	"time"

	"github.com/agentbus/agentbus/events/rules"
)

// FromCatalog turns catalog rules (events/rules) into the bus's rules and
// queue settings, for Options.Rules and Options.Queues.
func FromCatalog(rs []rules.Rule) ([]Rule, []QueueConfig, error) {
	specs, err := rules.Queues(rs)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	out := make([]Rule, 0, len(rs))
	for _, r := range rs {
		out = append(out, Rule{Name: r.Name, Pattern: r.EventPattern, Queue: r.Target.Queue})
	}
	qs := make([]QueueConfig, 0, len(specs))
	for _, s := range specs {
		qs = append(qs, QueueConfig{
			Name: s.Name, MaxReceiveCount: s.MaxReceiveCount,
			Visibility: time.Duration(s.VisibilityTimeoutSeconds) * time.Second,
		})
	}
	return out, qs, nil
}
