package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	sqssdk "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/spf13/cobra"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/bus/local"
	"github.com/agentbus/agentbus/platform/bus/sqs"
)

// dlqFlags choose the bus whose DLQs the dlq commands work on.
type dlqFlags struct {
	useAWS  bool
	dataDir string
	names   awsNames
}

// dlqAll stands for "every dead letter" (--max 0) in calls that take a count.
const dlqAll = 1 << 30

// newDlqCmd is `agentbus dlq`: inspect and redrive dead-letter queues, on the
// embedded bus (default) or on SQS (--aws, or AGENTBUS_MODE=aws).
func newDlqCmd() *cobra.Command {
	f := &dlqFlags{}
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect and redrive a queue's dead letters (embedded bus, or SQS with --aws)",
		Long: "Works on the embedded bus in --data-dir (default $AGENTBUS_DATA_DIR or .agentbus; the bus file " +
			"is locked while `agentbus run`/`dev` uses it), or, with --aws or AGENTBUS_MODE=aws, on the SQS " +
			"DLQ <prefix>-<queue>-dlq of queue <prefix>-<queue>, through the standard AWS configuration chain " +
			"(AWS_ENDPOINT_URL points it at the local stand-in). <queue> is the catalog's queue name " +
			"(planner, executor, toolgateway, memory, ...).",
	}
	cmd.PersistentFlags().BoolVar(&f.useAWS, "aws", os.Getenv("AGENTBUS_MODE") == "aws", "use the SQS queues instead of the embedded bus (default true when AGENTBUS_MODE=aws)")
	cmd.PersistentFlags().StringVar(&f.dataDir, "data-dir", defaultDataDir(), "the embedded runtime's data folder ($AGENTBUS_DATA_DIR)")
	cmd.PersistentFlags().StringVar(&f.names.endpoint, "endpoint", "", "with --aws: AWS endpoint URL (default: $AWS_ENDPOINT_URL, else AWS itself)")
	cmd.PersistentFlags().StringVar(&f.names.prefix, "prefix", envOr("AGENTBUS_PREFIX", "agentbus"), "with --aws: prefix of the SQS queue names ($AGENTBUS_PREFIX)")
	cmd.AddCommand(newDlqListCmd(f), newDlqShowCmd(f), newDlqRedriveCmd(f))
	return cmd
}

func newDlqListCmd(f *dlqFlags) *cobra.Command {
	var (
		max    int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list <queue> [--max N] [--json]",
		Short: "List a queue's dead letters (without removing them)",
		Args:  exactArgs(1, "a queue name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if max < 0 {
				return usageErr(fmt.Errorf("--max must be >= 0, got %d", max))
			}
			return withDLQ(cmd, f, args[0], func(d bus.DLQ) error {
				dead, err := d.List(cmd.Context(), countOrAll(max))
				if err != nil {
					return err
				}
				if asJSON {
					return writeDeadJSON(cmd.OutOrStdout(), dead)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tDEAD AT\tRECEIVES\tTYPE\tREASON")
				for _, dl := range dead {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", dl.ID, formatTime(dl.DeadAt), dl.ReceiveCount, eventType(dl.Body), oneLine(dl.Reason, 100))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%d dead letter(s) in the DLQ of %s\n", len(dead), args[0])
				return nil
			})
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })
	cmd.Flags().IntVar(&max, "max", 0, "list at most N dead letters (0: all)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the dead letters as a JSON array")
	return cmd
}

func newDlqShowCmd(f *dlqFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show <queue> <id>",
		Short: "Print one dead letter: why it failed and the event it carries",
		Args:  exactArgs(2, "a queue name and a dead letter id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withDLQ(cmd, f, args[0], func(d bus.DLQ) error {
				dead, err := d.List(cmd.Context(), dlqAll)
				if err != nil {
					return err
				}
				i := slices.IndexFunc(dead, func(dl bus.DeadLetter) bool { return dl.ID == args[1] })
				if i < 0 {
					return usageErr(fmt.Errorf("no dead letter %q in the DLQ of %s (see `agentbus dlq list %s`)", args[1], args[0], args[0]))
				}
				return writeDeadLetter(cmd.OutOrStdout(), dead[i])
			})
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })
	return cmd
}

func newDlqRedriveCmd(f *dlqFlags) *cobra.Command {
	var max int
	cmd := &cobra.Command{
		Use:   "redrive <queue> [--max N]",
		Short: "Move dead letters back to their queue to be handled again",
		Args:  exactArgs(1, "a queue name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if max < 0 {
				return usageErr(fmt.Errorf("--max must be >= 0, got %d", max))
			}
			return withDLQ(cmd, f, args[0], func(d bus.DLQ) error {
				n, err := d.Redrive(cmd.Context(), countOrAll(max))
				fmt.Fprintf(cmd.OutOrStdout(), "moved %d dead letter(s) back to %s\n", n, args[0])
				return err
			})
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })
	cmd.Flags().IntVar(&max, "max", 0, "move at most N dead letters (0: all)")
	return cmd
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErr(fmt.Errorf("want %s, got %d argument(s)", what, len(args)))
		}
		return nil
	}
}

func countOrAll(max int) int {
	if max == 0 {
		return dlqAll
	}
	return max
}

// withDLQ opens the DLQ of queue on the chosen bus, runs fn and closes it.
func withDLQ(cmd *cobra.Command, f *dlqFlags, queue string, fn func(bus.DLQ) error) error {
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	if f.useAWS {
		return withSQSDLQ(cmd.Context(), f, queue, log, fn)
	}
	return withLocalDLQ(cmd.Context(), f, queue, log, fn)
}

func withLocalDLQ(ctx context.Context, f *dlqFlags, queue string, log *slog.Logger, fn func(bus.DLQ) error) error {
	path := filepath.Join(f.dataDir, "bus.db")
	if _, err := os.Stat(path); err != nil {
		return usageErr(fmt.Errorf("no embedded bus at %s (run `agentbus run` first, pass --data-dir, or use --aws)", path))
	}
	b, err := local.Open(ctx, local.Options{Path: path, Logger: log})
	if err != nil {
		if errors.Is(err, local.ErrInUse) {
			return fmt.Errorf("the embedded bus at %s is in use by a running agentbus; stop it first: %w", path, err)
		}
		return err
	}
	defer b.Close()
	known, err := b.Queues(ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(known, queue) {
		return usageErr(fmt.Errorf("no queue %q on the embedded bus at %s (queues: %s)", queue, path, strings.Join(known, ", ")))
	}
	return fn(b.DLQ(queue))
}

func withSQSDLQ(ctx context.Context, f *dlqFlags, queue string, log *slog.Logger, fn func(bus.DLQ) error) error {
	cfg, err := loadAWSConfig(ctx, f.names.endpoint)
	if err != nil {
		return err
	}
	client := sqssdk.NewFromConfig(cfg)
	name := sqs.QueueName(f.names.prefix, queue)
	info, err := sqs.Lookup(ctx, client, name)
	if err != nil {
		var missing *sqstypes.QueueDoesNotExist
		if errors.As(err, &missing) {
			return usageErr(fmt.Errorf("no SQS queue %s (queue %q under prefix %q; run `agentbus stack bootstrap`?)", name, queue, f.names.prefix))
		}
		return err
	}
	if info.DLQURL == "" {
		return fmt.Errorf("SQS queue %s has no redrive policy, hence no DLQ", name)
	}
	return fn(sqs.NewFromClient(client, info, sqs.WithLogger(log)))
}

// deadJSON is the JSON form of a dead letter: body inline when it is JSON.
type deadJSON struct {
	ID           string          `json:"id"`
	Reason       string          `json:"reason"`
	ReceiveCount int             `json:"receiveCount"`
	DeadAt       *time.Time      `json:"deadAt,omitempty"`
	Body         json.RawMessage `json:"body,omitempty"`
	RawBody      string          `json:"rawBody,omitempty"`
}

func toDeadJSON(dl bus.DeadLetter) deadJSON {
	d := deadJSON{ID: dl.ID, Reason: dl.Reason, ReceiveCount: dl.ReceiveCount}
	if !dl.DeadAt.IsZero() {
		t := dl.DeadAt.UTC()
		d.DeadAt = &t
	}
	if json.Valid(dl.Body) {
		d.Body = dl.Body
	} else {
		d.RawBody = string(dl.Body)
	}
	return d
}

func writeDeadJSON(w io.Writer, dead []bus.DeadLetter) error {
	out := make([]deadJSON, len(dead))
	for i, dl := range dead {
		out[i] = toDeadJSON(dl)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func writeDeadLetter(w io.Writer, dl bus.DeadLetter) error {
	fmt.Fprintf(w, "id:        %s\n", dl.ID)
	fmt.Fprintf(w, "reason:    %s\n", dl.Reason)
	fmt.Fprintf(w, "receives:  %d\n", dl.ReceiveCount)
	fmt.Fprintf(w, "dead at:   %s\n", formatTime(dl.DeadAt))
	if ev, err := events.FromDelivery(dl.Body); err == nil {
		fmt.Fprintf(w, "event:     %s from %s, id %s", ev.Type(), ev.Source(), ev.ID())
		if sid, ok := ev.Extensions()["sessionid"]; ok {
			fmt.Fprintf(w, ", session %v", sid)
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "event:     (undecodable: %v)\n", err)
	}
	fmt.Fprintln(w, "body:")
	var pretty bytes.Buffer
	if json.Indent(&pretty, dl.Body, "  ", "  ") == nil {
		fmt.Fprintf(w, "  %s\n", pretty.String())
		return nil
	}
	fmt.Fprintf(w, "  %q\n", dl.Body)
	return nil
}

func eventType(body []byte) string {
	if ev, err := events.FromDelivery(body); err == nil {
		return ev.Type()
	}
	return "(undecodable)"
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
