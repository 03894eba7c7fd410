package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/agentbus/agentbus/events/rules"
)

// Plug-in rules added to a data folder live in <data-dir>/rules/<name>.json
// (the catalog's format); `agentbus run` and `agentbus dev` load them at
// start as extra rules and declare their queues on the local bus.

func ruleDir(dataDir string) string { return filepath.Join(dataDir, "rules") }

func hasRuleFiles(dir string) bool {
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	return len(files) > 0
}

// dataDirRules returns the plug-in rules of dataDir (none when it has no
// rules folder), checked against the catalog: names unique, patterns
// compiled, queue settings without conflict.
func dataDirRules(dataDir string) ([]rules.Rule, error) {
	dir := ruleDir(dataDir)
	if dataDir == "" || !hasRuleFiles(dir) {
		return nil, nil
	}
	if _, err := loadRules([]string{dir}); err != nil {
		return nil, fmt.Errorf("plug-in rules in %s: %w", dir, err)
	}
	return rules.Load(os.DirFS(dir))
}

func newRulesAddCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "add <rule.json> [--data-dir D]",
		Short: "Add (or replace) a plug-in rule in the data folder: run and dev route by it from their next start",
		Long: "Validates the rule file (the catalog's format: name, description, eventPattern, target), compiles its " +
			"pattern and checks it against the catalog and the rules already added (a catalog rule's name is taken; " +
			"one queue's settings must agree), then writes it to <data-dir>/rules/<name>.json. A rule of the same name " +
			"added earlier is replaced. `agentbus run` and `agentbus dev` load these rules at start and declare their " +
			"queues, which the plug-in consumes (docs/plugins.md). Invalid input exits with status 2.",
		Args: exactArgs(1, "a rule file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return usageErr(fmt.Errorf("rule file: %w", err))
			}
			r, err := rules.Parse(b)
			if err != nil {
				return usageErr(fmt.Errorf("%s: %w", args[0], err))
			}
			catalog, err := rules.Catalog()
			if err != nil {
				return err
			}
			if slices.ContainsFunc(catalog, func(c rules.Rule) bool { return c.Name == r.Name }) {
				return usageErr(fmt.Errorf("%s: rule name %q belongs to the catalog; give the plug-in's rule its own name", args[0], r.Name))
			}
			existing, err := dataDirRules(dataDir)
			if err != nil {
				return usageErr(err)
			}
			existing = slices.DeleteFunc(existing, func(o rules.Rule) bool { return o.Name == r.Name })
			// Check the rule with everything it will be loaded with.
			tmp, err := os.MkdirTemp("", "agentbus-rule-*")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			for _, o := range append(existing, r) {
				if err := writeRuleFile(tmp, o); err != nil {
					return err
				}
			}
			if _, err := loadRules([]string{tmp}); err != nil {
				return usageErr(fmt.Errorf("%s: %w", args[0], err))
			}
			if err := os.MkdirAll(ruleDir(dataDir), 0o755); err != nil {
				return fmt.Errorf("data dir: %w", err)
			}
			if err := writeRuleFile(ruleDir(dataDir), r); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rule %s → queue %s added to %s (restart agentbus dev/run to route by it)\n",
				r.Name, r.Target.Queue, ruleDir(dataDir))
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "data folder of agentbus run/dev ($AGENTBUS_DATA_DIR)")
	return cmd
}

func newRulesRemoveCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "remove <name> [--data-dir D]",
		Short: "Remove a plug-in rule from the data folder",
		Long:  "Deletes <data-dir>/rules/<name>.json. An unknown name (or a catalog rule's) exits with status 2.",
		Args:  exactArgs(1, "a rule name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := rules.Validate(rules.Rule{Name: name, Description: "x", EventPattern: []byte(`{"source":["x"]}`),
				Target: rules.Target{Queue: "x", MaxReceiveCount: 1, VisibilityTimeoutSeconds: 1}}); err != nil {
				return usageErr(fmt.Errorf("rule name %q: %w", name, err))
			}
			path := filepath.Join(ruleDir(dataDir), name+".json")
			if err := os.Remove(path); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return usageErr(fmt.Errorf("no plug-in rule %q in %s (see agentbus rules list --data-dir %s)", name, ruleDir(dataDir), dataDir))
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rule %s removed from %s (restart agentbus dev/run)\n", name, ruleDir(dataDir))
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "data folder of agentbus run/dev ($AGENTBUS_DATA_DIR)")
	return cmd
}

// writeRule writes r as <dir>/<name>.json, atomically (temp file + rename).
func writeRuleFile(dir string, r rules.Rule) error {
	b, err := marshalRule(r)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".rule-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, r.Name+".json"))
}

func marshalRule(r rules.Rule) ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
