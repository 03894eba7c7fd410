package planner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"

	"github.com/agentbus/agentbus/events"
)

// Defaults for an agent definition's limits when neither the definition nor
// the planner's Config sets them. They are deliberately small: a run that
// forgets to set limits must not run long or spend much.
const (
	DefaultMaxSteps        = 10
	DefaultMaxTokens       = 50_000
	DefaultTimeout         = 5 * time.Minute
	DefaultMaxOutputTokens = 4096
	DefaultAgentName       = "default"
)

// ErrInvalidAgent marks a malformed agent definition.
var ErrInvalidAgent = errors.New("invalid agent definition")

var agentNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// LoadAgentFile reads an agent definition (the JSON form of
// events.AgentSpec) and validates it. Unknown fields are rejected so that a
// typo ("maxStep") is reported rather than silently ignored.
func LoadAgentFile(path string) (events.AgentSpec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return events.AgentSpec{}, fmt.Errorf("agent file: %w", err)
	}
	spec, err := ParseAgent(b)
	if err != nil {
		return events.AgentSpec{}, fmt.Errorf("agent file %s: %w", path, err)
	}
	return spec, nil
}

// ParseAgent decodes and validates an agent definition.
func ParseAgent(b []byte) (events.AgentSpec, error) {
	var spec events.AgentSpec
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return events.AgentSpec{}, fmt.Errorf("%w: %v", ErrInvalidAgent, err)
	}
	if dec.More() {
		return events.AgentSpec{}, fmt.Errorf("%w: trailing data after the JSON object", ErrInvalidAgent)
	}
	if err := ValidateAgent(spec); err != nil {
		return events.AgentSpec{}, err
	}
	return spec, nil
}

// ValidateAgent checks an agent definition: a usable name, tool names
// present and unique, limits not negative.
func ValidateAgent(spec events.AgentSpec) error {
	if spec.Name != "" && !agentNameRE.MatchString(spec.Name) {
		return fmt.Errorf("%w: name %q must be 1-64 letters, digits, '.', '_' or '-'", ErrInvalidAgent, spec.Name)
	}
	seen := map[string]bool{}
	for i, t := range spec.Tools {
		if t == "" {
			return fmt.Errorf("%w: tools[%d] is empty", ErrInvalidAgent, i)
		}
		if seen[t] {
			return fmt.Errorf("%w: tools[%d] %q is listed twice", ErrInvalidAgent, i, t)
		}
		seen[t] = true
	}
	if l := spec.Limits; l != nil {
		for name, v := range map[string]int{"maxSteps": l.MaxSteps, "maxTokens": l.MaxTokens, "timeoutSeconds": l.TimeoutSeconds} {
			if v < 0 {
				return fmt.Errorf("%w: limits.%s is %d, must not be negative", ErrInvalidAgent, name, v)
			}
		}
	}
	return nil
}

// agent is a resolved definition: every limit set.
type agent struct {
	Name            string        `json:"name"`
	Model           string        `json:"model,omitempty"`
	System          string        `json:"system,omitempty"`
	Tools           []string      `json:"tools"`
	MaxSteps        int           `json:"maxSteps"`
	MaxTokens       int           `json:"maxTokens"`
	Timeout         time.Duration `json:"timeout"`
	MaxOutputTokens int           `json:"maxOutputTokens"`
}

// resolve fills a definition's gaps from the planner's defaults.
func (c Config) resolve(spec *events.AgentSpec) agent {
	a := agent{
		Name:            DefaultAgentName,
		Model:           c.DefaultModel,
		System:          c.DefaultSystem,
		Tools:           c.DefaultTools,
		MaxSteps:        orDefault(c.MaxSteps, DefaultMaxSteps),
		MaxTokens:       orDefault(c.MaxTokens, DefaultMaxTokens),
		Timeout:         c.Timeout,
		MaxOutputTokens: orDefault(c.MaxOutputTokens, DefaultMaxOutputTokens),
	}
	if a.Timeout <= 0 {
		a.Timeout = DefaultTimeout
	}
	if spec == nil {
		return a
	}
	if spec.Name != "" {
		a.Name = spec.Name
	}
	if spec.Model != "" {
		a.Model = spec.Model
	}
	if spec.System != "" {
		a.System = spec.System
	}
	if spec.Tools != nil {
		a.Tools = spec.Tools
	}
	if l := spec.Limits; l != nil {
		a.MaxSteps = orDefault(l.MaxSteps, a.MaxSteps)
		a.MaxTokens = orDefault(l.MaxTokens, a.MaxTokens)
		if l.TimeoutSeconds > 0 {
			a.Timeout = time.Duration(l.TimeoutSeconds) * time.Second
		}
	}
	return a
}

func orDefault(v, d int) int {
	if v > 0 {
		return v
	}
	return d
}
