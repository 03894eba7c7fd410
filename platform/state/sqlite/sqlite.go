// Package sqlite is the embedded state.Store: one SQLite database file (WAL
// journal) through modernc.org/sqlite, so the embedded default needs no cgo
// and no server. Writes are serialised through one connection with
// immediate transactions (SQLite allows one writer anyway; this avoids
// SQLITE_BUSY upgrades between our own connections); reads use a separate
// pool and run concurrently with writes thanks to WAL. Other processes
// sharing the file (the CLI beside `agentbus dev`) wait up to the busy
// timeout.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/platform/state/internal/rules"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Store is a state.Store on SQLite.
type Store struct {
	w   *sql.DB // one connection: every write transaction
	r   *sql.DB // readers (the same as w for an in-memory database)
	now func() time.Time
	// wc is w's connection, held for the store's life by a file store: its
	// transactions run with BEGIN, COMMIT and ROLLBACK prepared once (see
	// wtx). nil for an in-memory store, whose one connection also serves
	// reads and so is taken per transaction.
	wc                            *sql.Conn
	beginSt, commitSt, rollbackSt *sql.Stmt
	// ws and rs are the hot statements prepared at open on the writer (wc,
	// or w) and r (see prepareAll).
	ws, rs map[string]*sql.Stmt
	wq     writeQueue    // write transactions, group-committed (groupcommit.go)
	ck     *checkpointer // file stores: WAL checkpoints (checkpoint.go)
}

var _ state.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock used for timestamps, leases and expiry (tests).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

const schema = `
CREATE TABLE IF NOT EXISTS sessions (
	id TEXT PRIMARY KEY,
	version INTEGER NOT NULL,
	status TEXT NOT NULL,
	agent TEXT NOT NULL,
	data BLOB,
	created_ms INTEGER NOT NULL,
	updated_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_created ON sessions (created_ms, id);
CREATE TABLE IF NOT EXISTS history (
	session_id TEXT NOT NULL,
	seq INTEGER NOT NULL,
	source TEXT NOT NULL,
	event_id TEXT NOT NULL,
	type TEXT NOT NULL,
	time_ms INTEGER NOT NULL,
	data BLOB NOT NULL,
	PRIMARY KEY (session_id, seq),
	UNIQUE (session_id, source, event_id)
);
CREATE TABLE IF NOT EXISTS claims (
	session_id TEXT NOT NULL,
	key TEXT NOT NULL,
	state TEXT NOT NULL,
	holder TEXT NOT NULL,
	attempt INTEGER NOT NULL,
	lease_until_ms INTEGER NOT NULL,
	expires_at_ms INTEGER NOT NULL,
	result BLOB,
	PRIMARY KEY (session_id, key)
);
CREATE TABLE IF NOT EXISTS steps (
	session_id TEXT NOT NULL,
	step INTEGER NOT NULL,
	expected TEXT,
	done INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (session_id, step)
);
CREATE TABLE IF NOT EXISTS step_results (
	session_id TEXT NOT NULL,
	step INTEGER NOT NULL,
	call_id TEXT NOT NULL,
	result BLOB NOT NULL,
	PRIMARY KEY (session_id, step, call_id)
);
CREATE TABLE IF NOT EXISTS outbox (
	seq INTEGER PRIMARY KEY,
	id TEXT NOT NULL UNIQUE,
	payload BLOB NOT NULL,
	created_ms INTEGER NOT NULL
);
`

// Open opens (creating if needed) the database file at path in WAL mode.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: empty database path", state.ErrInvalid)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	// Checkpoints run off the commit path (checkpoint.go).
	q.Add("_pragma", "wal_autocheckpoint(0)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Set("_txlock", "immediate")
	// The path is part of a URI: escape what would end or break it.
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	dsn := "file:" + esc + "?" + q.Encode()
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open state db %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	r, err := sql.Open("sqlite", dsn)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open state db %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	// Keep them open: a new connection re-reads the schema and re-prepares
	// the read statements.
	r.SetMaxIdleConns(8)
	return newStore(ctx, w, r, opts)
}

// OpenMemory opens a private in-memory database (tests, throw-away runs).
func OpenMemory(ctx context.Context, opts ...Option) (*Store, error) {
	// One connection: each connection to ":memory:" is its own database.
	db, err := sql.Open("sqlite", "file::memory:?_txlock=immediate&_pragma=foreign_keys(ON)")
	if err != nil {
		return nil, fmt.Errorf("open in-memory state db: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	return newStore(ctx, db, db, opts)
}

func newStore(ctx context.Context, w, r *sql.DB, opts []Option) (*Store, error) {
	s := &Store{w: w, r: r, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	if _, err := w.ExecContext(ctx, schema+toolSpecsSchema); err != nil {
		s.Close()
		return nil, fmt.Errorf("create state schema: %w", err)
	}
	var (
		prep preparer = w
		err  error
	)
	if r != w {
		if s.wc, err = w.Conn(ctx); err != nil {
			s.Close()
			return nil, fmt.Errorf("open state db writer: %w", err)
		}
		prep = s.wc
		for _, p := range []struct {
			st **sql.Stmt
			q  string
		}{{&s.beginSt, "BEGIN IMMEDIATE"}, {&s.commitSt, "COMMIT"}, {&s.rollbackSt, "ROLLBACK"}} {
			if *p.st, err = s.wc.PrepareContext(ctx, p.q); err != nil {
				s.Close()
				return nil, fmt.Errorf("prepare %q: %w", p.q, err)
			}
		}
	}
	if s.ws, err = prepareAll(ctx, prep, txQueries); err != nil {
		s.Close()
		return nil, err
	}
	if s.rs, err = prepareAll(ctx, r, readQueries); err != nil {
		s.Close()
		return nil, err
	}
	if r != w {
		s.startCheckpointer()
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	s.stopCheckpointer()
	var errs []error
	for _, m := range []map[string]*sql.Stmt{s.ws, s.rs} {
		for _, st := range m {
			errs = append(errs, st.Close())
		}
	}
	for _, st := range []*sql.Stmt{s.beginSt, s.commitSt, s.rollbackSt} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.wc != nil {
		errs = append(errs, s.wc.Close())
	}
	errs = append(errs, s.w.Close())
	if s.r != s.w {
		errs = append(errs, s.r.Close())
	}
	return errors.Join(errs...)
}

// The statements of the services' hot paths. modernc's SQLite is C
// translated to Go, and parsing a statement's SQL again for every call
// measured ~15% of the embedded agent loop's CPU, so these are prepared once
// at open: on w for use inside write transactions (tx.StmtContext finds the
// copy already prepared on w's single connection; preparing on the *sql.DB
// inside a transaction would wait forever for that connection), on r for
// reads (database/sql prepares them on each pooled connection as needed).
// A query not listed runs unprepared, as before.
const (
	qInsertOutbox = `INSERT INTO outbox (id, payload, created_ms) VALUES (?, ?, ?)
			 ON CONFLICT (id) DO UPDATE SET payload = excluded.payload`
	qDeleteOutbox  = `DELETE FROM outbox WHERE id = ?`
	qPendingOutbox = `SELECT id, payload FROM outbox ORDER BY seq LIMIT ?`
	qInsertSession = `INSERT INTO sessions (id, version, status, agent, data, created_ms, updated_ms)
			 VALUES (?, 1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`
	qGetSession    = `SELECT ` + sessionCols + ` FROM sessions WHERE id = ?`
	qUpdateSession = `UPDATE sessions SET version = ?, status = ?, agent = ?, data = ?, updated_ms = ? WHERE id = ? AND version = ?`
	// One statement per entry: the next seq is computed in the INSERT (the
	// SELECT's WHERE also keeps the upsert clause unambiguous for SQLite).
	qLastSeq       = `SELECT COALESCE(MAX(seq), 0) FROM history WHERE session_id = ?`
	qInsertHistory = `INSERT INTO history (session_id, seq, source, event_id, type, time_ms, data)
				 VALUES (?, ?, ?, ?, ?, ?, ?)
				 ON CONFLICT (session_id, source, event_id) DO NOTHING`
	qReadHistory = `SELECT seq, source, event_id, type, time_ms, data FROM history WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?`
	qGetClaim    = `SELECT state, holder, attempt, lease_until_ms, expires_at_ms, result FROM claims WHERE session_id = ? AND key = ?`
	qPutClaim    = `INSERT INTO claims (session_id, key, state, holder, attempt, lease_until_ms, expires_at_ms, result)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		 ON CONFLICT (session_id, key) DO UPDATE SET state = excluded.state, holder = excluded.holder,
		   attempt = excluded.attempt, lease_until_ms = excluded.lease_until_ms,
		   expires_at_ms = excluded.expires_at_ms, result = excluded.result`
	qGetStep     = `SELECT expected, done FROM steps WHERE session_id = ? AND step = ?`
	qStepResults = `SELECT call_id, result FROM step_results WHERE session_id = ? AND step = ? ORDER BY call_id`
	qOpenStep    = `INSERT INTO steps (session_id, step, expected, done) VALUES (?, ?, ?, 0)
			 ON CONFLICT (session_id, step) DO UPDATE SET expected = excluded.expected`
	qRecordResult = `INSERT INTO step_results (session_id, step, call_id, result) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`
	qCompleteStep = `INSERT INTO steps (session_id, step, expected, done) VALUES (?, ?, NULL, 1)
			 ON CONFLICT (session_id, step) DO UPDATE SET done = 1 WHERE done = 0`
)

var (
	txQueries = []string{qInsertOutbox, qDeleteOutbox, qInsertSession, qGetSession, qUpdateSession,
		qLastSeq, qInsertHistory, qGetClaim, qPutClaim, qGetStep, qStepResults, qOpenStep, qRecordResult, qCompleteStep,
		qSavepoint, qRelease, qRollbackTo}
	readQueries = []string{qGetSession, qReadHistory, qGetClaim, qPendingOutbox}
)

// preparer is a *sql.DB or a *sql.Conn.
type preparer interface {
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

func prepareAll(ctx context.Context, db preparer, qs []string) (map[string]*sql.Stmt, error) {
	out := make(map[string]*sql.Stmt, len(qs))
	for _, q := range qs {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			for _, p := range out {
				p.Close()
			}
			return nil, fmt.Errorf("prepare %q: %w", q, err)
		}
		out[q] = st
	}
	return out, nil
}

// Statements inside a write transaction run to their end even when the
// caller's context ends meanwhile (they are short): an interrupted write
// makes SQLite roll back the whole transaction, which under group commit
// holds other callers' work too. A cancelled caller is dropped before its
// transaction function starts instead (groupcommit.go).

// stmt returns q prepared for tx, or nil when q was not prepared at open.
func (s *Store) stmt(ctx context.Context, tx *wtx, q string) *sql.Stmt {
	st, ok := s.ws[q]
	switch {
	case !ok:
		return nil
	case tx.tx != nil:
		return tx.tx.StmtContext(ctx, st)
	}
	return st // prepared on wc
}

// exec runs q in tx, through its prepared statement when there is one.
func (s *Store) exec(ctx context.Context, tx *wtx, q string, args ...any) (sql.Result, error) {
	ctx = context.WithoutCancel(ctx)
	if st := s.stmt(ctx, tx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return s.on(tx).ExecContext(ctx, q, args...)
}

// queryRow runs q in tx, or on the read pool when tx is nil.
func (s *Store) queryRow(ctx context.Context, tx *wtx, q string, args ...any) *sql.Row {
	if tx == nil {
		if st, ok := s.rs[q]; ok {
			return st.QueryRowContext(ctx, args...)
		}
		return s.r.QueryRowContext(ctx, q, args...)
	}
	ctx = context.WithoutCancel(ctx)
	if st := s.stmt(ctx, tx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.on(tx).QueryRowContext(ctx, q, args...)
}

// query runs q in tx, or on the read pool when tx is nil.
func (s *Store) query(ctx context.Context, tx *wtx, q string, args ...any) (*sql.Rows, error) {
	if tx == nil {
		if st, ok := s.rs[q]; ok {
			return st.QueryContext(ctx, args...)
		}
		return s.r.QueryContext(ctx, q, args...)
	}
	ctx = context.WithoutCancel(ctx)
	if st := s.stmt(ctx, tx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return s.on(tx).QueryContext(ctx, q, args...)
}

func (s *Store) nowMs() int64 { return s.now().UnixMilli() }

func ms(v int64) time.Time { return time.UnixMilli(v).UTC() }

func (s *Store) writeOutbox(ctx context.Context, tx *wtx, out []state.OutboxEvent) error {
	now := s.nowMs()
	for _, e := range out {
		if _, err := s.exec(ctx, tx, qInsertOutbox, e.ID, e.Payload, now); err != nil {
			return fmt.Errorf("write outbox %q: %w", e.ID, err)
		}
	}
	return nil
}

func validateSession(sess state.Session) error {
	if err := state.ValidateSessionID(sess.ID); err != nil {
		return err
	}
	if sess.Status == "" {
		return fmt.Errorf("%w: session %q has an empty status", state.ErrInvalid, sess.ID)
	}
	if len(sess.Data) > state.MaxInlineValue {
		return fmt.Errorf("session data of %d bytes, max %d: %w", len(sess.Data), state.MaxInlineValue, state.ErrTooLarge)
	}
	return nil
}

// CreateSession implements state.Sessions.
func (s *Store) CreateSession(ctx context.Context, sess state.Session, out ...state.OutboxEvent) (state.Session, error) {
	if err := validateSession(sess); err != nil {
		return state.Session{}, err
	}
	if err := state.ValidateOutbox(out); err != nil {
		return state.Session{}, err
	}
	now := s.nowMs()
	err := s.tx(ctx, func(tx *wtx) error {
		res, err := s.exec(ctx, tx, qInsertSession,
			sess.ID, string(sess.Status), sess.AgentName, sess.Data, now, now)
		if err != nil {
			return fmt.Errorf("create session %q: %w", sess.ID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("create session %q: exists: %w", sess.ID, state.ErrConflict)
		}
		return s.writeOutbox(ctx, tx, out)
	})
	if err != nil {
		return state.Session{}, err
	}
	sess.Version = 1
	sess.CreatedAt, sess.UpdatedAt = ms(now), ms(now)
	return sess, nil
}

const sessionCols = `id, version, status, agent, data, created_ms, updated_ms`

type scanner interface{ Scan(dest ...any) error }

func scanSession(sc scanner) (state.Session, error) {
	var (
		sess             state.Session
		status           string
		created, updated int64
	)
	if err := sc.Scan(&sess.ID, &sess.Version, &status, &sess.AgentName, &sess.Data, &created, &updated); err != nil {
		return state.Session{}, err
	}
	sess.Status = state.Status(status)
	sess.CreatedAt, sess.UpdatedAt = ms(created), ms(updated)
	return sess, nil
}

// GetSession implements state.Sessions.
func (s *Store) GetSession(ctx context.Context, id string) (state.Session, error) {
	if err := state.ValidateSessionID(id); err != nil {
		return state.Session{}, err
	}
	sess, err := scanSession(s.queryRow(ctx, nil, qGetSession, id))
	if errors.Is(err, sql.ErrNoRows) {
		return state.Session{}, fmt.Errorf("session %q: %w", id, state.ErrNotFound)
	}
	if err != nil {
		return state.Session{}, fmt.Errorf("get session %q: %w", id, err)
	}
	return sess, nil
}

// UpdateSession implements state.Sessions.
func (s *Store) UpdateSession(ctx context.Context, sess state.Session, out ...state.OutboxEvent) (state.Session, error) {
	if err := validateSession(sess); err != nil {
		return state.Session{}, err
	}
	if err := state.ValidateOutbox(out); err != nil {
		return state.Session{}, err
	}
	now := s.nowMs()
	var stored state.Session
	err := s.tx(ctx, func(tx *wtx) error {
		cur, err := scanSession(s.queryRow(ctx, tx, qGetSession, sess.ID))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("update session %q: %w", sess.ID, state.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("update session %q: %w", sess.ID, err)
		}
		if cur.Version != sess.Version {
			return fmt.Errorf("update session %q at version %d, stored %d: %w", sess.ID, sess.Version, cur.Version, state.ErrConflict)
		}
		if _, err := s.exec(ctx, tx, qUpdateSession,
			cur.Version+1, string(sess.Status), sess.AgentName, sess.Data, now, sess.ID, cur.Version); err != nil {
			return fmt.Errorf("update session %q: %w", sess.ID, err)
		}
		stored = sess
		stored.Version = cur.Version + 1
		stored.CreatedAt = cur.CreatedAt
		stored.UpdatedAt = ms(now)
		return s.writeOutbox(ctx, tx, out)
	})
	if err != nil {
		return state.Session{}, err
	}
	return stored, nil
}

func encodeCursor(created int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(created, 10) + "|" + id))
}

func decodeCursor(c string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, "", fmt.Errorf("%w: malformed cursor", state.ErrInvalid)
	}
	ts, id, ok := strings.Cut(string(b), "|")
	n, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil {
		return 0, "", fmt.Errorf("%w: malformed cursor", state.ErrInvalid)
	}
	return n, id, nil
}

// ListSessions implements state.Sessions.
func (s *Store) ListSessions(ctx context.Context, cursor string, limit int) (state.SessionPage, error) {
	limit = state.PageSize(limit)
	var (
		rows *sql.Rows
		err  error
	)
	if cursor == "" {
		rows, err = s.r.QueryContext(ctx, `SELECT `+sessionCols+` FROM sessions ORDER BY created_ms DESC, id DESC LIMIT ?`, limit+1)
	} else {
		created, id, derr := decodeCursor(cursor)
		if derr != nil {
			return state.SessionPage{}, derr
		}
		rows, err = s.r.QueryContext(ctx, `SELECT `+sessionCols+` FROM sessions WHERE (created_ms, id) < (?, ?)
			ORDER BY created_ms DESC, id DESC LIMIT ?`, created, id, limit+1)
	}
	if err != nil {
		return state.SessionPage{}, fmt.Errorf("list sessions: %w", err)
	}
	defer rows.Close()
	var page state.SessionPage
	for rows.Next() {
		sess, err := scanSession(rows)
		if err != nil {
			return state.SessionPage{}, fmt.Errorf("list sessions: %w", err)
		}
		page.Sessions = append(page.Sessions, sess)
	}
	if err := rows.Err(); err != nil {
		return state.SessionPage{}, fmt.Errorf("list sessions: %w", err)
	}
	if len(page.Sessions) > limit {
		page.Sessions = page.Sessions[:limit]
		last := page.Sessions[limit-1]
		page.Next = encodeCursor(last.CreatedAt.UnixMilli(), last.ID)
	}
	return page, nil
}

// DeleteSession implements state.Sessions.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	if err := state.ValidateSessionID(id); err != nil {
		return err
	}
	return s.tx(ctx, func(tx *wtx) error {
		for _, table := range []string{"history", "claims", "step_results", "steps"} {
			if _, err := s.exec(ctx, tx, `DELETE FROM `+table+` WHERE session_id = ?`, id); err != nil {
				return fmt.Errorf("delete session %q (%s): %w", id, table, err)
			}
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM sessions WHERE id = ?`, id); err != nil {
			return fmt.Errorf("delete session %q: %w", id, err)
		}
		return nil
	})
}

// AppendHistory implements state.History.
func (s *Store) AppendHistory(ctx context.Context, sessionID string, entries ...state.Entry) (int, error) {
	if err := state.ValidateSessionID(sessionID); err != nil {
		return 0, err
	}
	for _, e := range entries {
		if err := validateEntry(e); err != nil {
			return 0, err
		}
	}
	if len(entries) == 0 {
		return 0, nil
	}
	added := 0
	err := s.tx(ctx, func(tx *wtx) error {
		// The session's last seq is read once per write, not per entry: in
		// the writer's transaction nobody else appends meanwhile.
		var last int64
		if err := s.queryRow(ctx, tx, qLastSeq, sessionID).Scan(&last); err != nil {
			return fmt.Errorf("append history %q: %w", sessionID, err)
		}
		for _, e := range entries {
			var tms int64
			if !e.Time.IsZero() {
				tms = e.Time.UnixMilli()
			}
			res, err := s.exec(ctx, tx, qInsertHistory,
				sessionID, last+1, e.Source, e.ID, e.Type, tms, nonNil(e.Data))
			if err != nil {
				return fmt.Errorf("append history %q: %w", sessionID, err)
			}
			if n, _ := res.RowsAffected(); n > 0 {
				added++
				last++
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return added, nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func validateEntry(e state.Entry) error {
	if err := state.ValidateID("entry source", e.Source); err != nil {
		return err
	}
	return state.ValidateID("entry id", e.ID)
}

func scanEntry(rows *sql.Rows) (state.Entry, error) {
	var (
		e   state.Entry
		tms int64
	)
	if err := rows.Scan(&e.Seq, &e.Source, &e.ID, &e.Type, &tms, &e.Data); err != nil {
		return state.Entry{}, err
	}
	if tms != 0 {
		e.Time = ms(tms)
	}
	return e, nil
}

func scanEntries(rows *sql.Rows) ([]state.Entry, error) {
	defer rows.Close()
	var out []state.Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// ReadHistory implements state.History.
func (s *Store) ReadHistory(ctx context.Context, sessionID string, afterSeq int64, limit int) ([]state.Entry, error) {
	if err := state.ValidateSessionID(sessionID); err != nil {
		return nil, err
	}
	rows, err := s.query(ctx, nil, qReadHistory,
		sessionID, afterSeq, state.PageSize(limit))
	if err != nil {
		return nil, fmt.Errorf("read history %q: %w", sessionID, err)
	}
	out, err := scanEntries(rows)
	if err != nil {
		return nil, fmt.Errorf("read history %q: %w", sessionID, err)
	}
	return out, nil
}

// SearchHistory implements state.History. It scans the session's rows in
// Go (rather than SQL LIKE, which folds ASCII only) so that both stores
// match exactly the same entries.
func (s *Store) SearchHistory(ctx context.Context, sessionID, query string, limit int) ([]state.Entry, error) {
	search, err := state.NewSearch(sessionID, query, limit)
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx,
		`SELECT seq, source, event_id, type, time_ms, data FROM history WHERE session_id = ? ORDER BY seq DESC`, sessionID)
	if err != nil {
		return nil, fmt.Errorf("search history %q: %w", sessionID, err)
	}
	defer rows.Close()
	var out []state.Entry
	for len(out) < search.Limit && rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, fmt.Errorf("search history %q: %w", sessionID, err)
		}
		if search.Match(e) {
			out = append(out, e)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search history %q: %w", sessionID, err)
	}
	return out, nil
}

// getClaim reads a claim in tx, or from the read pool when tx is nil.
func (s *Store) getClaim(ctx context.Context, tx *wtx, sessionID, key string) (*state.Claim, error) {
	var (
		c                 state.Claim
		st                string
		leaseMs, expireMs int64
	)
	err := s.queryRow(ctx, tx, qGetClaim,
		sessionID, key).Scan(&st, &c.Holder, &c.Attempt, &leaseMs, &expireMs, &c.Result)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read claim %q: %w", key, err)
	}
	c.SessionID, c.Key, c.State = sessionID, key, state.ClaimState(st)
	c.LeaseUntil, c.ExpiresAt = ms(leaseMs), ms(expireMs)
	return &c, nil
}

func (s *Store) putClaim(ctx context.Context, tx *wtx, c state.Claim) error {
	_, err := s.exec(ctx, tx, qPutClaim,
		c.SessionID, c.Key, string(c.State), c.Holder, c.Attempt, c.LeaseUntil.UnixMilli(), c.ExpiresAt.UnixMilli(), c.Result)
	if err != nil {
		return fmt.Errorf("write claim %q: %w", c.Key, err)
	}
	return nil
}

// Claim implements state.Claims.
func (s *Store) Claim(ctx context.Context, req state.ClaimRequest) (state.Claim, bool, error) {
	if err := state.ValidateClaimRequest(req); err != nil {
		return state.Claim{}, false, err
	}
	var acquired bool
	c, _, err := s.changeClaim(ctx, req.SessionID, req.Key, nil, func(cur *state.Claim) (state.Claim, bool, error) {
		next, acq, write := rules.Claim(cur, req, s.now())
		acquired = acq
		return next, write, nil
	})
	if err != nil {
		return state.Claim{}, false, err
	}
	return c, acquired, nil
}

// RenewClaim implements state.Claims.
func (s *Store) RenewClaim(ctx context.Context, sessionID, key, holder string, lease time.Duration) (state.Claim, error) {
	if err := state.ValidateClaimKey(sessionID, key, holder); err != nil {
		return state.Claim{}, err
	}
	c, _, err := s.changeClaim(ctx, sessionID, key, nil, func(cur *state.Claim) (state.Claim, bool, error) {
		next, err := rules.Renew(cur, holder, lease, s.now())
		return next, err == nil, err
	})
	if err != nil {
		return state.Claim{}, err
	}
	return c, nil
}

// CompleteClaim implements state.Claims.
func (s *Store) CompleteClaim(ctx context.Context, sessionID, key, holder string, result []byte, out ...state.OutboxEvent) (state.Claim, error) {
	if err := state.ValidateClaimKey(sessionID, key, holder); err != nil {
		return state.Claim{}, err
	}
	if err := state.ValidateOutbox(out); err != nil {
		return state.Claim{}, err
	}
	c, _, err := s.changeClaim(ctx, sessionID, key, out, func(cur *state.Claim) (state.Claim, bool, error) {
		return rules.Complete(cur, holder, result, s.now())
	})
	if err != nil {
		return state.Claim{}, err
	}
	return c, nil
}

// CompleteUnclaimed implements state.Claims.
func (s *Store) CompleteUnclaimed(ctx context.Context, sessionID, key, holder string, ttl time.Duration, result []byte, out ...state.OutboxEvent) (state.Claim, bool, error) {
	if err := state.ValidateClaimKey(sessionID, key, holder); err != nil {
		return state.Claim{}, false, err
	}
	if err := state.ValidateOutbox(out); err != nil {
		return state.Claim{}, false, err
	}
	return s.changeClaim(ctx, sessionID, key, out, func(cur *state.Claim) (state.Claim, bool, error) {
		return rules.CompleteUnclaimed(cur, sessionID, key, holder, ttl, result, s.now())
	})
}

// changeClaim reads the key's claim in a write transaction and lets decide
// compute the next one (nil: no live claim); when decide says write, it
// stores that claim and writes out in the same transaction. It returns the
// claim decide returned and whether it was written.
func (s *Store) changeClaim(ctx context.Context, sessionID, key string, out []state.OutboxEvent,
	decide func(cur *state.Claim) (next state.Claim, write bool, err error)) (state.Claim, bool, error) {
	var (
		next  state.Claim
		write bool
	)
	err := s.tx(ctx, func(tx *wtx) error {
		cur, err := s.getClaim(ctx, tx, sessionID, key)
		if err != nil {
			return err
		}
		next, write, err = decide(cur)
		if err != nil || !write {
			return err
		}
		if err := s.putClaim(ctx, tx, next); err != nil {
			return err
		}
		return s.writeOutbox(ctx, tx, out)
	})
	if err != nil {
		return state.Claim{}, false, err
	}
	return next, write, nil
}

// GetClaim implements state.Claims.
func (s *Store) GetClaim(ctx context.Context, sessionID, key string) (state.Claim, error) {
	if err := state.ValidateSessionID(sessionID); err != nil {
		return state.Claim{}, err
	}
	if err := state.ValidateID("claim key", key); err != nil {
		return state.Claim{}, err
	}
	cur, err := s.getClaim(ctx, nil, sessionID, key)
	if err != nil {
		return state.Claim{}, err
	}
	if !rules.Live(cur, rules.Millis(s.now())) {
		return state.Claim{}, fmt.Errorf("claim %q: %w", key, state.ErrNotFound)
	}
	return *cur, nil
}

func validateStep(key state.StepKey) error {
	if err := state.ValidateSessionID(key.SessionID); err != nil {
		return err
	}
	if key.Step < 0 {
		return fmt.Errorf("%w: negative step %d", state.ErrInvalid, key.Step)
	}
	return nil
}

// readStep reads a step in tx, or from the read pool when tx is nil.
func (s *Store) readStep(ctx context.Context, tx *wtx, key state.StepKey) (state.StepState, bool, error) {
	st := state.StepState{Key: key}
	var (
		expected sql.NullString
		done     int
		exists   = true
	)
	err := s.queryRow(ctx, tx, qGetStep, key.SessionID, key.Step).Scan(&expected, &done)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		exists = false
	case err != nil:
		return st, false, fmt.Errorf("read step %v: %w", key, err)
	}
	st.Done = done != 0
	if expected.Valid {
		if err := json.Unmarshal([]byte(expected.String), &st.Expected); err != nil {
			return st, false, fmt.Errorf("read step %v: expected calls: %w", key, err)
		}
	}
	rows, err := s.query(ctx, tx, qStepResults, key.SessionID, key.Step)
	if err != nil {
		return st, false, fmt.Errorf("read step %v results: %w", key, err)
	}
	defer rows.Close()
	for rows.Next() {
		var r state.CallResult
		if err := rows.Scan(&r.CallID, &r.Result); err != nil {
			return st, false, fmt.Errorf("read step %v results: %w", key, err)
		}
		st.Results = append(st.Results, r)
	}
	if err := rows.Err(); err != nil {
		return st, false, fmt.Errorf("read step %v results: %w", key, err)
	}
	return st, exists, nil
}

// OpenStep implements state.FanIn.
func (s *Store) OpenStep(ctx context.Context, key state.StepKey, callIDs []string, out ...state.OutboxEvent) (state.StepState, bool, error) {
	if err := validateStep(key); err != nil {
		return state.StepState{}, false, err
	}
	ids, err := state.NormaliseCallIDs(callIDs)
	if err != nil {
		return state.StepState{}, false, err
	}
	if err := state.ValidateOutbox(out); err != nil {
		return state.StepState{}, false, err
	}
	var (
		st     state.StepState
		opened bool
	)
	err = s.tx(ctx, func(tx *wtx) error {
		cur, _, err := s.readStep(ctx, tx, key)
		if err != nil {
			return err
		}
		if cur.Expected != nil {
			st = cur
			return nil
		}
		enc, _ := json.Marshal(ids)
		if _, err := s.exec(ctx, tx, qOpenStep,
			key.SessionID, key.Step, string(enc)); err != nil {
			return fmt.Errorf("open step %v: %w", key, err)
		}
		if err := s.writeOutbox(ctx, tx, out); err != nil {
			return err
		}
		cur.Expected = ids
		st, opened = cur, true
		return nil
	})
	if err != nil {
		return state.StepState{}, false, err
	}
	return st, opened, nil
}

// RecordResult implements state.FanIn.
func (s *Store) RecordResult(ctx context.Context, key state.StepKey, callID string, result []byte) (state.StepState, error) {
	if err := validateResult(key, callID, result); err != nil {
		return state.StepState{}, err
	}
	var st state.StepState
	err := s.tx(ctx, func(tx *wtx) error {
		var err error
		st, err = s.recordIn(ctx, tx, key, callID, result)
		return err
	})
	if err != nil {
		return state.StepState{}, err
	}
	return st, nil
}

// RecordAndComplete implements state.FanIn in one transaction.
func (s *Store) RecordAndComplete(ctx context.Context, key state.StepKey, callID string, result []byte, complete func(state.StepState) ([]state.OutboxEvent, error)) (state.StepState, bool, error) {
	if err := validateResult(key, callID, result); err != nil {
		return state.StepState{}, false, err
	}
	var (
		st        state.StepState
		completed bool
	)
	err := s.tx(ctx, func(tx *wtx) error {
		completed = false
		var err error
		if st, err = s.recordIn(ctx, tx, key, callID, result); err != nil || st.Done || !st.AllIn() {
			return err
		}
		out, err := complete(st)
		if err != nil {
			return err
		}
		if err := state.ValidateOutbox(out); err != nil {
			return err
		}
		completed, err = s.completeIn(ctx, tx, key, out)
		st.Done = st.Done || completed
		return err
	})
	if err != nil {
		return state.StepState{}, false, err
	}
	return st, completed, nil
}

// CompleteStep implements state.FanIn.
func (s *Store) CompleteStep(ctx context.Context, key state.StepKey, out ...state.OutboxEvent) (bool, error) {
	if err := validateStep(key); err != nil {
		return false, err
	}
	if err := state.ValidateOutbox(out); err != nil {
		return false, err
	}
	first := false
	err := s.tx(ctx, func(tx *wtx) error {
		var err error
		first, err = s.completeIn(ctx, tx, key, out)
		return err
	})
	if err != nil {
		return false, err
	}
	return first, nil
}

func validateResult(key state.StepKey, callID string, result []byte) error {
	if err := validateStep(key); err != nil {
		return err
	}
	if err := state.ValidateID("call id", callID); err != nil {
		return err
	}
	if len(result) > state.MaxInlineValue {
		return fmt.Errorf("call result of %d bytes, max %d: %w", len(result), state.MaxInlineValue, state.ErrTooLarge)
	}
	return nil
}

// recordIn records callID's result (the first one stays) in tx and returns
// the step's state after it.
func (s *Store) recordIn(ctx context.Context, tx *wtx, key state.StepKey, callID string, result []byte) (state.StepState, error) {
	if _, err := s.exec(ctx, tx, qRecordResult,
		key.SessionID, key.Step, callID, nonNil(result)); err != nil {
		return state.StepState{}, fmt.Errorf("record result %v/%s: %w", key, callID, err)
	}
	st, _, err := s.readStep(ctx, tx, key)
	return st, err
}

// completeIn marks the step done in tx, writing out, if it was not done:
// first reports whether this call did it.
func (s *Store) completeIn(ctx context.Context, tx *wtx, key state.StepKey, out []state.OutboxEvent) (first bool, err error) {
	res, err := s.exec(ctx, tx, qCompleteStep, key.SessionID, key.Step)
	if err != nil {
		return false, fmt.Errorf("complete step %v: %w", key, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	return true, s.writeOutbox(ctx, tx, out)
}

// PendingOutbox implements state.Outbox (oldest first, in fact).
func (s *Store) PendingOutbox(ctx context.Context, limit int) ([]state.OutboxEvent, error) {
	rows, err := s.query(ctx, nil, qPendingOutbox, state.PageSize(limit))
	if err != nil {
		return nil, fmt.Errorf("pending outbox: %w", err)
	}
	defer rows.Close()
	var out []state.OutboxEvent
	for rows.Next() {
		var e state.OutboxEvent
		if err := rows.Scan(&e.ID, &e.Payload); err != nil {
			return nil, fmt.Errorf("pending outbox: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pending outbox: %w", err)
	}
	return out, nil
}

// MarkSent implements state.Outbox.
func (s *Store) MarkSent(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	return s.tx(ctx, func(tx *wtx) error {
		for _, id := range ids {
			if _, err := s.exec(ctx, tx, qDeleteOutbox, id); err != nil {
				return fmt.Errorf("mark sent %q: %w", id, err)
			}
		}
		return nil
	})
}
