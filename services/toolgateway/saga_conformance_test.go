package toolgateway_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	psaga "github.com/agentbus/agentbus/platform/saga"
	"github.com/agentbus/agentbus/platform/saga/local"
	"github.com/agentbus/agentbus/platform/saga/sagatest"
	"github.com/agentbus/agentbus/platform/state/sqlite"
	"github.com/agentbus/agentbus/saga"
	"github.com/agentbus/agentbus/services/toolgateway"
)

// TestLocalRunnerWithLedgerConformance runs the saga suite against the
// embedded runner with the tool-gateway's ledger Invoker over the SQLite
// state store: what `agentbus run --saga` wires. A crash restarts the
// runner on the same database file; the state store (the ledger) lives on,
// as it does across a process restart.
func TestLocalRunnerWithLedgerConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every saga case, some waiting out leases and retry intervals")
	}
	sagatest.Run(t, func(t *testing.T, tb *sagatest.Toolbox, defs []saga.Definition) sagatest.Harness {
		ctx := context.Background()
		dir := t.TempDir()
		st, err := sqlite.Open(ctx, filepath.Join(dir, "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		inv, err := toolgateway.NewInvoker(toolgateway.Config{Store: st, Registry: tb.Registry(), Hook: tb.Hook,
			LeaseMargin: sagatest.DefaultLeaseMargin})
		if err != nil {
			t.Fatal(err)
		}
		open := func() *local.Runner {
			r, err := local.New(ctx, local.Config{Path: filepath.Join(dir, "sagas.db"), Definitions: sagatest.NewLookup(defs...), Invoker: inv})
			if err != nil {
				t.Error(err)
			}
			return r
		}
		var mu sync.Mutex
		r := open()
		t.Cleanup(func() {
			mu.Lock()
			defer mu.Unlock()
			if r != nil {
				r.Close()
			}
			st.Close()
		})
		return sagatest.Harness{Runner: r, Invoker: inv, Restart: func() psaga.Runner {
			mu.Lock()
			defer mu.Unlock()
			r.Close()
			r = open()
			return r
		}}
	})
}
