package awsclient

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ebsdk "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	sqssdk "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus/eventbridge"
	"github.com/agentbus/agentbus/platform/bus/sqs"
)

// CallerQueue is a caller's result queue and the rule that feeds it.
type CallerQueue struct {
	Name, URL, ARN string
	DLQURL, DLQARN string
	// Rule and RuleARN name the EventBridge rule on the bus.
	Rule, RuleARN string
}

// CallerQueueName is the SQS queue of callerID on bus: "<bus>-caller-<id>"
// (its DLQ is that name plus "-dlq").
func CallerQueueName(bus, callerID string) string {
	return sqs.QueueName(bus, "caller-"+callerID)
}

// CallerRuleName is the EventBridge rule that feeds the caller's queue.
func CallerRuleName(callerID string) string { return "caller-" + callerID }

// CallerPattern is the event pattern of the caller's rule: the terminal
// events of sessions whose id starts with "<callerID>.".
//
// Why the session id: the terminal events are published by the planner
// (source agentbus/planner), so the caller's own source is not on them, and
// adding a reply-to extension would require every service to copy it from
// event to event. The session id is on every event already (an extension,
// i.e. an attribute, never data), the caller chooses it, and a prefix match
// keeps one rule per caller however many runs it has in flight.
func CallerPattern(callerID string) json.RawMessage {
	p, _ := json.Marshal(map[string]any{
		"detail-type": []string{events.TypeAgentCompleted, events.TypeAgentFailed, events.TypeAgentCancelled},
		"detail":      map[string]any{events.ExtSessionID: []any{map[string]string{"prefix": callerID + "."}}},
	})
	return p
}

// EnsureCallerQueue creates, or converges, callerID's result queue on bus:
// the SQS queue with its DLQ (5 receives), the rule CallerPattern on the bus
// targeting it, and the queue policy that lets only that rule send. It is
// idempotent. The credentials need the bootstrap actions of
// platform/bus/sqs and platform/bus/eventbridge (docs/serve.md).
func EnsureCallerQueue(ctx context.Context, cfg aws.Config, bus, callerID string) (CallerQueue, error) {
	if !callerIDPattern.MatchString(callerID) {
		return CallerQueue{}, fmt.Errorf("awsclient: caller id %q: want %s", callerID, callerIDPattern)
	}
	sq := sqssdk.NewFromConfig(cfg)
	info, err := sqs.EnsureQueue(ctx, sq, sqs.QueueSpec{
		Name: CallerQueueName(bus, callerID), VisibilityTimeout: 30 * time.Second, MaxReceiveCount: 5,
	})
	if err != nil {
		return CallerQueue{}, fmt.Errorf("awsclient: caller queue: %w", err)
	}
	rule := CallerRuleName(callerID)
	arn, err := eventbridge.EnsureRule(ctx, ebsdk.NewFromConfig(cfg), eventbridge.Rule{
		Bus: bus, Name: rule, Description: "Results of the runs of agentbus caller " + callerID,
		Pattern: CallerPattern(callerID), QueueARN: info.ARN,
	})
	if err != nil {
		return CallerQueue{}, fmt.Errorf("awsclient: caller rule: %w", err)
	}
	if err := sqs.EnsureSendPolicy(ctx, sq, info, []string{arn}); err != nil {
		return CallerQueue{}, fmt.Errorf("awsclient: caller queue policy: %w", err)
	}
	return CallerQueue{Name: info.Name, URL: info.URL, ARN: info.ARN, DLQURL: info.DLQURL, DLQARN: info.DLQARN,
		Rule: rule, RuleARN: arn}, nil
}
