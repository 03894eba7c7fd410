package eventbridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/agentbus/agentbus/internal/testenv"
	"github.com/agentbus/agentbus/platform/bus"
)

func motoClient(t testing.TB) *eventbridge.Client {
	t.Helper()
	return eventbridge.NewFromConfig(aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(testenv.AWSEndpoint(t)),
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

// deleteBus removes a test's bus and rules when it ends, so that a
// long-lived moto stays small.
func deleteBus(t testing.TB, c *eventbridge.Client, busName string, rules ...string) {
	t.Cleanup(func() {
		ctx := context.Background()
		for _, r := range rules {
			_, _ = c.RemoveTargets(ctx, &eventbridge.RemoveTargetsInput{Rule: aws.String(r), EventBusName: aws.String(busName), Ids: []string{TargetID}})
			_, _ = c.DeleteRule(ctx, &eventbridge.DeleteRuleInput{Name: aws.String(r), EventBusName: aws.String(busName)})
		}
		_, _ = c.DeleteEventBus(ctx, &eventbridge.DeleteEventBusInput{Name: aws.String(busName)})
	})
}

func TestEnsureBusIdempotent(t *testing.T) {
	t.Parallel()
	c := motoClient(t)
	ctx := context.Background()
	name := uniqueName(t, "ebtest")
	deleteBus(t, c, name)
	first, err := EnsureBus(ctx, c, name)
	if err != nil {
		t.Fatal(err)
	}
	second, err := EnsureBus(ctx, c, name)
	if err != nil {
		t.Fatalf("second EnsureBus: %v", err)
	}
	if first == "" || first != second {
		t.Errorf("ARNs %q then %q", first, second)
	}
	if arn, err := EnsureBus(ctx, c, "default"); err != nil || arn == "" {
		t.Errorf("default bus: %q, %v", arn, err)
	}
}

func TestEnsureRuleIdempotent(t *testing.T) {
	t.Parallel()
	c := motoClient(t)
	ctx := context.Background()
	busName := uniqueName(t, "ebtest")
	deleteBus(t, c, busName, "planner-agent-requested")
	if _, err := EnsureBus(ctx, c, busName); err != nil {
		t.Fatal(err)
	}
	r := Rule{Bus: busName, Name: "planner-agent-requested", Description: "d",
		Pattern:  json.RawMessage(`{"detail-type":["agentbus.agent.requested.v1"]}`),
		QueueARN: "arn:aws:sqs:us-east-1:123456789012:q1"}
	first, err := EnsureRule(ctx, c, r)
	if err != nil {
		t.Fatal(err)
	}
	r.Pattern = json.RawMessage(`{"detail-type":["agentbus.agent.requested.v2"]}`)
	r.QueueARN = "arn:aws:sqs:us-east-1:123456789012:q2"
	second, err := EnsureRule(ctx, c, r)
	if err != nil {
		t.Fatalf("second EnsureRule: %v", err)
	}
	if first == "" || first != second {
		t.Errorf("rule ARNs %q then %q", first, second)
	}
	desc, err := c.DescribeRule(ctx, &eventbridge.DescribeRuleInput{Name: aws.String(r.Name), EventBusName: aws.String(busName)})
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToString(desc.EventPattern); !jsonEqual(t, got, string(r.Pattern)) || desc.State != "ENABLED" {
		t.Errorf("rule pattern %s state %s, want the updated pattern, enabled", got, desc.State)
	}
	targets, err := c.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: aws.String(r.Name), EventBusName: aws.String(busName)})
	if err != nil {
		t.Fatal(err)
	}
	if len(targets.Targets) != 1 || aws.ToString(targets.Targets[0].Arn) != r.QueueARN {
		t.Errorf("targets = %+v, want only %s", targets.Targets, r.QueueARN)
	}
}

func jsonEqual(t testing.TB, a, b string) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

func TestEnsureRuleRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		r    Rule
	}{
		{"no name", Rule{Bus: "b", Pattern: json.RawMessage(`{}`), QueueARN: "arn"}},
		{"no queue", Rule{Bus: "b", Name: "n", Pattern: json.RawMessage(`{}`)}},
		{"bad pattern", Rule{Bus: "b", Name: "n", Pattern: json.RawMessage(`{`), QueueARN: "arn"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// nil API: validation must fail before any call.
			if _, err := EnsureRule(context.Background(), nil, tc.r); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

func TestPublishToMissingBus(t *testing.T) {
	t.Parallel()
	p := New(aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(testenv.AWSEndpoint(t)),
	}, uniqueName(t, "missing"))
	err := p.Publish(context.Background(), testEvent(t, "lost", 10))
	var pe *bus.PublishError
	if !errors.As(err, &pe) || len(pe.Failures) != 1 || pe.Failures[0].ID != "lost" {
		t.Fatalf("err = %v, want a PublishError naming the event", err)
	}
}

func TestPublishToMoto(t *testing.T) {
	t.Parallel()
	c := motoClient(t)
	busName := uniqueName(t, "ebtest")
	deleteBus(t, c, busName)
	if _, err := EnsureBus(context.Background(), c, busName); err != nil {
		t.Fatal(err)
	}
	p := NewFromClient(c, busName)
	if err := p.Publish(context.Background(), testEvents(t, 23, 100)...); err != nil {
		t.Fatal(err)
	}
}
