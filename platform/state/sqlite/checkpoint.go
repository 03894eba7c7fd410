package sqlite

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Checkpoints. A WAL checkpoint copies the log back into the database file
// and fsyncs it; left to SQLite (wal_autocheckpoint), it runs inside the
// COMMIT that crosses the threshold, so one unlucky writer — and every
// writer queued behind it — waits for the fsync. The file store turns
// automatic checkpoints off and runs a PASSIVE checkpoint (it never blocks
// writers or readers) from its own goroutine on a reader connection after
// every checkpointEvery write transactions.
const checkpointEvery = 500

type checkpointer struct {
	writes atomic.Int64
	kick   chan struct{}
	stop   chan struct{}
	once   sync.Once
	done   sync.WaitGroup
	runs   atomic.Int64 // checkpoints run (tests)
}

// startCheckpointer starts the goroutine (file stores only).
func (s *Store) startCheckpointer() {
	s.ck = &checkpointer{kick: make(chan struct{}, 1), stop: make(chan struct{})}
	s.ck.done.Add(1)
	go func() {
		defer s.ck.done.Done()
		for {
			select {
			case <-s.ck.stop:
				return
			case <-s.ck.kick:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			// A failure (e.g. the file is busy in another process) is
			// retried after the next checkpointEvery writes.
			_, _ = s.r.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
			cancel()
			s.ck.runs.Add(1)
		}
	}()
}

// noteWrites counts committed write transactions and kicks the
// checkpointer every checkpointEvery of them.
func (s *Store) noteWrites(n int) {
	if s.ck == nil || n == 0 {
		return
	}
	if s.ck.writes.Add(int64(n)) >= checkpointEvery {
		s.ck.writes.Store(0)
		select {
		case s.ck.kick <- struct{}{}:
		default:
		}
	}
}

// stopCheckpointer ends the goroutine; closing the last connection
// checkpoints the rest.
func (s *Store) stopCheckpointer() {
	if s.ck == nil {
		return
	}
	s.ck.once.Do(func() { close(s.ck.stop) })
	s.ck.done.Wait()
}
