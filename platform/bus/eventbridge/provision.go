package eventbridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
)

// ProvisionAPI is the EventBridge calls EnsureBus and EnsureRule make; an
// *eventbridge.Client satisfies it.
type ProvisionAPI interface {
	DescribeEventBus(ctx context.Context, in *eventbridge.DescribeEventBusInput, optFns ...func(*eventbridge.Options)) (*eventbridge.DescribeEventBusOutput, error)
	CreateEventBus(ctx context.Context, in *eventbridge.CreateEventBusInput, optFns ...func(*eventbridge.Options)) (*eventbridge.CreateEventBusOutput, error)
	PutRule(ctx context.Context, in *eventbridge.PutRuleInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutRuleOutput, error)
	PutTargets(ctx context.Context, in *eventbridge.PutTargetsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutTargetsOutput, error)
}

// BootstrapIAMActions lists the IAM actions EnsureBus and EnsureRule call
// (bootstrap only; services at run time need IAMActions).
var BootstrapIAMActions = []string{
	"events:DescribeEventBus", "events:CreateEventBus", "events:PutRule", "events:PutTargets",
}

// TargetID is the id of the one target EnsureRule puts on each rule; a fixed
// id makes PutTargets replace rather than add on every run.
const TargetID = "queue"

// EnsureBus creates the event bus name unless it exists and returns its ARN.
// "default" always exists. Safe to run again and concurrently.
func EnsureBus(ctx context.Context, api ProvisionAPI, name string) (string, error) {
	out, err := api.DescribeEventBus(ctx, &eventbridge.DescribeEventBusInput{Name: aws.String(name)})
	if err == nil {
		return aws.ToString(out.Arn), nil
	}
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		return "", fmt.Errorf("eventbridge: describe bus %s: %w", name, err)
	}
	created, err := api.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(name)})
	if err == nil {
		return aws.ToString(created.EventBusArn), nil
	}
	var exists *types.ResourceAlreadyExistsException
	if !errors.As(err, &exists) {
		return "", fmt.Errorf("eventbridge: create bus %s: %w", name, err)
	}
	// Lost a race with another bootstrap: read the winner's ARN.
	out, err = api.DescribeEventBus(ctx, &eventbridge.DescribeEventBusInput{Name: aws.String(name)})
	if err != nil {
		return "", fmt.Errorf("eventbridge: describe bus %s: %w", name, err)
	}
	return aws.ToString(out.Arn), nil
}

// Rule is one routing rule to provision: an EventBridge pattern on a bus that
// delivers matching events to one SQS queue.
type Rule struct {
	Bus         string
	Name        string
	Description string
	// Pattern is the EventBridge event pattern (JSON object).
	Pattern json.RawMessage
	// QueueARN is the target SQS queue.
	QueueARN string
}

// EnsureRule creates or updates rule r (enabled, with r.Pattern) and points
// its one target at r.QueueARN; it returns the rule ARN, which the queue's
// policy must allow as aws:SourceArn. PutRule and PutTargets are upserts, so
// running it again converges on r.
func EnsureRule(ctx context.Context, api ProvisionAPI, r Rule) (string, error) {
	if r.Name == "" || r.QueueARN == "" {
		return "", fmt.Errorf("eventbridge: rule needs a name and a queue ARN (got %q, %q)", r.Name, r.QueueARN)
	}
	if !json.Valid(r.Pattern) {
		return "", fmt.Errorf("eventbridge: rule %s: pattern is not valid JSON", r.Name)
	}
	in := &eventbridge.PutRuleInput{
		Name:         aws.String(r.Name),
		EventBusName: aws.String(r.Bus),
		EventPattern: aws.String(string(r.Pattern)),
		State:        types.RuleStateEnabled,
	}
	if r.Description != "" {
		in.Description = aws.String(r.Description)
	}
	out, err := api.PutRule(ctx, in)
	if err != nil {
		return "", fmt.Errorf("eventbridge: put rule %s on bus %s: %w", r.Name, r.Bus, err)
	}
	tout, err := api.PutTargets(ctx, &eventbridge.PutTargetsInput{
		Rule:         aws.String(r.Name),
		EventBusName: aws.String(r.Bus),
		Targets:      []types.Target{{Id: aws.String(TargetID), Arn: aws.String(r.QueueARN)}},
	})
	if err != nil {
		return "", fmt.Errorf("eventbridge: put target of rule %s: %w", r.Name, err)
	}
	if tout.FailedEntryCount > 0 {
		var msg string
		for _, f := range tout.FailedEntries {
			msg += fmt.Sprintf(" %s: %s", aws.ToString(f.ErrorCode), aws.ToString(f.ErrorMessage))
		}
		return "", fmt.Errorf("eventbridge: put target of rule %s failed:%s", r.Name, msg)
	}
	return aws.ToString(out.RuleArn), nil
}
