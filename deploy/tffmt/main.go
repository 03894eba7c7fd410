// Command tffmt rewrites .tf files with hclwrite.Format, the layout
// `terraform fmt` produces, for machines without a terraform binary:
//
//	go run ./deploy/tffmt terraform
//
// It does not rewrite the legacy forms terraform fmt also fixes
// (interpolation-only strings, quoted types); deploy's tests report those.
package main

import (
	"bytes"
	"fmt"
	"os"

	"github.com/hashicorp/hcl/v2/hclwrite"

	"github.com/agentbus/agentbus/deploy"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tffmt <folder>...")
		os.Exit(2)
	}
	for _, root := range os.Args[1:] {
		files, err := deploy.TFFiles(root)
		if err != nil {
			fmt.Fprintln(os.Stderr, "tffmt:", err)
			os.Exit(1)
		}
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				fmt.Fprintln(os.Stderr, "tffmt:", err)
				os.Exit(1)
			}
			if out := hclwrite.Format(src); !bytes.Equal(out, src) {
				if err := os.WriteFile(f, out, 0o644); err != nil {
					fmt.Fprintln(os.Stderr, "tffmt:", err)
					os.Exit(1)
				}
				fmt.Println(f)
			}
		}
	}
}
