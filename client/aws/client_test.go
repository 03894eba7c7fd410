package awsclient_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	ebsdk "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/cloudevents/sdk-go/v2/event"

	awsclient "github.com/agentbus/agentbus/client/aws"
	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/internal/testenv"
	"github.com/agentbus/agentbus/platform/bus/eventbridge"
	"github.com/agentbus/agentbus/platform/pattern"
)

func mustEvent(t *testing.T, source, sid string, p events.Payload) event.Event {
	t.Helper()
	ev, err := events.NewPayload(source, sid, p)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func envelope(t *testing.T, ev event.Event) []byte {
	t.Helper()
	env, err := events.ToEnvelope(ev)
	if err != nil {
		t.Fatal(err)
	}
	return events.EnvelopeJSON(env, "id-1", time.Now(), "123456789012", "us-east-1")
}

// TestCallerPattern checks the caller's rule with the project's pattern
// engine (the EventBridge semantics): terminal events of the caller's own
// sessions only.
func TestCallerPattern(t *testing.T) {
	t.Parallel()
	p, err := pattern.Compile(awsclient.CallerPattern("app1"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ev   event.Event
		want bool
	}{
		{"completed, own session", mustEvent(t, events.SourcePlanner, "app1.s1", events.AgentCompleted{Answer: "x", Steps: 1}), true},
		{"failed, own session", mustEvent(t, events.SourcePlanner, "app1.s1", events.AgentFailed{Reason: events.AgentMaxSteps}), true},
		{"cancelled, own session", mustEvent(t, events.SourcePlanner, "app1.s1", events.AgentCancelled{}), true},
		{"another caller with a longer id", mustEvent(t, events.SourcePlanner, "app10.s1", events.AgentCompleted{Answer: "x"}), false},
		{"no separator", mustEvent(t, events.SourcePlanner, "app1", events.AgentCompleted{Answer: "x"}), false},
		{"not terminal", mustEvent(t, events.SourceClient, "app1.s1", events.AgentRequested{Prompt: "hi"}), false},
	}
	for _, tt := range tests {
		got, err := p.Match(envelope(t, tt.ev))
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("%s: match %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestBadConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	good := awsclient.Config{AWS: aws.Config{Region: "us-east-1"}, Bus: "b", CallerID: "c", Queue: awsclient.CallerQueue{URL: "http://x/1/q"}}
	for name, edit := range map[string]func(*awsclient.Config){
		"no bus":          func(c *awsclient.Config) { c.Bus = "" },
		"dot in caller":   func(c *awsclient.Config) { c.CallerID = "a.b" },
		"empty caller":    func(c *awsclient.Config) { c.CallerID = "" },
		"no caller queue": func(c *awsclient.Config) { c.Queue = awsclient.CallerQueue{} },
	} {
		c := good
		edit(&c)
		if _, err := awsclient.New(ctx, c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := awsclient.EnsureCallerQueue(ctx, aws.Config{Region: "us-east-1"}, "b", "bad id"); err == nil {
		t.Error("EnsureCallerQueue accepted an invalid caller id")
	}
	c, err := awsclient.New(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.NewSessionID(), "c.") {
		t.Errorf("session id %q lacks the caller prefix", c.NewSessionID())
	}
	_ = c.Close()
	if _, err := c.Await(ctx, "c.x"); !errors.Is(err, awsclient.ErrClosed) {
		t.Errorf("Await after Close: %v", err)
	}
}

// TestOnMoto provisions a caller queue twice (idempotent), then publishes
// terminal events to the bus the way the planner does: the client gets
// its own sessions' results (also one that arrived before Await), and an
// event of another caller never reaches it.
func TestOnMoto(t *testing.T) {
	if testing.Short() {
		t.Skip("moto integration; skipped in -short")
	}
	t.Parallel()
	endpoint := testenv.AWSEndpoint(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(endpoint)}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	bus := "cl" + hex.EncodeToString(b)
	if _, err := eventbridge.EnsureBus(ctx, ebsdk.NewFromConfig(cfg), bus); err != nil {
		t.Fatal(err)
	}
	q, err := awsclient.EnsureCallerQueue(ctx, cfg, bus, "me")
	if err != nil {
		t.Fatal(err)
	}
	q2, err := awsclient.EnsureCallerQueue(ctx, cfg, bus, "me")
	if err != nil || q2 != q {
		t.Fatalf("second EnsureCallerQueue: %+v %v, first %+v", q2, err, q)
	}
	if q.Name != bus+"-caller-me" || q.DLQURL == "" || q.RuleARN == "" {
		t.Fatalf("caller queue %+v", q)
	}
	c, err := awsclient.New(ctx, awsclient.Config{AWS: cfg, Bus: bus, CallerID: "me", Queue: q})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pub := eventbridge.New(cfg, bus)
	early, late, other := c.NewSessionID(), c.NewSessionID(), "someoneelse."+c.NewSessionID()[3:]
	if err := pub.Publish(ctx,
		mustEvent(t, events.SourcePlanner, other, events.AgentCompleted{Answer: "not yours", Steps: 1}),
		mustEvent(t, events.SourcePlanner, early, events.AgentFailed{Reason: events.AgentMaxSteps, Steps: 3}),
	); err != nil {
		t.Fatal(err)
	}
	// Let the early result arrive with nobody waiting for it.
	res, err := c.Await(ctx, early)
	if err != nil || res.Failed == nil || res.Failed.Reason != events.AgentMaxSteps || res.SessionID != early {
		t.Fatalf("early: %+v %v", res, err)
	}
	if err := pub.Publish(ctx, mustEvent(t, events.SourcePlanner, late, events.AgentCompleted{Answer: "42", Steps: 2})); err != nil {
		t.Fatal(err)
	}
	res, err = c.Await(ctx, late)
	if err != nil || res.Completed == nil || res.Completed.Answer != "42" {
		t.Fatalf("late: %+v %v", res, err)
	}
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if res, err := c.Await(short, other); err == nil {
		t.Fatalf("another caller's result reached this queue: %+v", res)
	}
}
