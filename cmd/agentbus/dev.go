package main

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/services/planner"
)

func newDevCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Keep the embedded runtime up and run every prompt read from standard input",
		Long: `dev starts the four services in this process, like run, and keeps them up:
each line read from standard input is a prompt, run to its end before the next
is read. Sessions stay in the data folder (see agentbus sessions).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var spec *events.AgentSpec
			if f.agentFile != "" {
				s, err := planner.LoadAgentFile(f.agentFile)
				if err != nil {
					return usageErr(err)
				}
				spec = &s
			}
			m, modelName, err := chooseModel(ctx, f.scriptFile)
			if err != nil {
				return err
			}
			log := slog.New(slog.DiscardHandler)
			if f.verbose {
				log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			rt, err := startEmbedded(ctx, embeddedConfig{DataDir: f.dataDir, Model: m, Logger: log})
			if err != nil {
				return err
			}
			defer rt.Close()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "agentbus dev · model %s · data %s · one prompt per line, end with Ctrl-D\n", modelName, f.dataDir)
			in := bufio.NewScanner(cmd.InOrStdin())
			in.Buffer(make([]byte, 64*1024), 1<<20)
			for in.Scan() {
				prompt := strings.TrimSpace(in.Text())
				if prompt == "" {
					continue
				}
				err := runOnce(ctx, rt, out, prompt, spec, f.jsonOut)
				var ee *exitError
				switch {
				case err == nil:
				case errors.As(err, &ee) && ee.code == 130:
					return err
				default:
					fmt.Fprintln(out, "error:", err)
				}
				if ctx.Err() != nil {
					return nil
				}
			}
			return in.Err()
		},
	}
	cmd.Flags().StringVar(&f.agentFile, "agent", "", "agent definition file (JSON)")
	cmd.Flags().StringVar(&f.scriptFile, "script", "", "script file for the offline scripted model")
	cmd.Flags().StringVar(&f.dataDir, "data-dir", defaultDataDir(), "folder for the embedded bus, state and blobs ($AGENTBUS_DATA_DIR)")
	cmd.Flags().BoolVar(&f.jsonOut, "json", false, "print every event as a JSON line")
	cmd.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "log the services' activity to stderr")
	return cmd
}
