package sqlite_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/platform/state/sqlite"
	"github.com/agentbus/agentbus/platform/state/statetest"
)

func TestConformanceMemory(t *testing.T) {
	t.Parallel()
	statetest.Run(t, func(t *testing.T) state.Store {
		s, err := sqlite.OpenMemory(t.Context())
		if err != nil {
			t.Fatalf("OpenMemory: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestConformanceFile(t *testing.T) {
	t.Parallel()
	statetest.Run(t, func(t *testing.T) state.Store {
		s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "state.db"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestDurable proves the file store keeps its data across a close and
// reopen, also at a path with characters that are special in a URI.
func TestDurable(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "odd ?#% name.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := s.CreateSession(t.Context(), state.Session{ID: "s", Status: state.StatusRunning}, state.OutboxEvent{ID: "e", Payload: []byte(`{}`)}); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s, err = sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if _, err := s.GetSession(t.Context(), "s"); err != nil {
		t.Fatalf("GetSession after reopen: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at %q: %v", path, err)
	}
	if evs, err := s.PendingOutbox(t.Context(), 10); err != nil || len(evs) != 1 {
		t.Fatalf("PendingOutbox after reopen = %v, %v", evs, err)
	}
}

func TestOpenInvalid(t *testing.T) {
	t.Parallel()
	if _, err := sqlite.Open(t.Context(), ""); !errors.Is(err, state.ErrInvalid) {
		t.Fatalf("Open(\"\") = %v, want ErrInvalid", err)
	}
	if _, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "missing-dir", "x", "state.db")); err == nil {
		t.Fatal("Open in a missing folder succeeded")
	}
}
