package events

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/agentbus/agentbus/events/internal/fastschema"
)

var (
	// ErrInvalidEvent is wrapped by every contract violation: a schema
	// violation, a missing required extension, an unknown type.
	ErrInvalidEvent = errors.New("events: invalid event")
	// ErrUnknownType is wrapped (together with ErrInvalidEvent) when no schema
	// exists for the event's type.
	ErrUnknownType = errors.New("unknown event type")
)

//go:embed schemas/*.json
var schemaFiles embed.FS

// schemaBase is the $id base of the embedded schemas; plug-in schemas may
// $ref "https://agentbus.dev/schemas/cloudevent.json" for the common part.
const schemaBase = "https://agentbus.dev/schemas/"

// Schemas returns the embedded JSON Schemas: cloudevent.json (the common
// attributes and extensions) and one <type>.json per event type.
func Schemas() fs.FS {
	sub, err := fs.Sub(schemaFiles, "schemas")
	if err != nil {
		// fs.Sub fails only for an invalid literal path.
		panic(err)
	}
	return sub
}

// Violation is one broken rule in an event.
type Violation struct {
	// Field is a JSON pointer into the CloudEvent JSON, e.g. "/data/calls/0/name".
	Field string `json:"field"`
	// Rule is the schema keyword (required, type, pattern, enum, minItems,
	// ...) or "consistency" for cross-field checks.
	Rule string `json:"rule"`
	// Message explains the violation.
	Message string `json:"message"`
}

func (v Violation) String() string {
	f := v.Field
	if f == "" {
		f = "/"
	}
	return fmt.Sprintf("%s: %s: %s", f, v.Rule, v.Message)
}

// ValidationError names the event type and every violated field and rule.
// It matches errors.Is(err, ErrInvalidEvent).
type ValidationError struct {
	Type, Source, ID string
	Violations       []Violation
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.String()
	}
	return fmt.Sprintf("events: invalid %s event (source %q, id %q): %s", e.Type, e.Source, e.ID, strings.Join(parts, "; "))
}

// Is makes errors.Is(err, ErrInvalidEvent) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidEvent }

// Validator checks whole CloudEvents (attributes, extensions, data) against
// the JSON Schema of their type. Schemas are compiled once by NewValidator;
// a Validator is safe for concurrent use. Validate remembers (bounded) the
// events that passed, so validating the same content again in the same
// process — a consumer receiving what its publisher validated — costs a
// hash instead of a schema run; invalid events are never remembered.
//
// A schema run first asks a checker compiled from the same schema for the
// subset of JSON Schema the contract uses (internal/fastschema), a few
// times cheaper; only when it cannot vouch for the event does the general
// validator run, and it alone reports violations.
type Validator struct {
	schemas map[string]*jsonschema.Schema
	fast    map[string]*fastschema.Checker // types whose schema is in the subset
	printer *message.Printer
	valid   *validCache
}

type validatorConfig struct {
	extra map[string][]byte
}

// ValidatorOption configures NewValidator.
type ValidatorOption func(*validatorConfig) error

// WithSchema adds (or replaces) the schema of an event type, e.g. a plug-in's
// own event. The schema may $ref the embedded cloudevent.json by its $id.
func WithSchema(eventType string, schema []byte) ValidatorOption {
	return func(c *validatorConfig) error {
		if eventType == "" {
			return errors.New("events: WithSchema: empty event type")
		}
		if c.extra == nil {
			c.extra = map[string][]byte{}
		}
		c.extra[eventType] = schema
		return nil
	}
}

// NewValidator compiles the embedded schemas (and any added by options).
func NewValidator(opts ...ValidatorOption) (*Validator, error) {
	var cfg validatorConfig
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	docs := map[string][]byte{}
	files, err := fs.Glob(schemaFiles, "schemas/*.json")
	if err != nil {
		return nil, fmt.Errorf("events: list schemas: %w", err)
	}
	for _, f := range files {
		b, err := schemaFiles.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("events: read schema %s: %w", f, err)
		}
		docs[path.Base(f)] = b
	}
	types := map[string]string{} // event type -> resource URL
	for name := range docs {
		if typ, ok := strings.CutSuffix(name, ".json"); ok && typ != "cloudevent" {
			types[typ] = schemaBase + name
		}
	}
	for typ, b := range cfg.extra {
		name := "custom/" + typ + ".json"
		docs[name] = b
		types[typ] = schemaBase + name
	}
	resources := make(map[string]any, len(docs))
	for name, b := range docs {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("events: schema %s: %w", name, err)
		}
		if err := c.AddResource(schemaBase+name, doc); err != nil {
			return nil, fmt.Errorf("events: schema %s: %w", name, err)
		}
		resources[schemaBase+name] = doc
	}
	v := &Validator{schemas: make(map[string]*jsonschema.Schema, len(types)), fast: make(map[string]*fastschema.Checker, len(types)),
		printer: message.NewPrinter(language.English), valid: newValidCache(validCacheSize)}
	for typ, url := range types {
		s, err := c.Compile(url)
		if err != nil {
			return nil, fmt.Errorf("events: compile schema of %s: %w", typ, err)
		}
		v.schemas[typ] = s
		// A schema outside the subset (a plug-in's, say) just has no fast
		// path: every event of its type takes the general validator.
		if f, err := fastschema.Compile(resources, url); err == nil {
			v.fast[typ] = f
		}
	}
	return v, nil
}

// Types lists the event types the validator knows, sorted.
func (v *Validator) Types() []string {
	out := make([]string, 0, len(v.schemas))
	for t := range v.schemas {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Validate checks ev against the schema of its type. The error wraps
// ErrInvalidEvent (a *ValidationError for violations) and also ErrUnknownType
// when the type has no schema.
func (v *Validator) Validate(ev event.Event) error {
	fp, cacheable := fingerprint(v.valid.seed, &ev)
	if cacheable && v.valid.has(fp) {
		return nil
	}
	if doc, ok := eventDoc(&ev); ok {
		if err := v.validateDoc(doc); err != nil {
			return err
		}
	} else {
		b, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("%w: %s event (source %q, id %q): %v", ErrInvalidEvent, ev.Type(), ev.Source(), ev.ID(), err)
		}
		if err := v.ValidateJSON(b); err != nil {
			return err
		}
	}
	if cacheable {
		v.valid.add(fp)
	}
	return nil
}

// ValidateJSON checks a structured-mode CloudEvent given as JSON bytes (e.g.
// an EventBridge detail before it is decoded).
func (v *Validator) ValidateJSON(b []byte) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%w: not JSON: %v", ErrInvalidEvent, err)
	}
	return v.validateDoc(doc)
}

// validateDoc checks a decoded CloudEvent (numbers as json.Number).
func (v *Validator) validateDoc(doc any) error {
	obj, ok := doc.(map[string]any)
	if !ok {
		return fmt.Errorf("%w: a CloudEvent must be a JSON object, got %T", ErrInvalidEvent, doc)
	}
	typ, _ := obj["type"].(string)
	src, _ := obj["source"].(string)
	id, _ := obj["id"].(string)
	if typ == "" {
		return &ValidationError{Source: src, ID: id, Violations: []Violation{{Field: "/type", Rule: "required", Message: "missing or empty CloudEvents type"}}}
	}
	s, ok := v.schemas[typ]
	if !ok {
		return fmt.Errorf("%w: %w %q (source %q, id %q)", ErrInvalidEvent, ErrUnknownType, typ, src, id)
	}
	var vs []Violation
	if f := v.fast[typ]; f != nil && f.Check(doc) == fastschema.Valid {
		// Certainly valid: the general validator would find nothing.
	} else if err := s.Validate(doc); err != nil {
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			return fmt.Errorf("%w: %s event (source %q, id %q): %v", ErrInvalidEvent, typ, src, id, err)
		}
		vs = v.flatten(ve, vs)
	}
	vs = append(vs, consistency(typ, obj)...)
	if len(vs) == 0 {
		return nil
	}
	sort.SliceStable(vs, func(i, j int) bool { return vs[i].Field < vs[j].Field })
	return &ValidationError{Type: typ, Source: src, ID: id, Violations: dedupe(vs)}
}

// flatten turns the library's error tree into its leaves: one violation per
// broken keyword, each with the instance's JSON pointer.
func (v *Validator) flatten(e *jsonschema.ValidationError, out []Violation) []Violation {
	if len(e.Causes) > 0 {
		for _, c := range e.Causes {
			out = v.flatten(c, out)
		}
		return out
	}
	ptr := pointer(e.InstanceLocation)
	if req, ok := e.ErrorKind.(*kind.Required); ok {
		for _, m := range req.Missing {
			out = append(out, Violation{Field: ptr + "/" + escapePointer(m), Rule: "required", Message: "missing required field"})
		}
		return out
	}
	rule := strings.Join(e.ErrorKind.KeywordPath(), "/")
	if rule == "" {
		rule = "schema"
	}
	msg := e.ErrorKind.LocalizedString(v.printer)
	// The library prefixes some messages with the keyword; Rule says it already.
	msg = strings.TrimPrefix(msg, rule+": ")
	return append(out, Violation{Field: ptr, Rule: rule, Message: msg})
}

func pointer(tokens []string) string {
	var sb strings.Builder
	for _, t := range tokens {
		sb.WriteByte('/')
		sb.WriteString(escapePointer(t))
	}
	return sb.String()
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func dedupe(vs []Violation) []Violation {
	out := vs[:0]
	for i, v := range vs {
		if i > 0 && v == vs[i-1] {
			continue
		}
		out = append(out, v)
	}
	return out
}

// consistency checks what a schema cannot: the routing extensions must agree
// with the data they mirror (a rule routes on the extension, a consumer reads
// the data), and a tool call's idempotency key is "<sessionid>/<step>/<callId>".
func consistency(typ string, obj map[string]any) []Violation {
	data, ok := obj["data"].(map[string]any)
	if !ok {
		return nil // absent (offloaded) or already reported by the schema
	}
	var vs []Violation
	if ext, ok := obj[ExtStep].(json.Number); ok {
		if d, ok := data["step"].(json.Number); ok && !sameNumber(ext, d) {
			vs = append(vs, Violation{Field: "/step", Rule: "consistency", Message: fmt.Sprintf("step extension %s differs from data.step %s", ext, d)})
		}
	}
	if ext, ok := obj[ExtToolName].(string); ok {
		if d, ok := data["tool"].(string); ok && ext != d {
			vs = append(vs, Violation{Field: "/toolname", Rule: "consistency", Message: fmt.Sprintf("toolname extension %q differs from data.tool %q", ext, d)})
		}
	}
	if typ == TypeToolInvocationRequested {
		sid, _ := obj[ExtSessionID].(string)
		step, okStep := data["step"].(json.Number)
		call, okCall := data["callId"].(string)
		key, okKey := data["idempotencyKey"].(string)
		if okStep && okCall && okKey {
			n, err := step.Int64()
			if want := sid + "/" + strconv.FormatInt(n, 10) + "/" + call; err == nil && key != want {
				vs = append(vs, Violation{Field: "/data/idempotencyKey", Rule: "consistency", Message: fmt.Sprintf("is %q, want %q (<sessionid>/<step>/<callId>)", key, want)})
			}
		}
	}
	return vs
}

func sameNumber(a, b json.Number) bool {
	if a == b {
		return true
	}
	x, err1 := a.Float64()
	y, err2 := b.Float64()
	return err1 == nil && err2 == nil && x == y
}
