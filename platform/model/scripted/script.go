package scripted

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"text/template"

	"github.com/agentbus/agentbus/platform/model"
)

// ErrInvalidScript is wrapped by every error of Parse and LoadFile.
var ErrInvalidScript = errors.New("scripted: invalid script")

//go:embed default.json
var defaultScript []byte

// DefaultJSON returns the embedded default script (the demo prompts of the
// README and a catch-all answer), e.g. as a starting point for a custom one.
func DefaultJSON() []byte { return bytes.Clone(defaultScript) }

// Default parses the embedded default script.
func Default() (*Script, error) { return Parse(defaultScript) }

// LoadFile reads and parses a script file.
func LoadFile(path string) (*Script, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidScript, err)
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// The JSON form of a script. See docs/model.md for the format.
type fileJSON struct {
	Entries []entryJSON `json:"entries"`
	Default *entryJSON  `json:"default"`
}

type entryJSON struct {
	Name       string     `json:"name"`
	Match      *matchJSON `json:"match"`
	Turns      []turnJSON `json:"turns"`
	RepeatLast bool       `json:"repeatLast"`
}

type matchJSON struct {
	Exact    *string `json:"exact"`
	Contains *string `json:"contains"`
	Regex    *string `json:"regex"`
}

type turnJSON struct {
	Text       string       `json:"text"`
	Calls      []callJSON   `json:"calls"`
	Answer     *string      `json:"answer"`
	StopReason string       `json:"stopReason"`
	Fail       *failJSON    `json:"fail"`
	Usage      *model.Usage `json:"usage"`
	DelayMs    int          `json:"delayMs"`
}

type callJSON struct {
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

type failJSON struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
	Times   int    `json:"times"`
}

// Script is a parsed, validated script. It is immutable and safe to share.
type Script struct {
	entries []*entry
	def     *entry
}

type entry struct {
	name       string
	exact      *string
	contains   *string
	regex      *regexp.Regexp
	turns      []*turn
	repeatLast bool
}

type turn struct {
	text       *template.Template // nil when empty
	calls      []call
	answer     *template.Template // nil for a calls turn
	stopReason model.StopReason   // "" = derived
	fail       *failure
	usage      *model.Usage
	delayMs    int
}

// maxDelayMs bounds a turn's delay (10 minutes): longer is a typo.
const maxDelayMs = 600_000

type call struct {
	id    string
	name  string
	input any // decoded JSON object; string leaves are template sources
	tmpls map[string]*template.Template
}

type failure struct {
	kind    error
	message string
	times   int // 0 = always
}

var failKinds = map[string]error{
	"throttled":       model.ErrThrottled,
	"transient":       model.ErrTransient,
	"invalid_request": model.ErrInvalidRequest,
	"access_denied":   model.ErrAccessDenied,
	"model_not_found": model.ErrModelNotFound,
	"model_error":     model.ErrModel,
}

// Parse parses and validates a JSON script. Unknown fields, bad regular
// expressions, bad templates and ill-formed turns are rejected with an error
// that names the entry and turn.
func Parse(data []byte) (*Script, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f fileJSON
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidScript, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the script object", ErrInvalidScript)
	}
	if len(f.Entries) == 0 && f.Default == nil {
		return nil, fmt.Errorf("%w: no entries and no default", ErrInvalidScript)
	}
	s := &Script{}
	for i, ej := range f.Entries {
		where := fmt.Sprintf("entries[%d]", i)
		if ej.Name != "" {
			where += fmt.Sprintf(" (%s)", ej.Name)
		}
		if ej.Match == nil {
			return nil, fmt.Errorf("%w: %s: no match (use the top-level \"default\" for a catch-all)", ErrInvalidScript, where)
		}
		e, err := compileEntry(ej, where)
		if err != nil {
			return nil, err
		}
		s.entries = append(s.entries, e)
	}
	if f.Default != nil {
		if f.Default.Match != nil {
			return nil, fmt.Errorf("%w: default: a default has no match", ErrInvalidScript)
		}
		e, err := compileEntry(*f.Default, "default")
		if err != nil {
			return nil, err
		}
		s.def = e
	}
	return s, nil
}

func compileEntry(ej entryJSON, where string) (*entry, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidScript, where, fmt.Sprintf(format, a...))
	}
	e := &entry{name: ej.Name, repeatLast: ej.RepeatLast}
	if m := ej.Match; m != nil {
		n := 0
		if m.Exact != nil {
			n++
			e.exact = m.Exact
		}
		if m.Contains != nil {
			n++
			e.contains = m.Contains
		}
		if m.Regex != nil {
			n++
			re, err := regexp.Compile(*m.Regex)
			if err != nil {
				return nil, bad("match.regex: %v", err)
			}
			e.regex = re
		}
		if n != 1 {
			return nil, bad("match needs exactly one of exact, contains, regex (has %d)", n)
		}
	}
	if len(ej.Turns) == 0 {
		return nil, bad("no turns")
	}
	for i, tj := range ej.Turns {
		t, err := compileTurn(tj)
		if err != nil {
			return nil, bad("turns[%d]: %v", i, err)
		}
		e.turns = append(e.turns, t)
	}
	return e, nil
}

func compileTurn(tj turnJSON) (*turn, error) {
	t := &turn{usage: tj.Usage, delayMs: tj.DelayMs}
	if tj.DelayMs < 0 || tj.DelayMs > maxDelayMs {
		return nil, fmt.Errorf("delayMs %d is outside [0, %d]", tj.DelayMs, maxDelayMs)
	}
	if u := tj.Usage; u != nil && (u.InputTokens < 0 || u.OutputTokens < 0) {
		return nil, errors.New("usage is negative")
	}
	alwaysFails := false
	if fj := tj.Fail; fj != nil {
		kind, ok := failKinds[fj.Kind]
		if !ok {
			return nil, fmt.Errorf("fail.kind %q is not one of throttled, transient, invalid_request, access_denied, model_not_found, model_error", fj.Kind)
		}
		if fj.Times < 0 {
			return nil, errors.New("fail.times is negative")
		}
		t.fail = &failure{kind: kind, message: fj.Message, times: fj.Times}
		alwaysFails = fj.Times == 0
	}
	hasCalls, hasAnswer := len(tj.Calls) > 0, tj.Answer != nil
	switch {
	case hasCalls && hasAnswer:
		return nil, errors.New("a turn has calls or an answer, not both")
	case !hasCalls && !hasAnswer && !alwaysFails:
		return nil, errors.New("a turn needs calls or an answer")
	case alwaysFails && (hasCalls || hasAnswer || tj.Text != ""):
		return nil, errors.New("a turn that always fails (fail.times 0) has nothing else")
	}
	var err error
	if tj.Text != "" {
		if hasAnswer {
			return nil, errors.New("text goes with calls; an answer turn's text is its answer")
		}
		if t.text, err = parseTemplate("text", tj.Text); err != nil {
			return nil, err
		}
	}
	if hasAnswer {
		if t.answer, err = parseTemplate("answer", *tj.Answer); err != nil {
			return nil, err
		}
	}
	ids := map[string]bool{}
	for i, cj := range tj.Calls {
		if cj.Name == "" {
			return nil, fmt.Errorf("calls[%d] has no name", i)
		}
		if cj.ID != "" {
			if ids[cj.ID] {
				return nil, fmt.Errorf("calls[%d]: id %q repeated", i, cj.ID)
			}
			ids[cj.ID] = true
		}
		c := call{id: cj.ID, name: cj.Name, tmpls: map[string]*template.Template{}}
		raw := cj.Input
		if len(raw) == 0 {
			raw = json.RawMessage(`{}`)
		}
		var obj map[string]any
		if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
			return nil, fmt.Errorf("calls[%d] (%s): input is not a JSON object", i, cj.Name)
		}
		c.input = obj
		if err := collectTemplates(obj, c.tmpls); err != nil {
			return nil, fmt.Errorf("calls[%d] (%s): %w", i, cj.Name, err)
		}
		t.calls = append(t.calls, c)
	}
	if tj.StopReason != "" {
		sr := model.StopReason(tj.StopReason)
		if !sr.Known() {
			return nil, fmt.Errorf("stopReason %q is not a known stop reason", tj.StopReason)
		}
		t.stopReason = sr
	}
	return t, nil
}

// collectTemplates parses every string leaf of v as a template, keyed by its
// source text (identical sources share one template).
func collectTemplates(v any, into map[string]*template.Template) error {
	switch x := v.(type) {
	case string:
		if _, ok := into[x]; ok {
			return nil
		}
		t, err := parseTemplate("input", x)
		if err != nil {
			return err
		}
		into[x] = t
	case map[string]any:
		for _, e := range x {
			if err := collectTemplates(e, into); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := collectTemplates(e, into); err != nil {
				return err
			}
		}
	}
	return nil
}
