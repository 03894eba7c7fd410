package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	ebsdk "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	sfnsdk "github.com/aws/aws-sdk-go-v2/service/sfn"
	sqssdk "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/spf13/cobra"

	"github.com/agentbus/agentbus/events/rules"
	s3blob "github.com/agentbus/agentbus/platform/blob/s3"
	"github.com/agentbus/agentbus/platform/bus/eventbridge"
	"github.com/agentbus/agentbus/platform/bus/sqs"
	"github.com/agentbus/agentbus/platform/saga/stepfunctions"
	"github.com/agentbus/agentbus/platform/state/dynamodb"
	"github.com/agentbus/agentbus/saga"
)

// awsNames are the names of the AWS resources of one agentbus deployment.
// The bus is named after the prefix; catalog queue q is SQS queue
// "<prefix>-q" with DLQ "<prefix>-q-dlq" (see platform/bus/sqs).
type awsNames struct {
	endpoint string
	prefix   string
	bucket   string
	table    string
}

// addAWSFlags registers the flags that locate an AWS deployment.
func addAWSFlags(cmd *cobra.Command, n *awsNames) {
	cmd.Flags().StringVar(&n.endpoint, "endpoint", "", "AWS endpoint URL, e.g. http://127.0.0.1:5000 for the local stand-in (default: $AWS_ENDPOINT_URL, else AWS itself)")
	cmd.Flags().StringVar(&n.prefix, "prefix", envOr("AGENTBUS_PREFIX", "agentbus"), "name of the bus and prefix of the queues ($AGENTBUS_PREFIX)")
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// loadAWSConfig loads the standard AWS configuration chain (environment,
// shared config and credentials files, SSO, IMDS; AWS_ENDPOINT_URL and
// AWS_ENDPOINT_URL_<SERVICE> included). endpoint, when set, overrides the
// endpoint of every service; with an endpoint and no region configured the
// region is us-east-1, which is what the local stand-in expects.
func loadAWSConfig(ctx context.Context, endpoint string) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return aws.Config{}, fmt.Errorf("AWS configuration: %w", err)
	}
	if endpoint != "" {
		cfg.BaseEndpoint = aws.String(endpoint)
	}
	if cfg.Region == "" {
		if cfg.BaseEndpoint == nil {
			return aws.Config{}, usageErr(fmt.Errorf("no AWS region configured (set AWS_REGION)"))
		}
		cfg.Region = "us-east-1"
	}
	return cfg, nil
}

// newStackCmd is `agentbus stack`: provisioning of the AWS side.
func newStackCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stack",
		Short: "Provision the AWS side: bus, rules, queues with DLQs, bucket, table",
	}
	cmd.AddCommand(newStackBootstrapCmd())
	return cmd
}

func newStackBootstrapCmd() *cobra.Command {
	var (
		names awsNames
		dirs  []string
		sagas sagaStack
	)
	cmd := &cobra.Command{
		Use:   "bootstrap [--endpoint URL] [--prefix agentbus] [--dir extra-rules-dir]...",
		Short: "Create (or converge) the bus, a rule per catalog rule, each target queue with its DLQ and policy, the blob bucket and the state table",
		Long: "Creates the EventBridge bus <prefix>; for every catalog rule (plus the rules in each --dir) the rule " +
			"on that bus targeting SQS queue <prefix>-<queue>, created with its DLQ <prefix>-<queue>-dlq, a redrive " +
			"policy (the rule's maxReceiveCount), its visibility timeout and a queue policy that lets only those " +
			"rules send; the S3 bucket for claim-checked payloads and the DynamoDB state table. Every step is idempotent: running it again " +
			"converges on the catalog. AWS credentials and region come from the standard chain; against the local " +
			"stand-in use `eval \"$(scripts/stack.sh env)\"` first or pass --endpoint.\n\n" +
			"With --sagas-dir (and --saga-role-arn) it also creates the saga queue <prefix>-saga with its DLQ, " +
			"one Step Functions state machine <prefix>-saga-<name> per definition, and the rule toolgateway-sagas " +
			"that routes calls of the saga tools to the tool-gateway's queue, then prints the AGENTBUS_SAGA_* " +
			"settings `serve toolgateway` needs (docs/sagas.md).",
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			rs, err := loadRules(dirs)
			if err != nil {
				return usageErr(err)
			}
			if err := sagas.load(); err != nil {
				return usageErr(err)
			}
			cfg, err := loadAWSConfig(cmd.Context(), names.endpoint)
			if err != nil {
				return err
			}
			return bootstrapStack(cmd.Context(), cfg, names, rs, sagas, cmd.OutOrStdout())
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })
	addAWSFlags(cmd, &names)
	cmd.Flags().StringVar(&names.bucket, "bucket", os.Getenv("AGENTBUS_BUCKET"), "S3 bucket for claim-checked payloads ($AGENTBUS_BUCKET; default <prefix>-blobs)")
	cmd.Flags().StringVar(&names.table, "table", os.Getenv("AGENTBUS_TABLE"), "DynamoDB state table ($AGENTBUS_TABLE; default <prefix>-state)")
	cmd.Flags().StringArrayVar(&dirs, "dir", nil, "directory of extra rule files (repeatable)")
	cmd.Flags().StringVar(&sagas.Dir, "sagas-dir", "", "folder whose *.json files are saga definitions: provision their state machines, the saga queue and the rule routing their calls to the tool-gateway")
	cmd.Flags().StringVar(&sagas.RoleARN, "saga-role-arn", os.Getenv("AGENTBUS_SAGA_ROLE_ARN"), "execution role of the saga state machines, allowed sqs:SendMessage to the saga queue (terraform's saga module makes one; the local stand-in takes any role ARN) ($AGENTBUS_SAGA_ROLE_ARN)")
	return cmd
}

// sagaStack is the saga part of a bootstrap: the definitions of Dir get
// state machines run by RoleARN. No Dir: no sagas.
type sagaStack struct {
	Dir         string
	RoleARN     string
	Definitions []saga.Definition
}

// load reads and checks the definitions of s.Dir.
func (s *sagaStack) load() error {
	if s.Dir == "" {
		if s.RoleARN != "" {
			return errors.New("--saga-role-arn is set without --sagas-dir")
		}
		return nil
	}
	f := sagaFlags{dir: s.Dir}
	defs, err := f.load()
	if err != nil {
		return err
	}
	if len(defs) == 0 {
		return fmt.Errorf("--sagas-dir %s: no saga definitions (*.json) in it", s.Dir)
	}
	if s.RoleARN == "" {
		return errors.New("--saga-role-arn is required with --sagas-dir: the state machines' execution role " +
			"(on the local stand-in any role ARN, e.g. arn:aws:iam::123456789012:role/agentbus-saga)")
	}
	abs, err := filepath.Abs(s.Dir)
	if err != nil {
		return err
	}
	s.Dir, s.Definitions = abs, defs
	return nil
}

// Saga queue settings of a bootstrap, the same as the Terraform example's:
// a task taken by a worker that died reappears after a minute (workers
// renew the visibility of tasks they run), and ten receives move it to the
// DLQ.
const (
	bootstrapSagaVisibility      = 60 * time.Second
	bootstrapSagaMaxReceiveCount = 10
)

// bootstrap provisions names' resources for rs and prints what it ensured.
func bootstrap(ctx context.Context, cfg aws.Config, names awsNames, rs []rules.Rule, out io.Writer) error {
	return bootstrapStack(ctx, cfg, names, rs, sagaStack{}, out)
}

// bootstrapStack is bootstrap plus, when sagas has definitions, the saga
// queue, their state machines and the rule routing their calls to the
// tool-gateway; it then prints the tool-gateway's saga settings.
func bootstrapStack(ctx context.Context, cfg aws.Config, names awsNames, rs []rules.Rule, sagas sagaStack, out io.Writer) error {
	if len(sagas.Definitions) > 0 {
		r, err := bootstrapSagaRule(rs, sagas.Definitions)
		if err != nil {
			return usageErr(err)
		}
		rs = append(slices.Clip(rs), r)
	}
	if names.bucket == "" {
		names.bucket = names.prefix + "-blobs"
	}
	if names.table == "" {
		names.table = names.prefix + "-state"
	}
	specs, err := rules.Queues(rs)
	if err != nil {
		return usageErr(err)
	}
	eb := ebsdk.NewFromConfig(cfg)
	sq := sqssdk.NewFromConfig(cfg)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw, "KIND\tNAME\tARN / DETAIL")

	busARN, err := eventbridge.EnsureBus(ctx, eb, names.prefix)
	if err != nil {
		return err
	}
	fmt.Fprintf(tw, "bus\t%s\t%s\n", names.prefix, busARN)

	queues := map[string]sqs.Info{}
	for _, q := range specs {
		info, err := sqs.EnsureQueue(ctx, sq, sqs.QueueSpec{
			Name:              sqs.QueueName(names.prefix, q.Name),
			VisibilityTimeout: time.Duration(q.VisibilityTimeoutSeconds) * time.Second,
			MaxReceiveCount:   q.MaxReceiveCount,
		})
		if err != nil {
			return err
		}
		queues[q.Name] = info
		fmt.Fprintf(tw, "queue\t%s\t%s (visibility %ds, DLQ after %d receives)\n", info.Name, info.ARN, q.VisibilityTimeoutSeconds, q.MaxReceiveCount)
		fmt.Fprintf(tw, "dlq\t%s\t%s\n", sqs.DLQName(info.Name), info.DLQARN)
	}

	senders := map[string][]string{}
	for _, r := range rs {
		q := queues[r.Target.Queue]
		arn, err := eventbridge.EnsureRule(ctx, eb, eventbridge.Rule{
			Bus: names.prefix, Name: r.Name, Description: r.Description, Pattern: r.EventPattern, QueueARN: q.ARN,
		})
		if err != nil {
			return err
		}
		senders[r.Target.Queue] = append(senders[r.Target.Queue], arn)
		fmt.Fprintf(tw, "rule\t%s\t%s -> %s\n", r.Name, arn, q.Name)
	}
	for _, q := range specs {
		if err := sqs.EnsureSendPolicy(ctx, sq, queues[q.Name], senders[q.Name]); err != nil {
			return err
		}
		fmt.Fprintf(tw, "policy\t%s\tevents.amazonaws.com may send for %d rule(s)\n", queues[q.Name].Name, len(senders[q.Name]))
	}

	store, err := s3blob.New(ctx, cfg, names.bucket)
	if err != nil {
		return err
	}
	if err := store.EnsureBucket(ctx); err != nil {
		return err
	}
	fmt.Fprintf(tw, "bucket\t%s\ts3://%s\n", names.bucket, names.bucket)

	table, err := dynamodb.New(cfg, names.table)
	if err != nil {
		return err
	}
	if err := table.EnsureTable(ctx); err != nil {
		return err
	}
	fmt.Fprintf(tw, "table\t%s\tDynamoDB, TTL on expiresAt\n", names.table)
	if len(sagas.Definitions) == 0 {
		return nil
	}

	prov, err := stepfunctions.Provision(ctx, stepfunctions.ProvisionConfig{
		SFN: sfnsdk.NewFromConfig(cfg), SQS: sq, Prefix: names.prefix, RoleARN: sagas.RoleARN,
		Definitions: sagas.Definitions, Visibility: bootstrapSagaVisibility, MaxReceiveCount: bootstrapSagaMaxReceiveCount,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(tw, "queue\t%s\t%s (visibility %ds, DLQ after %d receives; saga tasks)\n", prov.Queue.Name, prov.Queue.ARN,
		int(bootstrapSagaVisibility.Seconds()), bootstrapSagaMaxReceiveCount)
	fmt.Fprintf(tw, "dlq\t%s\t%s\n", sqs.DLQName(prov.Queue.Name), prov.Queue.DLQARN)
	machines := make([]string, 0, len(sagas.Definitions))
	for _, d := range sagas.Definitions {
		arn := prov.StateMachines[d.Name]
		fmt.Fprintf(tw, "statemachine\t%s\t%s (saga %s)\n", stepfunctions.StateMachineName(names.prefix, d.Name), arn, d.Name)
		machines = append(machines, d.Name+"="+arn)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n# serve toolgateway's saga settings (docs/sagas.md):\n")
	for _, kv := range [][2]string{
		{"AGENTBUS_SAGA_QUEUE_URL", prov.Queue.URL},
		{"AGENTBUS_SAGA_DLQ_URL", prov.Queue.DLQURL},
		{"AGENTBUS_SAGA_STATE_MACHINES", strings.Join(machines, ",")},
		{"AGENTBUS_SAGAS_DIR", sagas.Dir},
	} {
		fmt.Fprintf(out, "%s=%s\n", kv[0], shellQuote(kv[1]))
	}
	return nil
}

// bootstrapSagaRule is the rule routing calls of the saga tools to the
// tool-gateway's queue (the embedded runtime's sagaToolsRule), with the
// queue settings of the rules already targeting that queue, so the queue
// is created once with one setting.
func bootstrapSagaRule(rs []rules.Rule, defs []saga.Definition) (rules.Rule, error) {
	r, _ := sagaToolsRule(defs)
	for _, x := range rs {
		if x.Name == r.Name {
			return rules.Rule{}, fmt.Errorf("rule %s is generated from the sagas; a rule file may not define it", r.Name)
		}
		if x.Target.Queue == r.Target.Queue {
			r.Target = x.Target
		}
	}
	return r, nil
}

// shellQuote quotes v for a POSIX shell when it needs it, so the settings
// can be eval'ed.
func shellQuote(v string) string {
	if v != "" && strings.IndexFunc(v, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_./:=,@+%", c))
	}) < 0 {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}
