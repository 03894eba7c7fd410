package stepfunctions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"

	busqs "github.com/agentbus/agentbus/platform/bus/sqs"
	def "github.com/agentbus/agentbus/saga"
)

// ProvisionAPI is the Step Functions calls Provision makes; an *sfn.Client
// satisfies it.
type ProvisionAPI interface {
	CreateStateMachine(ctx context.Context, in *sfn.CreateStateMachineInput, optFns ...func(*sfn.Options)) (*sfn.CreateStateMachineOutput, error)
	DescribeStateMachine(ctx context.Context, in *sfn.DescribeStateMachineInput, optFns ...func(*sfn.Options)) (*sfn.DescribeStateMachineOutput, error)
	UpdateStateMachine(ctx context.Context, in *sfn.UpdateStateMachineInput, optFns ...func(*sfn.Options)) (*sfn.UpdateStateMachineOutput, error)
	ListStateMachines(ctx context.Context, in *sfn.ListStateMachinesInput, optFns ...func(*sfn.Options)) (*sfn.ListStateMachinesOutput, error)
}

// ProvisionIAMActions lists the IAM actions of Provision (bootstrap only):
// the Step Functions calls of ProvisionAPI, iam:PassRole of the execution
// role to Step Functions, and the SQS calls of busqs.EnsureQueue.
var ProvisionIAMActions = append([]string{
	"states:CreateStateMachine", "states:DescribeStateMachine", "states:UpdateStateMachine", "states:ListStateMachines",
	"iam:PassRole",
}, busqs.BootstrapIAMActions...)

// Defaults of ProvisionConfig.
const (
	DefaultPrefix          = "agentbus"
	DefaultMaxReceiveCount = 10
)

// StateMachineName is the name of saga's state machine under prefix:
// "<prefix>-saga-<saga>" (the Terraform saga module uses the same).
func StateMachineName(prefix, saga string) string { return prefix + "-saga-" + saga }

// QueueName is the SQS name of the saga queue under prefix: "<prefix>-saga"
// (its DLQ is busqs.DLQName of it).
func QueueName(prefix string) string { return busqs.QueueName(prefix, "saga") }

// ProvisionConfig says what Provision creates. SFN, SQS and RoleARN are
// required.
type ProvisionConfig struct {
	SFN ProvisionAPI
	SQS busqs.ProvisionAPI
	// Prefix names the resources (default "agentbus"): see StateMachineName
	// and QueueName.
	Prefix string
	// RoleARN is the state machines' execution role; it must allow
	// sqs:SendMessage to the saga queue (Terraform's saga module creates
	// it; moto accepts any well-formed role ARN and checks nothing).
	RoleARN string
	// Definitions get one state machine each.
	Definitions []def.Definition
	// Visibility is the saga queue's visibility timeout (default SQS's
	// 30s): how long a task taken by a worker that died stays hidden.
	// Workers renew it while a task runs.
	Visibility time.Duration
	// MaxReceiveCount is how many receives a task message gets before SQS
	// moves it to the DLQ (default 10); a worker's infrastructure retries
	// count toward it.
	MaxReceiveCount int
}

// Provisioned is what Provision created or found.
type Provisioned struct {
	Queue busqs.Info
	// StateMachines maps each saga name to its state machine's ARN (what
	// RunnerConfig.StateMachines takes).
	StateMachines map[string]string
}

// Provision creates the saga queue with its DLQ and a STANDARD state
// machine per definition from def.ASL(d, queue URL), or brings existing
// ones up to date (definition and role). Running it again converges.
func Provision(ctx context.Context, cfg ProvisionConfig) (Provisioned, error) {
	if cfg.SFN == nil || cfg.SQS == nil {
		return Provisioned{}, errors.New("stepfunctions: provision needs Step Functions and SQS clients")
	}
	if cfg.RoleARN == "" {
		return Provisioned{}, errors.New("stepfunctions: provision needs the state machines' role ARN")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.MaxReceiveCount == 0 {
		cfg.MaxReceiveCount = DefaultMaxReceiveCount
	}
	q, err := busqs.EnsureQueue(ctx, cfg.SQS, busqs.QueueSpec{
		Name: QueueName(cfg.Prefix), VisibilityTimeout: cfg.Visibility, MaxReceiveCount: cfg.MaxReceiveCount,
	})
	if err != nil {
		return Provisioned{}, fmt.Errorf("stepfunctions: provision the saga queue: %w", err)
	}
	out := Provisioned{Queue: q, StateMachines: map[string]string{}}
	for _, d := range cfg.Definitions {
		asl, err := def.ASL(d, q.URL)
		if err != nil {
			return out, fmt.Errorf("stepfunctions: provision saga %s: %w", d.Name, err)
		}
		name := StateMachineName(cfg.Prefix, d.Name)
		if !execNameRE.MatchString(name) {
			return out, fmt.Errorf("stepfunctions: provision saga %s: state machine name %q: want 1-80 characters of A-Z a-z 0-9 _ -", d.Name, name)
		}
		arn, err := ensureStateMachine(ctx, cfg.SFN, name, string(asl), cfg.RoleARN)
		if err != nil {
			return out, fmt.Errorf("stepfunctions: provision saga %s: %w", d.Name, err)
		}
		out.StateMachines[d.Name] = arn
	}
	return out, nil
}

// ensureStateMachine creates the state machine, or finds it and updates its
// definition and role when they differ. It does not rely on
// CreateStateMachine to report an existing machine with another definition
// (AWS answers StateMachineAlreadyExists, moto returns the old machine
// unchanged): it always compares.
func ensureStateMachine(ctx context.Context, api ProvisionAPI, name, asl, role string) (string, error) {
	var arn string
	created, err := api.CreateStateMachine(ctx, &sfn.CreateStateMachineInput{
		Name: aws.String(name), Definition: aws.String(asl), RoleArn: aws.String(role), Type: types.StateMachineTypeStandard,
	})
	switch {
	case err == nil:
		arn = aws.ToString(created.StateMachineArn)
	case isErr[*types.StateMachineAlreadyExists](err):
		if arn, err = findStateMachine(ctx, api, name); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("create state machine %s: %w", name, err)
	}
	cur, err := api.DescribeStateMachine(ctx, &sfn.DescribeStateMachineInput{StateMachineArn: aws.String(arn)})
	if err != nil {
		return "", fmt.Errorf("describe state machine %s: %w", name, err)
	}
	if aws.ToString(cur.Definition) == asl && aws.ToString(cur.RoleArn) == role {
		return arn, nil
	}
	if _, err := api.UpdateStateMachine(ctx, &sfn.UpdateStateMachineInput{
		StateMachineArn: aws.String(arn), Definition: aws.String(asl), RoleArn: aws.String(role),
	}); err != nil {
		return "", fmt.Errorf("update state machine %s: %w", name, err)
	}
	return arn, nil
}

func findStateMachine(ctx context.Context, api ProvisionAPI, name string) (string, error) {
	p := sfn.NewListStateMachinesPaginator(api, &sfn.ListStateMachinesInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return "", fmt.Errorf("list state machines: %w", err)
		}
		for _, sm := range page.StateMachines {
			if aws.ToString(sm.Name) == name {
				return aws.ToString(sm.StateMachineArn), nil
			}
		}
	}
	return "", fmt.Errorf("state machine %s exists but is not listed", name)
}
