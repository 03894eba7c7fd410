package saga

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// ErrInvalid marks a definition that does not validate; the error text names
// the offending field (e.g. "steps[2].compensation.input.amount").
var ErrInvalid = errors.New("invalid saga definition")

// Limits of the fields Validate checks.
const (
	MaxRetryAttempts        = 10
	MaxRetryIntervalSeconds = 3600
	MaxBackoffRate          = 10
	MaxTimeoutSeconds       = 86400
)

var (
	// nameRE is the tool-name rule (tools.Spec.Name): the saga is offered to
	// the model as a tool of that name.
	nameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	// stepNameRE: a step name becomes an ASL state name and a JSON path
	// segment ("$.steps.<step>"), so no hyphen or dot.
	stepNameRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)
)

// State names the generated state machine uses besides the steps
// themselves; a step may not take one (nor start with Failed_ or Undo_).
const (
	stateCheckCompensation  = "CheckCompensation"
	stateCompensated        = "Compensated"
	stateCheckError         = "CheckError"
	stateCompensatedRuntime = "CompensatedRuntimeError"
	stateCompensationFailed = "CompensationFailed"
	stateDone               = "Done"
	stateSucceeded          = "Succeeded"
	prefixFailed            = "Failed_"
	prefixUndo              = "Undo_"
)

var reservedStates = []string{stateCheckCompensation, stateCheckError, stateCompensated, stateCompensatedRuntime, stateCompensationFailed, stateDone, stateSucceeded}

// defaultInputSchema is the input schema of a definition that gives none:
// any object.
var defaultInputSchema = json.RawMessage(`{"type":"object"}`)

// EffectiveRetry is the step's retry policy with defaults applied: a zero
// Retry is DefaultRetry, and a zero BackoffRate is DefaultRetry's.
func (s Step) EffectiveRetry() Retry {
	if s.Retry == (Retry{}) {
		return DefaultRetry
	}
	r := s.Retry
	if r.BackoffRate == 0 {
		r.BackoffRate = DefaultRetry.BackoffRate
	}
	return r
}

// EffectiveTimeoutSeconds is TimeoutSeconds, or DefaultTimeoutSeconds when
// zero.
func (s Step) EffectiveTimeoutSeconds() int {
	if s.TimeoutSeconds <= 0 {
		return DefaultTimeoutSeconds
	}
	return s.TimeoutSeconds
}

// OutputTemplate is the template of the saga's result: Output, or "$.steps"
// (every step's output) when Output is empty.
func (d Definition) OutputTemplate() json.RawMessage {
	if len(bytes.TrimSpace(d.Output)) == 0 {
		return json.RawMessage(`"$.steps"`)
	}
	return d.Output
}

// Parse decodes one definition file: strict JSON (an unknown field or
// trailing data is an error), defaults applied, then Validate. Defaults: an
// omitted "retry" is DefaultRetry; inside a given "retry" an omitted field
// takes DefaultRetry's value, so {"maxAttempts": 0} means "no retries"; an
// omitted timeoutSeconds is DefaultTimeoutSeconds; an omitted inputSchema is
// {"type": "object"}.
func Parse(b []byte) (Definition, error) {
	var d Definition
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return Definition{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Definition{}, fmt.Errorf("%w: trailing data after the definition", ErrInvalid)
	}
	// A second, lenient pass learns which retry fields were written: the
	// Go zero value cannot tell "omitted" from "0".
	var given struct {
		Steps []struct {
			Retry *struct {
				MaxAttempts     *int     `json:"maxAttempts"`
				IntervalSeconds *int     `json:"intervalSeconds"`
				BackoffRate     *float64 `json:"backoffRate"`
			} `json:"retry"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(b, &given); err != nil {
		return Definition{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for i := range d.Steps {
		s := &d.Steps[i]
		if i < len(given.Steps) && given.Steps[i].Retry != nil {
			g := given.Steps[i].Retry
			if g.MaxAttempts == nil {
				s.Retry.MaxAttempts = DefaultRetry.MaxAttempts
			}
			if g.IntervalSeconds == nil {
				s.Retry.IntervalSeconds = DefaultRetry.IntervalSeconds
			}
			if g.BackoffRate == nil || *g.BackoffRate == 0 {
				s.Retry.BackoffRate = DefaultRetry.BackoffRate
			}
		} else {
			s.Retry = DefaultRetry
		}
		if s.TimeoutSeconds == 0 {
			s.TimeoutSeconds = DefaultTimeoutSeconds
		}
	}
	if len(bytes.TrimSpace(d.InputSchema)) == 0 {
		d.InputSchema = append(json.RawMessage(nil), defaultInputSchema...)
	}
	if err := d.Validate(); err != nil {
		return Definition{}, err
	}
	return d, nil
}

// Load parses every *.json file at the top level of fsys, sorted by file
// name. An error names the file; two files defining the same saga name are
// an error too.
func Load(fsys fs.FS) ([]Definition, error) {
	files, err := fs.Glob(fsys, "*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var defs []Definition
	seen := map[string]string{}
	for _, f := range files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, fmt.Errorf("saga %s: %w", f, err)
		}
		d, err := Parse(b)
		if err != nil {
			return nil, fmt.Errorf("saga %s: %w", f, err)
		}
		if other, ok := seen[d.Name]; ok {
			return nil, fmt.Errorf("saga %s: %w: name %q is already defined in %s", f, ErrInvalid, d.Name, path.Base(other))
		}
		seen[d.Name] = f
		defs = append(defs, d)
	}
	return defs, nil
}

// Validate checks the definition and returns every problem found, joined;
// each wraps ErrInvalid and starts with the field it is about. Zero values
// that mean a default (Retry, TimeoutSeconds, InputSchema) are accepted.
func (d Definition) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...)))
	}
	if !nameRE.MatchString(d.Name) {
		bad("name", "%q must match %s (a tool name)", d.Name, nameRE)
	}
	if err := checkSchema(d.InputSchema); err != nil {
		bad("inputSchema", "%v", err)
	}
	if len(d.Steps) == 0 {
		bad("steps", "at least one step is required")
	}
	index := map[string]int{}
	for i, s := range d.Steps {
		f := fmt.Sprintf("steps[%d]", i)
		switch {
		case !stepNameRE.MatchString(s.Name):
			bad(f+".name", "%q must match %s", s.Name, stepNameRE)
		case isReserved(s.Name):
			bad(f+".name", "%q is reserved for a generated state (%s, or a %s/%s prefix)", s.Name, strings.Join(reservedStates, ", "), prefixFailed, prefixUndo)
		default:
			if j, dup := index[s.Name]; dup {
				bad(f+".name", "%q is already the name of steps[%d]", s.Name, j)
			} else {
				index[s.Name] = i
			}
		}
		// Templates may read the saga input and the steps before this one
		// (a compensation also its own step).
		earlier := map[string]bool{}
		for _, p := range d.Steps[:i] {
			earlier[p.Name] = true
		}
		checkCall(f+".action", s.Action, earlier, bad)
		if s.Compensation != nil {
			withOwn := map[string]bool{s.Name: true}
			for k := range earlier {
				withOwn[k] = true
			}
			checkCall(f+".compensation", *s.Compensation, withOwn, bad)
		}
		r := s.Retry
		if r.MaxAttempts < 0 || r.MaxAttempts > MaxRetryAttempts {
			bad(f+".retry.maxAttempts", "%d is not in 0..%d", r.MaxAttempts, MaxRetryAttempts)
		}
		if r.IntervalSeconds < 0 || r.IntervalSeconds > MaxRetryIntervalSeconds {
			bad(f+".retry.intervalSeconds", "%d is not in 0..%d", r.IntervalSeconds, MaxRetryIntervalSeconds)
		}
		if r.BackoffRate != 0 && (r.BackoffRate < 1 || r.BackoffRate > MaxBackoffRate) {
			bad(f+".retry.backoffRate", "%g is not in 1..%d (0 means the default)", r.BackoffRate, MaxBackoffRate)
		}
		if s.TimeoutSeconds < 0 || s.TimeoutSeconds > MaxTimeoutSeconds {
			bad(f+".timeoutSeconds", "%d is not in 1..%d (0 means the default)", s.TimeoutSeconds, MaxTimeoutSeconds)
		}
		if s.HeartbeatSeconds < 0 {
			bad(f+".heartbeatSeconds", "%d is negative", s.HeartbeatSeconds)
		} else if s.HeartbeatSeconds > 0 && s.HeartbeatSeconds >= s.EffectiveTimeoutSeconds() {
			bad(f+".heartbeatSeconds", "%d must be less than the timeout (%d s)", s.HeartbeatSeconds, s.EffectiveTimeoutSeconds())
		}
	}
	if len(bytes.TrimSpace(d.Output)) > 0 {
		all := map[string]bool{}
		for _, s := range d.Steps {
			all[s.Name] = true
		}
		checkTemplate("output", d.Output, all, true, bad)
	}
	return errors.Join(errs...)
}

func isReserved(name string) bool {
	for _, r := range reservedStates {
		if name == r {
			return true
		}
	}
	return strings.HasPrefix(name, prefixFailed) || strings.HasPrefix(name, prefixUndo)
}

func checkCall(field string, c Call, steps map[string]bool, bad func(string, string, ...any)) {
	if !nameRE.MatchString(c.Tool) {
		bad(field+".tool", "%q must match %s (a tool name)", c.Tool, nameRE)
	}
	if len(bytes.TrimSpace(c.Input)) > 0 {
		checkTemplate(field+".input", c.Input, steps, false, bad)
	}
}

// checkSchema: an empty schema means {"type":"object"}; otherwise it must
// be JSON Schema that compiles, with "type": "object" (a tool input).
func checkSchema(raw json.RawMessage) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	if m, ok := doc.(map[string]any); !ok || m["type"] != "object" {
		return errors.New(`must be a JSON Schema with "type": "object"`)
	}
	c := jsonschema.NewCompiler()
	const url = "agentbus:saga/input.json"
	if err := c.AddResource(url, doc); err != nil {
		return err
	}
	if _, err := c.Compile(url); err != nil {
		return fmt.Errorf("does not compile: %v", err)
	}
	return nil
}
