package sqs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// ProvisionAPI is the SQS calls EnsureQueue, EnsureSendPolicy and Lookup
// make; an *sqs.Client satisfies it.
type ProvisionAPI interface {
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	CreateQueue(ctx context.Context, in *sqs.CreateQueueInput, optFns ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	SetQueueAttributes(ctx context.Context, in *sqs.SetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.SetQueueAttributesOutput, error)
}

// BootstrapIAMActions lists the IAM actions of EnsureQueue and
// EnsureSendPolicy (bootstrap only).
var BootstrapIAMActions = []string{
	"sqs:GetQueueUrl", "sqs:CreateQueue", "sqs:GetQueueAttributes", "sqs:SetQueueAttributes",
}

// Info locates a queue and its DLQ.
type Info struct {
	Name   string
	URL    string
	ARN    string
	DLQURL string
	DLQARN string
}

// QueueSpec is a queue to provision.
type QueueSpec struct {
	// Name is the SQS queue name (see QueueName); its DLQ is DLQName(Name).
	Name string
	// VisibilityTimeout is the queue's default visibility (0: SQS's 30 s).
	VisibilityTimeout time.Duration
	// MaxReceiveCount is how many receives a message gets before SQS moves
	// it to the DLQ (required, 1..1000).
	MaxReceiveCount int
}

// dlqRetention is the DLQ's retention, SQS's maximum (14 days): a standard
// queue keeps a message's original enqueue time when it moves to the DLQ, so
// the DLQ must keep messages longer than the source queue does.
const dlqRetention = 14 * 24 * time.Hour

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

// QueueName maps a catalog queue (planner, executor, …) to its SQS name under
// prefix: "<prefix>-<queue>".
func QueueName(prefix, queue string) string { return prefix + "-" + queue }

// DLQName is the name of the DLQ of the SQS queue name.
func DLQName(name string) string { return name + "-dlq" }

// EnsureQueue creates spec's queue and its DLQ unless they exist, and sets
// the queue's visibility timeout and redrive policy (DLQ, maxReceiveCount).
// Attributes are set on every run, so running it again converges on spec;
// the queue policy is EnsureSendPolicy's.
func EnsureQueue(ctx context.Context, api ProvisionAPI, spec QueueSpec) (Info, error) {
	if !nameRE.MatchString(spec.Name) || !nameRE.MatchString(DLQName(spec.Name)) {
		return Info{}, fmt.Errorf("sqs: queue name %q: want 1-76 characters of A-Z a-z 0-9 _ - (its DLQ adds -dlq)", spec.Name)
	}
	if spec.MaxReceiveCount < 1 || spec.MaxReceiveCount > 1000 {
		return Info{}, fmt.Errorf("sqs: queue %s: maxReceiveCount must be 1..1000, got %d", spec.Name, spec.MaxReceiveCount)
	}
	if spec.VisibilityTimeout < 0 || spec.VisibilityTimeout > maxVisibilitySec*time.Second {
		return Info{}, fmt.Errorf("sqs: queue %s: visibility timeout must be 0..12h, got %s", spec.Name, spec.VisibilityTimeout)
	}
	dlqURL, err := ensureQueue(ctx, api, DLQName(spec.Name))
	if err != nil {
		return Info{}, err
	}
	if err := setAttrs(ctx, api, dlqURL, map[string]string{
		string(types.QueueAttributeNameMessageRetentionPeriod): strconv.Itoa(int(dlqRetention / time.Second)),
	}); err != nil {
		return Info{}, err
	}
	dlqARN, err := queueARN(ctx, api, dlqURL)
	if err != nil {
		return Info{}, err
	}
	url, err := ensureQueue(ctx, api, spec.Name)
	if err != nil {
		return Info{}, err
	}
	redrive, _ := json.Marshal(redrivePolicy{DeadLetterTargetARN: dlqARN, MaxReceiveCount: spec.MaxReceiveCount})
	attrs := map[string]string{string(types.QueueAttributeNameRedrivePolicy): string(redrive)}
	if spec.VisibilityTimeout > 0 {
		attrs[string(types.QueueAttributeNameVisibilityTimeout)] = strconv.Itoa(int(seconds(spec.VisibilityTimeout, maxVisibilitySec)))
	}
	if err := setAttrs(ctx, api, url, attrs); err != nil {
		return Info{}, err
	}
	arn, err := queueARN(ctx, api, url)
	if err != nil {
		return Info{}, err
	}
	return Info{Name: spec.Name, URL: url, ARN: arn, DLQURL: dlqURL, DLQARN: dlqARN}, nil
}

// EnsureSendPolicy sets the queue policy of q so that EventBridge may send to
// it only on behalf of the given rules (events.amazonaws.com, conditioned on
// aws:SourceArn), replacing any earlier policy. The document is built in a
// fixed order, so an unchanged rule set rewrites the same policy.
func EnsureSendPolicy(ctx context.Context, api ProvisionAPI, q Info, ruleARNs []string) error {
	if q.URL == "" || q.ARN == "" {
		return fmt.Errorf("sqs: send policy of %s: queue URL and ARN are required", q.Name)
	}
	if len(ruleARNs) == 0 {
		return fmt.Errorf("sqs: send policy of %s: no rule ARNs to allow", q.Name)
	}
	policy, err := SendPolicy(q.ARN, ruleARNs)
	if err != nil {
		return err
	}
	return setAttrs(ctx, api, q.URL, map[string]string{string(types.QueueAttributeNamePolicy): policy})
}

// SendPolicy renders the queue policy EnsureSendPolicy sets.
func SendPolicy(queueARN string, ruleARNs []string) (string, error) {
	arns := slices.Clone(ruleARNs)
	slices.Sort(arns)
	arns = slices.Compact(arns)
	doc := policyDoc{
		Version: "2012-10-17",
		ID:      queueARN + "/agentbus-send",
		Statement: []policyStatement{{
			Sid:       "AllowAgentbusRules",
			Effect:    "Allow",
			Principal: map[string]string{"Service": "events.amazonaws.com"},
			Action:    "sqs:SendMessage",
			Resource:  queueARN,
			Condition: map[string]map[string][]string{"ArnEquals": {"aws:SourceArn": arns}},
		}},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("sqs: render queue policy: %w", err)
	}
	return string(b), nil
}

// Lookup finds the queue name and, through its redrive policy, its DLQ.
func Lookup(ctx context.Context, api ProvisionAPI, name string) (Info, error) {
	out, err := api.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		return Info{}, fmt.Errorf("sqs: look up queue %s: %w", name, err)
	}
	info := Info{Name: name, URL: aws.ToString(out.QueueUrl)}
	attrs, err := api.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       out.QueueUrl,
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn, types.QueueAttributeNameRedrivePolicy},
	})
	if err != nil {
		return Info{}, fmt.Errorf("sqs: attributes of %s: %w", name, err)
	}
	info.ARN = attrs.Attributes[string(types.QueueAttributeNameQueueArn)]
	raw := attrs.Attributes[string(types.QueueAttributeNameRedrivePolicy)]
	if raw == "" {
		return info, nil
	}
	var rp struct {
		DeadLetterTargetARN string `json:"deadLetterTargetArn"`
	}
	if err := json.Unmarshal([]byte(raw), &rp); err != nil {
		return Info{}, fmt.Errorf("sqs: redrive policy of %s: %w", name, err)
	}
	// arn:aws:sqs:<region>:<account>:<name>
	parts := strings.Split(rp.DeadLetterTargetARN, ":")
	if len(parts) != 6 {
		return Info{}, fmt.Errorf("sqs: redrive policy of %s: bad DLQ ARN %q", name, rp.DeadLetterTargetARN)
	}
	dlq, err := api.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(parts[5]), QueueOwnerAWSAccountId: aws.String(parts[4])})
	if err != nil {
		return Info{}, fmt.Errorf("sqs: look up DLQ %s of %s: %w", parts[5], name, err)
	}
	info.DLQURL, info.DLQARN = aws.ToString(dlq.QueueUrl), rp.DeadLetterTargetARN
	return info, nil
}

type redrivePolicy struct {
	DeadLetterTargetARN string `json:"deadLetterTargetArn"`
	MaxReceiveCount     int    `json:"maxReceiveCount"`
}

type policyDoc struct {
	Version   string            `json:"Version"`
	ID        string            `json:"Id"`
	Statement []policyStatement `json:"Statement"`
}

type policyStatement struct {
	Sid       string                         `json:"Sid"`
	Effect    string                         `json:"Effect"`
	Principal map[string]string              `json:"Principal"`
	Action    string                         `json:"Action"`
	Resource  string                         `json:"Resource"`
	Condition map[string]map[string][]string `json:"Condition"`
}

// ensureQueue returns the URL of queue name, creating it (with no attributes,
// so an existing queue with other attributes is never a conflict) if absent.
func ensureQueue(ctx context.Context, api ProvisionAPI, name string) (string, error) {
	out, err := api.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err == nil {
		return aws.ToString(out.QueueUrl), nil
	}
	var missing *types.QueueDoesNotExist
	if !errors.As(err, &missing) {
		return "", fmt.Errorf("sqs: look up queue %s: %w", name, err)
	}
	created, err := api.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		return "", fmt.Errorf("sqs: create queue %s: %w", name, err)
	}
	return aws.ToString(created.QueueUrl), nil
}

func setAttrs(ctx context.Context, api ProvisionAPI, url string, attrs map[string]string) error {
	if _, err := api.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(url), Attributes: attrs}); err != nil {
		return fmt.Errorf("sqs: set attributes of %s: %w", url, err)
	}
	return nil
}

func queueARN(ctx context.Context, api ProvisionAPI, url string) (string, error) {
	out, err := api.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", fmt.Errorf("sqs: ARN of %s: %w", url, err)
	}
	arn := out.Attributes[string(types.QueueAttributeNameQueueArn)]
	if arn == "" {
		return "", fmt.Errorf("sqs: ARN of %s: not in the queue's attributes", url)
	}
	return arn, nil
}
