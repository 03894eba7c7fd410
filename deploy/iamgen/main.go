// Command iamgen writes terraform/modules/service/iam_actions.auto.tf.json
// from the IAM actions the AWS adapters declare. Run it with
// `go generate ./deploy` (from anywhere in the repository).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/agentbus/agentbus/deploy"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "iamgen:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	b, err := deploy.IAMLocalsJSON()
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, deploy.IAMLocalsFile), b, 0o644)
}

// moduleRoot walks up from the working directory to the folder of go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
