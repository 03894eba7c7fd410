package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	ddbsdk "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ebsdk "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	s3sdk "github.com/aws/aws-sdk-go-v2/service/s3"
	sqssdk "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events/rules"
	"github.com/agentbus/agentbus/platform/bus/eventbridge"
	"github.com/agentbus/agentbus/platform/bus/sqs"
)

func TestStackBootstrap(t *testing.T) {
	ep := awsTestEnv(t)
	prefix := uniqPrefix(t)
	ctx := context.Background()
	args := []string{"stack", "bootstrap", "--endpoint", ep, "--prefix", prefix}

	t.Cleanup(func() { teardownStack(ep, prefix) })
	code, first, errOut := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("bootstrap: exit %d: %s", code, errOut)
	}
	// Idempotent: a second run succeeds and ensures the same resources.
	code, second, errOut := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("second bootstrap: exit %d: %s", code, errOut)
	}
	if first != second {
		t.Errorf("second bootstrap reported other resources:\n%s\nvs\n%s", first, second)
	}

	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""), BaseEndpoint: aws.String(ep)}
	eb, sq := ebsdk.NewFromConfig(cfg), sqssdk.NewFromConfig(cfg)
	catalog, err := rules.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	specs, err := rules.Queues(catalog)
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range specs {
		info, err := sqs.Lookup(ctx, sq, sqs.QueueName(prefix, spec.Name))
		if err != nil {
			t.Fatalf("queue %s: %v", spec.Name, err)
		}
		if info.DLQURL == "" {
			t.Errorf("queue %s has no DLQ", info.Name)
		}
		attrs, err := sq.GetQueueAttributes(ctx, &sqssdk.GetQueueAttributesInput{QueueUrl: aws.String(info.URL), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
		if err != nil {
			t.Fatal(err)
		}
		if got := attrs.Attributes["VisibilityTimeout"]; got != strings.TrimSpace(jsonNum(spec.VisibilityTimeoutSeconds)) {
			t.Errorf("queue %s visibility %s, want %d", info.Name, got, spec.VisibilityTimeoutSeconds)
		}
		var policy struct {
			Statement []struct {
				Condition map[string]map[string][]string
			}
		}
		if err := json.Unmarshal([]byte(attrs.Attributes["Policy"]), &policy); err != nil || len(policy.Statement) != 1 {
			t.Fatalf("queue %s policy %q: %v", info.Name, attrs.Attributes["Policy"], err)
		}
		allowed := policy.Statement[0].Condition["ArnEquals"]["aws:SourceArn"]
		for _, r := range spec.Rules {
			desc, err := eb.DescribeRule(ctx, &ebsdk.DescribeRuleInput{Name: aws.String(r), EventBusName: aws.String(prefix)})
			if err != nil {
				t.Fatalf("rule %s: %v", r, err)
			}
			if !slices.Contains(allowed, aws.ToString(desc.Arn)) {
				t.Errorf("queue %s policy does not allow rule %s (%v)", info.Name, aws.ToString(desc.Arn), allowed)
			}
			targets, err := eb.ListTargetsByRule(ctx, &ebsdk.ListTargetsByRuleInput{Rule: aws.String(r), EventBusName: aws.String(prefix)})
			if err != nil || len(targets.Targets) != 1 || aws.ToString(targets.Targets[0].Arn) != info.ARN {
				t.Errorf("rule %s targets %+v (%v), want only %s", r, targets, err, info.ARN)
			}
		}
		if len(allowed) != len(spec.Rules) {
			t.Errorf("queue %s policy allows %d sources, want its %d rules", info.Name, len(allowed), len(spec.Rules))
		}
	}
	if _, err := s3sdk.NewFromConfig(cfg, func(o *s3sdk.Options) { o.UsePathStyle = true }).HeadBucket(ctx, &s3sdk.HeadBucketInput{Bucket: aws.String(prefix + "-blobs")}); err != nil {
		t.Errorf("bucket: %v", err)
	}
	if out, err := ddbsdk.NewFromConfig(cfg).DescribeTable(ctx, &ddbsdk.DescribeTableInput{TableName: aws.String(prefix + "-state")}); err != nil || out.Table.TableStatus != "ACTIVE" {
		t.Errorf("table: %+v, %v", out, err)
	}

	// The provisioned routes deliver: a tool call of a built-in tool reaches
	// the toolgateway queue and (through the prefix rule) the memory queue.
	ev := event.New()
	ev.SetID("stack-e2e")
	ev.SetSource("agentbus/executor")
	ev.SetType("agentbus.tool.invocation.requested.v1")
	ev.SetExtension("sessionid", "s1")
	ev.SetExtension("toolname", "calculator")
	if err := ev.SetData(event.ApplicationJSON, map[string]any{"step": 1}); err != nil {
		t.Fatal(err)
	}
	if err := eventbridge.NewFromClient(eb, prefix).Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"toolgateway", "memory"} {
		info, err := sqs.Lookup(ctx, sq, sqs.QueueName(prefix, q))
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := sqs.NewFromClient(sq, info, sqs.WithLogger(slog.New(slog.DiscardHandler))).Receive(ctx, 10, 5*time.Second, time.Minute)
		if err != nil || len(msgs) != 1 || msgs[0].Event.ID() != "stack-e2e" {
			t.Errorf("queue %s: %d messages (%v), want the published event", q, len(msgs), err)
		}
	}
}

// teardownStack deletes what bootstrap created, so that a long-lived moto
// stays small. Errors only leak resources in the stand-in.
func teardownStack(ep, prefix string) {
	ctx := context.Background()
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""), BaseEndpoint: aws.String(ep)}
	eb, sq := ebsdk.NewFromConfig(cfg), sqssdk.NewFromConfig(cfg)
	catalog, _ := rules.Catalog()
	specs, _ := rules.Queues(catalog)
	for _, r := range catalog {
		_, _ = eb.RemoveTargets(ctx, &ebsdk.RemoveTargetsInput{Rule: aws.String(r.Name), EventBusName: aws.String(prefix), Ids: []string{eventbridge.TargetID}})
		_, _ = eb.DeleteRule(ctx, &ebsdk.DeleteRuleInput{Name: aws.String(r.Name), EventBusName: aws.String(prefix)})
	}
	_, _ = eb.DeleteEventBus(ctx, &ebsdk.DeleteEventBusInput{Name: aws.String(prefix)})
	for _, q := range specs {
		for _, name := range []string{sqs.QueueName(prefix, q.Name), sqs.DLQName(sqs.QueueName(prefix, q.Name))} {
			if out, err := sq.GetQueueUrl(ctx, &sqssdk.GetQueueUrlInput{QueueName: aws.String(name)}); err == nil {
				_, _ = sq.DeleteQueue(ctx, &sqssdk.DeleteQueueInput{QueueUrl: out.QueueUrl})
			}
		}
	}
	_, _ = s3sdk.NewFromConfig(cfg, func(o *s3sdk.Options) { o.UsePathStyle = true }).DeleteBucket(ctx, &s3sdk.DeleteBucketInput{Bucket: aws.String(prefix + "-blobs")})
	_, _ = ddbsdk.NewFromConfig(cfg).DeleteTable(ctx, &ddbsdk.DeleteTableInput{TableName: aws.String(prefix + "-state")})
}

func jsonNum(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestStackBootstrapBadInput(t *testing.T) {
	ep := awsTestEnv(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"argument", []string{"stack", "bootstrap", "extra"}},
		{"bad flag", []string{"stack", "bootstrap", "--bogus"}},
		{"missing rules dir", []string{"stack", "bootstrap", "--endpoint", ep, "--dir", "/nonexistent/rules"}},
	} {
		if code, _, errOut := runCLI(t, tc.args...); code != 2 {
			t.Errorf("%s: exit %d, want 2 (%s)", tc.name, code, errOut)
		}
	}
}
