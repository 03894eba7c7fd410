package tools

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
)

// LoadSpecs reads plug-in tool specs from fsys: every *.json file at its top
// level holds one spec object or an array of them, in the form Spec's
// MarshalJSON writes ({"name", "description", "inputSchema", "idempotent",
// "timeoutMs"}). Unknown fields, a name defined twice and a spec that does not
// compile are errors naming the file. The specs are returned sorted by name.
func LoadSpecs(fsys fs.FS) ([]Spec, error) {
	files, err := fs.Glob(fsys, "*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var (
		out  []Spec
		errs []error
		from = map[string]string{}
	)
	for _, f := range files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		specs, err := parseSpecs(b)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		for _, s := range specs {
			if _, err := compile(s); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f, err))
				continue
			}
			if prev, ok := from[s.Name]; ok {
				errs = append(errs, fmt.Errorf("%s: %w: %s (also in %s)", f, ErrDuplicate, s.Name, prev))
				continue
			}
			from[s.Name] = path.Base(f)
			out = append(out, s)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func parseSpecs(b []byte) ([]Spec, error) {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		var raws []json.RawMessage
		if err := json.Unmarshal(b, &raws); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidSpec, err)
		}
		out := make([]Spec, 0, len(raws))
		for _, r := range raws {
			s, err := parseSpec(r)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	s, err := parseSpec(b)
	if err != nil {
		return nil, err
	}
	return []Spec{s}, nil
}

// parseSpec decodes one spec strictly: a misspelt field is an error, not a
// silently ignored setting.
func parseSpec(b []byte) (Spec, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var j specJSON
	if err := dec.Decode(&j); err != nil {
		return Spec{}, fmt.Errorf("%w: %v", ErrInvalidSpec, err)
	}
	if j.TimeoutMs < 0 {
		return Spec{}, fmt.Errorf("%w: %s: negative timeoutMs", ErrInvalidSpec, j.Name)
	}
	var s Spec
	if err := s.UnmarshalJSON(b); err != nil {
		return Spec{}, fmt.Errorf("%w: %v", ErrInvalidSpec, err)
	}
	return s, nil
}

// RegisterSpecs registers plug-in specs (see RegisterSpec), stopping at the
// first error.
func (r *Registry) RegisterSpecs(specs []Spec) error {
	for _, s := range specs {
		if err := r.RegisterSpec(s); err != nil {
			return err
		}
	}
	return nil
}
