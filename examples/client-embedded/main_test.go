package main

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExampleAgainstDevServer builds agentbus, starts `agentbus dev` on a
// free loopback port in its own process, and runs the example against it.
func TestExampleAgainstDevServer(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and starts agentbus dev")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "agentbus")
	build := exec.Command("go", "build", "-o", bin, "github.com/agentbus/agentbus/cmd/agentbus")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build agentbus: %v\n%s", err, b)
	}
	dev := exec.Command(bin, "dev", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"))
	stdout, err := dev.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dev.Process.Kill(); _ = dev.Wait() })

	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "API listening on "); ok {
				addrCh <- a
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrCh:
	case <-time.After(30 * time.Second):
		t.Fatal("agentbus dev did not report its address")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"-addr", addr, "What is 6*7, and what time is it in Europe/Paris?"}, &out); err != nil {
		t.Fatalf("example: %v\n%s", err, out.String())
	}
	for _, want := range []string{"step 1: calculator", "answer: 6*7 = 42", "2 steps"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
	if err := run(ctx, []string{"-addr", addr, " "}, &out); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Fatalf("empty prompt: %v", err)
	}
}
