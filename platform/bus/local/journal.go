package local

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// journal is the durable half of the bus: every state change the engine
// makes in memory is written here in the same batch, and the engine's state
// is rebuilt from it on open. Only the engine goroutine touches it.
type journal struct {
	db   *sql.DB
	conn *sql.Conn

	insDead, delDead, beginSt, commitSt *sql.Stmt
	// upsert[n] and del[n] write n messages in one statement; batches are
	// cut into chunks of these sizes, so per-row statement overhead is paid
	// once per chunk.
	upsert, del map[int]*sql.Stmt
	args        []any
	inTx        bool
	// sinceCheckpoint approximates WAL growth (rows written) since the
	// last checkpoint.
	sinceCheckpoint int
}

const (
	checkpointIdle  = 2_000  // rows: checkpoint when idle past this
	checkpointForce = 50_000 // rows: checkpoint even when busy
)

// maybeCheckpoint copies the WAL back into the database file when enough was
// written: when the engine is idle, or regardless once the WAL is large. A
// checkpoint fsyncs, so doing it in an idle moment keeps it out of the
// latency of publishes and receives.
func (j *journal) maybeCheckpoint(ctx context.Context, idle bool) error {
	if j.sinceCheckpoint < checkpointIdle || (!idle && j.sinceCheckpoint < checkpointForce) {
		return nil
	}
	j.sinceCheckpoint = 0
	_, err := j.conn.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
	return err
}

// chunks are the multi-row statement sizes, largest first.
var chunks = []int{64, 16, 4, 1}

const schema = `
CREATE TABLE IF NOT EXISTS messages (
	id            INTEGER PRIMARY KEY,
	queue         TEXT    NOT NULL,
	body          BLOB    NOT NULL,
	sent_at       INTEGER NOT NULL, -- unix nanoseconds
	receive_count INTEGER NOT NULL,
	delay_until   INTEGER NOT NULL, -- unix nanoseconds; 0 = visible at once after a restart
	reason        TEXT    NOT NULL  -- last failure reason ('' if none)
);
CREATE TABLE IF NOT EXISTS dead_letters (
	id            INTEGER PRIMARY KEY,
	queue         TEXT    NOT NULL,
	body          BLOB    NOT NULL,
	sent_at       INTEGER NOT NULL,
	receive_count INTEGER NOT NULL,
	reason        TEXT    NOT NULL,
	dead_at       INTEGER NOT NULL
);
`

func openJournal(ctx context.Context, path, synchronous string) (*journal, error) {
	q := url.Values{}
	// One process owns the bus: the engine's memory is the truth while it
	// runs, so a second process must not write behind its back. EXCLUSIVE
	// locking holds the file lock for the connection's life (a second opener
	// fails with "database is locked"), and, set before WAL is entered, keeps
	// the WAL index in heap memory instead of a shared-memory file.
	q.Add("_pragma", "locking_mode(EXCLUSIVE)")

	q.Add("_pragma", "busy_timeout(2000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+synchronous+")")
	// Multi-row statements keep a statement journal; in memory, not a temp
	// file.
	q.Add("_pragma", "temp_store(MEMORY)")
	// Checkpoints (which fsync) are run by the engine when it is idle
	// instead of inside whichever commit crosses 1000 WAL pages: see
	// journal.maybeCheckpoint.
	q.Add("_pragma", "wal_autocheckpoint(0)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("local bus: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxLifetime(0)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("local bus: open %s: %w", path, err)
	}
	j := &journal{db: db, conn: conn}
	if err := j.init(ctx); err != nil {
		j.close()
		return nil, fmt.Errorf("local bus: open %s: %w", path, err)
	}
	return j, nil
}

func (j *journal) init(ctx context.Context) error {
	if _, err := j.conn.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	var mode string
	if err := j.conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if mode != "wal" {
		return fmt.Errorf("journal_mode is %q, want wal", mode)
	}
	prep := func(s **sql.Stmt, q string) error {
		var err error
		*s, err = j.conn.PrepareContext(ctx, q)
		return err
	}
	for _, p := range []struct {
		s **sql.Stmt
		q string
	}{
		{&j.insDead, `INSERT INTO dead_letters (id, queue, body, sent_at, receive_count, reason, dead_at) VALUES (?, ?, ?, ?, ?, ?, ?)`},
		{&j.delDead, `DELETE FROM dead_letters WHERE id = ?`},
		{&j.beginSt, `BEGIN IMMEDIATE`},
		{&j.commitSt, `COMMIT`},
	} {
		if err := prep(p.s, p.q); err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
	}
	j.upsert, j.del = map[int]*sql.Stmt{}, map[int]*sql.Stmt{}
	for _, n := range chunks {
		// An existing row only takes the mutable columns (its body param is
		// an empty placeholder); a new row is inserted whole.
		q := `INSERT INTO messages (id, queue, body, sent_at, receive_count, delay_until, reason) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?), ", n), ", ") +
			` ON CONFLICT (id) DO UPDATE SET receive_count = excluded.receive_count, delay_until = excluded.delay_until, reason = excluded.reason`
		var st *sql.Stmt
		if err := prep(&st, q); err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		j.upsert[n] = st
		q = `DELETE FROM messages WHERE id IN (` + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + `)`
		if err := prep(&st, q); err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		j.del[n] = st
	}
	return nil
}

func (j *journal) close() error {
	for _, s := range []*sql.Stmt{j.insDead, j.delDead, j.beginSt, j.commitSt} {
		if s != nil {
			s.Close()
		}
	}
	for _, m := range []map[int]*sql.Stmt{j.upsert, j.del} {
		for _, s := range m {
			s.Close()
		}
	}
	if j.conn != nil {
		j.conn.Close()
	}
	return j.db.Close()
}

func (j *journal) begin(ctx context.Context) error {
	if _, err := j.beginSt.ExecContext(ctx); err != nil {
		return err
	}
	j.inTx = true
	return nil
}

func (j *journal) commit(ctx context.Context) error {
	j.inTx = false
	j.sinceCheckpoint++
	if _, err := j.commitSt.ExecContext(ctx); err != nil {
		// A failed COMMIT may leave the transaction open; end it.
		_, _ = j.conn.ExecContext(ctx, "ROLLBACK")
		return err
	}
	return nil
}

func (j *journal) rollback(ctx context.Context) {
	if j.inTx {
		j.inTx = false
		_, _ = j.conn.ExecContext(ctx, "ROLLBACK")
	}
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// flushMsgs writes the messages' current state: upserts for live ones,
// deletes for gone ones that were written before.
func (j *journal) flushMsgs(ctx context.Context, ms []*msg) error {
	j.sinceCheckpoint += len(ms)
	var live, gone []*msg
	for _, m := range ms {
		switch {
		case m.state != stGone:
			live = append(live, m)
		case m.persisted:
			gone = append(gone, m)
		}
		// Born and gone in one batch: never written.
	}
	for len(live) > 0 {
		n := chunkFor(len(live))
		j.args = j.args[:0]
		for _, m := range live[:n] {
			body := m.body
			if m.persisted {
				body = []byte{}
			}
			j.args = append(j.args, m.id, m.q.name, body, nanos(m.sentAt), m.receives, nanos(m.delayUntil()), m.reason)
		}
		if _, err := j.upsert[n].ExecContext(ctx, j.args...); err != nil {
			return err
		}
		live = live[n:]
	}
	for len(gone) > 0 {
		n := chunkFor(len(gone))
		j.args = j.args[:0]
		for _, m := range gone[:n] {
			j.args = append(j.args, m.id)
		}
		if _, err := j.del[n].ExecContext(ctx, j.args...); err != nil {
			return err
		}
		gone = gone[n:]
	}
	clear(j.args)
	return nil
}

func chunkFor(n int) int {
	for _, c := range chunks {
		if n >= c {
			return c
		}
	}
	return 1
}

func (j *journal) flushDead(ctx context.Context, d *deadMsg) error {
	var err error
	switch {
	case d.gone && d.persisted:
		_, err = j.delDead.ExecContext(ctx, d.id)
	case d.gone:
	case !d.persisted:
		_, err = j.insDead.ExecContext(ctx, d.id, d.queue, d.body, nanos(d.sentAt), d.receives, d.reason, nanos(d.deadAt))
	}
	return err
}

// load reads every message and dead letter, in id order.
func (j *journal) load(ctx context.Context, onMsg func(id int64, queue string, body []byte, sentAt time.Time, receives int, delayUntil time.Time, reason string), onDead func(d *deadMsg)) error {
	rows, err := j.conn.QueryContext(ctx, `SELECT id, queue, body, sent_at, receive_count, delay_until, reason FROM messages ORDER BY id`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var (
			id, sent, delay int64
			queue, reason   string
			body            []byte
			receives        int
		)
		if err := rows.Scan(&id, &queue, &body, &sent, &receives, &delay, &reason); err != nil {
			rows.Close()
			return err
		}
		onMsg(id, queue, body, fromNanos(sent), receives, fromNanos(delay), reason)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = j.conn.QueryContext(ctx, `SELECT id, queue, body, sent_at, receive_count, reason, dead_at FROM dead_letters ORDER BY id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		d := &deadMsg{persisted: true}
		var sent, dead int64
		if err := rows.Scan(&d.id, &d.queue, &d.body, &sent, &d.receives, &d.reason, &dead); err != nil {
			return err
		}
		d.sentAt, d.deadAt = fromNanos(sent), fromNanos(dead)
		onDead(d)
	}
	return rows.Err()
}
