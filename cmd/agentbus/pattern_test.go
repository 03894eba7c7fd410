package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPatternTestCmd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	patFile := filepath.Join(dir, "p.json")
	evFile := filepath.Join(dir, "e.json")
	if err := os.WriteFile(patFile, []byte(`{"detail":{"n":[{"numeric":[">",5]}]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(evFile, []byte(`{"detail":{"n":6}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		stdin    string
		code     int
		stdout   string
		inStderr string
	}{
		{"match inline", []string{"--pattern", `{"source":["a"]}`, "--event", `{"source":"a"}`}, "", 0, "true\n", ""},
		{"no match inline", []string{"--pattern", `{"source":["a"]}`, "--event", `{"source":"b"}`}, "", 0, "false\n", ""},
		{"any object is an event", []string{"--pattern", `{"x":[{"exists":false}]}`, "--event", `{}`}, "", 0, "true\n", ""},
		{"files", []string{"--pattern", "@" + patFile, "--event", "@" + evFile}, "", 0, "true\n", ""},
		{"stdin event", []string{"--pattern", "@" + patFile, "--event", "@-"}, `{"detail":{"n":5}}`, 0, "false\n", ""},
		{"invalid pattern", []string{"--pattern", `{"source":"a"}`, "--event", `{}`}, "", 2, "", "must be an object or an array"},
		{"mis-cased operator", []string{"--pattern", `{"a":[{"Prefix":"x"}]}`, "--event", `{}`}, "", 2, "", "case-sensitive"},
		{"invalid event json", []string{"--pattern", `{"a":["x"]}`, "--event", `{"a":`}, "", 2, "", "invalid event"},
		{"event not an object", []string{"--pattern", `{"a":["x"]}`, "--event", `["a"]`}, "", 2, "", "JSON object"},
		{"missing file", []string{"--pattern", "@" + filepath.Join(dir, "nope"), "--event", `{}`}, "", 2, "", "--pattern"},
		{"missing flag", []string{"--pattern", `{"a":["x"]}`}, "", 2, "", "required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errb bytes.Buffer
			args := append([]string{"pattern", "test"}, tc.args...)
			code := run(context.Background(), args, strings.NewReader(tc.stdin), &out, &errb)
			if code != tc.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tc.code, errb.String())
			}
			if out.String() != tc.stdout {
				t.Fatalf("stdout %q, want %q", out.String(), tc.stdout)
			}
			if !strings.Contains(errb.String(), tc.inStderr) {
				t.Fatalf("stderr %q does not contain %q", errb.String(), tc.inStderr)
			}
		})
	}
}
