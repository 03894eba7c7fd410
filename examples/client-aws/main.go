// Command client-aws submits one agent run to an agentbus deployment on AWS
// (or on moto, the local stand-in) and prints its outcome.
//
// It needs a deployment whose four services run (`agentbus serve ...`, see
// docs/serve.md) and credentials that may create its caller queue and rule
// (the bootstrap actions of docs/serve.md). Against moto:
//
//	make stack && eval "$(scripts/stack.sh env)"
//	go run ./cmd/agentbus stack bootstrap
//	# start the four services (docs/serve.md), then:
//	go run ./examples/client-aws -prompt "What is 6*7?"
//
// Flags fall back to AGENTBUS_BUS_NAME (else AGENTBUS_PREFIX, else
// "agentbus") and AGENTBUS_BUCKET; AWS region, credentials and
// AWS_ENDPOINT_URL come from the standard AWS configuration chain.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"

	awsclient "github.com/agentbus/agentbus/client/aws"
	"github.com/agentbus/agentbus/events"
)

func main() {
	busDefault := os.Getenv("AGENTBUS_BUS_NAME")
	if busDefault == "" {
		busDefault = os.Getenv("AGENTBUS_PREFIX")
	}
	if busDefault == "" {
		busDefault = "agentbus"
	}
	bus := flag.String("bus", busDefault, "EventBridge bus of the deployment ($AGENTBUS_BUS_NAME)")
	bucket := flag.String("bucket", os.Getenv("AGENTBUS_BUCKET"), "blob bucket, for large prompts and answers ($AGENTBUS_BUCKET; optional)")
	caller := flag.String("caller", "example", "caller id: names the caller queue and prefixes session ids ([A-Za-z0-9_-])")
	prompt := flag.String("prompt", "What is 6*7? Use the calculator.", "the prompt")
	timeout := flag.Duration("timeout", 2*time.Minute, "how long to wait for the outcome")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := run(ctx, *bus, *bucket, *caller, *prompt); err != nil {
		fmt.Fprintln(os.Stderr, "client-aws:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bus, bucket, caller, prompt string) error {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	// Idempotent: creates the queue, its DLQ and the rule on first use.
	q, err := awsclient.EnsureCallerQueue(ctx, cfg, bus, caller)
	if err != nil {
		return err
	}
	c, err := awsclient.New(ctx, awsclient.Config{AWS: cfg, Bus: bus, CallerID: caller, Queue: q, Bucket: bucket})
	if err != nil {
		return err
	}
	defer c.Close()
	start := time.Now()
	sid, err := c.Submit(ctx, events.AgentRequested{Prompt: prompt})
	if err != nil {
		return err
	}
	fmt.Println("session", sid)
	res, err := c.Await(ctx, sid)
	if err != nil {
		return err
	}
	switch {
	case res.Completed != nil:
		fmt.Printf("completed in %d steps (%v): %s\n", res.Completed.Steps, time.Since(start).Round(time.Millisecond), res.Completed.Answer)
	case res.Failed != nil:
		return fmt.Errorf("failed (%s): %s", res.Failed.Reason, res.Failed.Message)
	case res.Cancelled != nil:
		return fmt.Errorf("cancelled: %s", res.Cancelled.Reason)
	}
	return nil
}
