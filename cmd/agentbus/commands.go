package main

import "github.com/spf13/cobra"

// subcommands lists every top-level command; add one line per command file.
func subcommands() []*cobra.Command {
	return []*cobra.Command{
		newPatternCmd(),
		newRulesCmd(),
		newToolsCmd(),
		newRunCmd(),
		newDevCmd(),
		newSessionsCmd(),
		newStackCmd(),
		newDlqCmd(),
		newServeCmd(),
		newSagasCmd(),
	}
}
