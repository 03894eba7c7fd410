package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentbus/agentbus/tools"
)

// newToolsCmd is `agentbus tools`, the operator view of the tool registry.
func newToolsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tools",
		Short: "Inspect the tool registry (built-in tools and plug-in specs)",
	}
	cmd.AddCommand(newToolsListCmd())
	return cmd
}

// toolInfo is one element of `tools list --json`: the spec in its wire form
// (timeoutMs is the effective timeout) plus where the tool runs.
type toolInfo struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	InputSchema json.RawMessage `json:"inputSchema"`
	Idempotent  bool            `json:"idempotent"`
	TimeoutMs   int64           `json:"timeoutMs"`
	// Builtin is true for tools served by this binary's tool-gateway;
	// false for plug-in specs (served by the plug-in's own process).
	Builtin bool `json:"builtin"`
}

func newToolsListCmd() *cobra.Command {
	var (
		dirs   []string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list [--dir plugin-specs-dir]... [--json]",
		Short: "Print the registered tools: name, idempotent, timeout, description (or the full specs as JSON)",
		Long: "Prints the built-in tools and the plug-in tool specs found in each --dir (*.json files, one spec " +
			"or an array of specs each: name, description, inputSchema, idempotent, timeoutMs). http_get's " +
			"description shows the allow-list from $AGENTBUS_HTTP_ALLOW_HOSTS, as `agentbus run` uses it. " +
			"A bad spec, a plug-in spec that reuses a built-in name or a name defined twice exit with status 2.",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return &exitError{code: 2, err: fmt.Errorf("unexpected argument %q (plug-in specs come with --dir)", args[0])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg := tools.NewRegistry()
			// No store: memory_search is listed, never run, here.
			if err := registerBuiltins(reg, nil); err != nil {
				return &exitError{code: 2, err: err}
			}
			for _, dir := range dirs {
				if err := registerSpecDir(reg, dir); err != nil {
					return &exitError{code: 2, err: err}
				}
			}
			var infos []toolInfo
			for _, s := range reg.All() {
				e, err := reg.Lookup(s.Name)
				if err != nil {
					return err // listed a moment ago; unreachable
				}
				infos = append(infos, toolInfo{Name: s.Name, Description: s.Description, InputSchema: s.InputSchema,
					Idempotent: s.Idempotent, TimeoutMs: s.EffectiveTimeout().Milliseconds(), Builtin: e.Local()})
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if infos == nil {
					infos = []toolInfo{}
				}
				return enc.Encode(infos)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tIDEMPOTENT\tTIMEOUT\tSERVED BY\tDESCRIPTION")
			for _, ti := range infos {
				by := "plug-in"
				if ti.Builtin {
					by = "built-in"
				}
				fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%s\n", ti.Name, ti.Idempotent, time.Duration(ti.TimeoutMs)*time.Millisecond, by, firstSentence(ti.Description))
			}
			return tw.Flush()
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: 2, err: err} })
	cmd.Flags().StringArrayVar(&dirs, "dir", nil, "directory of plug-in tool spec files (repeatable)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the full specs (with input schemas) as a JSON array")
	return cmd
}

// registerSpecDir loads the plug-in specs of dir into reg.
func registerSpecDir(reg *tools.Registry, dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("--dir %s: not a directory", dir)
	}
	fsys := os.DirFS(dir)
	if files, _ := fs.Glob(fsys, "*.json"); len(files) == 0 {
		return fmt.Errorf("--dir %s: no tool spec files (*.json)", dir)
	}
	specs, err := tools.LoadSpecs(fsys)
	if err != nil {
		return fmt.Errorf("--dir %s: %w", dir, err)
	}
	if err := reg.RegisterSpecs(specs); err != nil {
		return fmt.Errorf("--dir %s: %w", dir, err)
	}
	return nil
}

// firstSentence shortens a description for the table; --json has it whole.
func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}
