package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
)

// Group commit. Every write transaction goes through the one writer
// connection, and with a WAL file most of a small transaction's cost is its
// BEGIN and COMMIT (file locks, one WAL frame per dirty page). So writers
// queue, and the first in line (the leader) runs every queued transaction
// in ONE SQLite transaction, each inside its own SAVEPOINT: a caller whose
// function fails is rolled back to its savepoint alone, the others commit
// together, and nobody returns before that COMMIT. That is equivalent to
// committing them one by one in queue order. A lone writer runs as before
// (no savepoint, no extra goroutine hop): the leader is the caller itself.
// Written by hand: database/sql has no group commit and no library adds one.

// maxGroup bounds one group, so that a long queue cannot delay its first
// caller indefinitely.
const maxGroup = 64

// Savepoint statements, prepared at open with the other hot statements.
const (
	qSavepoint  = `SAVEPOINT g`
	qRelease    = `RELEASE g`
	qRollbackTo = `ROLLBACK TO g`
)

// errGroupAborted is returned to a caller whose transaction succeeded but
// was lost with its group, because another caller's failure aborted the
// whole SQLite transaction (SQLite does that on, e.g., an interrupted write
// or a full disk). Nothing of it was committed; the caller may retry.
var errGroupAborted = errors.New("sqlite: transaction aborted with its commit group")

type txState int

const (
	txQueued txState = iota
	txRunning
	txDone
)

// txReq is one caller's transaction.
type txReq struct {
	ctx   context.Context
	fn    func(*wtx) error
	err   error
	state txState // guarded by writeQueue.mu
	lead  bool    // guarded by writeQueue.mu: this caller is to lead the next group
	// wake is signalled once: done, or made leader.
	wake chan struct{}
}

// writeQueue orders the write transactions.
type writeQueue struct {
	mu      sync.Mutex
	waiting []*txReq
	busy    bool // a leader is running a group (or has been chosen)
	// groups and txs count groups committed and transactions in them (tests).
	groups, txs int
}

func signal(r *txReq) {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// handOffLocked makes the first waiting caller the next leader.
func (w *writeQueue) handOffLocked() {
	if len(w.waiting) == 0 {
		w.busy = false
		return
	}
	next := w.waiting[0]
	next.lead = true
	signal(next)
}

func (w *writeQueue) removeLocked(r *txReq) {
	for i, x := range w.waiting {
		if x == r {
			w.waiting = append(w.waiting[:i], w.waiting[i+1:]...)
			return
		}
	}
}

// tx runs fn in an immediate write transaction, committing if fn returns
// nil; fn's writes are rolled back if it returns an error. fn may share the
// SQLite transaction with other callers' functions (group commit), so it
// must do all its work through tx.
func (s *Store) tx(ctx context.Context, fn func(tx *wtx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	w := &s.wq
	r := &txReq{ctx: ctx, fn: fn, wake: make(chan struct{}, 1)}
	w.mu.Lock()
	w.waiting = append(w.waiting, r)
	if !w.busy {
		w.busy = true
		r.lead = true
	}
	for !r.lead && r.state != txDone {
		w.mu.Unlock()
		select {
		case <-r.wake:
		case <-ctx.Done():
			w.mu.Lock()
			if r.state == txQueued {
				w.removeLocked(r)
				if r.lead {
					w.handOffLocked()
				}
				w.mu.Unlock()
				return fmt.Errorf("begin: %w", ctx.Err())
			}
			w.mu.Unlock()
			<-r.wake // taken into a group already: wait for its end
		}
		w.mu.Lock()
	}
	if r.state == txDone {
		w.mu.Unlock()
		return r.err
	}
	// Leader: take the queue (this caller is at its head).
	n := min(len(w.waiting), maxGroup)
	group := append([]*txReq(nil), w.waiting[:n]...)
	w.waiting = append(w.waiting[:0], w.waiting[n:]...)
	for _, g := range group {
		g.state = txRunning
	}
	w.mu.Unlock()

	s.runGroup(group)

	w.mu.Lock()
	w.groups++
	w.txs += len(group)
	for _, g := range group {
		g.state = txDone
		if g != r {
			signal(g)
		}
	}
	w.handOffLocked()
	w.mu.Unlock()
	return r.err
}

// runGroup runs the group's functions in one SQLite transaction and sets
// each one's err.
func (s *Store) runGroup(group []*txReq) {
	if len(group) == 1 {
		r := group[0]
		if r.err = s.runOne(r.ctx, r.fn); r.err == nil {
			s.noteWrites(1)
		}
		return
	}
	// The group's transaction belongs to no single caller: a caller's
	// cancelled context must not roll back the others' work.
	ctx := context.Background()
	tx, err := s.begin(ctx)
	if err != nil {
		for _, r := range group {
			r.err = fmt.Errorf("begin: %w", err)
		}
		return
	}
	var ok []*txReq // ran and released, to be committed
	for i, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.err = fmt.Errorf("begin: %w", err)
			continue
		}
		if _, err := s.exec(ctx, tx, qSavepoint); err != nil {
			s.abortGroup(tx, ok, group[i:], err)
			return
		}
		if err := call(r.fn, tx); err != nil {
			r.err = err
			if _, rerr := s.exec(ctx, tx, qRollbackTo); rerr != nil {
				s.abortGroup(tx, ok, group[i+1:], rerr)
				return
			}
		}
		if _, err := s.exec(ctx, tx, qRelease); err != nil {
			if r.err == nil {
				r.err = fmt.Errorf("%w: %v", errGroupAborted, err)
			}
			s.abortGroup(tx, ok, group[i+1:], err)
			return
		}
		if r.err == nil {
			ok = append(ok, r)
		}
	}
	if err := s.commit(tx); err != nil {
		for _, r := range ok {
			r.err = fmt.Errorf("commit: %w", err)
		}
		return
	}
	s.noteWrites(len(ok))
}

// abortGroup rolls the group's transaction back after a failure that left
// it unusable: the callers that had succeeded get errGroupAborted, and the
// ones that had not run yet run in a fresh group.
func (s *Store) abortGroup(tx *wtx, ok, rest []*txReq, cause error) {
	s.rollback(tx)
	for _, r := range ok {
		r.err = fmt.Errorf("%w: %v", errGroupAborted, cause)
	}
	if len(rest) > 0 {
		s.runGroup(rest)
	}
}

// runOne runs one caller's transaction on its own. As in a group, a caller
// whose context has ended is dropped before its function starts, and once
// started the transaction runs to its end (database/sql would otherwise
// roll it back behind the function's back when the context ends).
func (s *Store) runOne(ctx context.Context, fn func(tx *wtx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := call(fn, tx); err != nil {
		s.rollback(tx)
		return err
	}
	if err := s.commit(tx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// wtx is one write transaction. A file store runs it on its writer
// connection with BEGIN IMMEDIATE, COMMIT and ROLLBACK prepared at open:
// database/sql's Tx has the driver parse and finalize them for every
// transaction, a fifth of a small one (BenchmarkUpdateSession: 131 -> 105
// us). An in-memory store, whose one connection also serves reads, keeps
// database/sql's Tx (tx), which takes the connection only for the
// transaction.
type wtx struct{ tx *sql.Tx }

// execer is what runs unprepared statements in a transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// on is where tx's statements run.
func (s *Store) on(tx *wtx) execer {
	if tx.tx != nil {
		return tx.tx
	}
	return s.wc
}

// begin starts a write transaction. It runs to its end even if ctx ends
// meanwhile (see runOne).
func (s *Store) begin(ctx context.Context) (*wtx, error) {
	ctx = context.WithoutCancel(ctx)
	if s.wc == nil {
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		return &wtx{tx: tx}, nil
	}
	if _, err := s.beginSt.ExecContext(ctx); err != nil {
		return nil, err
	}
	return &wtx{}, nil
}

func (s *Store) commit(tx *wtx) error {
	if tx.tx != nil {
		return tx.tx.Commit()
	}
	if _, err := s.commitSt.ExecContext(context.Background()); err != nil {
		// A COMMIT that failed (SQLITE_BUSY, say) may leave the
		// transaction open: end it, as database/sql's Tx does.
		s.rollback(tx)
		return err
	}
	return nil
}

// rollback ends tx without its writes. When SQLite has already rolled it
// back (after some errors it does), ROLLBACK fails with nothing to undo.
func (s *Store) rollback(tx *wtx) {
	if tx.tx != nil {
		_ = tx.tx.Rollback()
		return
	}
	_, _ = s.rollbackSt.ExecContext(context.Background())
}

// call runs a transaction function, turning a panic into an error so that
// the transaction is still rolled back (and, in a group, the leader goes on
// serving the others) instead of holding the writer connection forever.
func call(fn func(*wtx) error, tx *wtx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("sqlite: transaction function panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return fn(tx)
}
