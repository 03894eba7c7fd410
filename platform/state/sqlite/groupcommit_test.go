package sqlite

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/state"
)

// holdWriter starts a write transaction that blocks until the returned
// release is called, so that the callers started meanwhile queue up and
// form one group.
func holdWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	started := make(chan struct{})
	gate := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.tx(t.Context(), func(*wtx) error {
			close(started)
			<-gate
			return nil
		})
	}()
	<-started
	return func() {
		close(gate)
		if err := <-done; err != nil {
			t.Errorf("holding transaction: %v", err)
		}
	}
}

// waitQueued waits until n callers wait behind the leader.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.wq.mu.Lock()
		q := len(s.wq.waiting)
		s.wq.mu.Unlock()
		if q >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers queued, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func openStores(t *testing.T) map[string]*Store {
	t.Helper()
	mem, err := OpenMemory(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	file, err := Open(t.Context(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close(); file.Close() })
	return map[string]*Store{"memory": mem, "file": file}
}

// TestGroupCommitIsolatesFailures: queued writers commit in one group; the
// one that fails (a version conflict) is rolled back alone — its session
// change and outbox event are absent — and the others are all committed.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	t.Parallel()
	for name, s := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			if _, err := s.CreateSession(ctx, state.Session{ID: "base", Status: state.StatusRunning}); err != nil {
				t.Fatal(err)
			}
			s.wq.mu.Lock()
			groups0, txs0 := s.wq.groups, s.wq.txs
			s.wq.mu.Unlock()

			release := holdWriter(t, s)
			const writers = 8
			errs := make([]error, writers+1)
			var wg sync.WaitGroup
			for i := range writers {
				wg.Go(func() {
					_, errs[i] = s.CreateSession(ctx, state.Session{ID: fmt.Sprintf("s%d", i), Status: state.StatusRunning},
						state.OutboxEvent{ID: fmt.Sprintf("e%d", i), Payload: []byte(`{}`)})
				})
			}
			wg.Go(func() { // stale version: must fail alone
				_, errs[writers] = s.UpdateSession(ctx, state.Session{ID: "base", Version: 7, Status: state.StatusCompleted},
					state.OutboxEvent{ID: "bad", Payload: []byte(`{}`)})
			})
			waitQueued(t, s, writers+1)
			release()
			wg.Wait()

			for i := range writers {
				if errs[i] != nil {
					t.Errorf("writer %d: %v", i, errs[i])
				}
				if _, err := s.GetSession(ctx, fmt.Sprintf("s%d", i)); err != nil {
					t.Errorf("session s%d: %v", i, err)
				}
			}
			if !errors.Is(errs[writers], state.ErrConflict) {
				t.Errorf("stale update: %v, want ErrConflict", errs[writers])
			}
			if sess, _ := s.GetSession(ctx, "base"); sess.Status != state.StatusRunning || sess.Version != 1 {
				t.Errorf("base session changed by a failed update: %+v", sess)
			}
			out, err := s.PendingOutbox(ctx, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != writers {
				t.Errorf("%d outbox events, want %d", len(out), writers)
			}
			for _, e := range out {
				if e.ID == "bad" {
					t.Error("the failed update's outbox event was committed")
				}
			}
			s.wq.mu.Lock()
			groups, txs := s.wq.groups-groups0, s.wq.txs-txs0
			s.wq.mu.Unlock()
			// The holder's group, then the queued writers in one group.
			if txs != writers+2 || groups != 2 {
				t.Errorf("%d transactions in %d groups, want %d in 2", txs, groups, writers+2)
			}
		})
	}
}

// TestGroupCommitCancelWhileQueued: a caller whose context ends while it
// waits leaves the queue with the context's error and writes nothing; the
// others go on.
func TestGroupCommitCancelWhileQueued(t *testing.T) {
	t.Parallel()
	for name, s := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			release := holdWriter(t, s)
			cctx, cancel := context.WithCancel(ctx)
			cancelled := make(chan error, 1)
			go func() {
				_, err := s.CreateSession(cctx, state.Session{ID: "gone", Status: state.StatusRunning})
				cancelled <- err
			}()
			waitQueued(t, s, 1)
			other := make(chan error, 1)
			go func() {
				_, err := s.CreateSession(ctx, state.Session{ID: "kept", Status: state.StatusRunning})
				other <- err
			}()
			waitQueued(t, s, 2)
			cancel()
			if err := <-cancelled; !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled caller: %v", err)
			}
			release()
			if err := <-other; err != nil {
				t.Fatalf("other caller: %v", err)
			}
			if _, err := s.GetSession(ctx, "gone"); !errors.Is(err, state.ErrNotFound) {
				t.Errorf("cancelled session: %v, want ErrNotFound", err)
			}
			if _, err := s.GetSession(ctx, "kept"); err != nil {
				t.Errorf("kept session: %v", err)
			}
			// The queue still works afterwards.
			if _, err := s.CreateSession(ctx, state.Session{ID: "after", Status: state.StatusRunning}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestGroupCommitCancelStress: many writers, a random part of them
// cancelled at random moments (queued, chosen to lead, in a group): every
// caller returns, a cancelled one either committed or wrote nothing, and
// the store keeps working.
func TestGroupCommitCancelStress(t *testing.T) {
	t.Parallel()
	for name, s := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			const writers = 200
			errs := make([]error, writers)
			var wg sync.WaitGroup
			for i := range writers {
				wg.Go(func() {
					cctx, cancel := context.WithCancel(ctx)
					defer cancel()
					if i%2 == 0 {
						time.AfterFunc(time.Duration(rand.IntN(2000))*time.Microsecond, cancel)
					}
					_, errs[i] = s.CreateSession(cctx, state.Session{ID: fmt.Sprintf("s%d", i), Status: state.StatusRunning})
				})
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("writers hang")
			}
			committed := 0
			for i, err := range errs {
				_, gerr := s.GetSession(ctx, fmt.Sprintf("s%d", i))
				switch {
				case err == nil && gerr == nil:
					committed++
				case err != nil && i%2 == 0 && errors.Is(err, context.Canceled):
					// A cancelled caller is dropped before its write starts
					// (once started, a write runs to its end): an error
					// means nothing was written.
					if gerr == nil {
						t.Errorf("writer %d: error %v, but its session exists", i, err)
					}
				default:
					t.Errorf("writer %d: %v (session: %v)", i, err, gerr)
				}
			}
			if committed < writers/2 {
				t.Errorf("%d writers committed, want at least the %d never cancelled", committed, writers/2)
			}
			if _, err := s.CreateSession(ctx, state.Session{ID: "after", Status: state.StatusRunning}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestGroupCommitAbort: when one caller's failure ends the whole SQLite
// transaction, the callers before it in the group get errGroupAborted
// (nothing of theirs is committed), and the ones after it run in a fresh
// group and commit.
func TestGroupCommitAbort(t *testing.T) {
	t.Parallel()
	for name, s := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			release := holdWriter(t, s)
			run := func(id string, breakTx bool) chan error {
				ch := make(chan error, 1)
				go func() {
					ch <- s.tx(ctx, func(tx *wtx) error {
						if breakTx {
							// What SQLite does to the transaction on, e.g., an
							// interrupted write.
							if _, err := s.exec(ctx, tx, `ROLLBACK`); err != nil {
								return err
							}
							return errors.New("broken")
						}
						_, err := s.exec(ctx, tx, qInsertSession, id, "running", "", nil, 1, 1)
						return err
					})
				}()
				return ch
			}
			before := run("before", false)
			waitQueued(t, s, 1)
			breaker := run("", true)
			waitQueued(t, s, 2)
			after := run("after", false)
			waitQueued(t, s, 3)
			release()
			if err := <-before; !errors.Is(err, errGroupAborted) {
				t.Errorf("caller before the failure: %v, want errGroupAborted", err)
			}
			if err := <-breaker; err == nil || err.Error() != "broken" {
				t.Errorf("failing caller: %v", err)
			}
			if err := <-after; err != nil {
				t.Errorf("caller after the failure: %v", err)
			}
			if _, err := s.GetSession(ctx, "before"); !errors.Is(err, state.ErrNotFound) {
				t.Errorf("aborted caller's write: %v, want ErrNotFound", err)
			}
			if _, err := s.GetSession(ctx, "after"); err != nil {
				t.Errorf("later caller's write: %v", err)
			}
		})
	}
}

// TestTransactionPanic: a panicking transaction function becomes an error,
// is rolled back, and leaves the store usable (alone and in a group).
func TestTransactionPanic(t *testing.T) {
	t.Parallel()
	s := openStores(t)["file"]
	ctx := t.Context()
	boom := func(tx *wtx) error {
		if _, err := s.exec(ctx, tx, qInsertSession, "boom", "running", "", nil, 1, 1); err != nil {
			return err
		}
		panic("boom")
	}
	if err := s.tx(ctx, boom); err == nil || !strings.Contains(err.Error(), "panicked: boom") {
		t.Fatalf("alone: %v", err)
	}
	release := holdWriter(t, s)
	panicked := make(chan error, 1)
	go func() { panicked <- s.tx(ctx, boom) }()
	waitQueued(t, s, 1)
	ok := make(chan error, 1)
	go func() {
		_, err := s.CreateSession(ctx, state.Session{ID: "ok", Status: state.StatusRunning})
		ok <- err
	}()
	waitQueued(t, s, 2)
	release()
	if err := <-panicked; err == nil || !strings.Contains(err.Error(), "panicked: boom") {
		t.Fatalf("in a group: %v", err)
	}
	if err := <-ok; err != nil {
		t.Fatalf("the other caller in the group: %v", err)
	}
	if _, err := s.GetSession(ctx, "boom"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("a panicking transaction's write was kept: %v", err)
	}
	if _, err := s.GetSession(ctx, "ok"); err != nil {
		t.Error(err)
	}
}
