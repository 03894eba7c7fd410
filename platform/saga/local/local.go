// Package local is the embedded saga runner: it runs saga definitions
// in-process with the semantics of the Amazon States Language the saga
// package generates for Step Functions, durable in SQLite, so that
// `agentbus dev` and `agentbus run` support sagas with no AWS.
//
// Semantics (the same as the generated ASL; see docs/sagas.md):
//   - Steps run in order, each task through the Invoker (the claim ledger),
//     its input resolved from the saga document {"input", "steps"}.
//   - An attempt is bounded by the step's timeout (agentbus.Timeout, not
//     retried). Only agentbus.ToolError is retried, after
//     IntervalSeconds × BackoffRate^n, up to MaxAttempts retries; every
//     other error, and a ToolError after the last retry, fails the step.
//   - A failed step starts the compensation chain: the compensations of
//     the earlier steps that have one, in reverse order, each with the
//     step's retry policy; a compensation that still fails is recorded and
//     the chain goes on. The execution ends compensated, or
//     compensation_failed when any compensation failed.
//   - Heartbeats mean nothing in-process (the runner sees its own tasks
//     run): a step with HeartbeatSeconds has the same per-attempt timeout
//     as any other.
//
// Durability: every attempt is recorded (execution, step, kind, attempt
// number) BEFORE the Invoker is called and finished after it, in the same
// transaction as the execution's transition. New resumes every running
// execution: an unfinished attempt is asked again with the same attempt
// number, hence the same Task.Key, so the ledger returns its stored outcome
// (or reports an interrupted non-idempotent call as agentbus.OutcomeUnknown)
// instead of running the tool twice. A runner owns its database: do not
// open one file from two processes at once.
package local

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	psaga "github.com/agentbus/agentbus/platform/saga"
	"github.com/agentbus/agentbus/saga"
)

// Errors callers check with errors.Is (with platform/saga's).
var (
	// ErrClosed: the runner was closed.
	ErrClosed = errors.New("saga runner closed")
	// ErrInvalidRequest: a StartRequest with a bad name, no session or an
	// input that is not a JSON object.
	ErrInvalidRequest = errors.New("invalid saga start request")
)

// Config configures a Runner.
type Config struct {
	// Path is the SQLite file; "" keeps everything in memory (lost on
	// Close). Ignored when DB is set.
	Path string
	// DB, when set, is the database to use (see OpenDB); the runner does
	// not close it. A test restarts a runner on one in-memory database so.
	DB *sql.DB
	// Definitions finds a saga by name when an execution starts; the
	// definition is stored with the execution, which runs (and resumes)
	// with it even if the definitions change. Required.
	Definitions psaga.Definitions
	// Invoker performs the tasks (the tool-gateway's ledger). Required.
	Invoker psaga.Invoker
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Now is the clock of the records and of retry waits after a restart;
	// nil means time.Now.
	Now func() time.Time
}

// Runner runs sagas in-process. It is safe for concurrent use.
type Runner struct {
	cfg   Config
	db    *sql.DB
	ownDB bool
	log   *slog.Logger

	ctx    context.Context // ends at Close: every goroutine's context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	running map[string]bool // executions with a goroutine
	// ended is closed (and replaced) whenever an execution ends: Wait
	// re-reads its execution then. One channel for all executions keeps
	// nothing per waiter (a Wait on an unknown name leaves no trace).
	ended chan struct{}
	once  sync.Once
}

var _ psaga.Runner = (*Runner)(nil)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

// New opens (or creates) the runner's database and resumes every running
// execution. ctx bounds the opening only; the runner works until Close.
func New(ctx context.Context, cfg Config) (*Runner, error) {
	if cfg.Definitions == nil {
		return nil, errors.New("saga runner: nil Definitions")
	}
	if cfg.Invoker == nil {
		return nil, errors.New("saga runner: nil Invoker")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Runner{cfg: cfg, db: cfg.DB, log: cfg.Logger, running: map[string]bool{}, ended: make(chan struct{})}
	if r.db == nil {
		db, err := OpenDB(cfg.Path)
		if err != nil {
			return nil, err
		}
		r.db, r.ownDB = db, true
	}
	if _, err := r.db.ExecContext(ctx, schema); err != nil {
		r.closeDB()
		return nil, fmt.Errorf("saga runner: create schema: %w", err)
	}
	rows, err := r.db.QueryContext(ctx, `SELECT name FROM saga_executions WHERE status = ? ORDER BY created_ms`, string(psaga.StatusRunning))
	if err != nil {
		r.closeDB()
		return nil, fmt.Errorf("saga runner: find running executions: %w", err)
	}
	var resume []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			r.closeDB()
			return nil, fmt.Errorf("saga runner: find running executions: %w", err)
		}
		resume = append(resume, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		r.closeDB()
		return nil, fmt.Errorf("saga runner: find running executions: %w", err)
	}
	r.ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, n := range resume {
		r.log.Info("saga runner: resuming execution", "execution", n)
		r.spawn(n)
	}
	return r, nil
}

func (r *Runner) closeDB() {
	if r.ownDB {
		r.db.Close()
	}
}

// Close stops the runner: running tasks see their context cancelled and
// nothing more is recorded; their executions resume at the next New on the
// same database. It waits for the runner's goroutines.
func (r *Runner) Close() error {
	var err error
	r.once.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		r.cancel()
		r.wg.Wait()
		if r.ownDB {
			err = r.db.Close()
		}
	})
	return err
}

func (r *Runner) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Start starts an execution (see platform/saga.Runner).
func (r *Runner) Start(ctx context.Context, req psaga.StartRequest) (bool, error) {
	if r.isClosed() {
		return false, ErrClosed
	}
	if !nameRE.MatchString(req.Name) {
		return false, fmt.Errorf("%w: execution name %q must match %s", ErrInvalidRequest, req.Name, nameRE)
	}
	if req.Session == "" {
		return false, fmt.Errorf("%w: execution %s: no session", ErrInvalidRequest, req.Name)
	}
	d, ok := r.cfg.Definitions.Lookup(req.Saga)
	if !ok {
		return false, fmt.Errorf("%w: %q", psaga.ErrUnknownSaga, req.Saga)
	}
	input, err := compactObject(req.Input)
	if err != nil {
		return false, fmt.Errorf("%w: execution %s: input: %v", ErrInvalidRequest, req.Name, err)
	}
	def, err := json.Marshal(d)
	if err != nil {
		return false, fmt.Errorf("saga runner: encode definition %s: %w", d.Name, err)
	}
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("saga runner: start %s: %w", req.Name, err)
	}
	defer tx.Rollback()
	var oldSaga, oldInput string
	err = tx.QueryRowContext(ctx, `SELECT saga, input FROM saga_executions WHERE name = ?`, req.Name).Scan(&oldSaga, &oldInput)
	switch {
	case err == nil:
		if oldSaga != req.Saga || !sameJSON([]byte(oldInput), input) {
			return false, fmt.Errorf("%w: %s (saga %s)", psaga.ErrInputMismatch, req.Name, oldSaga)
		}
		return false, nil
	case !errors.Is(err, sql.ErrNoRows):
		return false, fmt.Errorf("saga runner: start %s: %w", req.Name, err)
	}
	now := r.cfg.Now().UnixMilli()
	if _, err := tx.ExecContext(ctx, `INSERT INTO saga_executions (name, saga, session, input, definition, status, created_ms, updated_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, req.Name, req.Saga, req.Session, string(input), string(def), string(psaga.StatusRunning), now, now); err != nil {
		return false, fmt.Errorf("saga runner: start %s: %w", req.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("saga runner: start %s: %w", req.Name, err)
	}
	r.log.Info("saga runner: execution started", "execution", req.Name, "saga", req.Saga, "session", req.Session)
	r.spawn(req.Name)
	return true, nil
}

// Describe returns the execution's current outcome.
func (r *Runner) Describe(ctx context.Context, name string) (psaga.Outcome, error) {
	if r.isClosed() {
		return psaga.Outcome{}, ErrClosed
	}
	x, err := loadExecution(ctx, r.db, name)
	if err != nil {
		return psaga.Outcome{}, err
	}
	return x.outcome(), nil
}

// Wait blocks until the execution ends (or ctx ends, or the runner is
// closed) and returns its outcome. It waits on a notification from the
// execution's goroutine, not by polling.
func (r *Runner) Wait(ctx context.Context, name string) (psaga.Outcome, error) {
	for {
		ch := r.watch()
		o, err := r.Describe(ctx, name)
		if err != nil || o.Status != psaga.StatusRunning {
			return o, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return psaga.Outcome{}, ctx.Err()
		case <-r.ctx.Done():
			return psaga.Outcome{}, ErrClosed
		}
	}
}

// History lists the recorded task attempts of an execution, in the order
// they started (for the CLI and tests).
func (r *Runner) History(ctx context.Context, name string) ([]Attempt, error) {
	if r.isClosed() {
		return nil, ErrClosed
	}
	if _, err := loadExecution(ctx, r.db, name); err != nil {
		return nil, err
	}
	return loadAttempts(ctx, r.db, name, "")
}

// watch returns the channel closed when the next execution ends.
func (r *Runner) watch() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ended
}

// notify wakes every Wait (after an execution's final state is committed).
func (r *Runner) notify() {
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.ended)
	r.ended = make(chan struct{})
}

// spawn starts the goroutine that drives name, unless one runs or the
// runner is closed.
func (r *Runner) spawn(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.running[name] {
		return
	}
	r.running[name] = true
	r.wg.Add(1)
	go r.run(name)
}

// compactObject checks that b is one JSON object and compacts it.
func compactObject(b json.RawMessage) (json.RawMessage, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, errors.New("must be a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	var v map[string]any
	if err := json.Unmarshal(buf.Bytes(), &v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// sameJSON compares two JSON documents by value (key order and spacing
// aside; numbers exactly as written).
func sameJSON(a, b []byte) bool {
	decode := func(b []byte) (any, bool) {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var v any
		return v, dec.Decode(&v) == nil
	}
	x, ok1 := decode(a)
	y, ok2 := decode(b)
	return ok1 && ok2 && reflect.DeepEqual(x, y)
}

// Resolve helper shared by exec.go.
func resolve(template json.RawMessage, x *execution) (json.RawMessage, error) {
	return saga.Resolve(template, saga.Document(x.Input, x.Steps))
}
