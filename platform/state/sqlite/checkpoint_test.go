package sqlite

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/state"
)

// TestCheckpointOffCommitPath: commits never checkpoint (the writer's
// wal_autocheckpoint is 0), and the store's own checkpointer copies the WAL
// into the database file after enough writes.
func TestCheckpointOffCommitPath(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var auto int
	if err := s.wc.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&auto); err != nil || auto != 0 {
		t.Fatalf("writer wal_autocheckpoint = %d, %v; want 0", auto, err)
	}
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	data := bytes.Repeat([]byte("x"), 1000)
	for i := range checkpointEvery - 1 {
		if _, err := s.CreateSession(ctx, state.Session{ID: fmt.Sprintf("s%d", i), Status: state.StatusRunning, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	if runs := s.ck.runs.Load(); runs != 0 {
		t.Fatalf("%d checkpoints before %d writes", runs, checkpointEvery)
	}
	if got := size(); got != before {
		t.Fatalf("database file grew from %d to %d bytes without a checkpoint", before, got)
	}
	if _, err := s.CreateSession(ctx, state.Session{ID: "last", Status: state.StatusRunning, Data: data}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.ck.runs.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint after enough writes")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got, want := size(), int64(checkpointEvery*1000); got < want {
		t.Fatalf("database file is %d bytes after the checkpoint, want at least %d", got, want)
	}
}
