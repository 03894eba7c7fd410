package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/agentbus/agentbus/events/rules"
	"github.com/agentbus/agentbus/platform/pattern"
)

// newRulesCmd is `agentbus rules`, the operator tool for the rule catalog.
func newRulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Inspect the rule catalog (event pattern → queue)",
	}
	cmd.AddCommand(newRulesListCmd(), newRulesAddCmd(), newRulesRemoveCmd())
	return cmd
}

func newRulesListCmd() *cobra.Command {
	var (
		dirs    []string
		dataDir string
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "list [--dir extra-rules-dir]... [--data-dir D] [--json]",
		Short: "Print the project's rules and any plug-in rules as a table (or JSON)",
		Long: "Prints the embedded rule catalog plus the rules in each --dir (one <name>.json file per rule, " +
			"the catalog's format). Every rule is validated and its pattern compiled; a bad rule, a name " +
			"defined twice or conflicting settings for one queue exit with status 2.",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return &exitError{code: 2, err: fmt.Errorf("unexpected argument %q (extra rules come with --dir)", args[0])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("data-dir") {
				if d := filepath.Join(dataDir, "rules"); hasRuleFiles(d) {
					dirs = append(dirs, d)
				}
			}
			rs, err := loadRules(dirs)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rs)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tQUEUE\tPATTERN")
			for _, r := range rs {
				var compact bytes.Buffer
				if err := json.Compact(&compact, r.EventPattern); err != nil {
					return err // Load validated the pattern as JSON; unreachable.
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, r.Target.Queue, compact.String())
			}
			return tw.Flush()
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: 2, err: err} })
	cmd.Flags().StringArrayVar(&dirs, "dir", nil, "directory of extra rule files (repeatable)")
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "also list the plug-in rules added to this data folder (`rules add`)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the rules as a JSON array")
	return cmd
}

// loadRules returns the catalog merged with the rules of each directory,
// every pattern compiled and the queue settings checked for conflicts.
func loadRules(dirs []string) ([]rules.Rule, error) {
	rs, err := rules.Catalog()
	if err != nil {
		return nil, err
	}
	for _, dir := range dirs {
		fi, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("--dir: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("--dir %s: not a directory", dir)
		}
		fsys := os.DirFS(dir)
		if files, _ := fs.Glob(fsys, "*.json"); len(files) == 0 {
			return nil, fmt.Errorf("--dir %s: no rule files (*.json)", dir)
		}
		extra, err := rules.Load(fsys)
		if err != nil {
			return nil, fmt.Errorf("--dir %s: %w", dir, err)
		}
		if rs, err = rules.Merge(rs, extra); err != nil {
			return nil, fmt.Errorf("--dir %s: %w", dir, err)
		}
	}
	var errs []error
	for _, r := range rs {
		if _, err := pattern.Compile(r.EventPattern); err != nil {
			errs = append(errs, fmt.Errorf("rule %q: %w", r.Name, err))
		}
	}
	if _, err := rules.Queues(rs); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rs, nil
}
