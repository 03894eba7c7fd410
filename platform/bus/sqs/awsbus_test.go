package sqs_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	ebsdk "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	sqssdk "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/internal/testenv"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/bus/bustest"
	"github.com/agentbus/agentbus/platform/bus/eventbridge"
	"github.com/agentbus/agentbus/platform/bus/sqs"
)

// motoConfig points the SDK at the local stand-in (moto server). The
// endpoint is probed once: testenv's reachability probe has a short timeout
// that a moto busy with parallel subtests can exceed.
func motoConfig(t testing.TB) aws.Config {
	t.Helper()
	cached.Lock()
	defer cached.Unlock()
	if cached.url == "" {
		cached.url = testenv.AWSEndpoint(t)
	}
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(cached.url),
	}
}

var cached struct {
	sync.Mutex
	url string
}

func uniq(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + "-" + hex.EncodeToString(b)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// awsBus provisions, on moto, what bootstrap provisions on AWS: a bus of its
// own, one rule per test rule, each target queue with its DLQ, redrive and
// send policy. Everything is deleted when the test ends.
func awsBus(t testing.TB, cfg aws.Config, rules []bustest.Rule) bustest.Backend {
	t.Helper()
	ctx := context.Background()
	eb := ebsdk.NewFromConfig(cfg)
	sq := sqssdk.NewFromConfig(cfg)
	busName := uniq(t, "bustest")
	if _, err := eventbridge.EnsureBus(ctx, eb, busName); err != nil {
		t.Fatal(err)
	}
	infos := map[string]sqs.Info{}
	ruleARNs := map[string][]string{}
	t.Cleanup(func() { cleanup(eb, sq, busName, rules, infos) })
	for _, r := range rules {
		info, ok := infos[r.Queue]
		if !ok {
			var err error
			info, err = sqs.EnsureQueue(ctx, sq, sqs.QueueSpec{Name: r.Queue, VisibilityTimeout: r.Visibility, MaxReceiveCount: max(r.MaxReceiveCount, 1)})
			if err != nil {
				t.Fatal(err)
			}
			infos[r.Queue] = info
		}
		arn, err := eventbridge.EnsureRule(ctx, eb, eventbridge.Rule{Bus: busName, Name: r.Name, Pattern: []byte(r.Pattern), QueueARN: info.ARN})
		if err != nil {
			t.Fatal(err)
		}
		ruleARNs[r.Queue] = append(ruleARNs[r.Queue], arn)
	}
	for q, arns := range ruleARNs {
		if err := sqs.EnsureSendPolicy(ctx, sq, infos[q], arns); err != nil {
			t.Fatal(err)
		}
	}
	var open func(t *testing.T) bustest.Backend
	open = func(*testing.T) bustest.Backend {
		// Fresh clients on the same resources: SQS keeps the messages, as
		// it would across a crash of every consumer.
		eb, sq := ebsdk.NewFromConfig(cfg), sqssdk.NewFromConfig(cfg)
		queue := func(name string) *sqs.Queue {
			info, ok := infos[name]
			if !ok {
				t.Fatalf("queue %s is not one of the test's rules", name)
			}
			return sqs.NewFromClient(sq, info, sqs.WithLogger(quiet()))
		}
		return bustest.Backend{
			Publisher: eventbridge.NewFromClient(eb, busName, eventbridge.WithLogger(quiet())),
			Queue:     func(name string) bus.Queue { return queue(name) },
			DLQ:       func(name string) bus.DLQ { return queue(name) },
			SendRaw: func(ctx context.Context, name string, body []byte) error {
				_, err := sq.SendMessage(ctx, &sqssdk.SendMessageInput{QueueUrl: aws.String(infos[name].URL), MessageBody: aws.String(string(body))})
				return err
			},
			Restart: open,
		}
	}
	return open(nil)
}

// cleanup removes a test's resources so that a long-lived moto stays small.
// Failures only leak resources in the stand-in, so they are ignored.
func cleanup(eb *ebsdk.Client, sq *sqssdk.Client, busName string, rules []bustest.Rule, infos map[string]sqs.Info) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, r := range rules {
		_, _ = eb.RemoveTargets(ctx, &ebsdk.RemoveTargetsInput{Rule: aws.String(r.Name), EventBusName: aws.String(busName), Ids: []string{eventbridge.TargetID}})
		_, _ = eb.DeleteRule(ctx, &ebsdk.DeleteRuleInput{Name: aws.String(r.Name), EventBusName: aws.String(busName)})
	}
	_, _ = eb.DeleteEventBus(ctx, &ebsdk.DeleteEventBusInput{Name: aws.String(busName)})
	for _, info := range infos {
		_, _ = sq.DeleteQueue(ctx, &sqssdk.DeleteQueueInput{QueueUrl: aws.String(info.URL)})
		_, _ = sq.DeleteQueue(ctx, &sqssdk.DeleteQueueInput{QueueUrl: aws.String(info.DLQURL)})
	}
}

// TestConformance runs the bus suite the local bus runs against
// EventBridge -> SQS on moto.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("bus conformance on moto takes a minute; skipped with -short")
	}
	t.Parallel()
	cfg := motoConfig(t)
	bustest.Run(t, bustest.Features{
		Persistent: true,
		// Standard SQS may deliver a message twice within its visibility
		// timeout, and its own redrive carries no reason.
		ExactlyOnceWithinVisibility: false,
		DLQReason:                   false,
		MaxBatch:                    10,
		MaxEventSize:                eventbridge.DefaultMaxRequestBytes,
		Slow:                        true,
		// SQS timeouts are whole seconds.
		Visibility: 2 * time.Second,
		NackDelay:  2 * time.Second,
	}, func(t *testing.T, rules []bustest.Rule) bustest.Backend { return awsBus(t, cfg, rules) })
}

// TestEndToEnd checks what a real delivery looks like: the EventBridge
// envelope in the SQS body, unwrapped into the CloudEvent that was published.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	queue := uniq(t, "q")
	b := awsBus(t, motoConfig(t), []bustest.Rule{{Name: uniq(t, "r"), Queue: queue, Pattern: `{"detail-type":["agentbus.e2e.v1"],"detail":{"toolname":["calc"]}}`, MaxReceiveCount: 3, Visibility: 30 * time.Second}})
	ctx := context.Background()
	ev := event.New()
	ev.SetID("e2e-1")
	ev.SetSource("agentbus/test")
	ev.SetType("agentbus.e2e.v1")
	ev.SetExtension("sessionid", "s1")
	ev.SetExtension("toolname", "calc")
	if err := ev.SetData(event.ApplicationJSON, map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	other := ev.Clone()
	other.SetID("e2e-2")
	other.SetExtension("toolname", "shell")
	if err := b.Publisher.Publish(ctx, ev, other); err != nil {
		t.Fatal(err)
	}
	q := b.Queue(queue)
	msgs, err := q.Receive(ctx, 10, 5*time.Second, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("received %d messages, want only the calc one", len(msgs))
	}
	m := msgs[0]
	if m.DecodeErr != nil || m.Event.ID() != "e2e-1" || m.Event.Extensions()["toolname"] != "calc" {
		t.Fatalf("message %+v", m)
	}
	if err := q.Ack(ctx, m.Receipt); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkPublishReceiveLatency measures one event's trip through moto:
// PutEvents, rule match, SQS delivery, long-poll receive, delete. For
// reference only: moto is not AWS (see docs/moto-differences.md).
func BenchmarkPublishReceiveLatency(b *testing.B) {
	queue := uniq(b, "bench")
	be := awsBus(b, motoConfig(b), []bustest.Rule{{Name: uniq(b, "r"), Queue: queue, Pattern: `{"detail-type":["agentbus.bench.v1"]}`, MaxReceiveCount: 5, Visibility: 30 * time.Second}})
	q := be.Queue(queue)
	ctx := context.Background()
	ev := event.New()
	ev.SetSource("agentbus/bench")
	ev.SetType("agentbus.bench.v1")
	ev.SetExtension("sessionid", "bench")
	if err := ev.SetData(event.ApplicationJSON, map[string]string{"k": "v"}); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		e := ev.Clone()
		e.SetID(uniq(b, "ev"))
		start := time.Now()
		if err := be.Publisher.Publish(ctx, e); err != nil {
			b.Fatal(err)
		}
		for got := false; !got; {
			msgs, err := q.Receive(ctx, 1, 20*time.Second, 30*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			for _, m := range msgs {
				if m.Event.ID() == e.ID() {
					got = true
				}
				if err := q.Ack(ctx, m.Receipt); err != nil {
					b.Fatal(err)
				}
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}
