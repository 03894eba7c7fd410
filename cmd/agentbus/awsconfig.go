package main

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// serveServices are the services `agentbus serve` runs, one per process.
var serveServices = []string{"planner", "executor", "memory", "toolgateway"}

// serveConfig is the configuration of one `agentbus serve` process. Every
// field comes from a flag or, when the flag is not given, from its
// environment variable: the environment names are the deployment contract
// (terraform/modules/service, docs/serve.md) and must not change.
type serveConfig struct {
	Service        string
	Mode           string // AGENTBUS_MODE: "" or "aws"
	Endpoint       string // --endpoint; else the AWS chain's AWS_ENDPOINT_URL
	BusName        string
	QueueURL       string
	DLQURL         string
	Table          string
	Bucket         string
	RedisAddr      string
	RedisTLS       bool
	RedisPassword  string
	BedrockModelID string
	// ModelScript selects the offline scripted model: a file, or "builtin".
	ModelScript    string
	MaxEventSize   int           // 0: the claim check's default
	Concurrency    int           // handlers per process (default 8)
	Visibility     time.Duration // 0: the catalog's visibility for the queue
	OutboxInterval time.Duration // how often the relay polls unprompted
	ExecutorGrace  time.Duration // 0: executor.DefaultGrace
	HealthAddr     string        // "" : no health endpoint
	// Sagas (toolgateway only): the saga queue, its DLQ, each saga's state
	// machine ARN by name, and the folder of their definitions.
	SagaQueueURL      string
	SagaDLQURL        string
	SagaStateMachines map[string]string
	SagasDir          string
}

// serveSetting binds one flag to its environment fallback.
type serveSetting struct {
	flag, env, usage string
	// need lists the services that require the setting; nil: optional.
	need []string
}

// serveSettings is the configuration table of `agentbus serve` (docs/serve.md
// copies it).
var serveSettings = []serveSetting{
	{"mode", "AGENTBUS_MODE", "runtime mode; serve supports only \"aws\" (empty means aws)", nil},
	{"endpoint", "", "AWS endpoint URL for every service, e.g. http://127.0.0.1:5000 for moto (default: the AWS chain, $AWS_ENDPOINT_URL)", nil},
	{"bus", "AGENTBUS_BUS_NAME", "EventBridge bus the service publishes to", serveServices},
	{"queue-url", "AGENTBUS_QUEUE_URL", "URL of the service's own SQS queue", serveServices},
	{"dlq-url", "AGENTBUS_DLQ_URL", "URL of that queue's DLQ (poison messages are moved there with their reason)", serveServices},
	{"table", "AGENTBUS_TABLE", "DynamoDB state table", serveServices},
	{"bucket", "AGENTBUS_BUCKET", "S3 bucket for claim-checked payloads and large state values", serveServices},
	{"redis-addr", "AGENTBUS_REDIS_ADDR", "host:port of Redis, the memory service's hot-context cache", []string{"memory"}},
	{"redis-tls", "AGENTBUS_REDIS_TLS", "reach Redis over TLS (true/false)", nil},
	{"redis-password", "AGENTBUS_REDIS_PASSWORD", "Redis AUTH token (prefer the environment variable: flags show in process lists)", nil},
	{"bedrock-model-id", "AGENTBUS_BEDROCK_MODEL_ID", "Bedrock model or inference profile id (Converse); the planner needs this or --model-script", nil},
	{"model-script", "AGENTBUS_MODEL_SCRIPT", "planner: run the offline scripted model instead of Bedrock: a script file, or \"builtin\" for the built-in demo script", nil},
	{"max-event-size", "AGENTBUS_MAX_EVENT_SIZE", "largest event (bytes) published inline; larger go to the bucket as a claim check (default 262144)", nil},
	{"concurrency", "AGENTBUS_CONCURRENCY", "handlers running at once in this process (default 8)", nil},
	{"visibility", "AGENTBUS_VISIBILITY", "SQS visibility timeout asked for on receive, renewed while a handler runs (default: the rule catalog's for the queue)", nil},
	{"outbox-interval", "AGENTBUS_OUTBOX_INTERVAL", "how often the outbox relay looks for events other processes left unpublished (default 2s; its own writes are published at once)", nil},
	{"executor-grace", "AGENTBUS_EXECUTOR_GRACE", "executor: how long past a tool's timeout it waits for the result before reporting timeout (default 2s)", nil},
	{"health-addr", "AGENTBUS_HEALTH_ADDR", "serve /healthz and /readyz on this address (e.g. 127.0.0.1:8080); empty: none", nil},
	{"saga-queue-url", "AGENTBUS_SAGA_QUEUE_URL", "toolgateway: URL of the saga task queue the state machines send steps to; with the next two settings the tool-gateway runs the saga worker and offers each saga as a tool (docs/sagas.md)", nil},
	{"saga-state-machines", "AGENTBUS_SAGA_STATE_MACHINES", "toolgateway: each saga's Step Functions state machine, name=arn,name=arn", nil},
	{"sagas-dir", "AGENTBUS_SAGAS_DIR", "toolgateway: folder of the saga definition files (*.json), one per state machine", nil},
	{"saga-dlq-url", "AGENTBUS_SAGA_DLQ_URL", "toolgateway: URL of the saga queue's DLQ (malformed task messages are moved there); optional", nil},
}

// addServeFlags registers one string flag per setting; values are parsed
// and checked by resolveServeConfig so that an error can name both the flag
// and the environment variable.
func addServeFlags(cmd *cobra.Command, vals map[string]*string) {
	for _, s := range serveSettings {
		v := new(string)
		vals[s.flag] = v
		usage := s.usage
		if s.env != "" {
			usage += " ($" + s.env + ")"
		}
		cmd.Flags().StringVar(v, s.flag, "", usage)
	}
}

// resolveServeConfig builds the configuration of service from the flags
// that were set (flags) and the environment (getenv), and checks it. Every
// error names the variable to set.
func resolveServeConfig(service string, flags map[string]string, getenv func(string) string) (serveConfig, error) {
	if !slices.Contains(serveServices, service) {
		return serveConfig{}, fmt.Errorf("unknown service %q (want one of %s)", service, strings.Join(serveServices, ", "))
	}
	val := map[string]string{}
	name := map[string]string{}
	var missing []string
	for _, s := range serveSettings {
		v, ok := flags[s.flag]
		if !ok || v == "" {
			if s.env != "" {
				v = strings.TrimSpace(getenv(s.env))
			}
		}
		val[s.flag] = v
		name[s.flag] = "--" + s.flag
		if s.env != "" {
			name[s.flag] = s.env + " (--" + s.flag + ")"
		}
		if v == "" && slices.Contains(s.need, service) {
			missing = append(missing, name[s.flag])
		}
	}
	if len(missing) > 0 {
		return serveConfig{}, fmt.Errorf("serve %s: missing configuration: %s", service, strings.Join(missing, ", "))
	}
	c := serveConfig{
		Service:        service,
		Mode:           val["mode"],
		Endpoint:       val["endpoint"],
		BusName:        val["bus"],
		QueueURL:       val["queue-url"],
		DLQURL:         val["dlq-url"],
		Table:          val["table"],
		Bucket:         val["bucket"],
		RedisAddr:      val["redis-addr"],
		RedisPassword:  val["redis-password"],
		BedrockModelID: val["bedrock-model-id"],
		ModelScript:    val["model-script"],
		HealthAddr:     val["health-addr"],
	}
	var errs []error
	errs = append(errs, resolveSagaSettings(&c, val, name)...)
	if service == "planner" {
		switch {
		case c.BedrockModelID == "" && c.ModelScript == "":
			errs = append(errs, fmt.Errorf("serve planner: missing configuration: %s, or %s for the offline scripted model",
				name["bedrock-model-id"], name["model-script"]))
		case c.BedrockModelID != "" && c.ModelScript != "":
			errs = append(errs, fmt.Errorf("serve planner: %s and %s are both set: choose Bedrock or the scripted model",
				name["bedrock-model-id"], name["model-script"]))
		}
	}
	if c.Mode != "" && c.Mode != "aws" {
		errs = append(errs, fmt.Errorf("%s is %q: serve runs only on AWS (set it to aws, or use `agentbus dev` for the embedded runtime)", name["mode"], c.Mode))
	}
	for _, f := range []string{"queue-url", "dlq-url"} {
		if u, err := url.Parse(val[f]); err != nil || u.Scheme == "" || u.Host == "" || path.Base(u.Path) == "" || path.Base(u.Path) == "/" {
			errs = append(errs, fmt.Errorf("%s is %q: want a queue URL like https://sqs.us-east-1.amazonaws.com/123456789012/agentbus-planner", name[f], val[f]))
		}
	}
	if v := val["redis-tls"]; v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s is %q: want true or false", name["redis-tls"], v))
		}
		c.RedisTLS = b
	}
	for _, f := range []struct {
		flag string
		dst  *int
		min  int
	}{{"max-event-size", &c.MaxEventSize, 1024}, {"concurrency", &c.Concurrency, 1}} {
		v := val[f.flag]
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < f.min {
			errs = append(errs, fmt.Errorf("%s is %q: want an integer >= %d", name[f.flag], v, f.min))
			continue
		}
		*f.dst = n
	}
	if v := val["visibility"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			errs = append(errs, fmt.Errorf("%s is %q: want a duration of at least 1s, e.g. 30s", name["visibility"], v))
		}
		c.Visibility = d
	}
	c.OutboxInterval = 2 * time.Second
	if v := val["outbox-interval"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Millisecond {
			errs = append(errs, fmt.Errorf("%s is %q: want a duration of at least 10ms, e.g. 2s", name["outbox-interval"], v))
		}
		c.OutboxInterval = d
	}
	if v := val["executor-grace"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s is %q: want a positive duration, e.g. 2s", name["executor-grace"], v))
		}
		c.ExecutorGrace = d
	}
	if err := errors.Join(errs...); err != nil {
		return serveConfig{}, fmt.Errorf("serve %s: %w", service, err)
	}
	if c.Concurrency == 0 {
		c.Concurrency = 8
	}
	return c, nil
}

// queueNameFromURL is the SQS queue name: the last path segment of its URL.
func queueNameFromURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return path.Base(p.Path)
}
