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

	tests := []cliCase{
		{name: "list", args: []string{"list", bookTripFile, "--saga", one},
			inStdout: []string{"book_trip", "reserve_flight (cancel_flight) → reserve_hotel (cancel_hotel) → charge_card (refund_card)", "9m14s", "one", "calculator"}},
		{name: "list a folder", args: []string{"list", "--sagas-dir", "../../examples/sagas"}, inStdout: []string{"book_trip"}},
		{name: "list nothing", args: []string{"list"}, code: 2, inStderr: "no sagas"},
		{name: "invalid reference", args: []string{"list", bad}, code: 2, inStderr: "bad.json"},
		{name: "unknown field", args: []string{"list", unknownField}, code: 2, inStderr: "stepz"},
		{name: "one name twice", args: []string{"list", one, sameName}, code: 2, inStderr: "also defined in"},
		{name: "missing file", args: []string{"asl", filepath.Join(dir, "nope.json")}, code: 2, inStderr: "no such file"},
		{name: "asl of an invalid file", args: []string{"asl", bad}, code: 2, inStderr: "bad.json"},
		{name: "asl", args: []string{"asl", bookTripFile, "--queue-url", "https://sqs.us-east-1.amazonaws.com/123456789012/agentbus-saga"},
			inStdout: []string{strings.TrimSpace(string(golden))}},
		{name: "asl with the example queue", args: []string{"asl", bookTripFile}, inStdout: []string{`"QueueUrl": "` + exampleQueueURL}, inStderr: "example"},
	}
	runCLICases(t, []string{"sagas"}, tests)
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
