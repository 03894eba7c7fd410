// Package fastschema decides cheaply whether a decoded JSON document is
// valid against a JSON Schema (draft 2020-12) written in the small subset of
// keywords the event contract uses, so that the common case — a valid event
// — can skip the general validator (github.com/santhosh-tekuri/jsonschema).
// That validator is complete but general: it costs ~40 µs for one event in
// isolation and, amid a running agent loop, most of a millisecond of CPU per
// tool step (docs/bus.md, seventh round); no Go library we could find is
// meaningfully faster (google/jsonschema-go measured the same).
//
// It is not a validator: Check answers Valid only when the document is
// certainly valid, Invalid only when it is certainly invalid, and Unknown
// whenever the subset cannot tell (an integer written as 1.0, a date-time
// outside its strict form, a type the decoder does not produce). Callers run
// the general validator on anything but Valid; it alone reports violations.
// A schema that uses any keyword outside the subset does not compile, and its
// documents always take the general validator.
//
// Documents are what encoding/json decodes with UseNumber: nil, bool,
// string, json.Number, []any and map[string]any.
package fastschema

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Verdict is what Check can tell about a document.
type Verdict uint8

const (
	// Unknown: the subset cannot decide; ask the general validator.
	Unknown Verdict = iota
	// Valid: the document is valid against the schema.
	Valid
	// Invalid: the document is invalid against the schema.
	Invalid
)

func (v Verdict) String() string {
	switch v {
	case Valid:
		return "valid"
	case Invalid:
		return "invalid"
	}
	return "unknown"
}

// ErrUnsupported is wrapped by Compile's error when a schema uses something
// outside the subset.
var ErrUnsupported = errors.New("fastschema: unsupported")

// draft is the only $schema the subset knows (and the one assumed without).
const draft = "https://json-schema.org/draft/2020-12/schema"

// check is a compiled schema.
type check func(v any) Verdict

// Checker is a compiled schema; it is safe for concurrent use.
type Checker struct{ root check }

// Check tells whether doc is valid against the compiled schema. A document
// holding a Go type the JSON decoder does not produce is Unknown.
func (c *Checker) Check(doc any) Verdict {
	if !decoded(doc) {
		return Unknown
	}
	return c.root(doc)
}

// decoded: every value in v is of a type encoding/json decodes into (with
// UseNumber), the only types the checks know.
func decoded(v any) bool {
	switch v := v.(type) {
	case nil, bool, string, json.Number:
		return true
	case []any:
		for _, e := range v {
			if !decoded(e) {
				return false
			}
		}
		return true
	case map[string]any:
		for _, e := range v {
			if !decoded(e) {
				return false
			}
		}
		return true
	}
	return false
}

// Compile compiles the schema resource at rawURL. resources holds every
// schema document $ref may reach, decoded (numbers as json.Number), keyed by
// absolute URL without fragment. A schema without $schema is read as draft
// 2020-12 (the general validator must be set to the same default), and
// format "date-time" as an assertion (likewise); Check only ever answers
// Valid or Unknown for a format, so a validator that does not assert it
// still agrees.
func Compile(resources map[string]any, rawURL string) (*Checker, error) {
	c := &compiler{resources: resources, refs: map[string]*check{}}
	root, err := c.ref(nil, rawURL)
	if err != nil {
		return nil, err
	}
	return &Checker{root: root}, nil
}

type compiler struct {
	resources map[string]any
	// refs memoises compiled $ref targets by absolute URL and fragment; an
	// entry is set before its schema compiles, so recursive schemas close.
	refs map[string]*check
}

func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, args...))
}

// ref compiles the schema that ref names, relative to base (nil: ref is
// absolute).
func (c *compiler) ref(base *url.URL, ref string) (check, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return nil, unsupported("$ref %q: %v", ref, err)
	}
	if base != nil {
		u = base.ResolveReference(u)
	}
	frag := u.Fragment
	u.Fragment, u.RawFragment = "", ""
	if frag != "" && !strings.HasPrefix(frag, "/") {
		return nil, unsupported("$ref %q: anchors", ref)
	}
	key := u.String() + "#" + frag
	if p, ok := c.refs[key]; ok {
		return func(v any) Verdict { return (*p)(v) }, nil
	}
	doc, ok := c.resources[u.String()]
	if !ok {
		return nil, unsupported("$ref %q: no resource %s", ref, u)
	}
	root := frag == ""
	if !root {
		// The resource's draft and base hold for what the pointer reaches:
		// check them here, since its top level is not compiled on this way.
		if m, ok := doc.(map[string]any); ok {
			if d, has := m["$schema"]; has && d != draft {
				return nil, unsupported("$schema %v in %s", d, u)
			}
			if id, has := m["$id"]; has && id != u.String() {
				return nil, unsupported("$id %v at %s", id, u)
			}
		}
		for i, tok := range strings.Split(frag[1:], "/") {
			tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
			m, ok := doc.(map[string]any)
			if !ok {
				return nil, unsupported("$ref %q: pointer into a non-object", ref)
			}
			if _, has := m["$id"]; has && i > 0 {
				// A nested resource on the way: its base would hold below.
				return nil, unsupported("$ref %q: passes a nested $id", ref)
			}
			if doc, ok = m[tok]; !ok {
				return nil, unsupported("$ref %q: nothing at the pointer", ref)
			}
		}
	}
	p := new(check)
	c.refs[key] = p
	compiled, err := c.schema(u, doc, root)
	if err != nil {
		return nil, err
	}
	*p = compiled
	return compiled, nil
}

// annotations are keywords that never affect validity.
var annotations = map[string]bool{
	"title": true, "description": true, "$comment": true, "examples": true, "default": true,
	"deprecated": true, "readOnly": true, "writeOnly": true, "$defs": true,
}

// schema compiles one schema object (or boolean schema). root: it is a
// resource's top level, where $id and $schema may stand.
func (c *compiler) schema(base *url.URL, s any, root bool) (check, error) {
	switch s := s.(type) {
	case bool:
		if s {
			return func(any) Verdict { return Valid }, nil
		}
		return func(any) Verdict { return Invalid }, nil
	case map[string]any:
		var checks []check
		for k, kv := range s {
			if annotations[k] {
				continue
			}
			var (
				ch  check
				err error
			)
			switch k {
			case "$schema":
				if !root || kv != draft {
					return nil, unsupported("$schema %v", kv)
				}
				continue
			case "$id":
				// Relative $refs resolve against the resource's URL, so an
				// $id naming another URL is left to the general validator.
				if id, ok := kv.(string); !root || !ok || id != base.String() {
					return nil, unsupported("$id %v at %s", kv, base)
				}
				continue
			case "then", "else":
				continue // compiled with "if"
			case "if":
				ch, err = c.cond(base, s)
			case "properties", "additionalProperties":
				if k == "additionalProperties" {
					if _, has := s["properties"]; has {
						continue // compiled with "properties"
					}
				}
				ch, err = c.props(base, s)
			default:
				ch, err = c.keyword(base, k, kv)
			}
			if err != nil {
				return nil, err
			}
			checks = append(checks, ch)
		}
		return all(checks), nil
	}
	return nil, unsupported("schema of type %T", s)
}

// all is the conjunction of checks: Invalid if any is, Valid if all are.
func all(checks []check) check {
	switch len(checks) {
	case 0:
		return func(any) Verdict { return Valid }
	case 1:
		return checks[0]
	}
	return func(v any) Verdict {
		out := Valid
		for _, ch := range checks {
			if fold(&out, ch(v)) {
				return Invalid
			}
		}
		return out
	}
}

// fold adds v to a conjunction's verdict so far and reports whether that
// decided it (Invalid). After an Unknown it goes on: a later Invalid still
// decides.
func fold(out *Verdict, v Verdict) bool {
	switch v {
	case Invalid:
		*out = Invalid
		return true
	case Unknown:
		*out = Unknown
	}
	return false
}

func (c *compiler) keyword(base *url.URL, k string, kv any) (check, error) {
	switch k {
	case "$ref":
		ref, ok := kv.(string)
		if !ok {
			return nil, unsupported("$ref of type %T", kv)
		}
		return c.ref(base, ref)
	case "type":
		return typeCheck(kv)
	case "const":
		return enumCheck([]any{kv})
	case "enum":
		vals, ok := kv.([]any)
		if !ok {
			return nil, unsupported("enum of type %T", kv)
		}
		return enumCheck(vals)
	case "required":
		return requiredCheck(kv)
	case "items":
		sub, err := c.schema(base, kv, false)
		if err != nil {
			return nil, err
		}
		return func(v any) Verdict {
			arr, ok := v.([]any)
			if !ok {
				return Valid
			}
			out := Valid
			for _, it := range arr {
				if fold(&out, sub(it)) {
					return Invalid
				}
			}
			return out
		}, nil
	case "minItems", "maxItems":
		n, err := count(k, kv)
		if err != nil {
			return nil, err
		}
		return func(v any) Verdict {
			arr, ok := v.([]any)
			if !ok {
				return Valid
			}
			return verdict(k == "minItems" && len(arr) >= n || k == "maxItems" && len(arr) <= n)
		}, nil
	case "uniqueItems":
		if kv != true {
			return func(any) Verdict { return Valid }, nil
		}
		return uniqueCheck, nil
	case "minLength", "maxLength":
		n, err := count(k, kv)
		if err != nil {
			return nil, err
		}
		return func(v any) Verdict {
			s, ok := v.(string)
			if !ok {
				return Valid
			}
			l := utf8.RuneCountInString(s)
			return verdict(k == "minLength" && l >= n || k == "maxLength" && l <= n)
		}, nil
	case "pattern":
		p, ok := kv.(string)
		if !ok {
			return nil, unsupported("pattern of type %T", kv)
		}
		// The general validator compiles patterns with Go's regexp too.
		match, err := matcher(p)
		if err != nil {
			return nil, unsupported("pattern %q: %v", p, err)
		}
		return func(v any) Verdict {
			s, ok := v.(string)
			if !ok {
				return Valid
			}
			return verdict(match(s))
		}, nil
	case "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum":
		return boundCheck(k, kv)
	case "format":
		if kv != "date-time" {
			return nil, unsupported("format %v", kv)
		}
		return func(v any) Verdict {
			s, ok := v.(string)
			if !ok || plainDateTime(s) {
				return Valid
			}
			return Unknown
		}, nil
	case "allOf", "anyOf", "oneOf":
		list, ok := kv.([]any)
		if !ok || len(list) == 0 {
			return nil, unsupported("%s of type %T", k, kv)
		}
		subs := make([]check, len(list))
		for i, s := range list {
			var err error
			if subs[i], err = c.schema(base, s, false); err != nil {
				return nil, err
			}
		}
		switch k {
		case "allOf":
			return all(subs), nil
		case "anyOf":
			return anyOf(subs), nil
		}
		return oneOf(subs), nil
	case "not":
		sub, err := c.schema(base, kv, false)
		if err != nil {
			return nil, err
		}
		return func(v any) Verdict {
			switch sub(v) {
			case Valid:
				return Invalid
			case Invalid:
				return Valid
			}
			return Unknown
		}, nil
	}
	return nil, unsupported("keyword %q", k)
}

func verdict(ok bool) Verdict {
	if ok {
		return Valid
	}
	return Invalid
}

func anyOf(subs []check) check {
	return func(v any) Verdict {
		out := Invalid
		for _, s := range subs {
			switch s(v) {
			case Valid:
				return Valid
			case Unknown:
				out = Unknown
			}
		}
		return out
	}
}

func oneOf(subs []check) check {
	return func(v any) Verdict {
		valid, unknown := 0, false
		for _, s := range subs {
			switch s(v) {
			case Valid:
				valid++
			case Unknown:
				unknown = true
			}
		}
		switch {
		case valid > 1:
			return Invalid
		case unknown:
			return Unknown
		}
		return verdict(valid == 1)
	}
}

// cond compiles if/then/else: then applies when if holds, else when not.
func (c *compiler) cond(base *url.URL, s map[string]any) (check, error) {
	cond, err := c.schema(base, s["if"], false)
	if err != nil {
		return nil, err
	}
	branch := func(k string) (check, error) {
		if b, ok := s[k]; ok {
			return c.schema(base, b, false)
		}
		return func(any) Verdict { return Valid }, nil
	}
	then, err := branch("then")
	if err != nil {
		return nil, err
	}
	els, err := branch("else")
	if err != nil {
		return nil, err
	}
	return func(v any) Verdict {
		switch cond(v) {
		case Valid:
			return then(v)
		case Invalid:
			return els(v)
		}
		// Both branches agreeing still decides.
		if t, e := then(v), els(v); t == e {
			return t
		}
		return Unknown
	}, nil
}

// props compiles properties together with additionalProperties, which
// applies to the members properties does not name.
func (c *compiler) props(base *url.URL, s map[string]any) (check, error) {
	named := map[string]check{}
	if p, ok := s["properties"]; ok {
		m, ok := p.(map[string]any)
		if !ok {
			return nil, unsupported("properties of type %T", p)
		}
		for name, sub := range m {
			ch, err := c.schema(base, sub, false)
			if err != nil {
				return nil, err
			}
			named[name] = ch
		}
	}
	var extra check
	if a, ok := s["additionalProperties"]; ok {
		var err error
		if extra, err = c.schema(base, a, false); err != nil {
			return nil, err
		}
	}
	return func(v any) Verdict {
		obj, ok := v.(map[string]any)
		if !ok {
			return Valid
		}
		out := Valid
		for k, val := range obj {
			ch, ok := named[k]
			if !ok {
				if ch = extra; ch == nil {
					continue
				}
			}
			if fold(&out, ch(val)) {
				return Invalid
			}
		}
		return out
	}, nil
}

func requiredCheck(kv any) (check, error) {
	list, ok := kv.([]any)
	if !ok {
		return nil, unsupported("required of type %T", kv)
	}
	names := make([]string, len(list))
	for i, n := range list {
		if names[i], ok = n.(string); !ok {
			return nil, unsupported("required member of type %T", n)
		}
	}
	return func(v any) Verdict {
		obj, ok := v.(map[string]any)
		if !ok {
			return Valid
		}
		for _, n := range names {
			if _, ok := obj[n]; !ok {
				return Invalid
			}
		}
		return Valid
	}, nil
}

// kind is a document value's JSON type; "" for a Go type the decoder does
// not produce.
func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return ""
}

func typeCheck(kv any) (check, error) {
	var types []string
	switch t := kv.(type) {
	case string:
		types = []string{t}
	case []any:
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, unsupported("type member of type %T", e)
			}
			types = append(types, s)
		}
	default:
		return nil, unsupported("type of type %T", kv)
	}
	want := map[string]bool{}
	for _, t := range types {
		switch t {
		case "null", "boolean", "string", "number", "integer", "array", "object":
			want[t] = true
		default:
			return nil, unsupported("type %q", t)
		}
	}
	return func(v any) Verdict {
		k := kind(v)
		switch {
		case k == "":
			return Unknown
		case want[k]:
			return Valid
		case k == "number" && want["integer"]:
			// 1 is an integer; 1.0 and 1e0 are too, and are left to the
			// general validator, which compares exactly.
			if _, ok := integer(v.(json.Number)); ok {
				return Valid
			}
			return Unknown
		}
		return Invalid
	}, nil
}

// integer is n as an int64, when it is written as one.
func integer(n json.Number) (int64, bool) {
	i, err := strconv.ParseInt(string(n), 10, 64)
	return i, err == nil
}

// enumCheck: the value equals one of vals. Only strings, booleans and null
// are compared here (numbers would need exact rational comparison).
func enumCheck(vals []any) (check, error) {
	for _, e := range vals {
		switch e.(type) {
		case string, bool, nil:
		default:
			return nil, unsupported("enum or const member of type %T", e)
		}
	}
	return func(v any) Verdict {
		switch v.(type) {
		case string, bool, nil:
		default:
			if kind(v) == "" {
				return Unknown
			}
			return Invalid // another JSON type never equals a scalar of these
		}
		for _, e := range vals {
			if e == v {
				return Valid
			}
		}
		return Invalid
	}, nil
}

func uniqueCheck(v any) Verdict {
	arr, ok := v.([]any)
	if !ok {
		return Valid
	}
	seen := make(map[any]struct{}, len(arr))
	for _, it := range arr {
		switch it.(type) {
		case string, bool, nil:
		default:
			return Unknown // numbers and containers need structural equality
		}
		if _, dup := seen[it]; dup {
			return Invalid
		}
		seen[it] = struct{}{}
	}
	return Valid
}

func count(k string, kv any) (int, error) {
	n, ok := kv.(json.Number)
	if !ok {
		return 0, unsupported("%s of type %T", k, kv)
	}
	i, ok := integer(n)
	if !ok || i < 0 {
		return 0, unsupported("%s %s", k, n)
	}
	return int(i), nil
}

func boundCheck(k string, kv any) (check, error) {
	n, ok := kv.(json.Number)
	if !ok {
		return nil, unsupported("%s of type %T", k, kv)
	}
	b, ok := integer(n)
	if !ok {
		return nil, unsupported("%s %s: not an integer", k, n)
	}
	return func(v any) Verdict {
		num, ok := v.(json.Number)
		if !ok {
			if kind(v) == "" {
				return Unknown
			}
			return Valid
		}
		x, ok := integer(num)
		if !ok {
			return Unknown
		}
		switch k {
		case "minimum":
			return verdict(x >= b)
		case "maximum":
			return verdict(x <= b)
		case "exclusiveMinimum":
			return verdict(x > b)
		}
		return verdict(x < b)
	}, nil
}

// plainDateTime: s is an RFC 3339 date-time of the plain form
// YYYY-MM-DDThh:mm:ss[.frac](Z|±hh:mm) with every field in range and no
// leap second — a form the general validator accepts. Other strings may
// still be valid; the caller answers Unknown for them.
func plainDateTime(s string) bool {
	if len(s) < 20 || s[10] != 'T' && s[10] != 't' {
		return false
	}
	if _, err := time.Parse("2006-01-02", s[:10]); err != nil {
		return false
	}
	t := s[11:]
	h, okh := twoDigits(t, 0)
	m, okm := twoDigits(t, 3)
	sec, oks := twoDigits(t, 6)
	if !okh || !okm || !oks || t[2] != ':' || t[5] != ':' || h > 23 || m > 59 || sec > 59 {
		return false
	}
	t = t[8:]
	if rest, ok := strings.CutPrefix(t, "."); ok {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return false
		}
		t = rest[i:]
	}
	if t == "Z" || t == "z" {
		return true
	}
	if len(t) != 6 || t[0] != '+' && t[0] != '-' || t[3] != ':' {
		return false
	}
	oh, okh := twoDigits(t, 1)
	om, okm := twoDigits(t, 4)
	return okh && okm && oh <= 23 && om <= 59
}

func twoDigits(s string, at int) (int, bool) {
	if at+2 > len(s) {
		return 0, false
	}
	a, b := s[at], s[at+1]
	if a < '0' || a > '9' || b < '0' || b > '9' {
		return 0, false
	}
	return int(a-'0')*10 + int(b-'0'), true
}
