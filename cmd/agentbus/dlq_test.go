package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sqssdk "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/internal/testenv"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/bus/local"
	"github.com/agentbus/agentbus/platform/bus/sqs"
)

// dlqEvent is a valid CloudEvent in its EventBridge envelope.
func dlqEvent(t *testing.T, id string) []byte {
	t.Helper()
	ev := event.New()
	ev.SetID(id)
	ev.SetSource("agentbus/test")
	ev.SetType("agentbus.test.v1")
	ev.SetExtension("sessionid", "s-dlq")
	if err := ev.SetData(event.ApplicationJSON, map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	env, err := events.ToEnvelope(ev)
	if err != nil {
		t.Fatal(err)
	}
	return events.EnvelopeJSON(env, "eb-"+id, time.Now(), "000000000000", "local")
}

// deadLetterAll receives n messages from q and dead-letters each with a
// reason naming its id; it returns id -> reason.
func deadLetterAll(t *testing.T, q bus.Queue, n int) map[string]string {
	t.Helper()
	ctx := context.Background()
	reasons := map[string]string{}
	deadline := time.Now().Add(10 * time.Second)
	for len(reasons) < n && time.Now().Before(deadline) {
		msgs, err := q.Receive(ctx, n-len(reasons), time.Second, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if _, done := reasons[m.ID]; done {
				// SQS delivers at least once (seen once on a busy moto): a
				// second copy must not become a second dead letter.
				continue
			}
			reason := "handler said no to " + m.ID
			if m.DecodeErr != nil {
				reason = "undecodable: " + m.DecodeErr.Error()
			}
			if err := q.DeadLetter(ctx, m, reason); err != nil {
				t.Fatal(err)
			}
			reasons[m.ID] = reason
		}
	}
	if len(reasons) != n {
		t.Fatalf("dead-lettered %d of %d", len(reasons), n)
	}
	return reasons
}

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// checkDLQCommands runs list, show and redrive on a DLQ holding the two dead
// letters of reasons (one decodable event "ev-dlq-1", one garbage body).
func checkDLQCommands(t *testing.T, queue string, reasons map[string]string, flags ...string) {
	t.Helper()
	cli := func(args ...string) (int, string, string) { return runCLI(t, append(args, flags...)...) }

	code, out, errOut := cli("dlq", "list", queue)
	if code != 0 {
		t.Fatalf("dlq list: exit %d: %s", code, errOut)
	}
	for id, reason := range reasons {
		if !strings.Contains(out, id) || !strings.Contains(out, oneLine(reason, 100)) {
			t.Errorf("dlq list output lacks %s / %q:\n%s", id, reason, out)
		}
	}
	if !strings.Contains(out, "agentbus.test.v1") || !strings.Contains(out, "(undecodable)") {
		t.Errorf("dlq list output lacks the event types:\n%s", out)
	}

	code, out, errOut = cli("dlq", "list", queue, "--json")
	if code != 0 {
		t.Fatalf("dlq list --json: exit %d: %s", code, errOut)
	}
	var listed []deadJSON
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("dlq list --json: %v\n%s", err, out)
	}
	if len(listed) != 2 {
		t.Fatalf("dlq list --json: %d entries, want 2", len(listed))
	}
	var eventID, garbageID string
	for _, d := range listed {
		if d.Reason != reasons[d.ID] {
			t.Errorf("entry %s reason %q, want %q", d.ID, d.Reason, reasons[d.ID])
		}
		switch {
		case d.RawBody == "garbage":
			garbageID = d.ID
		case strings.Contains(string(d.Body), "ev-dlq-1"):
			eventID = d.ID
		}
	}
	if eventID == "" || garbageID == "" {
		t.Fatalf("entries %+v: want the event and the garbage body", listed)
	}

	code, out, errOut = cli("dlq", "show", queue, eventID)
	if code != 0 {
		t.Fatalf("dlq show: exit %d: %s", code, errOut)
	}
	for _, want := range []string{reasons[eventID], "agentbus.test.v1 from agentbus/test, id ev-dlq-1, session s-dlq", `"detail-type"`} {
		if !strings.Contains(out, want) {
			t.Errorf("dlq show lacks %q:\n%s", want, out)
		}
	}
	if code, out, _ = cli("dlq", "show", queue, garbageID); code != 0 || !strings.Contains(out, "undecodable") {
		t.Errorf("dlq show of the garbage body: exit %d\n%s", code, out)
	}

	bad := []struct {
		name string
		args []string
	}{
		{"unknown id", []string{"dlq", "show", queue, "no-such-id"}},
		{"missing id", []string{"dlq", "show", queue}},
		{"no queue", []string{"dlq", "list"}},
		{"negative max", []string{"dlq", "redrive", queue, "--max", "-1"}},
		{"bad flag", []string{"dlq", "list", queue, "--bogus"}},
	}
	for _, tc := range bad {
		if code, _, errOut := cli(tc.args...); code != 2 {
			t.Errorf("%s: exit %d, want 2 (%s)", tc.name, code, errOut)
		}
	}

	if code, out, errOut = cli("dlq", "redrive", queue, "--max", "1"); code != 0 || !strings.Contains(out, "moved 1 ") {
		t.Fatalf("dlq redrive --max 1: exit %d: %s %s", code, out, errOut)
	}
	if code, out, errOut = cli("dlq", "redrive", queue); code != 0 || !strings.Contains(out, "moved 1 ") {
		t.Fatalf("dlq redrive: exit %d: %s %s", code, out, errOut)
	}
	if code, out, _ = cli("dlq", "list", queue, "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("dlq list after redrive: exit %d, %s", code, out)
	}
}

func TestDLQLocal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	b, err := local.Open(ctx, local.Options{Path: filepath.Join(dir, "bus.db"), Queues: []local.QueueConfig{{Name: "planner", MaxReceiveCount: 5, Visibility: time.Minute}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range [][]byte{dlqEvent(t, "ev-dlq-1"), []byte("garbage")} {
		if err := b.SendRaw(ctx, "planner", body); err != nil {
			t.Fatal(err)
		}
	}
	reasons := deadLetterAll(t, b.Queue("planner"), 2)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	checkDLQCommands(t, "planner", reasons, "--data-dir", dir)

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no bus", []string{"dlq", "list", "planner", "--data-dir", t.TempDir()}},
		{"unknown queue", []string{"dlq", "list", "nosuch", "--data-dir", dir}},
	} {
		if code, _, errOut := runCLI(t, tc.args...); code != 2 {
			t.Errorf("%s: exit %d, want 2 (%s)", tc.name, code, errOut)
		}
	}
	// Both are back on the queue.
	b, err = local.Open(ctx, local.Options{Path: filepath.Join(dir, "bus.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	msgs, err := b.Queue("planner").Receive(ctx, 10, time.Second, time.Minute)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("after redrive the queue holds %d (%v), want 2", len(msgs), err)
	}

	// The bus is open (locked) right now: the command says so.
	if code, _, errOut := runCLI(t, "dlq", "list", "planner", "--data-dir", dir); code == 0 || !strings.Contains(errOut, "in use") {
		t.Errorf("list while the bus is open: exit %d, %s", code, errOut)
	}
}

// awsTestEnv points the standard AWS configuration chain at the stand-in's
// static credentials, away from any profile of the machine. Not parallel:
// t.Setenv.
func awsTestEnv(t *testing.T) string {
	t.Helper()
	ep := testenv.AWSEndpoint(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AGENTBUS_MODE", "")
	return ep
}

func uniqPrefix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "cli" + hex.EncodeToString(b)
}

func TestDLQOnSQS(t *testing.T) {
	ep := awsTestEnv(t)
	prefix := uniqPrefix(t)
	ctx := context.Background()
	client := sqssdk.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""), BaseEndpoint: aws.String(ep)})
	info, err := sqs.EnsureQueue(ctx, client, sqs.QueueSpec{Name: sqs.QueueName(prefix, "executor"), MaxReceiveCount: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, u := range []string{info.URL, info.DLQURL} {
			_, _ = client.DeleteQueue(context.Background(), &sqssdk.DeleteQueueInput{QueueUrl: aws.String(u)})
		}
	})
	for _, body := range []string{string(dlqEvent(t, "ev-dlq-1")), "garbage"} {
		if _, err := client.SendMessage(ctx, &sqssdk.SendMessageInput{QueueUrl: aws.String(info.URL), MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	reasons := deadLetterAll(t, sqs.NewFromClient(client, info, sqs.WithLogger(slog.New(slog.DiscardHandler))), 2)

	checkDLQCommands(t, "executor", reasons, "--aws", "--endpoint", ep, "--prefix", prefix)

	// AGENTBUS_MODE=aws selects SQS without --aws; an unknown queue is a
	// usage error.
	t.Setenv("AGENTBUS_MODE", "aws")
	if code, _, errOut := runCLI(t, "dlq", "list", "nosuch", "--endpoint", ep, "--prefix", prefix); code != 2 || !strings.Contains(errOut, "no SQS queue") {
		t.Errorf("unknown SQS queue: exit %d, %s", code, errOut)
	}
	if code, out, errOut := runCLI(t, "dlq", "list", "executor", "--endpoint", ep, "--prefix", prefix, "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("AGENTBUS_MODE=aws list: exit %d, %s %s", code, out, errOut)
	}
}
