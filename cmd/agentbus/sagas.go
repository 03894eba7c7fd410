package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/agentbus/agentbus/saga"
	"github.com/agentbus/agentbus/services/toolgateway"
)

// exampleQueueURL stands in for the saga queue in `sagas asl` output when
// no queue is configured.
const exampleQueueURL = "https://sqs.us-east-1.amazonaws.com/123456789012/agentbus-saga"

// sagaFlags select saga definition files: --saga (repeatable) and
// --sagas-dir.
type sagaFlags struct {
	files []string
	dir   string
}

func (f *sagaFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.files, "saga", nil, "saga definition file (JSON, see docs/sagas.md) offered to the model as one tool; repeatable")
	fs.StringVar(&f.dir, "sagas-dir", "", "folder whose *.json files are saga definitions (like --saga for each)")
}

func (f *sagaFlags) given() bool { return len(f.files) > 0 || f.dir != "" }

// load parses and validates the selected definitions; every error names
// its file. Two sagas of one name are an error.
func (f *sagaFlags) load() ([]saga.Definition, error) {
	var (
		defs []saga.Definition
		errs []error
		from = map[string]string{}
	)
	add := func(file string, d saga.Definition) {
		if prev, ok := from[d.Name]; ok {
			errs = append(errs, fmt.Errorf("%s: saga %q is also defined in %s", file, d.Name, prev))
			return
		}
		from[d.Name] = file
		defs = append(defs, d)
	}
	if f.dir != "" {
		st, err := os.Stat(f.dir)
		if err != nil || !st.IsDir() {
			return nil, fmt.Errorf("--sagas-dir %s: not a folder", f.dir)
		}
		ds, err := saga.Load(os.DirFS(f.dir))
		if err != nil {
			return nil, fmt.Errorf("--sagas-dir %s: %w", f.dir, err)
		}
		for _, d := range ds {
			add(f.dir+"/"+d.Name, d)
		}
	}
	for _, file := range f.files {
		d, err := loadSagaFile(file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		add(file, d)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return defs, nil
}

func loadSagaFile(file string) (saga.Definition, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return saga.Definition{}, err
	}
	d, err := saga.Parse(b)
	if err != nil {
		return saga.Definition{}, fmt.Errorf("%s: %w", file, err)
	}
	return d, nil
}

// newSagasCmd is `agentbus sagas`: inspect saga definitions.
func newSagasCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sagas",
		Short: "Validate saga definitions, list them and print their Step Functions state machine (ASL)",
		Long: `A saga is an ordered set of side-effecting tool calls where a failure at step k
undoes steps k-1 … 1 (docs/sagas.md). run and dev offer each --saga to the model
as one tool and run it with the embedded runner; serve toolgateway runs it on
Step Functions.`,
	}
	cmd.AddCommand(newSagasListCmd(), newSagasASLCmd())
	return cmd
}

func newSagasListCmd() *cobra.Command {
	var f sagaFlags
	cmd := &cobra.Command{
		Use:   "list [file...]",
		Short: "Validate saga definitions and list them: name, steps, the tool's timeout",
		RunE: func(cmd *cobra.Command, args []string) error {
			f.files = append(f.files, args...)
			if !f.given() {
				return usageErr(errors.New("no sagas: give definition files, --saga or --sagas-dir"))
			}
			defs, err := f.load()
			if err != nil {
				return usageErr(err)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SAGA\tSTEPS (compensation)\tTOOL TIMEOUT")
			for _, d := range defs {
				steps := make([]string, len(d.Steps))
				for i, s := range d.Steps {
					steps[i] = s.Action.Tool
					if s.Compensation != nil {
						steps[i] += " (" + s.Compensation.Tool + ")"
					}
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", d.Name, strings.Join(steps, " → "), toolgateway.SagaTimeout(d))
			}
			return w.Flush()
		},
	}
	f.register(cmd.Flags())
	return cmd
}

func newSagasASLCmd() *cobra.Command {
	var queueURL string
	cmd := &cobra.Command{
		Use:   "asl <file>",
		Short: "Validate a saga definition and print its Amazon States Language state machine",
		Long: `asl prints the state machine Step Functions runs for the saga: each step a Task
sending its tool call to the saga queue (--queue-url, else $AGENTBUS_SAGA_QUEUE_URL,
else an example URL) and waiting for the tool-gateway's answer, with Retry and the
compensation chain. terraform/modules/saga creates the state machine from it.`,
		Args: exactArgs(1, "a saga definition file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := loadSagaFile(args[0])
			if err != nil {
				return usageErr(err)
			}
			u := queueURL
			if u == "" {
				u = os.Getenv("AGENTBUS_SAGA_QUEUE_URL")
			}
			if u == "" {
				u = exampleQueueURL
				fmt.Fprintf(cmd.ErrOrStderr(), "no --queue-url: using the example %s\n", u)
			}
			b, err := saga.ASL(d, u)
			if err != nil {
				return usageErr(err)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return err
		},
	}
	cmd.Flags().StringVar(&queueURL, "queue-url", "", "URL of the tool-gateway's saga queue ($AGENTBUS_SAGA_QUEUE_URL)")
	return cmd
}
