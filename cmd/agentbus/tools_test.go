package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/tools"
)

func TestToolsList(t *testing.T) {
	t.Parallel()
	write := func(dir, name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	plugin := t.TempDir()
	write(plugin, "refund.json", `{"name":"refund","description":"Refunds an order. Not idempotent.","inputSchema":{"type":"object","properties":{"order":{"type":"string"}},"required":["order"]},"timeoutMs":20000}`)
	shadow := t.TempDir()
	write(shadow, "calc.json", `{"name":"calculator","description":"x","inputSchema":{"type":"object"}}`)
	bad := t.TempDir()
	write(bad, "bad.json", `{"name":"bad","inputSchema":{"type":"object"},"timeout":5}`)
	empty := t.TempDir()

	tests := []cliCase{
		{name: "built-ins", code: 0, lines: 5,
			inStdout:  []string{"NAME", "IDEMPOTENT", "calculator", "clock", "http_get", "memory_search", "built-in", "Evaluates an arithmetic expression"},
			notStdout: []string{"refund", "plug-in"}},
		{name: "with plug-in specs", args: []string{"--dir", plugin}, code: 0, lines: 6,
			inStdout: []string{"refund", "false", "20s", "plug-in", "Refunds an order."}, notStdout: []string{"Not idempotent."}},
		{name: "plug-in shadows a built-in", args: []string{"--dir", shadow}, code: 2, inStderr: "already registered"},
		{name: "bad spec file", args: []string{"--dir", bad}, code: 2, inStderr: `unknown field "timeout"`},
		{name: "empty dir", args: []string{"--dir", empty}, code: 2, inStderr: "no tool spec files"},
		{name: "missing dir", args: []string{"--dir", filepath.Join(empty, "nope")}, code: 2, inStderr: "no such file"},
		{name: "stray argument", args: []string{"calculator"}, code: 2, inStderr: "unexpected argument"},
		{name: "unknown flag", args: []string{"--nope"}, code: 2, inStderr: "unknown flag"},
	}
	runCLICases(t, []string{"tools", "list"}, tests)
}

func TestToolsListJSON(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.json"), []byte(`[{"name":"lookup","description":"d","inputSchema":{"type":"object"},"idempotent":true}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"tools", "list", "--json", "--dir", dir}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var got []struct {
		Name        string          `json:"name"`
		InputSchema json.RawMessage `json:"inputSchema"`
		Idempotent  bool            `json:"idempotent"`
		TimeoutMs   int64           `json:"timeoutMs"`
		Builtin     bool            `json:"builtin"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout.String())
	}
	byName := map[string]int{}
	for i, g := range got {
		byName[g.Name] = i
	}
	for _, name := range []string{"calculator", "clock", "http_get", "memory_search", "lookup"} {
		i, ok := byName[name]
		if !ok {
			t.Fatalf("%s missing from %s", name, stdout.String())
		}
		g := got[i]
		if g.Builtin != (name != "lookup") || g.TimeoutMs <= 0 || !json.Valid(g.InputSchema) {
			t.Errorf("%s: %+v", name, g)
		}
	}
	// The printed specs are loadable plug-in spec files again (round trip).
	var specs []tools.Spec
	if err := json.Unmarshal(stdout.Bytes(), &specs); err != nil {
		t.Fatal(err)
	}
	r := tools.NewRegistry()
	if err := r.RegisterSpecs(specs); err != nil {
		t.Fatalf("printed specs do not register: %v", err)
	}
}
