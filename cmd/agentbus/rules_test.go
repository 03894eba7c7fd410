package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeRule(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRulesList(t *testing.T) {
	t.Parallel()
	plugin := t.TempDir()
	writeRule(t, plugin, "refunds-tool.json", `{"name":"refunds-tool","description":"refund calls go to the refunds plug-in",
		"eventPattern":{"detail-type":["agentbus.tool.invocation.requested.v1"],"detail":{"toolname":["refund"]}},
		"target":{"queue":"refunds","maxReceiveCount":3,"visibilityTimeoutSeconds":90}}`)

	badPattern := t.TempDir()
	writeRule(t, badPattern, "bad.json", `{"name":"bad","description":"d","eventPattern":{"source":"not-an-array"},"target":{"queue":"q"}}`)
	badFile := t.TempDir()
	writeRule(t, badFile, "bad.json", `{"name":"bad","description":"","eventPattern":{"source":["a"]},"target":{"queue":"q"}}`)
	dup := t.TempDir()
	writeRule(t, dup, "memory-all-events.json", `{"name":"memory-all-events","description":"d","eventPattern":{"source":["a"]},"target":{"queue":"memory","maxReceiveCount":10}}`)
	conflict := t.TempDir()
	writeRule(t, conflict, "more-planner.json", `{"name":"more-planner","description":"d","eventPattern":{"source":["a"]},"target":{"queue":"planner","maxReceiveCount":2}}`)
	empty := t.TempDir()
	notDir := filepath.Join(plugin, "refunds-tool.json")

	tests := []cliCase{
		{name: "catalog", args: nil, code: 0, lines: 9,
			inStdout: []string{"NAME", "QUEUE", "PATTERN", "planner-agent-requested", "planner",
				`{"detail-type":["agentbus.agent.requested.v1"]}`, "toolgateway-builtin-tools", `"toolname":["calculator","http_get","clock","memory_search"]`,
				"memory-all-events", `{"prefix":"agentbus."}`},
			notStdout: []string{"refunds"}},
		{name: "with plug-in dir", args: []string{"--dir", plugin}, code: 0, lines: 10,
			inStdout: []string{"refunds-tool", "refunds", `"toolname":["refund"]`, "planner-step-completed"}},
		{name: "pattern does not compile", args: []string{"--dir", badPattern}, code: 2, inStderr: `rule "bad"`},
		{name: "invalid rule file", args: []string{"--dir", badFile}, code: 2, inStderr: "description is empty"},
		{name: "name defined twice", args: []string{"--dir", dup}, code: 2, inStderr: "defined twice"},
		{name: "conflicting queue settings", args: []string{"--dir", conflict}, code: 2, inStderr: "conflicting queue settings"},
		{name: "missing dir", args: []string{"--dir", filepath.Join(plugin, "nope")}, code: 2, inStderr: "no such file"},
		{name: "dir without rules", args: []string{"--dir", empty}, code: 2, inStderr: "no rule files"},
		{name: "not a dir", args: []string{"--dir", notDir}, code: 2, inStderr: "not a directory"},
		{name: "stray argument", args: []string{"extra"}, code: 2, inStderr: "unexpected argument"},
		{name: "unknown flag", args: []string{"--bogus"}, code: 2, inStderr: "unknown flag"},
	}
	runCLICases(t, []string{"rules", "list"}, tests)
}

func TestRulesListJSON(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"rules", "list", "--json"}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var got []struct {
		Name         string          `json:"name"`
		Description  string          `json:"description"`
		EventPattern json.RawMessage `json:"eventPattern"`
		Target       struct {
			Queue                    string `json:"queue"`
			MaxReceiveCount          int    `json:"maxReceiveCount"`
			VisibilityTimeoutSeconds int    `json:"visibilityTimeoutSeconds"`
		} `json:"target"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout.String())
	}
	if len(got) != 8 {
		t.Fatalf("%d rules, want 8", len(got))
	}
	byName := map[string]int{}
	for i, r := range got {
		byName[r.Name] = i
		if r.Description == "" || len(r.EventPattern) == 0 || r.Target.MaxReceiveCount == 0 || r.Target.VisibilityTimeoutSeconds == 0 {
			t.Errorf("incomplete rule %+v", r)
		}
	}
	tg, ok := byName["toolgateway-builtin-tools"]
	if !ok || got[tg].Target.Queue != "toolgateway" {
		t.Errorf("toolgateway rule missing or mis-targeted: %+v", got)
	}
}
