package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// cliCase is one row of a CLI table test: the arguments after the
// command, the exit status, and what the output must and must not hold.
type cliCase struct {
	name      string
	args      []string
	code      int
	inStdout  []string
	notStdout []string
	// inStderr must be in stderr ("" matches anything).
	inStderr string
	// lines, when > 0, is the number of stdout lines.
	lines int
}

// runCLICases runs each case as `agentbus <command...> <args...>` in
// parallel subtests.
func runCLICases(t *testing.T, command []string, cases []cliCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			args := append(append([]string{}, command...), tc.args...)
			code := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, tc.code, stdout.String(), stderr.String())
			}
			for _, want := range tc.inStdout {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
				}
			}
			for _, not := range tc.notStdout {
				if strings.Contains(stdout.String(), not) {
					t.Errorf("stdout has %q:\n%s", not, stdout.String())
				}
			}
			if tc.lines > 0 {
				if n := strings.Count(stdout.String(), "\n"); n != tc.lines {
					t.Errorf("%d lines, want %d:\n%s", n, tc.lines, stdout.String())
				}
			}
			if !strings.Contains(stderr.String(), tc.inStderr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.inStderr)
			}
		})
	}
}
