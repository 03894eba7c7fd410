package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sqssdk "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/internal/testenv"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/bus/eventbridge"
	"github.com/agentbus/agentbus/platform/bus/sqs"
	"github.com/agentbus/agentbus/platform/state/dynamodb"
	"github.com/agentbus/agentbus/tools"
)

// TestPluginAWS runs the units plug-in on the AWS stand-in (moto): `stack
// bootstrap --dir examples/plugin-units` provisions its rule and queue with
// the catalog; the plug-in (a separate process) registers its spec in the
// state table, where `serve planner` finds it, and consumes its SQS queue. A
// ToolInvocationRequested for convert_units published to EventBridge comes
// back as the plug-in's ToolInvocationCompleted (read from the executor's
// queue, where the catalog routes it), and a request for another tool never
// reaches the plug-in (it goes to the tool-gateway's queue).
func TestPluginAWS(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the example plug-in and provisions on moto")
	}
	endpoint := testenv.AWSEndpoint(t)
	for k, v := range map[string]string{"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_ENDPOINT_URL": ""} {
		t.Setenv(k, v)
	}
	bin := buildUnitsPlugin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	prefix := "plug" + randSuffix(t)
	var out bytes.Buffer
	if code := run(ctx, []string{"stack", "bootstrap", "--endpoint", endpoint, "--prefix", prefix, "--dir", unitsDir}, nil, &out, &out); code != 0 {
		t.Fatalf("stack bootstrap: exit %d\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "rule") || !strings.Contains(out.String(), prefix+"-plugin-units") {
		t.Fatalf("bootstrap did not provision the plug-in's queue:\n%s", out.String())
	}
	awsCfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(endpoint)}

	pctx, stopPlugin := context.WithCancel(ctx)
	pout := &procOut{}
	proc := exec.CommandContext(pctx, bin, "--aws", "--endpoint", endpoint, "--prefix", prefix)
	proc.Stdout, proc.Stderr = pout, pout
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- proc.Wait() }()
	defer func() { stopPlugin(); <-exited }()

	// The spec lands in the state table, where serve planner/executor read it.
	table, err := dynamodb.New(awsCfg, prefix+"-state")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(pout.String(), "plugin-units: serving") {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("plug-in exited: %v\n%s", err, pout)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("plug-in not serving within 60s:\n%s", pout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	reg := tools.NewRegistry()
	for {
		n, err := loadPluginSpecs(ctx, table, reg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the spec of %s is not in %s-state:\n%s", unitsTool, prefix, pout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if e, err := reg.Lookup(unitsTool); err != nil || e.Local() {
		t.Fatalf("planner registry: %v, %v; want the plug-in's spec", e, err)
	}

	pub := eventbridge.New(awsCfg, prefix)
	sid := "plugin-aws-" + randSuffix(t)
	other, err := events.NewPayload(events.SourceExecutor, sid, events.ToolInvocationRequested{
		Step: 1, CallID: "call-calc", Tool: "calculator", IdempotencyKey: tools.IdempotencyKey(sid, 1, "call-calc"), Input: json.RawMessage(`{"expression":"1+1"}`)})
	if err != nil {
		t.Fatal(err)
	}
	mine, err := events.NewPayload(events.SourceExecutor, sid, events.ToolInvocationRequested{
		Step: 1, CallID: "call-units", Tool: unitsTool, IdempotencyKey: tools.IdempotencyKey(sid, 1, "call-units"), Input: json.RawMessage(`{"value":100,"from":"C","to":"F"}`)})
	if err != nil {
		t.Fatal(err)
	}
	// Validated as every agentbus publisher does.
	if err := validatingPublisher(mustValidator(t), pub).Publish(ctx, other, mine); err != nil {
		t.Fatal(err)
	}

	sq := sqssdk.NewFromConfig(awsCfg)
	queue := func(name string) bus.Queue {
		info, err := sqs.Lookup(ctx, sq, sqs.QueueName(prefix, name))
		if err != nil {
			t.Fatal(err)
		}
		return sqs.New(awsCfg, info)
	}
	// The plug-in's result reaches the executor's queue.
	var result events.ToolInvocationCompleted
	exq := queue("executor")
	for result.CallID == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no ToolInvocationCompleted from the plug-in within the deadline:\n%s", pout)
		}
		msgs, err := exq.Receive(ctx, 10, time.Second, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if m.DecodeErr == nil && m.Event.Type() == events.TypeToolInvocationCompleted && events.SessionID(m.Event) == sid {
				if m.Event.Source() != unitsSrc {
					t.Errorf("result source %q; want %q", m.Event.Source(), unitsSrc)
				}
				if result, err = events.Decode[events.ToolInvocationCompleted](m.Event); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	var got struct{ Result float64 }
	if err := json.Unmarshal(result.Output, &got); err != nil || result.CallID != "call-units" || got.Result != 212 {
		t.Errorf("result = %+v (%s); want call-units with result 212", result, result.Output)
	}

	// The calculator request went to the tool-gateway's queue, never to the
	// plug-in (both requests were published in one PutEvents call, before
	// the plug-in's result existed).
	tgq := queue("toolgateway")
	seen := false
	for i := 0; i < 5 && !seen; i++ {
		msgs, err := tgq.Receive(ctx, 10, time.Second, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			seen = seen || (m.DecodeErr == nil && events.ToolName(m.Event) == "calculator" && events.SessionID(m.Event) == sid)
			if m.DecodeErr == nil && events.ToolName(m.Event) == unitsTool {
				t.Errorf("a %s request reached the tool-gateway's queue", unitsTool)
			}
		}
	}
	if !seen {
		t.Error("the calculator request did not reach the tool-gateway's queue (the negative check proves nothing without it)")
	}
	if s := pout.String(); strings.Contains(s, "tool=calculator") || strings.Count(s, "request tool=convert_units call=call-units") != 1 {
		t.Errorf("the plug-in saw other requests than its own call:\n%s", s)
	}
}

func mustValidator(t *testing.T) *events.Validator {
	t.Helper()
	v, err := events.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestPluginAWSUnknownQueue: on AWS without its provisioned queue, the
// plug-in exits 2 and says how to provision it.
func TestPluginAWSUnknownQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the example plug-in")
	}
	endpoint := testenv.AWSEndpoint(t)
	bin := buildUnitsPlugin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	proc := exec.CommandContext(ctx, bin, "--aws", "--endpoint", endpoint, "--prefix", "noplug"+randSuffix(t))
	proc.Env = append(proc.Environ(), "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test")
	out, err := proc.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "unknown queue") || !strings.Contains(string(out), "stack bootstrap") {
		t.Fatalf("plug-in without its queue: %v\n%s\nwant exit 2 naming the queue and how to provision it", err, out)
	}
}
