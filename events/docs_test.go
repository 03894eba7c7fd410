package events

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocsExamplesValidate keeps docs/events.md honest: its example of every
// event type must pass the validator, and every type must have one.
func TestDocsExamplesValidate(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../docs/events.md")
	if err != nil {
		t.Fatalf("docs/events.md: %v", err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Event types\n")
	if !ok {
		t.Fatal("docs/events.md has no '## Event types' section")
	}
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile("(?s)```json\n(.*?)\n```").FindAllStringSubmatch(section, -1) {
		var typ string
		if tm := regexp.MustCompile(`"type": "([^"]+)"`).FindStringSubmatch(m[1]); tm != nil {
			typ = tm[1]
		}
		if err := v.ValidateJSON([]byte(m[1])); err != nil {
			t.Errorf("example of %q is invalid: %v", typ, err)
		}
		seen[typ] = true
	}
	for _, typ := range Types() {
		if !seen[typ] {
			t.Errorf("docs/events.md has no example of %s", typ)
		}
	}
}
