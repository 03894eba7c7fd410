// Command client-embedded runs one agent on a running `agentbus dev` through
// the Go client (package client) and prints its progress and answer.
//
//	agentbus dev &                       # serves the API on 127.0.0.1:7421
//	go run ./examples/client-embedded "What is 6*7?"
//
// Flags: -addr (default $AGENTBUS_ADDR or 127.0.0.1:7421), -token (default
// $AGENTBUS_TOKEN), -tls-ca (a PEM CA to trust; enables TLS).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/client"
	"github.com/agentbus/agentbus/events"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "client-embedded:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("client-embedded", flag.ContinueOnError)
	addr := fs.String("addr", envOr("AGENTBUS_ADDR", "127.0.0.1:7421"), "address of `agentbus dev`")
	token := fs.String("token", os.Getenv("AGENTBUS_TOKEN"), "bearer token, if the server wants one")
	ca := fs.String("tls-ca", "", "PEM CA certificate to trust (enables TLS)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	prompt := strings.Join(fs.Args(), " ")
	if strings.TrimSpace(prompt) == "" {
		return errors.New("usage: client-embedded [-addr host:port] <prompt>")
	}

	var opts []client.Option
	if *token != "" {
		opts = append(opts, client.WithToken(*token))
	}
	if *ca != "" {
		opts = append(opts, client.WithTLSCAFile(*ca))
	}
	c, err := client.Dial(ctx, *addr, opts...)
	if err != nil {
		return err
	}
	defer c.Close()

	res, err := c.Run(ctx, prompt, client.OnEvent(func(ev event.Event) { show(out, ev) }))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "answer: %s\n(session %s, %d steps, %d+%d tokens)\n",
		res.Answer, res.SessionID, res.Steps, res.Usage.InputTokens, res.Usage.OutputTokens)
	return nil
}

// show prints one progress line per tool call and result.
func show(out io.Writer, ev event.Event) {
	switch ev.Type() {
	case events.TypeToolInvocationRequested:
		if d, err := events.Decode[events.ToolInvocationRequested](ev); err == nil {
			fmt.Fprintf(out, "step %d: %s %s\n", d.Step, d.Tool, d.Input)
		}
	case events.TypeToolInvocationCompleted:
		if d, err := events.Decode[events.ToolInvocationCompleted](ev); err == nil {
			fmt.Fprintf(out, "step %d: %s → %s\n", d.Step, d.Tool, d.Output)
		}
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
