// Package rules loads and checks the rule catalog: one JSON file per rule,
// naming an EventBridge event pattern and the queue it delivers to. The
// embedded bus loads the catalog at start; Terraform reads the same files with
// jsondecode(file(...)); plug-ins bring extra rules in the same format.
//
// The package checks a rule's structure only. Compiling the pattern belongs to
// platform/pattern, which events/ must not import (events/ is the contract and
// depends on nothing of platform/); the catalog test compiles every pattern.
package rules

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// ErrInvalidRule is wrapped by every error about a rule file or its content.
var ErrInvalidRule = errors.New("invalid rule")

// ErrQueueConflict reports two rules that give one queue different settings.
var ErrQueueConflict = errors.New("conflicting queue settings")

// Defaults applied by Load to a target that leaves a setting out.
const (
	DefaultMaxReceiveCount          = 5
	DefaultVisibilityTimeoutSeconds = 30
)

// Limits from the AWS services the catalog maps to.
const (
	maxNameLen          = 64    // EventBridge rule name
	maxDescriptionLen   = 512   // EventBridge rule description
	maxPatternLen       = 4096  // EventBridge PutRule EventPattern
	maxReceiveCountMax  = 1000  // SQS redrive policy maxReceiveCount
	maxVisibilitySecond = 43200 // SQS VisibilityTimeout (12 hours)
)

// EventBridge rule names: letters, digits, '.', '-', '_' (1..64).
var nameRE = regexp.MustCompile(`^[.\-_A-Za-z0-9]+$`)

// Queue names are short and become part of SQS queue names and Terraform
// resource names once an adapter prefixes them, so they stay lowercase.
var queueRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,39}$`)

// Rule routes every event its pattern matches to one queue.
type Rule struct {
	// Name is unique in a catalog and usable as an EventBridge rule name.
	Name string `json:"name"`
	// Description says why the route exists.
	Description string `json:"description"`
	// EventPattern is an EventBridge event pattern over the EventBridge
	// envelope: source, detail-type and detail.<CloudEvents attribute or
	// extension>. Never detail.data: data may be offloaded by a claim check.
	EventPattern json.RawMessage `json:"eventPattern"`
	// Target is the queue the rule delivers to.
	Target Target `json:"target"`
}

// Target is the queue side of a rule; its settings are per queue, so all
// rules of one queue must agree on them.
type Target struct {
	// Queue is the short queue name (planner, executor, ...).
	Queue string `json:"queue"`
	// MaxReceiveCount is how many receives a message gets before it moves
	// to the queue's DLQ.
	MaxReceiveCount int `json:"maxReceiveCount"`
	// VisibilityTimeoutSeconds hides a received message from other consumers
	// until it is acked, nacked or the time passes.
	VisibilityTimeoutSeconds int `json:"visibilityTimeoutSeconds"`
}

// QueueSpec is one queue the rules need, with its settings.
type QueueSpec struct {
	Name                     string   `json:"name"`
	MaxReceiveCount          int      `json:"maxReceiveCount"`
	VisibilityTimeoutSeconds int      `json:"visibilityTimeoutSeconds"`
	Rules                    []string `json:"rules"`
}

//go:embed *.json
var catalogFiles embed.FS

// CatalogFS returns the project's own rule files.
func CatalogFS() fs.FS { return catalogFiles }

// Catalog returns the project's own rules, sorted by name.
func Catalog() ([]Rule, error) {
	rs, err := Load(catalogFiles)
	if err != nil {
		return nil, fmt.Errorf("rules: embedded catalog: %w", err)
	}
	return rs, nil
}

// Load reads every *.json file at the root of fsys as one rule, applies the
// target defaults, validates each rule and rejects duplicate names. A file
// must be named <rule name>.json and may hold no unknown fields (a typo
// such as "eventpattern" would otherwise silently drop the pattern). It
// reports every problem found, joined; the rules come back sorted by name.
func Load(fsys fs.FS) ([]Rule, error) {
	files, err := fs.Glob(fsys, "*.json")
	if err != nil {
		return nil, fmt.Errorf("rules: list files: %w", err)
	}
	sort.Strings(files)
	var (
		out  []Rule
		errs []error
		seen = map[string]string{}
	)
	for _, f := range files {
		r, err := loadFile(fsys, f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, dup := seen[r.Name]; dup {
			errs = append(errs, fmt.Errorf("%w: %s: name %q already used by %s", ErrInvalidRule, f, r.Name, prev))
			continue
		}
		seen[r.Name] = f
		out = append(out, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func loadFile(fsys fs.FS, name string) (Rule, error) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return Rule{}, fmt.Errorf("%w: %s: %w", ErrInvalidRule, name, err)
	}
	r, err := Parse(b)
	if err != nil {
		return Rule{}, fmt.Errorf("%s: %w", name, err)
	}
	if want := r.Name + ".json"; path.Base(name) != want {
		return Rule{}, fmt.Errorf("%w: %s: file must be named %s after the rule", ErrInvalidRule, name, want)
	}
	return r, nil
}

// Parse decodes one rule file, applies the target defaults and validates it.
func Parse(b []byte) (Rule, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return Rule{}, fmt.Errorf("%w: %v", ErrInvalidRule, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Rule{}, fmt.Errorf("%w: trailing data after the rule object", ErrInvalidRule)
	}
	// encoding/json matches field names case-insensitively, so exact names
	// are checked here: "eventpattern" must not pass for "eventPattern".
	if err := exactKeys(raw, "", "name", "description", "eventPattern", "target"); err != nil {
		return Rule{}, err
	}
	if t, ok := raw["target"]; ok {
		var rawTarget map[string]json.RawMessage
		if err := json.Unmarshal(t, &rawTarget); err != nil {
			return Rule{}, fmt.Errorf("%w: target: %v", ErrInvalidRule, err)
		}
		if err := exactKeys(rawTarget, "target.", "queue", "maxReceiveCount", "visibilityTimeoutSeconds"); err != nil {
			return Rule{}, err
		}
	}
	var r Rule
	if err := json.Unmarshal(b, &r); err != nil {
		return Rule{}, fmt.Errorf("%w: %v", ErrInvalidRule, err)
	}
	if r.Target.MaxReceiveCount == 0 {
		r.Target.MaxReceiveCount = DefaultMaxReceiveCount
	}
	if r.Target.VisibilityTimeoutSeconds == 0 {
		r.Target.VisibilityTimeoutSeconds = DefaultVisibilityTimeoutSeconds
	}
	if err := Validate(r); err != nil {
		return Rule{}, err
	}
	return r, nil
}

func exactKeys(m map[string]json.RawMessage, prefix string, known ...string) error {
	var unknown []string
	for k := range m {
		if !slices.Contains(known, k) {
			unknown = append(unknown, prefix+k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return fmt.Errorf("%w: unknown field(s) %s (known: %s%s)", ErrInvalidRule, strings.Join(unknown, ", "), prefix, strings.Join(known, ", "+prefix))
}

// Validate checks a rule's structure: name, description, that the pattern is
// a non-empty JSON object within EventBridge's size limit that does not route
// on detail.data, and the target. It does not compile the pattern (see the
// package doc). All problems are reported, joined.
func Validate(r Rule) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w %q: "+format, append([]any{ErrInvalidRule, r.Name}, args...)...))
	}
	switch {
	case r.Name == "":
		bad("name is empty")
	case len(r.Name) > maxNameLen:
		bad("name is longer than %d characters", maxNameLen)
	case !nameRE.MatchString(r.Name):
		bad("name may hold only letters, digits, '.', '-' and '_' (an EventBridge rule name)")
	}
	switch {
	case strings.TrimSpace(r.Description) == "":
		bad("description is empty")
	case len(r.Description) > maxDescriptionLen:
		bad("description is longer than %d characters", maxDescriptionLen)
	}
	if err := checkPattern(r.EventPattern); err != nil {
		bad("eventPattern: %v", err)
	}
	t := r.Target
	if !queueRE.MatchString(t.Queue) {
		bad("target.queue %q must match %s", t.Queue, queueRE)
	}
	if t.MaxReceiveCount < 1 || t.MaxReceiveCount > maxReceiveCountMax {
		bad("target.maxReceiveCount %d is outside 1..%d", t.MaxReceiveCount, maxReceiveCountMax)
	}
	if t.VisibilityTimeoutSeconds < 1 || t.VisibilityTimeoutSeconds > maxVisibilitySecond {
		bad("target.visibilityTimeoutSeconds %d is outside 1..%d", t.VisibilityTimeoutSeconds, maxVisibilitySecond)
	}
	return errors.Join(errs...)
}

func checkPattern(p json.RawMessage) error {
	if len(bytes.TrimSpace(p)) == 0 {
		return errors.New("missing")
	}
	if len(p) > maxPatternLen {
		return fmt.Errorf("longer than %d bytes", maxPatternLen)
	}
	var obj map[string]any
	if err := json.Unmarshal(p, &obj); err != nil {
		return fmt.Errorf("not a JSON object: %v", err)
	}
	if len(obj) == 0 {
		return errors.New("empty: it would match nothing on EventBridge")
	}
	return noDataPath(obj, "")
}

// noDataPath rejects a pattern field under detail.data, at any depth and in
// any $or branch, whether nested or written with dots ("detail.data.x").
func noDataPath(obj map[string]any, prefix string) error {
	for k, v := range obj {
		if k == "$or" {
			branches, _ := v.([]any)
			for _, b := range branches {
				if m, ok := b.(map[string]any); ok {
					if err := noDataPath(m, prefix); err != nil {
						return err
					}
				}
			}
			continue
		}
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		if p == "detail.data" || strings.HasPrefix(p, "detail.data.") {
			return fmt.Errorf("field %q routes on CloudEvents data, which a claim check may offload; route on an attribute or extension (detail.<name>) instead", p)
		}
		if m, ok := v.(map[string]any); ok {
			if err := noDataPath(m, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// Merge joins rule sets (e.g. the catalog and a plug-in's rules), rejecting a
// name used twice; the result is sorted by name.
func Merge(sets ...[]Rule) ([]Rule, error) {
	var out []Rule
	seen := map[string]bool{}
	for _, set := range sets {
		for _, r := range set {
			if seen[r.Name] {
				return nil, fmt.Errorf("%w %q: defined twice", ErrInvalidRule, r.Name)
			}
			seen[r.Name] = true
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Queues returns the distinct queues the rules deliver to, sorted by name,
// each with its settings and the names of its rules. Two rules giving one
// queue different settings are an error (wrapping ErrQueueConflict).
func Queues(rs []Rule) ([]QueueSpec, error) {
	byName := map[string]*QueueSpec{}
	var errs []error
	for _, r := range rs {
		t := r.Target
		q, ok := byName[t.Queue]
		if !ok {
			byName[t.Queue] = &QueueSpec{Name: t.Queue, MaxReceiveCount: t.MaxReceiveCount,
				VisibilityTimeoutSeconds: t.VisibilityTimeoutSeconds, Rules: []string{r.Name}}
			continue
		}
		if q.MaxReceiveCount != t.MaxReceiveCount || q.VisibilityTimeoutSeconds != t.VisibilityTimeoutSeconds {
			errs = append(errs, fmt.Errorf("%w: queue %q: rule %q sets maxReceiveCount %d, visibilityTimeoutSeconds %d; rule %q sets %d, %d",
				ErrQueueConflict, t.Queue, q.Rules[0], q.MaxReceiveCount, q.VisibilityTimeoutSeconds,
				r.Name, t.MaxReceiveCount, t.VisibilityTimeoutSeconds))
			continue
		}
		q.Rules = append(q.Rules, r.Name)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	out := make([]QueueSpec, 0, len(byName))
	for _, q := range byName {
		sort.Strings(q.Rules)
		out = append(out, *q)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
