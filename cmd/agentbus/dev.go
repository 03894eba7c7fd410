package main

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentbus/agentbus/services/api"
)

func newDevCmd() *cobra.Command {
	var (
		f     runFlags
		srv   serveFlags
		stdin bool
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Keep the embedded runtime up and serve the gRPC API (127.0.0.1:7421)",
		Long: `dev starts the four services in this process, like run, keeps them up and
serves the agentbus gRPC API (see docs/api.md) on --listen, 127.0.0.1:7421 by
default, until interrupted. ` + "`agentbus run --addr`" + ` and ` + "`agentbus sessions --addr`" + ` and the
Go client (package client) talk to it.

On a loopback address the API needs no TLS or token (a --token is still
enforced when given). On any other address dev refuses to start unless it has
--tls-cert and --tls-key, and --token ($AGENTBUS_TOKEN) or --tls-client-ca.

Plug-ins: the rules added with ` + "`agentbus rules add`" + ` (<data-dir>/rules) are loaded at
start and their queues declared; a plug-in in another process registers its
tools and serves its queue through the API's PluginService (docs/plugins.md).

With --stdin, each line read from standard input is also a prompt, run to its
end before the next is read; dev stops at the end of the input. Sessions stay
in the data folder (see agentbus sessions).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if srv.listen == "" && !stdin {
				return usageErr(errors.New("nothing to serve: give --listen an address or use --stdin"))
			}
			spec, err := f.agentSpec()
			if err != nil {
				return err
			}
			m, modelName, err := chooseModel(ctx, f.scriptFile)
			if err != nil {
				return err
			}
			log := slog.New(slog.DiscardHandler)
			if f.verbose {
				log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			if srv.listen != "" {
				// Refuse an insecure listener before opening the data folder.
				if _, err := api.ServerOptions(srv.listen, srv.security(), nil); err != nil {
					return usageErr(err)
				}
			}
			cfg, err := f.embedded(m, log)
			if err != nil {
				return err
			}
			rt, err := startEmbedded(ctx, cfg)
			if err != nil {
				return err
			}
			defer rt.Close()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "agentbus dev · model %s · data %s\n", modelName, f.dataDir)
			for _, r := range cfg.ExtraRules {
				fmt.Fprintf(out, "plug-in rule %s → queue %s\n", r.Name, r.Target.Queue)
			}
			if srv.listen != "" {
				l, err := startAPI(rt, srv, log)
				if err != nil {
					return err
				}
				defer l.Stop(2 * time.Second)
				fmt.Fprintf(out, "API listening on %s\n", l.Addr())
			}
			if !stdin {
				<-ctx.Done()
				return nil
			}
			fmt.Fprintln(out, "one prompt per line, end with Ctrl-D")
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
	cmd.Flags().StringVar(&f.agentFile, "agent", "", "agent definition file (JSON) for --stdin prompts")
	cmd.Flags().StringVar(&f.scriptFile, "script", "", "script file for the offline scripted model")
	cmd.Flags().StringVar(&f.dataDir, "data-dir", defaultDataDir(), "folder for the embedded bus, state and blobs ($AGENTBUS_DATA_DIR)")
	cmd.Flags().BoolVar(&f.jsonOut, "json", false, "print every event of --stdin prompts as a JSON line")
	cmd.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "log the services' activity to stderr")
	cmd.Flags().BoolVar(&stdin, "stdin", false, "also run each line of standard input as a prompt; stop at its end")
	srv.register(cmd.Flags())
	f.sagas.register(cmd.Flags())
	return cmd
}
