package state

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"time"
)

// ToolSpec is the stored spec of a tool a plug-in serves in its own
// process. Plug-ins register their specs here so that the planner (which
// offers them to the model) and the executor (which routes calls) know them,
// in whatever process or host those services run. The store keeps the spec
// opaque: the tools package owns its format.
type ToolSpec struct {
	// Name is the tool's name; unique in the store ([a-zA-Z0-9_-]{1,64}).
	Name string
	// Plugin names the plug-in that registered the spec (informational).
	Plugin string
	// Spec is the tool spec as JSON (tools.Spec's wire form).
	Spec []byte
	// UpdatedAt is set by the store.
	UpdatedAt time.Time
}

// ToolSpecs stores plug-in tool specs. It is a separate interface from
// Store: only the runtime's wiring and plug-ins use it. Both sqlite and
// dynamodb implement it (statetest checks).
type ToolSpecs interface {
	// PutToolSpecs adds or replaces the specs by name. Each Name must be a
	// valid tool name and each Spec a JSON object (ErrInvalid otherwise);
	// nothing is written when one is invalid.
	PutToolSpecs(ctx context.Context, specs ...ToolSpec) error
	// ListToolSpecs returns every stored spec, sorted by name.
	ListToolSpecs(ctx context.Context) ([]ToolSpec, error)
	// DeleteToolSpec removes a spec; a missing name is not an error.
	DeleteToolSpec(ctx context.Context, name string) error
}

// MaxToolSpecSize bounds one stored spec (its JSON), far under a DynamoDB
// item; a tool's schema is a few kilobytes.
const MaxToolSpecSize = 64 * 1024

var toolNameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// ValidateToolSpec checks what a store needs of a ToolSpec: a tool name and
// a JSON object of bounded size.
func ValidateToolSpec(s ToolSpec) error {
	if !toolNameRE.MatchString(s.Name) {
		return fmt.Errorf("%w: tool name %q must match %s", ErrInvalid, s.Name, toolNameRE)
	}
	if len(s.Spec) > MaxToolSpecSize {
		return fmt.Errorf("%w: tool spec %s is %d bytes (limit %d)", ErrInvalid, s.Name, len(s.Spec), MaxToolSpecSize)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(s.Spec, &obj); err != nil || obj == nil {
		return fmt.Errorf("%w: tool spec %s is not a JSON object", ErrInvalid, s.Name)
	}
	return nil
}
