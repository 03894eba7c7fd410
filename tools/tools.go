// Package tools declares what an agentbus tool is (a Spec the model sees and a
// Run the tool-gateway calls), the Registry that holds built-in tools and the
// specs of plug-in tools served elsewhere, and input validation against each
// tool's JSON Schema. Built-in tools live in tools/builtin/...
package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// DefaultTimeout is used for a tool whose Spec leaves Timeout zero.
const DefaultTimeout = 30 * time.Second

// Errors callers check with errors.Is.
var (
	// ErrInvalidInput marks input that does not match the tool's schema (or a
	// tool's own semantic checks, e.g. a malformed expression). Not retryable.
	ErrInvalidInput = errors.New("invalid tool input")
	// ErrUnknownTool is returned for a name that is not registered.
	ErrUnknownTool = errors.New("unknown tool")
	// ErrDuplicate is returned when registering a name that is already taken
	// by a tool with a local implementation.
	ErrDuplicate = errors.New("tool already registered")
	// ErrInvalidSpec is returned for a spec with a bad name, a schema that does
	// not compile, or a negative timeout.
	ErrInvalidSpec = errors.New("invalid tool spec")
	// ErrNotLocal is returned when asked to run a tool whose spec is registered
	// but whose implementation is served by a plug-in elsewhere.
	ErrNotLocal = errors.New("tool is not served locally")
)

// Spec describes a tool to the model and to the runtime.
type Spec struct {
	// Name is what the model calls; [a-zA-Z0-9_-]{1,64} (the Bedrock limit).
	Name string
	// Description tells the model when and how to use the tool.
	Description string
	// InputSchema is the JSON Schema (object) of the tool's input.
	InputSchema json.RawMessage
	// Idempotent declares that running the tool twice with the same input and
	// idempotency key has the effect of running it once. Only idempotent tools
	// are re-run when a lease holder died mid-call; others report
	// outcome_unknown. Side-effecting tools must leave this false.
	Idempotent bool
	// Timeout bounds one run; zero means DefaultTimeout.
	Timeout time.Duration
}

// specJSON is the wire form of a Spec (timeout in milliseconds, camelCase).
type specJSON struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	InputSchema json.RawMessage `json:"inputSchema"`
	Idempotent  bool            `json:"idempotent"`
	TimeoutMs   int64           `json:"timeoutMs,omitempty"`
}

// MarshalJSON encodes the spec with camelCase fields and timeoutMs.
func (s Spec) MarshalJSON() ([]byte, error) {
	return json.Marshal(specJSON{
		Name: s.Name, Description: s.Description, InputSchema: s.InputSchema,
		Idempotent: s.Idempotent, TimeoutMs: s.Timeout.Milliseconds(),
	})
}

// UnmarshalJSON decodes the form MarshalJSON writes (how plug-ins send specs).
func (s *Spec) UnmarshalJSON(b []byte) error {
	var j specJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = Spec{Name: j.Name, Description: j.Description, InputSchema: j.InputSchema,
		Idempotent: j.Idempotent, Timeout: time.Duration(j.TimeoutMs) * time.Millisecond}
	return nil
}

// EffectiveTimeout is Timeout, or DefaultTimeout when unset.
func (s Spec) EffectiveTimeout() time.Duration {
	if s.Timeout <= 0 {
		return DefaultTimeout
	}
	return s.Timeout
}

// Call is one invocation of a tool.
type Call struct {
	// Input is the JSON object the model produced, already validated against
	// the tool's InputSchema by the gateway.
	Input json.RawMessage
	// IdempotencyKey is "<sessionid>/<step>/<callId>"; a tool with external
	// side effects passes it on (e.g. as an Idempotency-Key header) so that a
	// re-run of an idempotent tool is recognised downstream.
	IdempotencyKey string
	SessionID      string
	Step           int
	CallID         string
}

// IdempotencyKey builds the key of one tool call, as fixed by the contract.
func IdempotencyKey(sessionID string, step int, callID string) string {
	return fmt.Sprintf("%s/%d/%s", sessionID, step, callID)
}

// Tool is a tool with a local implementation.
type Tool interface {
	Spec() Spec
	// Run executes one call. It must honour ctx (the gateway's timeout). An
	// error wrapping ErrInvalidInput is reported as invalid_input; any other
	// error as tool_error.
	Run(ctx context.Context, call Call) (json.RawMessage, error)
}

// Entry is one registered tool: its spec, its compiled schema and, when it is
// served in this process, its implementation.
type Entry struct {
	spec   Spec
	tool   Tool // nil when a plug-in serves it elsewhere
	schema *jsonschema.Schema
}

// Spec returns the tool's spec.
func (e *Entry) Spec() Spec { return e.spec }

// Tool returns the local implementation, or nil when the tool is served
// elsewhere (a plug-in).
func (e *Entry) Tool() Tool { return e.tool }

// Local reports whether this process can run the tool.
func (e *Entry) Local() bool { return e.tool != nil }

// Validate checks input against the tool's schema. An empty input counts as
// {}. The error wraps ErrInvalidInput and names each offending field.
func (e *Entry) Validate(input json.RawMessage) error {
	return validate(e.spec.Name, e.schema, input)
}

// Run validates input and runs the local implementation with the spec's
// timeout. It returns ErrNotLocal for a plug-in tool.
func (e *Entry) Run(ctx context.Context, call Call) (json.RawMessage, error) {
	if e.tool == nil {
		return nil, fmt.Errorf("%s: %w", e.spec.Name, ErrNotLocal)
	}
	if err := e.Validate(call.Input); err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(call.Input)) == 0 {
		call.Input = json.RawMessage(`{}`)
	}
	ctx, cancel := context.WithTimeout(ctx, e.spec.EffectiveTimeout())
	defer cancel()
	return e.tool.Run(ctx, call)
}

// Registry holds the tools known to a process. It is safe for concurrent use:
// plug-ins may register while services look tools up.
type Registry struct {
	mu      sync.RWMutex
	entries map[string]*Entry
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{entries: map[string]*Entry{}}
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

func compile(s Spec) (*Entry, error) {
	if !nameRE.MatchString(s.Name) {
		return nil, fmt.Errorf("%w: name %q must match %s", ErrInvalidSpec, s.Name, nameRE)
	}
	if s.Timeout < 0 {
		return nil, fmt.Errorf("%w: %s: negative timeout", ErrInvalidSpec, s.Name)
	}
	if len(bytes.TrimSpace(s.InputSchema)) == 0 {
		return nil, fmt.Errorf("%w: %s: missing input schema", ErrInvalidSpec, s.Name)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(s.InputSchema))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: input schema is not JSON: %v", ErrInvalidSpec, s.Name, err)
	}
	if m, ok := doc.(map[string]any); !ok || m["type"] != "object" {
		return nil, fmt.Errorf("%w: %s: input schema must have \"type\": \"object\"", ErrInvalidSpec, s.Name)
	}
	c := jsonschema.NewCompiler()
	url := "agentbus:tool/" + s.Name + ".json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidSpec, s.Name, err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: schema does not compile: %v", ErrInvalidSpec, s.Name, err)
	}
	return &Entry{spec: s, schema: sch}, nil
}

// Register adds a tool served in this process. A name already taken by a
// local tool is ErrDuplicate; a plug-in spec of the same name is replaced by
// the local implementation.
func (r *Registry) Register(t Tool) error {
	e, err := compile(t.Spec())
	if err != nil {
		return err
	}
	e.tool = t
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.entries[e.spec.Name]; ok && old.tool != nil {
		return fmt.Errorf("%w: %s", ErrDuplicate, e.spec.Name)
	}
	r.entries[e.spec.Name] = e
	return nil
}

// RegisterSpec adds (or updates) the spec of a tool that a plug-in serves
// elsewhere: the planner offers it to the model and the executor routes calls
// to it, but this process does not run it. A name taken by a local tool is
// ErrDuplicate.
func (r *Registry) RegisterSpec(s Spec) error {
	e, err := compile(s)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.entries[s.Name]; ok && old.tool != nil {
		return fmt.Errorf("%w: %s", ErrDuplicate, s.Name)
	}
	r.entries[s.Name] = e
	return nil
}

// Unregister removes a plug-in spec; local tools stay (they are part of the
// binary). It reports whether something was removed.
func (r *Registry) Unregister(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[name]
	if !ok || e.tool != nil {
		return false
	}
	delete(r.entries, name)
	return true
}

// Lookup returns the entry for name, or an error wrapping ErrUnknownTool.
func (r *Registry) Lookup(name string) (*Entry, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.entries[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownTool, name)
	}
	return e, nil
}

// Validate checks input for the named tool; see Entry.Validate.
func (r *Registry) Validate(name string, input json.RawMessage) error {
	e, err := r.Lookup(name)
	if err != nil {
		return err
	}
	return e.Validate(input)
}

// All returns every registered spec, sorted by name.
func (r *Registry) All() []Spec {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Spec, 0, len(r.entries))
	for _, e := range r.entries {
		out = append(out, e.spec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Specs returns the specs of the allow-listed tools that are registered, in
// allow-list order without duplicates; names not registered are skipped (see
// Missing). A nil allow list means every registered tool.
func (r *Registry) Specs(allow []string) []Spec {
	if allow == nil {
		return r.All()
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Spec, 0, len(allow))
	seen := map[string]bool{}
	for _, n := range allow {
		if e, ok := r.entries[n]; ok && !seen[n] {
			seen[n] = true
			out = append(out, e.spec)
		}
	}
	return out
}

// Missing returns the names in allow that are not registered, sorted.
func (r *Registry) Missing(allow []string) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for _, n := range allow {
		if _, ok := r.entries[n]; !ok && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// FieldError is one schema violation: where in the input, and what.
type FieldError struct {
	// Path is a JSON pointer into the input ("" for the input itself).
	Path    string
	Message string
}

// InputError reports why an input does not match a tool's schema. It wraps
// ErrInvalidInput.
type InputError struct {
	Tool   string
	Fields []FieldError
	// Cause is set when the input is not JSON at all.
	Cause error
}

func (e *InputError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "invalid input for tool %q", e.Tool)
	if e.Cause != nil {
		fmt.Fprintf(&sb, ": %v", e.Cause)
	}
	for i, f := range e.Fields {
		if i == 0 {
			sb.WriteString(": ")
		} else {
			sb.WriteString("; ")
		}
		p := f.Path
		if p == "" {
			p = "(input)"
		}
		fmt.Fprintf(&sb, "%s: %s", p, f.Message)
	}
	return sb.String()
}

// Is makes errors.Is(err, ErrInvalidInput) true.
func (e *InputError) Is(target error) bool { return target == ErrInvalidInput }

var printer = message.NewPrinter(language.English)

func validate(tool string, sch *jsonschema.Schema, input json.RawMessage) error {
	if len(bytes.TrimSpace(input)) == 0 {
		input = json.RawMessage(`{}`)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(input))
	if err != nil {
		return &InputError{Tool: tool, Cause: fmt.Errorf("not valid JSON: %w", err)}
	}
	err = sch.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return &InputError{Tool: tool, Cause: err}
	}
	ie := &InputError{Tool: tool}
	collect(ve, ie)
	if len(ie.Fields) == 0 {
		ie.Cause = err
	}
	return ie
}

// collect flattens the validation tree into its leaves, which carry the
// precise location and message (the inner nodes only say "validation failed").
func collect(ve *jsonschema.ValidationError, ie *InputError) {
	if len(ve.Causes) > 0 {
		for _, c := range ve.Causes {
			collect(c, ie)
		}
		return
	}
	if _, ok := ve.ErrorKind.(*kind.Schema); ok {
		return
	}
	path := ""
	for _, tok := range ve.InstanceLocation {
		path += "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(tok)
	}
	ie.Fields = append(ie.Fields, FieldError{Path: path, Message: ve.ErrorKind.LocalizedString(printer)})
}
