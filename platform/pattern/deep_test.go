package pattern_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/platform/pattern"
)

// TestDeepEvents: deep nesting in parts of the event no rule reads is
// validated and skipped; nesting beyond the limit is an error, not a crash.
func TestDeepEvents(t *testing.T) {
	t.Parallel()
	p := pattern.MustCompile(`{"a":["x"]}`)
	for _, depth := range []int{1, 63, 64, 65, 127, 128, 129, 500, 4000} {
		ev := `{"skip":` + strings.Repeat(`[{"k":`, depth) + `1` + strings.Repeat(`}]`, depth) + `,"a":"x"}`
		ok, err := p.Match([]byte(ev))
		if err != nil || !ok {
			t.Fatalf("depth %d: Match = %v, %v", depth, ok, err)
		}
		bad := `{"skip":` + strings.Repeat(`[{"k":`, depth) + `1` + strings.Repeat(`]}`, depth) + `,"a":"x"}`
		if _, err := p.Match([]byte(bad)); !errors.Is(err, pattern.ErrInvalidEvent) {
			t.Fatalf("depth %d: mismatched brackets accepted: %v", depth, err)
		}
	}
	tooDeep := `{"skip":` + strings.Repeat(`[`, 20000) + strings.Repeat(`]`, 20000) + `}`
	if _, err := p.Match([]byte(tooDeep)); !errors.Is(err, pattern.ErrInvalidEvent) {
		t.Fatalf("20000 levels: %v, want ErrInvalidEvent", err)
	}
}
