package main

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	ebsdk "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	sfnsdk "github.com/aws/aws-sdk-go-v2/service/sfn"
	sqssdk "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/deploy"
	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/events/rules"
	"github.com/agentbus/agentbus/platform/bus/eventbridge"
	"github.com/agentbus/agentbus/platform/bus/sqs"
	"github.com/agentbus/agentbus/platform/saga/stepfunctions"
	"github.com/agentbus/agentbus/saga"
)

// sagasDirOf copies the example saga definitions (not their scripts) into
// a temporary folder, as the image's /etc/agentbus/sagas holds them.
func sagasDirOf(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files, err := filepath.Glob("../../examples/sagas/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("example sagas: %v (%d files)", err, len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestStackBootstrapSagas: bootstrap --sagas-dir provisions the saga queue,
// the state machines and the rule that routes calls of the saga tools to
// the tool-gateway's queue, and prints settings serve toolgateway accepts.
// A call of book_trip published to the bus arrives on the tool-gateway's
// queue; a call of a tool nobody routes does not.
func TestStackBootstrapSagas(t *testing.T) {
	ep := awsTestEnv(t)
	prefix := uniqPrefix(t)
	ctx := context.Background()
	dir := sagasDirOf(t)
	const role = "arn:aws:iam::123456789012:role/agentbus-saga-test"
	args := []string{"stack", "bootstrap", "--endpoint", ep, "--prefix", prefix, "--sagas-dir", dir, "--saga-role-arn", role}

	t.Cleanup(func() { teardownSagaStack(ep, prefix, []string{"book_trip"}); teardownStack(ep, prefix) })
	code, first, errOut := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("bootstrap: exit %d: %s", code, errOut)
	}
	code, second, errOut := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("second bootstrap: exit %d: %s", code, errOut)
	}
	if first != second {
		t.Errorf("second bootstrap reported other resources:\n%s\nvs\n%s", first, second)
	}
	rows := map[string]bool{}
	for _, line := range strings.Split(first, "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			rows[f[0]+" "+f[1]] = true
		}
	}
	for _, want := range []string{"rule toolgateway-sagas", "statemachine " + stepfunctions.StateMachineName(prefix, "book_trip"),
		"queue " + stepfunctions.QueueName(prefix), "dlq " + sqs.DLQName(stepfunctions.QueueName(prefix))} {
		if !rows[want] {
			t.Errorf("output lacks a row %q:\n%s", want, first)
		}
	}

	// The printed settings are what serve toolgateway takes.
	settings := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(first))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "AGENTBUS_SAGA") {
			settings[k] = v
		}
	}
	val := map[string]string{
		"saga-queue-url": settings["AGENTBUS_SAGA_QUEUE_URL"], "saga-dlq-url": settings["AGENTBUS_SAGA_DLQ_URL"],
		"saga-state-machines": settings["AGENTBUS_SAGA_STATE_MACHINES"], "sagas-dir": settings["AGENTBUS_SAGAS_DIR"],
	}
	for k, v := range val {
		if v == "" {
			t.Fatalf("bootstrap printed no setting for %s:\n%s", k, first)
		}
	}
	sc2 := serveConfig{Service: "toolgateway"}
	name := map[string]string{"saga-queue-url": "q", "saga-dlq-url": "dlq", "saga-state-machines": "sm", "sagas-dir": "dir"}
	if errs := resolveSagaSettings(&sc2, val, name); len(errs) > 0 {
		t.Errorf("printed settings rejected by serve: %v", errs)
	}
	if sc2.SagasDir != dir {
		t.Errorf("AGENTBUS_SAGAS_DIR = %q, want %q", sc2.SagasDir, dir)
	}

	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""), BaseEndpoint: aws.String(ep)}
	eb, sq, sf := ebsdk.NewFromConfig(cfg), sqssdk.NewFromConfig(cfg), sfnsdk.NewFromConfig(cfg)
	arn := sc2.SagaStateMachines["book_trip"]
	sm, err := sf.DescribeStateMachine(ctx, &sfnsdk.DescribeStateMachineInput{StateMachineArn: aws.String(arn)})
	if err != nil {
		t.Fatalf("state machine of book_trip %q: %v", arn, err)
	}
	if !strings.Contains(aws.ToString(sm.Definition), sc2.SagaQueueURL) || aws.ToString(sm.RoleArn) != role {
		t.Errorf("state machine does not send to the saga queue %s or runs as %s, not %s", sc2.SagaQueueURL, aws.ToString(sm.RoleArn), role)
	}
	if info, err := sqs.Lookup(ctx, sq, stepfunctions.QueueName(prefix)); err != nil || info.URL != sc2.SagaQueueURL || info.DLQURL != sc2.SagaDLQURL {
		t.Errorf("saga queue %+v (%v), printed %s / %s", info, err, sc2.SagaQueueURL, sc2.SagaDLQURL)
	}

	// Routing: the unknown tool's call first, then book_trip's; the bus
	// delivers in order, so had the first been routed it would be there.
	bus := eventbridge.NewFromClient(eb, prefix)
	for _, c := range []struct{ id, tool string }{{"stack-saga-unknown", "no_such_tool"}, {"stack-saga-call", "book_trip"}} {
		ev := event.New()
		ev.SetID(c.id)
		ev.SetSource("agentbus/executor")
		ev.SetType(events.TypeToolInvocationRequested)
		ev.SetExtension(events.ExtSessionID, "s1")
		ev.SetExtension(events.ExtToolName, c.tool)
		if err := ev.SetData(event.ApplicationJSON, map[string]any{"step": 1}); err != nil {
			t.Fatal(err)
		}
		if err := bus.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	info, err := sqs.Lookup(ctx, sq, sqs.QueueName(prefix, "toolgateway"))
	if err != nil {
		t.Fatal(err)
	}
	q := sqs.NewFromClient(sq, info, sqs.WithLogger(slog.New(slog.DiscardHandler)))
	var got []string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && !slices.Contains(got, "stack-saga-call") {
		msgs, err := q.Receive(ctx, 10, 2*time.Second, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			got = append(got, m.Event.ID())
		}
	}
	// One more short look for a late unknown-tool delivery.
	if msgs, err := q.Receive(ctx, 10, time.Second, time.Minute); err == nil {
		for _, m := range msgs {
			got = append(got, m.Event.ID())
		}
	}
	if !slices.Contains(got, "stack-saga-call") {
		t.Errorf("the book_trip call did not reach the tool-gateway's queue (got %q)", got)
	}
	if slices.Contains(got, "stack-saga-unknown") {
		t.Errorf("a call of an unrouted tool reached the tool-gateway's queue (got %q)", got)
	}
}

func TestStackBootstrapSagasBadInput(t *testing.T) {
	ep := awsTestEnv(t)
	t.Setenv("AGENTBUS_SAGA_ROLE_ARN", "")
	dir := sagasDirOf(t)
	empty := t.TempDir()
	broken := t.TempDir()
	if err := os.WriteFile(filepath.Join(broken, "bad.json"), []byte(`{"name":"x","steps":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	const role = "arn:aws:iam::123456789012:role/x"
	base := []string{"stack", "bootstrap", "--endpoint", ep, "--prefix", "never-created"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no role", []string{"--sagas-dir", dir}, "--saga-role-arn is required"},
		{"role without sagas", []string{"--saga-role-arn", role}, "without --sagas-dir"},
		{"missing dir", []string{"--sagas-dir", "/nonexistent/sagas", "--saga-role-arn", role}, "not a folder"},
		{"no definitions", []string{"--sagas-dir", empty, "--saga-role-arn", role}, "no saga definitions"},
		{"invalid definition", []string{"--sagas-dir", broken, "--saga-role-arn", role}, "bad.json"},
	} {
		code, _, errOut := runCLI(t, append(base, tc.args...)...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, want 2 with %q (%s)", tc.name, code, tc.want, errOut)
		}
	}
}

// teardownSagaStack deletes what bootstrap --sagas-dir added to a stack.
func teardownSagaStack(ep, prefix string, sagas []string) {
	ctx := context.Background()
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""), BaseEndpoint: aws.String(ep)}
	eb, sq, sf := ebsdk.NewFromConfig(cfg), sqssdk.NewFromConfig(cfg), sfnsdk.NewFromConfig(cfg)
	_, _ = eb.RemoveTargets(ctx, &ebsdk.RemoveTargetsInput{Rule: aws.String("toolgateway-sagas"), EventBusName: aws.String(prefix), Ids: []string{eventbridge.TargetID}})
	_, _ = eb.DeleteRule(ctx, &ebsdk.DeleteRuleInput{Name: aws.String("toolgateway-sagas"), EventBusName: aws.String(prefix)})
	for _, name := range []string{stepfunctions.QueueName(prefix), sqs.DLQName(stepfunctions.QueueName(prefix))} {
		if out, err := sq.GetQueueUrl(ctx, &sqssdk.GetQueueUrlInput{QueueName: aws.String(name)}); err == nil {
			_, _ = sq.DeleteQueue(ctx, &sqssdk.DeleteQueueInput{QueueUrl: out.QueueUrl})
		}
	}
	p := sfnsdk.NewListStateMachinesPaginator(sf, &sfnsdk.ListStateMachinesInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return
		}
		for _, m := range page.StateMachines {
			for _, s := range sagas {
				if aws.ToString(m.Name) == stepfunctions.StateMachineName(prefix, s) {
					_, _ = sf.DeleteStateMachine(ctx, &sfnsdk.DeleteStateMachineInput{StateMachineArn: m.StateMachineArn})
				}
			}
		}
	}
}

// TestSagaRuleSameEverywhere: the rule the embedded runtime and bootstrap
// add is the one deploy checks the Terraform example for (name, pattern),
// and bootstrap takes the tool-gateway queue's settings from the catalog.
func TestSagaRuleSameEverywhere(t *testing.T) {
	t.Parallel()
	defs, err := saga.Load(os.DirFS("../../examples/sagas"))
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(defs))
	for i, d := range defs {
		names[i] = d.Name
	}
	r, ok := sagaToolsRule(defs)
	if !ok || r.Name != deploy.SagaRuleName || r.Target.Queue != "toolgateway" {
		t.Fatalf("sagaToolsRule = %+v, %v; want %s to toolgateway", r, ok, deploy.SagaRuleName)
	}
	var got, want any
	if json.Unmarshal(r.EventPattern, &got) != nil || json.Unmarshal(deploy.SagaRulePattern(names), &want) != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("embedded pattern %s, deploy checks %s", r.EventPattern, deploy.SagaRulePattern(names))
	}

	catalog, err := rules.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	br, err := bootstrapSagaRule(catalog, defs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rules.Queues(append(catalog, br)); err != nil {
		t.Errorf("bootstrap's saga rule conflicts with the catalog's queue settings: %v", err)
	}
	if _, err := bootstrapSagaRule(append(catalog, br), defs); err == nil {
		t.Error("a rule file defining toolgateway-sagas was accepted")
	}
}
