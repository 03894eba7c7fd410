// Command plugin-units is an example agentbus plug-in: it serves one tool,
// convert_units (length, mass, volume, time, speed, temperature), from its
// own process and its own queue, reached only through its rule
// (plugin-units.json next to this file). See docs/plugins.md.
//
// Against `agentbus dev` (embedded):
//
//	agentbus rules add examples/plugin-units/plugin-units.json   # once; then (re)start dev
//	agentbus dev --script examples/plugin-units/scripts/units.json &
//	go run ./examples/plugin-units --addr 127.0.0.1:7421         # registers the spec, serves the queue
//	agentbus run --addr 127.0.0.1:7421 "convert 5 km to mi"
//
// The claim ledger (one row per call, so a redelivered call is answered
// from it and never converted twice) is a SQLite file under --data-dir.
//
// On AWS (or the local stand-in, moto):
//
//	agentbus stack bootstrap --dir examples/plugin-units   # rule + queue + DLQ (or the Terraform subscriber module)
//	go run ./examples/plugin-units --aws --prefix agentbus [--endpoint http://127.0.0.1:5000]
//
// It registers the spec in the agentbus state table (<prefix>-state), where
// `agentbus serve planner` and `serve executor` read it, consumes SQS queue
// <prefix>-plugin-units, keeps its claim ledger in its own DynamoDB table
// (<prefix>-plugin-units, created if missing) and publishes results to the
// EventBridge bus <prefix>. Claim checks use the agentbus bucket
// (<prefix>-blobs, --bucket): offloaded requests are read back from it and
// large results offloaded to it.
//
// Exit status: 0 after SIGINT/SIGTERM, 2 for bad flags, an unknown queue
// (the rule is missing) or a tool name the runtime already uses, 1 otherwise.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	sqssdk "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/agentbus/agentbus/client"
	s3blob "github.com/agentbus/agentbus/platform/blob/s3"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/bus/claimcheck"
	"github.com/agentbus/agentbus/platform/bus/eventbridge"
	"github.com/agentbus/agentbus/platform/bus/sqs"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/platform/state/dynamodb"
	"github.com/agentbus/agentbus/platform/state/sqlite"
	"github.com/agentbus/agentbus/plugin"
	"github.com/agentbus/agentbus/tools"
)

// Name is the plug-in's name: its event source is agentbus/plugin/units.
const Name = "units"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type flags struct {
	addr, token, tlsCA, dataDir, queue string
	aws                                bool
	endpoint, prefix, table, ledger    string
	bucket                             string
	verbose                            bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f flags
	fs := flag.NewFlagSet("plugin-units", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.addr, "addr", "127.0.0.1:7421", "address of the agentbus dev API")
	fs.StringVar(&f.token, "token", os.Getenv("AGENTBUS_TOKEN"), "bearer token of the dev API ($AGENTBUS_TOKEN)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "use TLS, trusting this CA certificate (PEM)")
	fs.StringVar(&f.dataDir, "data-dir", ".agentbus-plugin-units", "folder of the plug-in's claim ledger (SQLite) in dev mode")
	fs.StringVar(&f.queue, "queue", "plugin-units", "the plug-in's queue (its rule's target.queue)")
	fs.BoolVar(&f.aws, "aws", false, "serve on AWS: SQS queue <prefix>-<queue>, EventBridge bus <prefix>, DynamoDB")
	fs.StringVar(&f.endpoint, "endpoint", "", "AWS endpoint URL (e.g. http://127.0.0.1:5000 for moto; default $AWS_ENDPOINT_URL)")
	fs.StringVar(&f.prefix, "prefix", envOr("AGENTBUS_PREFIX", "agentbus"), "agentbus deployment prefix: bus name and queue prefix")
	fs.StringVar(&f.table, "table", os.Getenv("AGENTBUS_TABLE"), "agentbus state table, where the spec is registered (default <prefix>-state)")
	fs.StringVar(&f.bucket, "bucket", os.Getenv("AGENTBUS_BUCKET"), "agentbus claim-check bucket: large requests are read from it, large results written to it (default <prefix>-blobs)")
	fs.StringVar(&f.ledger, "ledger-table", "", "the plug-in's own DynamoDB table for its claim ledger (default <prefix>-plugin-units)")
	fs.BoolVar(&f.verbose, "v", false, "log to stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "plugin-units: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	log := slog.New(slog.DiscardHandler)
	if f.verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	err := serve(ctx, f, stdout, log)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, plugin.ErrUnknownQueue), errors.Is(err, plugin.ErrToolClash), errors.Is(err, tools.ErrInvalidSpec):
		fmt.Fprintln(stderr, "plugin-units:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "plugin-units:", err)
		return 1
	}
}

func serve(ctx context.Context, f flags, stdout io.Writer, log *slog.Logger) error {
	var (
		tr      plugin.Transport
		store   state.Store
		resolve bus.Middleware
		err     error
	)
	if f.aws {
		tr, store, resolve, err = awsTransport(ctx, f, log)
	} else {
		tr, store, err = devTransport(ctx, f)
	}
	if err != nil {
		return err
	}
	defer store.Close()
	fmt.Fprintf(stdout, "plugin-units: serving %s on queue %s\n", ToolName, tr.Queue.Name())
	return plugin.Serve(ctx, plugin.Config{
		Name:      Name,
		Tools:     []tools.Tool{Converter{}},
		Transport: tr,
		Store:     store,
		Resolve:   resolve,
		OnRequest: func(tool, callID string) { fmt.Fprintf(stdout, "request tool=%s call=%s\n", tool, callID) },
		Logger:    log,
	})
}

func devTransport(ctx context.Context, f flags) (plugin.Transport, state.Store, error) {
	var opts []client.Option
	if f.token != "" {
		opts = append(opts, client.WithToken(f.token))
	}
	if f.tlsCA != "" {
		opts = append(opts, client.WithTLSCAFile(f.tlsCA))
	}
	c, err := client.Dial(ctx, f.addr, opts...)
	if err != nil {
		return plugin.Transport{}, nil, err
	}
	tr, err := plugin.DevServer(ctx, c, f.queue)
	if err != nil {
		c.Close()
		return plugin.Transport{}, nil, err
	}
	if err := os.MkdirAll(f.dataDir, 0o755); err != nil {
		c.Close()
		return plugin.Transport{}, nil, err
	}
	st, err := sqlite.Open(ctx, filepath.Join(f.dataDir, "ledger.db"))
	if err != nil {
		c.Close()
		return plugin.Transport{}, nil, err
	}
	return tr, closing{Store: st, also: c.Close}, nil
}

func awsTransport(ctx context.Context, f flags, log *slog.Logger) (tr plugin.Transport, _ state.Store, _ bus.Middleware, err error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return tr, nil, nil, err
	}
	if f.endpoint != "" {
		cfg.BaseEndpoint = aws.String(f.endpoint)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if f.table == "" {
		f.table = f.prefix + "-state"
	}
	if f.bucket == "" {
		f.bucket = f.prefix + "-blobs"
	}
	if f.ledger == "" {
		f.ledger = f.prefix + "-plugin-" + Name
	}
	name := sqs.QueueName(f.prefix, f.queue)
	info, err := sqs.Lookup(ctx, sqssdk.NewFromConfig(cfg), name)
	if err != nil {
		return tr, nil, nil, fmt.Errorf("%w %s (provision the plug-in's rule: agentbus stack bootstrap --dir examples/plugin-units, or the Terraform subscriber module): %w",
			plugin.ErrUnknownQueue, name, err)
	}
	vis, err := ruleVisibility()
	if err != nil {
		return tr, nil, nil, err
	}
	specs, err := dynamodb.New(cfg, f.table)
	if err != nil {
		return tr, nil, nil, err
	}
	ledger, err := dynamodb.New(cfg, f.ledger)
	if err != nil {
		return tr, nil, nil, err
	}
	ectx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := ledger.EnsureTable(ectx); err != nil {
		return tr, nil, nil, fmt.Errorf("ledger table %s: %w", f.ledger, err)
	}
	// Claim checks, as the services use them: a request whose input was
	// offloaded to S3 is read back, a result over the limit is offloaded.
	blobs, err := s3blob.New(ctx, cfg, f.bucket)
	if err != nil {
		return tr, nil, nil, err
	}
	resolver, err := claimcheck.NewResolver(blobs)
	if err != nil {
		return tr, nil, nil, err
	}
	pub, err := claimcheck.NewPublisher(eventbridge.New(cfg, f.prefix, eventbridge.WithLogger(log)), blobs)
	if err != nil {
		return tr, nil, nil, err
	}
	return plugin.Transport{
		Queue:      sqs.New(cfg, info, sqs.WithLogger(log)),
		Publisher:  pub,
		Registrar:  plugin.StoreRegistrar{Specs: specs},
		Visibility: vis,
	}, ledger, resolver.Middleware, nil
}

// closing closes a connection along with the store.
type closing struct {
	state.Store
	also func() error
}

func (c closing) Close() error { return errors.Join(c.Store.Close(), c.also()) }

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
