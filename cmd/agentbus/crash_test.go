package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/model/scripted"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/tools"
)

// The crash test runs the embedded runtime in a child process (this test
// binary, re-executed), kills it with SIGKILL at a named point of the loop,
// restarts it on the same data folder and checks that the run ends — with
// an answer, or with an explicit outcome_unknown — and that a non-idempotent
// side effect never ran twice for one call.

const (
	envCrashChild = "AGENTBUS_CRASH_CHILD"
	envCrashDir   = "AGENTBUS_CRASH_DIR"
	envCrashPoint = "AGENTBUS_CRASH_POINT" // "name" or "name#n" (the n-th time it is reached)
	envCrashSID   = "AGENTBUS_CRASH_SESSION"
)

// crashScript charges twice over two steps (one of them with two parallel
// calls), so every crash point is reached more than once.
const crashScript = `{"entries": [{"name": "charge", "match": {"contains": "charge"}, "turns": [
  {"calls": [{"id": "a", "name": "charge", "input": {"amount": 1}}, {"id": "b", "name": "charge", "input": {"amount": 2}}]},
  {"calls": [{"id": "c", "name": "charge", "input": {"amount": 3}}]},
  {"answer": "a={{if ok \"a\"}}ok{{else}}{{field \"a\" \"reason\"}}{{end}} b={{if ok \"b\"}}ok{{else}}{{field \"b\" \"reason\"}}{{end}} c={{if ok \"c\"}}ok{{else}}{{field \"c\" \"reason\"}}{{end}}"}
]}]}`

// chargeTool is a side effect that is not idempotent: each run appends the
// call's idempotency key to a file.
type chargeTool struct{ path string }

func (c chargeTool) Spec() tools.Spec {
	return tools.Spec{Name: "charge", Description: "charges an amount (test side effect)",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"amount":{"type":"number"}},"required":["amount"]}`),
		Timeout:     2 * time.Second}
}

func (c chargeTool) Run(_ context.Context, call tools.Call) (json.RawMessage, error) {
	f, err := os.OpenFile(c.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, call.IdempotencyKey); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	return json.RawMessage(`{"charged":true}`), nil
}

// killAt returns hooks that SIGKILL this process the n-th time the named
// point is reached; point is "name" or "name#n" ("" never kills).
func killAt(point string) crashHooks {
	nth := 1
	if name, n, ok := strings.Cut(point, "#"); ok {
		point = name
		nth, _ = strconv.Atoi(n)
	}
	var mu sync.Mutex
	seen := 0
	return crashHooks{Point: func(name string) {
		if point == "" || name != point {
			return
		}
		mu.Lock()
		seen++
		hit := seen == nth
		mu.Unlock()
		if hit {
			fmt.Println("CRASH", name)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // never returns: the signal ends the process
		}
	}}
}

// TestCrashChild is the child process; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	if os.Getenv(envCrashChild) != "1" {
		t.Skip("child process of TestCrashRecovery (runs only when re-executed by it)")
	}
	dir := os.Getenv(envCrashDir)
	sid := os.Getenv(envCrashSID)
	hooks := killAt(os.Getenv(envCrashPoint))
	s, err := scripted.Parse([]byte(crashScript))
	if err != nil {
		t.Fatal(err)
	}
	reg := tools.NewRegistry()
	if err := reg.Register(chargeTool{path: filepath.Join(dir, "charges.log")}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt, err := startEmbedded(ctx, embeddedConfig{DataDir: filepath.Join(dir, "data"), Model: scripted.New(s),
		// The executor's own timeout stays out of the way (a restart on a
		// loaded machine can take seconds): every call is settled by the
		// tool-gateway, as ok or outcome_unknown.
		Tools: reg, Hooks: hooks, LeaseMargin: 500 * time.Millisecond, ExecutorGrace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if _, err := rt.Store.GetSession(ctx, sid); err != nil {
		// First start: submit the run (a restart finds it pending in the bus).
		if _, err := os.Stat(filepath.Join(dir, "submitted")); err != nil {
			req, err := events.NewPayload(events.SourceClient, sid, events.AgentRequested{Prompt: "please charge"})
			if err != nil {
				t.Fatal(err)
			}
			if err := rt.Publisher.Publish(ctx, req); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "submitted"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		sess, err := rt.Store.GetSession(ctx, sid)
		if err == nil && sess.Status != state.StatusRunning {
			hist, _ := readAllHistory(ctx, rt.Store, sid)
			rt.drain(ctx, 2*time.Second)
			fmt.Printf("STATUS %s\n", sess.Status)
			var r struct {
				Messages []json.RawMessage `json:"messages"`
			}
			_ = json.Unmarshal(sess.Data, &r)
			fmt.Printf("RUN %s\n", sess.Data)
			_ = hist
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("session %s did not end within 30s", sid)
}

// crashOutcome is what a child printed.
type crashOutcome struct {
	crashed string
	status  string
	run     string
}

func runCrashChild(t *testing.T, dir, sid, point string) crashOutcome {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashChild+"=1", envCrashDir+"="+dir, envCrashSID+"="+sid, envCrashPoint+"="+point)
	out, _ := cmd.CombinedOutput()
	var o crashOutcome
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "CRASH "):
			o.crashed = strings.TrimPrefix(line, "CRASH ")
		case strings.HasPrefix(line, "STATUS "):
			o.status = strings.TrimPrefix(line, "STATUS ")
		case strings.HasPrefix(line, "RUN "):
			o.run = strings.TrimPrefix(line, "RUN ")
		}
	}
	if o.crashed == "" && o.status == "" {
		t.Fatalf("child (point %q) neither crashed nor finished:\n%s", point, out)
	}
	return o
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test re-executes the runtime many times; skipped in -short")
	}
	t.Parallel()
	points := []string{"after_claim", "after_side_effect", "after_complete", "before_outbox_publish", "mid_fan_in",
		"after_claim#3", "after_side_effect#2", "before_outbox_publish#6", "mid_fan_in#2"}
	seed := time.Now().UnixNano()
	t.Logf("random crash points: seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	all := []string{"after_claim", "after_side_effect", "after_complete", "before_outbox_publish", "mid_fan_in"}
	for range 12 {
		// Every point is reached at least three times in a run (three calls).
		points = append(points, fmt.Sprintf("%s#%d", all[rng.IntN(len(all))], 1+rng.IntN(3)))
	}
	for i, point := range points {
		t.Run(fmt.Sprintf("%02d_%s", i, strings.ReplaceAll(point, "#", "_n")), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			sid := fmt.Sprintf("crash-%d-%d", seed, i)
			first := runCrashChild(t, dir, sid, point)
			if first.crashed == "" {
				t.Fatalf("the runtime never reached %s", point)
			}
			// Restart; the restarted runtime is not killed.
			o := runCrashChild(t, dir, sid, "")
			if o.status != string(state.StatusCompleted) {
				t.Fatalf("after crash at %s (crashed=%q) the run ended %q: %s", point, first.crashed, o.status, o.run)
			}
			// Never two executions of one call.
			b, _ := os.ReadFile(filepath.Join(dir, "charges.log"))
			count := map[string]int{}
			for _, k := range strings.Fields(string(b)) {
				count[k]++
				if count[k] > 1 {
					t.Fatalf("call %s charged %d times after a crash at %s", k, count[k], point)
				}
			}
			// Every call either ran (charged once, ok) or is reported as
			// outcome_unknown; nothing else.
			for _, call := range []string{"a", "b", "c"} {
				key := ""
				for k := range count {
					if strings.HasSuffix(k, "/"+call) {
						key = k
					}
				}
				okInAnswer := strings.Contains(o.run, call+"=ok")
				unknown := strings.Contains(o.run, call+"=outcome_unknown")
				switch {
				case key != "" && okInAnswer:
				case unknown:
					t.Logf("call %s reported outcome_unknown after a crash at %s", call, point)
				case key == "" && okInAnswer:
					t.Fatalf("call %s reported ok but never ran (crash at %s)", call, point)
				default:
					t.Fatalf("call %s neither ok nor outcome_unknown after crash at %s: %s", call, point, o.run)
				}
			}
		})
	}
}
