package toolgateway_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/state/sqlite"
	"github.com/agentbus/agentbus/services/toolgateway"
	"github.com/agentbus/agentbus/tools"
	"github.com/agentbus/agentbus/tools/toolstest"
)

// Environment of the child process of TestProcessKilledAtEachPoint.
const (
	envChild = "TOOLGATEWAY_CRASH_CHILD"
	envDB    = "TOOLGATEWAY_CRASH_DB"
	envFX    = "TOOLGATEWAY_CRASH_FX"
	envReq   = "TOOLGATEWAY_CRASH_REQ"
)

// crashExit is the child's exit code when the hook killed it.
const crashExit = 77

func processRegistry(fx string) *tools.Registry {
	reg := tools.NewRegistry()
	_ = reg.Register(&toolstest.SideEffect{ToolName: "charge_card", Path: fx})
	_ = reg.Register(&toolstest.SideEffect{ToolName: "put_object", Path: fx, Idempotent: true})
	return reg
}

// TestMain lets the test binary act as the gateway process that is killed.
func TestMain(m *testing.M) {
	if point := os.Getenv(envChild); point != "" {
		os.Exit(crashChild(point))
	}
	os.Exit(m.Run())
}

// crashChild handles the request in envReq and exits the process (no
// deferred clean-up, no recovery) when the hook reaches point.
func crashChild(point string) int {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, os.Getenv(envDB))
	if err != nil {
		return 1
	}
	g, err := toolgateway.New(toolgateway.Config{Store: st, Registry: processRegistry(os.Getenv(envFX)),
		Hook: func(p string) {
			if p == point {
				os.Exit(crashExit)
			}
		}})
	if err != nil {
		return 1
	}
	var ev event.Event
	if err := json.Unmarshal([]byte(os.Getenv(envReq)), &ev); err != nil {
		return 1
	}
	if err := g.Handle(ctx, ev); err != nil {
		return 1
	}
	return 0 // the point was never reached
}

// TestProcessKilledAtEachPoint kills a real gateway process (os.Exit) at
// each crash point, then restarts one on the same SQLite file after the
// lease has run out and redelivers the request.
func TestProcessKilledAtEachPoint(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Parallel()
	tests := []struct {
		point         string
		tool          string
		runs, effects int
		reason        events.ToolFailureReason
	}{
		{toolgateway.PointAfterClaim, "charge_card", 0, 0, events.ToolOutcomeUnknown},
		{toolgateway.PointAfterSideEffect, "charge_card", 1, 1, events.ToolOutcomeUnknown},
		{toolgateway.PointAfterComplete, "charge_card", 1, 1, ""},
		{toolgateway.PointAfterSideEffect, "put_object", 2, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.point+"/"+tt.tool, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			db, fx := filepath.Join(dir, "state.db"), filepath.Join(dir, "fx.log")
			req := request(t, "sess-k", 1, "c", tt.tool, `{}`)
			raw, err := json.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), envChild+"="+tt.point, envDB+"="+db, envFX+"="+fx, envReq+"="+string(raw))
			out, err := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != crashExit {
				t.Fatalf("child exited %d (%v), want %d (killed at %s): %s", code, err, crashExit, tt.point, out)
			}

			// Restart an hour later: any lease of the dead process is over.
			later := func() time.Time { return time.Now().Add(time.Hour) }
			st, err := sqlite.Open(context.Background(), db, sqlite.WithClock(later))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			g, err := toolgateway.New(toolgateway.Config{Store: st, Registry: processRegistry(fx), Now: later})
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if err := g.Handle(context.Background(), req); err != nil {
					t.Fatal(err)
				}
			}
			pending, err := st.PendingOutbox(context.Background(), 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(pending) != 1 {
				t.Fatalf("%d outbox events, want 1", len(pending))
			}
			var ev event.Event
			if err := json.Unmarshal(pending[0].Payload, &ev); err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.reason == "" && ev.Type() != events.TypeToolInvocationCompleted:
				t.Fatalf("result %s %s, want completed", ev.Type(), ev.Data())
			case tt.reason != "":
				f, err := events.Decode[events.ToolInvocationFailed](ev)
				if err != nil || f.Reason != tt.reason {
					t.Fatalf("result %s %s, want %s", ev.Type(), ev.Data(), tt.reason)
				}
			}
			key := tools.IdempotencyKey("sess-k", 1, "c")
			runs, _ := toolstest.Count(fx, toolstest.KindRun, key)
			effects, _ := toolstest.Count(fx, toolstest.KindEffect, key)
			if runs != tt.runs || effects != tt.effects {
				t.Fatalf("runs %d effects %d, want %d and %d", runs, effects, tt.runs, tt.effects)
			}
		})
	}
}
