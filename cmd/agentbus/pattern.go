package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/agentbus/agentbus/platform/pattern"
)

// newPatternCmd is `agentbus pattern`, the operator tool for EventBridge
// event patterns.
func newPatternCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pattern",
		Short: "Work with EventBridge event patterns",
	}
	cmd.AddCommand(newPatternTestCmd())
	return cmd
}

func newPatternTestCmd() *cobra.Command {
	var patternArg, eventArg string
	cmd := &cobra.Command{
		Use:   "test --pattern <json|@file> --event <json|@file>",
		Short: "Print true or false: does the event match the pattern (exit 2 if either is invalid)",
		Long: "Tests an EventBridge event pattern against an event the way TestEventPattern does, " +
			"except that any JSON object is accepted as the event (the envelope fields are not required). " +
			"Each argument is inline JSON, @path to read a file, or @- for standard input.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if patternArg == "" || eventArg == "" {
				return &exitError{code: 2, err: errors.New("both --pattern and --event are required")}
			}
			pat, err := readArg(patternArg, cmd.InOrStdin())
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--pattern: %w", err)}
			}
			ev, err := readArg(eventArg, cmd.InOrStdin())
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--event: %w", err)}
			}
			p, err := pattern.Compile(pat)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			ok, err := p.Match(ev)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			fmt.Fprintln(cmd.OutOrStdout(), ok)
			return nil
		},
	}
	cmd.Flags().StringVar(&patternArg, "pattern", "", "event pattern: JSON, @file or @-")
	cmd.Flags().StringVar(&eventArg, "event", "", "event: JSON object, @file or @-")
	return cmd
}

// readArg returns inline JSON, or the content of @file (@- is stdin).
func readArg(arg string, stdin io.Reader) ([]byte, error) {
	name, ok := strings.CutPrefix(arg, "@")
	if !ok {
		return []byte(arg), nil
	}
	if name == "-" {
		return io.ReadAll(stdin)
	}
	return os.ReadFile(name)
}
