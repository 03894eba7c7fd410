package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/saga"
)

const bookTripFile = "../../examples/sagas/book_trip.json"

func TestSagasCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	one := write("one.json", `{"name":"one","description":"d","steps":[{"name":"s","action":{"tool":"calculator","input":{"expression":"$.input.e"}}}]}`)
	bad := write("bad.json", `{"name":"bad","description":"d","steps":[{"name":"s","action":{"tool":"t","input":{"x":"$.steps.later.y"}}}]}`)
	unknownField := write("typo.json", `{"name":"typo","stepz":[]}`)
	sameName := write("same.json", `{"name":"one","description":"other","steps":[{"name":"s","action":{"tool":"clock"}}]}`)
	golden, err := os.ReadFile("../../saga/testdata/book_trip.asl.json")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		args     []string
		code     int
		inStdout []string
		inStderr string
	}{
		{"list", []string{"sagas", "list", bookTripFile, "--saga", one}, 0,
			[]string{"book_trip", "reserve_flight (cancel_flight) → reserve_hotel (cancel_hotel) → charge_card (refund_card)", "9m14s", "one", "calculator"}, ""},
		{"list a folder", []string{"sagas", "list", "--sagas-dir", "../../examples/sagas"}, 0, []string{"book_trip"}, ""},
		{"list nothing", []string{"sagas", "list"}, 2, nil, "no sagas"},
		{"invalid reference", []string{"sagas", "list", bad}, 2, nil, "bad.json"},
		{"unknown field", []string{"sagas", "list", unknownField}, 2, nil, "stepz"},
		{"one name twice", []string{"sagas", "list", one, sameName}, 2, nil, "also defined in"},
		{"missing file", []string{"sagas", "asl", filepath.Join(dir, "nope.json")}, 2, nil, "no such file"},
		{"asl of an invalid file", []string{"sagas", "asl", bad}, 2, nil, "bad.json"},
		{"asl", []string{"sagas", "asl", bookTripFile, "--queue-url", "https://sqs.us-east-1.amazonaws.com/123456789012/agentbus-saga"}, 0,
			[]string{strings.TrimSpace(string(golden))}, ""},
		{"asl with the example queue", []string{"sagas", "asl", bookTripFile}, 0, []string{`"QueueUrl": "` + exampleQueueURL}, "example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, strings.NewReader(""), &stdout, &stderr)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, tt.code, stdout.String(), stderr.String())
			}
			for _, s := range tt.inStdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
				}
			}
			if !strings.Contains(stderr.String(), tt.inStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.inStderr, stderr.String())
			}
		})
	}
	// The printed ASL is the generator's, byte for byte.
	d, err := loadSagaFile(bookTripFile)
	if err != nil {
		t.Fatal(err)
	}
	want, err := saga.ASL(d, exampleQueueURL)
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	if code := run(context.Background(), []string{"sagas", "asl", bookTripFile, "--queue-url", exampleQueueURL}, strings.NewReader(""), &stdout, &bytes.Buffer{}); code != 0 ||
		stdout.String() != string(want)+"\n" {
		t.Fatalf("exit %d, output differs from saga.ASL", code)
	}
}
