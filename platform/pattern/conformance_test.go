package pattern_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/agentbus/agentbus/internal/testenv"
	"github.com/agentbus/agentbus/platform/pattern"
)

// TestConformance runs the 165 cases real AWS answered (TestEventPattern,
// recorded by LocalStack's AWS-validated tests; see the README beside the
// file): match, no-match and invalid-pattern alike.
func TestConformance(t *testing.T) {
	t.Parallel()
	path := testenv.SharedFile(t, "../..", "conformance/eventbridge-patterns/cases.jsonl")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type tcase struct {
		Name    string          `json:"name"`
		Pattern json.RawMessage `json:"pattern"`
		Event   json.RawMessage `json:"event"`
		Expect  string          `json:"expect"`
	}
	var cases []tcase
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var c tcase
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("bad case line: %v", err)
		}
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(cases) != 165 {
		t.Fatalf("read %d cases, want 165", len(cases))
	}
	counts := map[string]int{}
	for _, c := range cases {
		counts[c.Expect]++
		t.Run(c.Name, func(t *testing.T) {
			raw := []byte(c.Pattern)
			if len(raw) > 0 && raw[0] == '"' {
				var s string
				if err := json.Unmarshal(raw, &s); err != nil {
					t.Fatal(err)
				}
				raw = []byte(s)
			}
			p, err := pattern.Compile(raw)
			if c.Expect == "invalid-pattern" {
				if err == nil {
					t.Fatalf("Compile(%s) succeeded; AWS rejects it", raw)
				}
				if !errors.Is(err, pattern.ErrInvalidPattern) {
					t.Fatalf("error %v does not wrap ErrInvalidPattern", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Compile(%s): %v", raw, err)
			}
			got, err := p.Match(c.Event)
			if err != nil {
				t.Fatalf("Match: %v", err)
			}
			if want := c.Expect == "match"; got != want {
				t.Fatalf("pattern %s\nevent %s\ngot match=%v, AWS says %v", raw, c.Event, got, want)
			}
		})
	}
	t.Logf("conformance cases: %v", counts)
}
