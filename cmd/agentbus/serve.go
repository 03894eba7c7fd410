package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/cloudevents/sdk-go/v2/event"
	goredis "github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/events/rules"
	s3blob "github.com/agentbus/agentbus/platform/blob/s3"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/bus/claimcheck"
	"github.com/agentbus/agentbus/platform/bus/eventbridge"
	"github.com/agentbus/agentbus/platform/bus/sqs"
	rediscache "github.com/agentbus/agentbus/platform/cache/redis"
	"github.com/agentbus/agentbus/platform/model"
	"github.com/agentbus/agentbus/platform/model/bedrock"
	"github.com/agentbus/agentbus/platform/model/scripted"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/platform/state/dynamodb"
	"github.com/agentbus/agentbus/platform/state/outbox"
	"github.com/agentbus/agentbus/services/executor"
	"github.com/agentbus/agentbus/services/memory"
	"github.com/agentbus/agentbus/services/planner"
	"github.com/agentbus/agentbus/services/toolgateway"
	"github.com/agentbus/agentbus/tools"
)

// newServeCmd is `agentbus serve <service>`: one service of the agent loop on
// AWS (EventBridge, SQS, S3, DynamoDB, Redis, Bedrock).
func newServeCmd() *cobra.Command {
	vals := map[string]*string{}
	cmd := &cobra.Command{
		Use:   "serve <planner|executor|memory|toolgateway>",
		Short: "Run one agent-loop service against EventBridge/SQS/S3/DynamoDB/Redis/Bedrock",
		Long: "Consumes the service's own SQS queue, keeps state in DynamoDB (large values in S3), publishes through " +
			"the transactional outbox to EventBridge (large events as S3 claim checks). Configuration: flags, else the " +
			"environment variables named in each flag's help (docs/serve.md). Stops gracefully on SIGTERM/SIGINT.",
		Args: exactArgs(1, "a service: planner, executor, memory or toolgateway"),
		RunE: func(cmd *cobra.Command, args []string) error {
			set := map[string]string{}
			for k, v := range vals {
				if cmd.Flags().Changed(k) {
					set[k] = *v
				}
			}
			cfg, err := resolveServeConfig(args[0], set, os.Getenv)
			if err != nil {
				return usageErr(err)
			}
			log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil)).With("service", cfg.Service)
			return serveService(cmd.Context(), cfg, serveHooks{}, log)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })
	addServeFlags(cmd, vals)
	return cmd
}

// serveHooks are what tests inject into a served service; the zero value is
// production.
type serveHooks struct {
	// Tools are extra tools (tests); the built-ins are added. nil: a fresh
	// registry.
	Tools *tools.Registry
	// Crash is called at the named crash points (see crashHooks).
	Crash crashHooks
	// LeaseMargin shortens the tool-gateway's leases (crash tests).
	LeaseMargin time.Duration
}

// serveService runs cfg.Service until ctx ends, then stops gracefully: the
// worker finishes (or releases) in-flight messages, the relay publishes what
// the last handlers wrote, and the connections close.
func serveService(ctx context.Context, cfg serveConfig, hooks serveHooks, log *slog.Logger) (err error) {
	awsCfg, err := loadAWSConfig(ctx, cfg.Endpoint)
	if err != nil {
		return err
	}
	validator, err := events.NewValidator()
	if err != nil {
		return err
	}
	visibility := cfg.Visibility
	if visibility == 0 {
		if visibility, err = catalogVisibility(cfg.Service); err != nil {
			return err
		}
	}

	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			err = errors.Join(err, closers[i]())
		}
	}()

	blobs, err := s3blob.New(ctx, awsCfg, cfg.Bucket)
	if err != nil {
		return err
	}
	table, err := dynamodb.New(awsCfg, cfg.Table, dynamodb.WithBlobs(blobs))
	if err != nil {
		return err
	}
	var ccOpts []claimcheck.Option
	if cfg.MaxEventSize > 0 {
		ccOpts = append(ccOpts, claimcheck.WithLimit(cfg.MaxEventSize))
	}
	checked, err := claimcheck.NewPublisher(eventbridge.New(awsCfg, cfg.BusName, eventbridge.WithLogger(log)), blobs, ccOpts...)
	if err != nil {
		return err
	}
	resolver, err := claimcheck.NewResolver(blobs, ccOpts...)
	if err != nil {
		return err
	}
	publisher := validatingPublisher(validator, checked)
	relayPub := bus.PublisherFunc(func(ctx context.Context, evs ...event.Event) error {
		hooks.Crash.at("before_outbox_publish")
		return publisher.Publish(ctx, evs...)
	})
	// Every service runs a relay: each writes through the outbox (the
	// memory service only when a write carries events), and the relay is
	// also the safety net for events another process wrote and could not
	// publish before it stopped: localOutbox gives each relay its own
	// process's events at once and the others' after three poll intervals.
	local := newLocalOutbox(table, 3*cfg.OutboxInterval)
	relay := outbox.NewRelay(local, relayPub, outbox.Options{Interval: cfg.OutboxInterval, Logger: log.With("component", "outbox")})
	// local records a write's events before the relay is told of them.
	store := outbox.Notifying(outbox.AfterWrite(local, local.record), relay)

	reg := hooks.Tools
	if reg == nil {
		reg = tools.NewRegistry()
	}
	if err := registerBuiltins(reg, store); err != nil {
		return err
	}
	if cfg.Service == "planner" || cfg.Service == "executor" {
		// Plug-ins register their specs in the table (plugin.StoreRegistrar):
		// offer and route them, including plug-ins registered later.
		if _, err := loadPluginSpecs(ctx, table, reg, log); err != nil {
			return err
		}
		specsCtx, stopSpecs := context.WithCancel(ctx)
		defer stopSpecs()
		go watchPluginSpecs(specsCtx, table, reg, pluginSpecsRefresh, log)
	}

	var handler bus.Handler
	switch cfg.Service {
	case "planner":
		m, modelName, err := serveModel(awsCfg, cfg, log)
		if err != nil {
			return err
		}
		handler = planner.New(store, m, reg, planner.Config{DefaultModel: modelName}, nil, log).Handle
	case "executor":
		handler = executor.New(executorStore{Store: store, hooks: hooks.Crash}, reg, cfg.ExecutorGrace, nil, log).Handle
	case "toolgateway":
		stopSagas, err := startServeSagas(ctx, awsCfg, cfg, store, table, reg, publisher, hooks, log)
		if err != nil {
			return err
		}
		closers = append(closers, stopSagas)
		gw, err := toolgateway.New(toolgateway.Config{Store: store, Registry: reg, Publisher: publisher,
			Logger: log, Hook: hooks.Crash.Point, LeaseMargin: hooks.LeaseMargin})
		if err != nil {
			return err
		}
		handler = gw.Handle
	case "memory":
		rc := goredis.NewClient(redisOptions(cfg))
		closers = append(closers, rc.Close)
		hot := memory.CacheHot(rediscache.NewFromClient(rc, rediscache.Options{}), 10*time.Minute, log)
		handler = memory.New(store, hot, log).Handle
	default:
		return usageErr(fmt.Errorf("unknown service %q", cfg.Service))
	}

	queue := sqs.New(awsCfg, sqs.Info{Name: queueNameFromURL(cfg.QueueURL), URL: cfg.QueueURL, DLQURL: cfg.DLQURL}, sqs.WithLogger(log))
	worker := bus.NewWorker(queue, bus.Chain(handler, bus.Recoverer{}.Middleware, resolver.Middleware, validating(validator)),
		bus.WorkerConfig{Concurrency: cfg.Concurrency, Visibility: visibility, Logger: log.With("queue", queue.Name())})

	var ready atomic.Bool
	if cfg.HealthAddr != "" {
		stop, err := serveHealth(cfg.HealthAddr, &ready, log)
		if err != nil {
			return usageErr(fmt.Errorf("AGENTBUS_HEALTH_ADDR (--health-addr): %w", err))
		}
		closers = append(closers, stop)
	}

	workCtx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRelay()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = relay.Run(relayCtx) }()
	workErr := make(chan error, 1)
	go func() { workErr <- worker.Run(workCtx) }()
	ready.Store(true)
	log.Info("ready", "queue", queue.Name(), "bus", cfg.BusName, "table", cfg.Table, "bucket", cfg.Bucket,
		"visibility", visibility.String(), "concurrency", cfg.Concurrency)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("stopping", "cause", context.Cause(ctx))
		ready.Store(false)
		stopWork()
		runErr = <-workErr
	case runErr = <-workErr:
		ready.Store(false)
	}
	if errors.Is(runErr, context.Canceled) {
		runErr = nil
	}
	// Publish what the last handlers wrote, then stop the relay.
	stopRelay()
	wg.Wait()
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	if n, err := relay.Flush(flushCtx); err != nil {
		log.Warn("final outbox flush failed; another process's relay will publish the rest", "err", err)
	} else if n > 0 {
		log.Info("final outbox flush", "published", n)
	}
	cancel()
	if runErr != nil {
		return fmt.Errorf("serve %s: %w", cfg.Service, runErr)
	}
	log.Info("stopped")
	return nil
}

// catalogVisibility is the visibility timeout the rule catalog gives the
// service's queue (what `stack bootstrap` and Terraform configure).
func catalogVisibility(service string) (time.Duration, error) {
	rs, err := rules.Catalog()
	if err != nil {
		return 0, err
	}
	qs, err := rules.Queues(rs)
	if err != nil {
		return 0, err
	}
	for _, q := range qs {
		if q.Name == service {
			return time.Duration(q.VisibilityTimeoutSeconds) * time.Second, nil
		}
	}
	return 30 * time.Second, nil
}

// redisOptions are the go-redis options of the memory service's cache: the
// short timeouts of platform/cache/redis (a slow cache is worse than none;
// reads fall back to DynamoDB), plus TLS and AUTH for ElastiCache.
func redisOptions(cfg serveConfig) *goredis.Options {
	o := &goredis.Options{
		Addr:         cfg.RedisAddr,
		Password:     cfg.RedisPassword,
		DialTimeout:  time.Second,
		ReadTimeout:  500 * time.Millisecond,
		WriteTimeout: 500 * time.Millisecond,
		MaxRetries:   1,
	}
	if cfg.RedisTLS {
		host, _, err := net.SplitHostPort(cfg.RedisAddr)
		if err != nil {
			host = cfg.RedisAddr
		}
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	}
	return o
}

// serveHealth serves /healthz (the process is up) and /readyz (its worker
// is consuming) on addr; the returned func stops it.
func serveHealth(addr string, ready *atomic.Bool, log *slog.Logger) (func() error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("health endpoint", "addr", ln.Addr().String())
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return srv.Shutdown(ctx)
	}, nil
}

// serveAdapters names the AWS adapters serveService wires for service, in
// the adapter names of deploy.AdapterIAMActions: every service consumes its
// queue (sqs), keeps state (dynamodb), offloads and resolves claim checks
// (s3) and publishes through its outbox relay (eventbridge); the planner
// also calls the model (bedrock). The memory service's Redis is reached
// with its AUTH token, not IAM. deploy.ServiceAdapters must agree (tested).
func serveAdapters(service string) []string {
	a := []string{"dynamodb", "eventbridge", "s3", "sqs"}
	if service == "planner" {
		a = append(a, "bedrock")
	}
	return a
}

// localOutbox keeps the relays of several processes from publishing each
// other's fresh events. The outbox is one shared partition: without it, a
// process's relay, notified after its own write, also publishes the events
// another process has just written and not yet marked sent, so both publish
// them and consumers see duplicates (measured on moto: up to 9 duplicate
// deliveries per e2e run; none with it). It records the ids of the outbox
// events written through this process's store; the relay gets those at once
// and another process's only after they have been pending for grace (the
// safety net for a writer that died between its commit and its publish).
// It lives here because the outbox package has no notion of a writer: in
// the embedded runtime one relay sees every write. Writes must go through
// outbox.AfterWrite(l, l.record) for their events to count as this
// process's.
type localOutbox struct {
	state.Store
	grace time.Duration
	now   func() time.Time

	mu      sync.Mutex
	own     map[string]bool      // written here, not yet seen sent
	foreign map[string]time.Time // written elsewhere: when first seen pending
}

var (
	_ state.Store   = (*localOutbox)(nil)
	_ outbox.Source = (*localOutbox)(nil)
)

func newLocalOutbox(s state.Store, grace time.Duration) *localOutbox {
	return &localOutbox{Store: s, grace: grace, now: time.Now, own: map[string]bool{}, foreign: map[string]time.Time{}}
}

// record notes out as written here (outbox.AfterWrite calls it after a
// write that stored them, before outbox.Notifying tells the relay).
func (l *localOutbox) record(_ context.Context, out []state.OutboxEvent) {
	l.mu.Lock()
	for _, e := range out {
		l.own[e.ID] = true
	}
	l.mu.Unlock()
}

// PendingOutbox returns this process's pending events and the others'
// that have waited grace.
func (l *localOutbox) PendingOutbox(ctx context.Context, limit int) ([]state.OutboxEvent, error) {
	all, err := l.Store.PendingOutbox(ctx, limit)
	if err != nil {
		return nil, err
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := make(map[string]bool, len(all))
	var out []state.OutboxEvent
	for _, e := range all {
		seen[e.ID] = true
		if l.own[e.ID] {
			out = append(out, e)
			continue
		}
		first, ok := l.foreign[e.ID]
		if !ok {
			l.foreign[e.ID] = now
			continue
		}
		if now.Sub(first) >= l.grace {
			out = append(out, e)
		}
	}
	if limit <= 0 || len(all) < limit {
		// The whole outbox was read: forget what is no longer pending
		// (published by another relay, or never written).
		for id := range l.foreign {
			if !seen[id] {
				delete(l.foreign, id)
			}
		}
		for id := range l.own {
			if !seen[id] {
				delete(l.own, id)
			}
		}
	}
	return out, nil
}

// MarkSent marks ids sent and forgets them.
func (l *localOutbox) MarkSent(ctx context.Context, ids ...string) error {
	err := l.Store.MarkSent(ctx, ids...)
	if err == nil {
		l.mu.Lock()
		for _, id := range ids {
			delete(l.own, id)
			delete(l.foreign, id)
		}
		l.mu.Unlock()
	}
	return err
}

// serveModel is the planner's model: Bedrock, or the offline scripted model
// when a script is configured (compose without Bedrock access, demos).
func serveModel(awsCfg aws.Config, cfg serveConfig, log *slog.Logger) (model.Model, string, error) {
	if cfg.ModelScript == "" {
		return bedrock.New(awsCfg, cfg.BedrockModelID, bedrock.WithLogger(log)), cfg.BedrockModelID, nil
	}
	var (
		s   *scripted.Script
		err error
	)
	if cfg.ModelScript == "builtin" {
		s, err = scripted.Default()
	} else {
		s, err = scripted.LoadFile(cfg.ModelScript)
	}
	if err != nil {
		return nil, "", fmt.Errorf("serve planner: model script: %w", err)
	}
	return model.WithRetry(scripted.New(s), model.DefaultRetryPolicy), "scripted", nil
}
