package saga

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// ErrPath marks a template reference that does not resolve: a missing
// field, or a field that is not an object where the path goes on.
var ErrPath = errors.New("template path not found")

// refPrefix starts a reference; any other string is a literal.
const refPrefix = "$."

// segmentRE is one field of a reference path. The set is small on purpose:
// the same path is handed to Step Functions' JSONPath, which must read it
// the same way (no quoting, no array indexes).
var segmentRE = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// isRef reports whether a template string is a reference.
func isRef(s string) bool { return strings.HasPrefix(s, refPrefix) }

// decodeJSON decodes keeping numbers exact (json.Number), so a template or
// document round-trips without float rounding.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data")
	}
	return v, nil
}

// encodeJSON marshals without HTML escaping (templates carry user text).
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkTemplate validates a call input (or the output) template: a JSON
// object whose reference strings read $.input… or $.steps.<one of steps>…
// (the output may also read "$.steps" whole). References inside arrays are
// rejected because Step Functions does not evaluate paths inside arrays, and
// keys ending in ".$" because it would read them as paths.
func checkTemplate(field string, raw json.RawMessage, steps map[string]bool, output bool, bad func(string, string, ...any)) {
	v, err := decodeJSON(raw)
	if err != nil {
		bad(field, "not JSON: %v", err)
		return
	}
	if _, ok := v.(map[string]any); !ok {
		bad(field, "must be a JSON object")
		return
	}
	var walk func(f string, v any, inArray bool)
	walk = func(f string, v any, inArray bool) {
		switch v := v.(type) {
		case map[string]any:
			for _, k := range sortedKeys(v) {
				kf := f + "." + k
				if strings.HasSuffix(k, ".$") {
					bad(kf, `a key may not end in ".$" (Step Functions reads such a key as a path)`)
					continue
				}
				walk(kf, v[k], inArray)
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s[%d]", f, i), e, true)
			}
		case string:
			if !isRef(v) {
				return
			}
			if inArray {
				bad(f, "reference %q inside an array is not supported (Step Functions does not evaluate paths in arrays)", v)
				return
			}
			if msg := checkRef(v, steps, output); msg != "" {
				bad(f, "%s", msg)
			}
		}
	}
	walk(field, v, false)
}

// checkRef returns what is wrong with a reference, or "".
func checkRef(ref string, steps map[string]bool, output bool) string {
	segs := strings.Split(ref[len(refPrefix):], ".")
	for _, s := range segs {
		if !segmentRE.MatchString(s) {
			return fmt.Sprintf("reference %q: every field must match %s", ref, segmentRE)
		}
	}
	switch segs[0] {
	case "input":
		return ""
	case "steps":
		if len(segs) == 1 {
			if output {
				return ""
			}
			return fmt.Sprintf("reference %q: name a step ($.steps.<step>...)", ref)
		}
		if !steps[segs[1]] {
			if output {
				return fmt.Sprintf("reference %q: %q is not a step of the saga", ref, segs[1])
			}
			return fmt.Sprintf("reference %q: %q is not an earlier step", ref, segs[1])
		}
		return ""
	default:
		return fmt.Sprintf("reference %q must start with $.input or $.steps", ref)
	}
}

// Document is the saga document templates are resolved against:
// {"input": <input>, "steps": {<step>: <output>, ...}}. An empty input is {};
// a value that is not JSON is null (inputs and outputs are validated JSON
// before they get here).
func Document(input json.RawMessage, steps map[string]json.RawMessage) map[string]any {
	in := any(map[string]any{})
	if len(bytes.TrimSpace(input)) > 0 {
		in, _ = decodeJSON(input)
	}
	st := make(map[string]any, len(steps))
	for k, v := range steps {
		st[k], _ = decodeJSON(v)
	}
	return map[string]any{"input": in, "steps": st}
}

// Resolve replaces every reference in template with the value its path
// names in doc (see Document) and returns the result; an empty template is
// {}. A path walks objects only; one that does not resolve is an error
// wrapping ErrPath and naming the path.
func Resolve(template json.RawMessage, doc map[string]any) (json.RawMessage, error) {
	if len(bytes.TrimSpace(template)) == 0 {
		return json.RawMessage(`{}`), nil
	}
	t, err := decodeJSON(template)
	if err != nil {
		return nil, fmt.Errorf("saga template: %w", err)
	}
	var walk func(v any, inArray bool) (any, error)
	walk = func(v any, inArray bool) (any, error) {
		switch v := v.(type) {
		case map[string]any:
			out := make(map[string]any, len(v))
			for k, e := range v {
				r, err := walk(e, inArray)
				if err != nil {
					return nil, err
				}
				out[k] = r
			}
			return out, nil
		case []any:
			out := make([]any, len(v))
			for i, e := range v {
				r, err := walk(e, true)
				if err != nil {
					return nil, err
				}
				out[i] = r
			}
			return out, nil
		case string:
			if !isRef(v) {
				return v, nil
			}
			if inArray {
				return nil, fmt.Errorf("saga template: reference %q inside an array is not supported", v)
			}
			return lookup(doc, v)
		default:
			return v, nil
		}
	}
	r, err := walk(t, false)
	if err != nil {
		return nil, err
	}
	b, err := encodeJSON(r)
	if err != nil {
		return nil, fmt.Errorf("saga template: %w", err)
	}
	return b, nil
}

// lookup follows a "$.a.b" path through nested objects.
func lookup(doc map[string]any, ref string) (any, error) {
	var cur any = doc
	segs := strings.Split(ref[len(refPrefix):], ".")
	for i, s := range segs {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: %s: %s is not an object", ErrPath, ref, "$."+strings.Join(segs[:i], "."))
		}
		v, ok := m[s]
		if !ok {
			return nil, fmt.Errorf("%w: %s: no field %q", ErrPath, ref, s)
		}
		cur = v
	}
	return cur, nil
}
