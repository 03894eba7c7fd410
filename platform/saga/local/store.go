package local

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	psaga "github.com/agentbus/agentbus/platform/saga"
	"github.com/agentbus/agentbus/saga"
)

// schema: one row per execution (its saga document so far and, once it
// failed, the failure and the compensation progress) and one row per task
// attempt, written before the Invoker is called and finished after it.
const schema = `
CREATE TABLE IF NOT EXISTS saga_executions (
	name        TEXT PRIMARY KEY,
	saga        TEXT NOT NULL,
	session     TEXT NOT NULL,
	input       TEXT NOT NULL,
	definition  TEXT NOT NULL,
	status      TEXT NOT NULL,
	steps       TEXT NOT NULL DEFAULT '{}',
	failed_step TEXT NOT NULL DEFAULT '',
	failed      INTEGER NOT NULL DEFAULT 0,
	error_name  TEXT NOT NULL DEFAULT '',
	error_cause TEXT NOT NULL DEFAULT '',
	compensated TEXT NOT NULL DEFAULT '[]',
	failures    TEXT NOT NULL DEFAULT '[]',
	output      TEXT,
	created_ms  INTEGER NOT NULL,
	updated_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS saga_executions_status ON saga_executions (status);
CREATE TABLE IF NOT EXISTS saga_tasks (
	execution   TEXT NOT NULL,
	step        TEXT NOT NULL,
	kind        TEXT NOT NULL,
	attempt     INTEGER NOT NULL,
	tool        TEXT NOT NULL,
	input       TEXT NOT NULL,
	started_ms  INTEGER NOT NULL,
	finished_ms INTEGER,
	outcome     TEXT NOT NULL DEFAULT '',
	cause       TEXT NOT NULL DEFAULT '',
	output      TEXT,
	PRIMARY KEY (execution, step, kind, attempt)
);
`

// OpenDB opens the runner's SQLite database: the file at path in WAL mode
// (created if needed), or a private in-memory database when path is "".
// It has one connection (SQLite has one writer, and an in-memory database
// exists once per connection). Pass it as Config.DB to keep a database
// across runners (a restart test on an in-memory database).
func OpenDB(path string) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Set("_txlock", "immediate")
	var dsn string
	if path == "" {
		dsn = "file::memory:?" + q.Encode()
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
		esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
		dsn = "file:" + esc + "?" + q.Encode()
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("saga runner: open %q: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	return db, nil
}

// failure is one compensation that failed after its retries.
type failure struct {
	Step  string `json:"step"`
	Error string `json:"error"`
	Cause string `json:"cause"`
}

// execution is an execution row decoded.
type execution struct {
	Name, Saga, Session string
	Input               json.RawMessage
	Def                 saga.Definition
	Status              psaga.Status
	Steps               map[string]json.RawMessage
	// Failed is set once an action failed: FailedStep (empty when the
	// output template failed) and the error start compensation.
	Failed      bool
	FailedStep  string
	ErrorName   string
	ErrorCause  string
	Compensated []string
	Failures    []failure
	Output      json.RawMessage
}

// outcome is the execution as the Runner reports it.
func (x *execution) outcome() psaga.Outcome {
	o := psaga.Outcome{Execution: x.Name, Saga: x.Saga, Status: x.Status, FailedStep: x.FailedStep,
		Compensated: append([]string(nil), x.Compensated...)}
	if x.Status == psaga.StatusSucceeded {
		o.Output = x.Output
	}
	if x.Failed {
		o.Error = x.ErrorName + ": " + x.ErrorCause
	}
	for _, f := range x.Failures {
		o.Failures = append(o.Failures, f.Step+": "+f.Error+": "+f.Cause)
	}
	return o
}

// settled reports whether step's compensation already ran (or failed).
func (x *execution) settled(step string) bool {
	for _, s := range x.Compensated {
		if s == step {
			return true
		}
	}
	for _, f := range x.Failures {
		if f.Step == step {
			return true
		}
	}
	return false
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func loadExecution(ctx context.Context, q queryer, name string) (*execution, error) {
	var (
		x                                     execution
		input, def, status, steps, comp, fail string
		failed                                int
		output                                sql.NullString
	)
	err := q.QueryRowContext(ctx, `SELECT name, saga, session, input, definition, status, steps, failed, failed_step,
		error_name, error_cause, compensated, failures, output FROM saga_executions WHERE name = ?`, name).
		Scan(&x.Name, &x.Saga, &x.Session, &input, &def, &status, &steps, &failed, &x.FailedStep,
			&x.ErrorName, &x.ErrorCause, &comp, &fail, &output)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %q", psaga.ErrUnknownExecution, name)
	}
	if err != nil {
		return nil, fmt.Errorf("saga runner: load %s: %w", name, err)
	}
	x.Input, x.Status, x.Failed = json.RawMessage(input), psaga.Status(status), failed != 0
	if output.Valid {
		x.Output = json.RawMessage(output.String)
	}
	for _, f := range []struct {
		what string
		src  string
		dst  any
	}{{"definition", def, &x.Def}, {"steps", steps, &x.Steps}, {"compensated", comp, &x.Compensated}, {"failures", fail, &x.Failures}} {
		if err := json.Unmarshal([]byte(f.src), f.dst); err != nil {
			return nil, fmt.Errorf("saga runner: execution %s: stored %s: %w", name, f.what, err)
		}
	}
	if x.Steps == nil {
		x.Steps = map[string]json.RawMessage{}
	}
	return &x, nil
}

// saveExecution writes x's progress (everything but its identity).
func saveExecution(ctx context.Context, tx *sql.Tx, x *execution, now time.Time) error {
	steps, err := json.Marshal(x.Steps)
	if err != nil {
		return err
	}
	comp, err := json.Marshal(nonNil(x.Compensated))
	if err != nil {
		return err
	}
	fail, err := json.Marshal(nonNilF(x.Failures))
	if err != nil {
		return err
	}
	var output any
	if len(x.Output) > 0 {
		output = string(x.Output)
	}
	failed := 0
	if x.Failed {
		failed = 1
	}
	_, err = tx.ExecContext(ctx, `UPDATE saga_executions SET status = ?, steps = ?, failed = ?, failed_step = ?,
		error_name = ?, error_cause = ?, compensated = ?, failures = ?, output = ?, updated_ms = ? WHERE name = ?`,
		string(x.Status), string(steps), failed, x.FailedStep, x.ErrorName, x.ErrorCause, string(comp), string(fail),
		output, now.UnixMilli(), x.Name)
	if err != nil {
		return fmt.Errorf("saga runner: save %s: %w", x.Name, err)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilF(s []failure) []failure {
	if s == nil {
		return []failure{}
	}
	return s
}

// Attempt is one recorded task attempt of an execution (History).
type Attempt struct {
	Step    string
	Kind    psaga.Kind
	Attempt int
	Tool    string
	Input   json.RawMessage
	Started time.Time
	// Finished is zero while the attempt runs (or when the runner stopped
	// during it: the attempt is asked again on resume).
	Finished time.Time
	// Outcome is "ok" or the StepError name; Cause its text; Output the
	// tool's output on success.
	Outcome string
	Cause   string
	Output  json.RawMessage
}

func loadAttempts(ctx context.Context, db *sql.DB, name string, where string, args ...any) ([]Attempt, error) {
	rows, err := db.QueryContext(ctx, `SELECT step, kind, attempt, tool, input, started_ms, finished_ms, outcome, cause, output
		FROM saga_tasks WHERE execution = ?`+where+` ORDER BY started_ms, rowid`, append([]any{name}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("saga runner: tasks of %s: %w", name, err)
	}
	defer rows.Close()
	var out []Attempt
	for rows.Next() {
		var (
			a        Attempt
			kind     string
			input    string
			started  int64
			finished sql.NullInt64
			output   sql.NullString
		)
		if err := rows.Scan(&a.Step, &kind, &a.Attempt, &a.Tool, &input, &started, &finished, &a.Outcome, &a.Cause, &output); err != nil {
			return nil, fmt.Errorf("saga runner: tasks of %s: %w", name, err)
		}
		a.Kind, a.Input, a.Started = psaga.Kind(kind), json.RawMessage(input), time.UnixMilli(started)
		if finished.Valid {
			a.Finished = time.UnixMilli(finished.Int64)
		}
		if output.Valid {
			a.Output = json.RawMessage(output.String)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// finishTask records an attempt's outcome (in tx, with the execution's
// transition when the outcome ends the task).
func finishTask(ctx context.Context, tx *sql.Tx, t psaga.Task, out json.RawMessage, se *psaga.StepError, now time.Time) error {
	outcome, cause := "ok", ""
	var output any
	if se != nil {
		outcome, cause = se.Name, se.Cause
	} else {
		output = string(out)
	}
	_, err := tx.ExecContext(ctx, `UPDATE saga_tasks SET finished_ms = ?, outcome = ?, cause = ?, output = ?
		WHERE execution = ? AND step = ? AND kind = ? AND attempt = ?`,
		now.UnixMilli(), outcome, cause, output, t.Execution, t.Step, string(t.Kind), t.Attempt)
	if err != nil {
		return fmt.Errorf("saga runner: finish task %s: %w", t.Key(), err)
	}
	return nil
}
