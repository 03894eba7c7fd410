package planner

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentbus/agentbus/events"
)

func TestParseAgent(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, file string
		want       string // substring of the error; "" = valid
	}{
		{"minimal", `{}`, ""},
		{"full", `{"name":"support","model":"anthropic.claude","system":"be brief","tools":["calculator","clock"],
			"limits":{"maxSteps":3,"maxTokens":1000,"timeoutSeconds":30}}`, ""},
		{"typo in a field", `{"name":"a","limits":{"maxStep":3}}`, `unknown field "maxStep"`},
		{"unknown top-level field", `{"nam":"a"}`, `unknown field "nam"`},
		{"not JSON", `name: a`, "invalid character"},
		{"trailing data", `{} {}`, "trailing data"},
		{"bad name", `{"name":"has space"}`, `name "has space"`},
		{"empty tool name", `{"tools":["calculator",""]}`, "tools[1] is empty"},
		{"duplicate tool", `{"tools":["clock","clock"]}`, `tools[1] "clock" is listed twice`},
		{"negative limit", `{"limits":{"maxTokens":-1}}`, "limits.maxTokens is -1"},
		{"wrong type", `{"tools":"calculator"}`, "cannot unmarshal string"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseAgent([]byte(c.file))
			if c.want == "" {
				if err != nil {
					t.Fatalf("valid definition rejected: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidAgent) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want ErrInvalidAgent mentioning %q", err, c.want)
			}
		})
	}
}

func TestLoadAgentFileNamesTheFile(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "agent.json")
	if err := os.WriteFile(p, []byte(`{"limits":{"maxSteps":-2}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadAgentFile(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "maxSteps") {
		t.Fatalf("error %v does not name the file and the field", err)
	}
	if _, err := LoadAgentFile(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Fatal("a missing file loaded")
	}
}

func TestResolveFillsDefaults(t *testing.T) {
	t.Parallel()
	a := Config{DefaultModel: "m"}.resolve(&events.AgentSpec{Name: "x", Limits: &events.Limits{MaxSteps: 2}})
	if a.Name != "x" || a.Model != "m" || a.MaxSteps != 2 || a.MaxTokens != DefaultMaxTokens ||
		a.Timeout != DefaultTimeout || a.MaxOutputTokens != DefaultMaxOutputTokens || a.Tools != nil {
		t.Fatalf("resolved %+v", a)
	}
	b := Config{Timeout: time.Minute}.resolve(&events.AgentSpec{Tools: []string{}, Limits: &events.Limits{TimeoutSeconds: 5}})
	if b.Timeout != 5*time.Second || b.Tools == nil || len(b.Tools) != 0 {
		t.Fatalf("resolved %+v", b)
	}
}
