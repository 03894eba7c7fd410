package pattern_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/agentbus/agentbus/platform/pattern"
)

// FuzzCompileMatch compiles arbitrary patterns and matches arbitrary events:
// nothing may panic, errors must wrap the package's sentinels, and
// Pattern.Match must agree with a Matcher holding the same rule.
func FuzzCompileMatch(f *testing.F) {
	seeds := [][2]string{
		{`{"source":["a"]}`, `{"source":"a"}`},
		{`{"detail":{"n":[{"numeric":[">",0,"<=",5]}]}}`, `{"detail":{"n":[1,7]}}`},
		{`{"a":[{"anything-but":{"wildcard":"*x*"}}],"b":[{"exists":false}]}`, `{"a":["yx","z"]}`},
		{`{"$or":[{"a":{"b":["1"]}},{"c":[{"cidr":"10.0.0.0/8"}]}]}`, `{"a":[{"b":"1"},{"b":"2"}],"c":"10.1.2.3"}`},
		{`{"i":{"s":["a"],"q":[1]}}`, `{"i":[{"s":"a","q":2},{"s":"b","q":1}]}`},
		{`{"a.b":[{"prefix":{"equals-ignore-case":"X"}}]}`, `{"a":{"b":"xyz"}}`},
		{`{"a":[{"suffix":"\u00e9"},{"equals-ignore-case":"\u00c9"}]}`, `{"a":"caf\u00e9"}`},
	}
	for _, s := range seeds {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, pat, ev []byte) {
		p, err := pattern.Compile(pat)
		if err != nil {
			if !errors.Is(err, pattern.ErrInvalidPattern) {
				t.Fatalf("Compile error %v does not wrap ErrInvalidPattern", err)
			}
			return
		}
		got, err := p.Match(ev)
		if err != nil && !errors.Is(err, pattern.ErrInvalidEvent) {
			t.Fatalf("Match error %v does not wrap ErrInvalidEvent", err)
		}
		if err != nil && json.Valid(ev) && bytes.HasPrefix(bytes.TrimLeft(ev, " \t\r\n"), []byte("{")) {
			t.Fatalf("Match rejected a valid JSON object %q: %v", ev, err)
		}
		m := pattern.NewMatcher()
		_ = m.Add("r", p)
		_ = m.Add("other", pattern.MustCompile(`{"zz":[{"exists":false}]}`))
		names, err2 := m.Match(ev)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("Pattern.Match err %v, Matcher.Match err %v", err, err2)
		}
		inNames := false
		for _, n := range names {
			inNames = inNames || n == "r"
		}
		if err == nil && got != inNames {
			t.Fatalf("Pattern.Match = %v but Matcher reports %v", got, names)
		}
	})
}
