package sqs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/internal/testenv"
	"github.com/agentbus/agentbus/platform/bus"
)

// endpoint caches the stand-in's address once it answered: the probe in
// testenv has a short timeout that a moto busy with parallel tests (the
// conformance suite runs in this binary too) can exceed.
var endpoint struct {
	sync.Mutex
	url string
}

func motoEndpoint(t testing.TB) string {
	t.Helper()
	endpoint.Lock()
	defer endpoint.Unlock()
	if endpoint.url == "" {
		endpoint.url = testenv.AWSEndpoint(t)
	}
	return endpoint.url
}

// motoClient is an SQS client on the local stand-in (moto server).
func motoClient(t testing.TB) *sqs.Client {
	t.Helper()
	ep := motoEndpoint(t)
	return sqs.NewFromConfig(aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(ep),
	})
}

func uniqueName(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + "-" + hex.EncodeToString(b)
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newMotoQueue provisions a fresh queue + DLQ on moto.
func newMotoQueue(t testing.TB, maxReceive int) (*sqs.Client, *Queue) {
	t.Helper()
	c := motoClient(t)
	info, err := EnsureQueue(context.Background(), c, QueueSpec{Name: uniqueName(t, "sqstest"), VisibilityTimeout: 30 * time.Second, MaxReceiveCount: maxReceive})
	if err != nil {
		t.Fatal(err)
	}
	deleteQueues(t, c, info)
	return c, NewFromClient(c, info, WithLogger(quietLog()))
}

// deleteQueues removes a test's queues when it ends, so that a long-lived
// moto stays small (its state dump, which testenv probes, grows with it).
func deleteQueues(t testing.TB, c *sqs.Client, info Info) {
	t.Cleanup(func() {
		for _, u := range []string{info.URL, info.DLQURL} {
			_, _ = c.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: aws.String(u)})
		}
	})
}

func cloudEvent(t testing.TB, id string) event.Event {
	t.Helper()
	ev := event.New()
	ev.SetID(id)
	ev.SetSource("agentbus/test")
	ev.SetType("agentbus.test.v1")
	ev.SetExtension("sessionid", "s-"+id)
	if err := ev.SetData(event.ApplicationJSON, map[string]any{"n": 1}); err != nil {
		t.Fatal(err)
	}
	return ev
}

// sendEnvelope puts what an EventBridge rule would deliver for ev on q.
func sendEnvelope(t testing.TB, c *sqs.Client, url string, ev event.Event) {
	t.Helper()
	env, err := events.ToEnvelope(ev)
	if err != nil {
		t.Fatal(err)
	}
	body := events.EnvelopeJSON(env, "eb-"+ev.ID(), time.Now(), "123456789012", "us-east-1")
	sendRaw(t, c, url, string(body))
}

func sendRaw(t testing.TB, c *sqs.Client, url, body string) {
	t.Helper()
	if _, err := c.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body)}); err != nil {
		t.Fatal(err)
	}
}

// receiveAll drains up to n messages within a few seconds.
func receiveAll(t testing.TB, q *Queue, n int, visibility time.Duration) []bus.Message {
	t.Helper()
	var got []bus.Message
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		ms, err := q.Receive(context.Background(), n-len(got), time.Second, visibility)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ms...)
	}
	return got
}

func TestEnsureQueueIdempotent(t *testing.T) {
	t.Parallel()
	c := motoClient(t)
	ctx := context.Background()
	spec := QueueSpec{Name: uniqueName(t, "ensure"), VisibilityTimeout: 45 * time.Second, MaxReceiveCount: 3}
	first, err := EnsureQueue(ctx, c, spec)
	if err != nil {
		t.Fatal(err)
	}
	deleteQueues(t, c, first)
	spec.MaxReceiveCount = 4 // a changed setting converges
	second, err := EnsureQueue(ctx, c, spec)
	if err != nil {
		t.Fatalf("second EnsureQueue: %v", err)
	}
	if first != second {
		t.Errorf("EnsureQueue not idempotent: %+v vs %+v", first, second)
	}
	if !strings.HasSuffix(first.DLQARN, ":"+spec.Name+"-dlq") || !strings.HasSuffix(first.ARN, ":"+spec.Name) {
		t.Errorf("ARNs %q %q", first.ARN, first.DLQARN)
	}
	attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(first.URL), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
	if err != nil {
		t.Fatal(err)
	}
	if got := attrs.Attributes["VisibilityTimeout"]; got != "45" {
		t.Errorf("VisibilityTimeout = %q, want 45", got)
	}
	var rp struct {
		Target string          `json:"deadLetterTargetArn"`
		Max    json.RawMessage `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(attrs.Attributes["RedrivePolicy"]), &rp); err != nil {
		t.Fatalf("RedrivePolicy %q: %v", attrs.Attributes["RedrivePolicy"], err)
	}
	if rp.Target != first.DLQARN || strings.Trim(string(rp.Max), `"`) != "4" {
		t.Errorf("RedrivePolicy = %+v, want DLQ %s max 4", rp, first.DLQARN)
	}
	looked, err := Lookup(ctx, c, spec.Name)
	if err != nil {
		t.Fatal(err)
	}
	if looked != first {
		t.Errorf("Lookup = %+v, want %+v", looked, first)
	}
}

func TestEnsureQueueRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec QueueSpec
	}{
		{"empty name", QueueSpec{MaxReceiveCount: 1}},
		{"bad character", QueueSpec{Name: "a.b", MaxReceiveCount: 1}},
		{"too long with -dlq", QueueSpec{Name: strings.Repeat("a", 77), MaxReceiveCount: 1}},
		{"no max receive", QueueSpec{Name: "ok"}},
		{"max receive too big", QueueSpec{Name: "ok", MaxReceiveCount: 1001}},
		{"negative visibility", QueueSpec{Name: "ok", MaxReceiveCount: 1, VisibilityTimeout: -time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// nil API: validation must fail before any call.
			if _, err := EnsureQueue(context.Background(), nil, tc.spec); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

func TestEnsureSendPolicy(t *testing.T) {
	t.Parallel()
	c, q := newMotoQueue(t, 3)
	ctx := context.Background()
	rules := []string{"arn:aws:events:us-east-1:123456789012:rule/b/r2", "arn:aws:events:us-east-1:123456789012:rule/b/r1", "arn:aws:events:us-east-1:123456789012:rule/b/r1"}
	if err := EnsureSendPolicy(ctx, c, q.Info(), rules); err != nil {
		t.Fatal(err)
	}
	if err := EnsureSendPolicy(ctx, c, q.Info(), nil); err == nil {
		t.Error("empty rule list: want an error")
	}
	attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q.Info().URL), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNamePolicy}})
	if err != nil {
		t.Fatal(err)
	}
	var doc policyDoc
	if err := json.Unmarshal([]byte(attrs.Attributes["Policy"]), &doc); err != nil {
		t.Fatalf("policy %q: %v", attrs.Attributes["Policy"], err)
	}
	if len(doc.Statement) != 1 {
		t.Fatalf("statements = %+v", doc.Statement)
	}
	st := doc.Statement[0]
	if st.Effect != "Allow" || st.Principal["Service"] != "events.amazonaws.com" || st.Action != "sqs:SendMessage" || st.Resource != q.Info().ARN {
		t.Errorf("statement = %+v", st)
	}
	if got := st.Condition["ArnEquals"]["aws:SourceArn"]; !slices.Equal(got, []string{rules[1], rules[0]}) {
		t.Errorf("allowed sources = %v, want the two rules, sorted, once each", got)
	}
}

func TestReceiveDecodesAndKeepsUndecodable(t *testing.T) {
	t.Parallel()
	c, q := newMotoQueue(t, 5)
	ev := cloudEvent(t, "r1")
	sendEnvelope(t, c, q.Info().URL, ev)
	sendRaw(t, c, q.Info().URL, `{"not":"an event"}`)
	sendRaw(t, c, q.Info().URL, `not json`)
	got := receiveAll(t, q, 3, 30*time.Second)
	if len(got) != 3 {
		t.Fatalf("received %d messages, want 3", len(got))
	}
	decoded, broken := 0, 0
	for _, m := range got {
		if m.ID == "" || m.Receipt == "" || m.ReceiveCount != 1 || m.SentAt.IsZero() || len(m.Body) == 0 {
			t.Errorf("message metadata incomplete: %+v", m)
		}
		if m.DecodeErr != nil {
			broken++
			if !errors.Is(m.DecodeErr, events.ErrInvalidEnvelope) {
				t.Errorf("DecodeErr = %v, want ErrInvalidEnvelope", m.DecodeErr)
			}
			continue
		}
		decoded++
		if m.Event.ID() != "r1" || m.Event.Extensions()["sessionid"] != "s-r1" {
			t.Errorf("decoded event %s %v", m.Event.ID(), m.Event.Extensions())
		}
	}
	if decoded != 1 || broken != 2 {
		t.Errorf("decoded %d, undecodable %d; want 1 and 2", decoded, broken)
	}
}

func TestReceiveRejectsBadMax(t *testing.T) {
	t.Parallel()
	q := NewFromClient(nil, Info{Name: "x", URL: "http://invalid"})
	if _, err := q.Receive(context.Background(), 0, 0, 0); err == nil {
		t.Error("max 0: want an error")
	}
}

func TestNackExtendAndReceiveCount(t *testing.T) {
	t.Parallel()
	c, q := newMotoQueue(t, 10)
	ctx := context.Background()
	sendEnvelope(t, c, q.Info().URL, cloudEvent(t, "n1"))
	m := receiveAll(t, q, 1, 30*time.Second)
	if len(m) != 1 {
		t.Fatal("no message")
	}
	// Invisible for 30 s: nothing to receive.
	if again, err := q.Receive(ctx, 1, 0, 0); err != nil || len(again) != 0 {
		t.Fatalf("while in flight: %d messages, err %v", len(again), err)
	}
	if err := q.Nack(ctx, m[0].Receipt, 0); err != nil {
		t.Fatal(err)
	}
	m2 := receiveAll(t, q, 1, 30*time.Second)
	if len(m2) != 1 || m2[0].ID != m[0].ID || m2[0].ReceiveCount != 2 {
		t.Fatalf("after nack: %+v, want the same message with ReceiveCount 2", m2)
	}
	// Extend with a long visibility keeps it hidden; then release it at once.
	if err := q.Extend(ctx, m2[0].Receipt, time.Minute); err != nil {
		t.Fatal(err)
	}
	if again, err := q.Receive(ctx, 1, time.Second, 0); err != nil || len(again) != 0 {
		t.Fatalf("after extend: %d messages, err %v", len(again), err)
	}
	if err := q.Extend(ctx, "not-a-receipt", time.Minute); err == nil {
		t.Error("extend with a bogus receipt: want an error")
	}
	if err := q.Ack(ctx, m2[0].Receipt); err != nil {
		t.Fatal(err)
	}
}

func TestAckBatches(t *testing.T) {
	t.Parallel()
	c, q := newMotoQueue(t, 5)
	ctx := context.Background()
	const n = 23
	for i := range n {
		sendEnvelope(t, c, q.Info().URL, cloudEvent(t, "a"+string(rune('a'+i))))
	}
	got := receiveAll(t, q, n, time.Minute)
	if len(got) != n {
		t.Fatalf("received %d, want %d", len(got), n)
	}
	receipts := make([]string, 0, n+1)
	for _, m := range got {
		receipts = append(receipts, m.Receipt)
	}
	receipts = append(receipts, receipts[0]) // a duplicate is tolerated
	if err := q.Ack(ctx, receipts...); err != nil {
		t.Fatal(err)
	}
	attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q.Info().URL), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
	if err != nil {
		t.Fatal(err)
	}
	if v, nv := attrs.Attributes["ApproximateNumberOfMessages"], attrs.Attributes["ApproximateNumberOfMessagesNotVisible"]; v != "0" || nv != "0" {
		t.Errorf("after ack: %s visible, %s in flight; want 0 and 0", v, nv)
	}
}

func TestAckReportsInvalidReceipt(t *testing.T) {
	t.Parallel()
	c, q := newMotoQueue(t, 5)
	sendEnvelope(t, c, q.Info().URL, cloudEvent(t, "inv"))
	got := receiveAll(t, q, 1, time.Minute)
	if len(got) != 1 {
		t.Fatal("no message")
	}
	err := q.Ack(context.Background(), got[0].Receipt, "bogus-receipt")
	var ae *AckError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want *AckError", err)
	}
	if r := ae.Receipts(); len(r) != 1 || r[0] != "bogus-receipt" {
		t.Errorf("failed receipts = %v, want only the bogus one", r)
	}
}

func TestDeadLetterListRedrive(t *testing.T) {
	t.Parallel()
	c, q := newMotoQueue(t, 5)
	ctx := context.Background()
	sendRaw(t, c, q.Info().URL, "garbage")
	sendEnvelope(t, c, q.Info().URL, cloudEvent(t, "dl1"))
	got := receiveAll(t, q, 2, time.Minute)
	if len(got) != 2 {
		t.Fatalf("received %d", len(got))
	}
	ids := map[string]string{}
	for _, m := range got {
		reason := "schema: bad"
		if m.DecodeErr != nil {
			reason = m.DecodeErr.Error()
		}
		ids[m.ID] = reason
		if err := q.DeadLetter(ctx, m, reason); err != nil {
			t.Fatal(err)
		}
	}
	if left, err := q.Receive(ctx, 10, time.Second, 0); err != nil || len(left) != 0 {
		t.Fatalf("source queue after DeadLetter: %d messages, err %v", len(left), err)
	}
	for range 2 { // List does not remove
		dl, err := q.List(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(dl) != 2 {
			t.Fatalf("List = %d dead letters, want 2", len(dl))
		}
		for _, d := range dl {
			want, ok := ids[d.ID]
			if !ok || d.Reason != want || d.ReceiveCount != 1 || d.DeadAt.IsZero() || len(d.Body) == 0 {
				t.Errorf("dead letter %+v: want id in %v, reason %q, receive count 1", d, ids, want)
			}
		}
	}
	if dl, err := q.List(ctx, 1); err != nil || len(dl) != 1 {
		t.Errorf("List(1) = %d, %v", len(dl), err)
	}
	moved, err := q.Redrive(ctx, 1)
	if err != nil || moved != 1 {
		t.Fatalf("Redrive(1) = %d, %v", moved, err)
	}
	moved, err = q.Redrive(ctx, 0)
	if err != nil || moved != 1 {
		t.Fatalf("Redrive(all) = %d, %v; want the 1 left", moved, err)
	}
	if dl, err := q.List(ctx, 10); err != nil || len(dl) != 0 {
		t.Errorf("DLQ after redrive: %d, %v", len(dl), err)
	}
	back := receiveAll(t, q, 2, time.Minute)
	if len(back) != 2 {
		t.Fatalf("redriven back: %d, want 2", len(back))
	}
	for _, m := range back {
		// The agentbus.* attributes stay behind in the DLQ.
		if m.DecodeErr == nil && m.Event.ID() != "dl1" {
			t.Errorf("redriven event %s", m.Event.ID())
		}
	}
}

func TestRedrivePolicyMovesAfterMaxReceives(t *testing.T) {
	t.Parallel()
	c, q := newMotoQueue(t, 1)
	ctx := context.Background()
	sendEnvelope(t, c, q.Info().URL, cloudEvent(t, "rp"))
	m := receiveAll(t, q, 1, time.Minute)
	if len(m) != 1 {
		t.Fatal("no message")
	}
	if err := q.Nack(ctx, m[0].Receipt, 0); err != nil {
		t.Fatal(err)
	}
	// The next receive finds the count exhausted: SQS moves it to the DLQ.
	if again, err := q.Receive(ctx, 1, time.Second, 0); err != nil || len(again) != 0 {
		t.Fatalf("after max receives: %d messages, err %v", len(again), err)
	}
	dl, err := q.List(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 1 || dl[0].Reason != ReasonRedrivePolicy || dl[0].ID != m[0].ID {
		t.Fatalf("DLQ = %+v, want the message with the redrive-policy reason", dl)
	}
}

func TestDLQOpsWithoutDLQ(t *testing.T) {
	t.Parallel()
	q := NewFromClient(nil, Info{Name: "solo", URL: "http://invalid"})
	ctx := context.Background()
	if _, err := q.List(ctx, 1); !errors.Is(err, errNoDLQ) {
		t.Errorf("List: %v", err)
	}
	if _, err := q.Redrive(ctx, 1); !errors.Is(err, errNoDLQ) {
		t.Errorf("Redrive: %v", err)
	}
	if err := q.DeadLetter(ctx, bus.Message{ID: "m", Body: []byte("x")}, "r"); !errors.Is(err, errNoDLQ) {
		t.Errorf("DeadLetter: %v", err)
	}
}

// TestDLQManyPages lists and redrives more dead letters than one receive
// returns: List must gather distinct messages across receives and leave
// them all in place.
func TestDLQManyPages(t *testing.T) {
	t.Parallel()
	c, q := newMotoQueue(t, 5)
	ctx := context.Background()
	const n = 23
	for i := range n {
		if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q.Info().DLQURL), MessageBody: aws.String(`{"n":` + string(rune('0'+i%10)) + `}`)}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		max, want int
	}{{5, 5}, {12, 12}, {100, n}, {0, n}}
	for _, tc := range tests {
		dl, err := q.List(ctx, tc.max)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, d := range dl {
			seen[d.ID] = true
			if d.Reason != ReasonRedrivePolicy {
				t.Errorf("reason %q for a message without agentbus attributes", d.Reason)
			}
		}
		if len(dl) != tc.want || len(seen) != tc.want {
			t.Errorf("List(%d) = %d (%d distinct), want %d", tc.max, len(dl), len(seen), tc.want)
		}
	}
	moved, err := q.Redrive(ctx, 100)
	if err != nil || moved != n {
		t.Fatalf("Redrive = %d, %v; want %d", moved, err, n)
	}
	if got := receiveAll(t, q, n, time.Minute); len(got) != n {
		t.Errorf("source queue holds %d after redrive, want %d", len(got), n)
	}
}
