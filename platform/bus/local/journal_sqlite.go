package local

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"slices"
	"time"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// journal is the durable half of the bus: every state change the engine
// makes in memory is written here in the same batch, and the engine's state
// is rebuilt from it on open. Only the engine goroutine touches it.
//
// Messages are kept as a log (record.go): each group commit appends ONE row
// holding a record per message it changed. The first format kept a row per
// message and queue, so an event routed to three queues, delivered and
// acked there cost nine row writes in two b-tree places; now it is a few
// dozen bytes appended to the log's last page per commit. The log is
// compacted when it has grown past twice what its last compaction wrote.
// Dead letters, written rarely and read by `agentbus dlq`, keep their table.
type journal struct {
	db   *sql.DB
	conn *sql.Conn

	insDead, delDead, beginSt, commitSt, appendSt *sql.Stmt
	row                                           rowEncoder
	inTx                                          bool
	// sinceCheckpoint approximates WAL growth (records written) since the
	// last checkpoint.
	sinceCheckpoint int
	// logBytes is what the log holds since its last compaction; snapBytes
	// is what that compaction wrote.
	logBytes, snapBytes int
	compactMin          int // Options.CompactAt, default compactMin
	// legacy: the file still has the first format's messages table; the
	// first compaction moves its rows into the log (and only a compaction
	// may drop it: its rows are live until a snapshot holds them).
	legacy bool
	// retryAt: after a failed compaction, the log size to wait for before
	// trying again (0: no failure pending).
	retryAt int
}

const (
	checkpointIdle  = 2_000  // records: checkpoint when idle past this
	checkpointForce = 50_000 // records: checkpoint even when busy

	// compactMin is the log size below which it is never compacted; above
	// it, the log is compacted once it is twice what the last compaction
	// wrote. So the file stays within a few times the live messages, and a
	// long-lived message is rewritten once per doubling.
	compactMin = 8 << 20
	// snapRow caps one row of a compaction.
	snapRow = 1 << 20
)

const schema = `
CREATE TABLE IF NOT EXISTS log (
	seq INTEGER PRIMARY KEY,
	rec BLOB    NOT NULL -- one group commit's message records (record.go)
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
	j := &journal{db: db, conn: conn, compactMin: compactMin}
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
	var n int
	if err := j.conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'messages'`).Scan(&n); err != nil {
		return err
	}
	j.legacy = n > 0
	for _, p := range []struct {
		s **sql.Stmt
		q string
	}{
		{&j.insDead, `INSERT INTO dead_letters (id, queue, body, sent_at, receive_count, reason, dead_at) VALUES (?, ?, ?, ?, ?, ?, ?)`},
		{&j.delDead, `DELETE FROM dead_letters WHERE id = ?`},
		{&j.beginSt, `BEGIN IMMEDIATE`},
		{&j.commitSt, `COMMIT`},
		{&j.appendSt, `INSERT INTO log (rec) VALUES (?)`},
	} {
		var err error
		if *p.s, err = j.conn.PrepareContext(ctx, p.q); err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
	}
	return nil
}

func (j *journal) close() error {
	for _, s := range []*sql.Stmt{j.insDead, j.delDead, j.beginSt, j.commitSt, j.appendSt} {
		if s != nil {
			s.Close()
		}
	}
	if j.conn != nil {
		j.conn.Close()
	}
	return j.db.Close()
}

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

func (j *journal) begin(ctx context.Context) error {
	if _, err := j.beginSt.ExecContext(ctx); err != nil {
		return err
	}
	j.inTx = true
	return nil
}

func (j *journal) commit(ctx context.Context) error {
	j.inTx = false
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

// flushMsgs appends one log row with the messages' changes: the whole
// message when it was never written, its mutable fields when it was, a
// delete when a written message is gone.
func (j *journal) flushMsgs(ctx context.Context, ms []*msg) error {
	j.sinceCheckpoint += len(ms)
	j.row.reset()
	for _, m := range ms {
		switch {
		case m.state == stGone && m.persisted:
			j.row.del(m)
		case m.state == stGone:
			// Born and gone in one batch: never written.
		case m.persisted:
			j.row.update(m)
		default:
			j.row.put(m)
		}
	}
	if len(j.row.buf) == 0 {
		return nil
	}
	j.logBytes += len(j.row.buf)
	_, err := j.appendSt.ExecContext(ctx, j.row.buf)
	return err
}

// needsCompaction reports whether the log should be rewritten: in an idle
// moment once it is due, and regardless once it is four times past due
// (a bus that is never idle).
func (j *journal) needsCompaction(idle bool) bool {
	if j.retryAt > 0 && j.logBytes < j.retryAt {
		return false
	}
	due := max(j.compactMin, 2*j.snapBytes)
	if !idle {
		due *= 4
	}
	return j.legacy || j.logBytes >= due
}

// compact rewrites the log as the live messages alone (live calls its
// argument for each one) and drops every older row, in one transaction. It
// changes nothing in the engine's memory, so a failed compaction only leaves
// the log as long as it was.
func (j *journal) compact(ctx context.Context, live func(func(*msg))) (err error) {
	if err := j.begin(ctx); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			j.rollback(ctx)
			// Try again once another quarter of the threshold is written,
			// not after every commit.
			j.retryAt = j.logBytes + j.compactMin/4
		}
	}()
	var first int64
	if err := j.conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) + 1 FROM log`).Scan(&first); err != nil {
		return err
	}
	written := 0
	var werr error
	emit := func() {
		if werr == nil && len(j.row.buf) > 0 {
			written += len(j.row.buf)
			_, werr = j.appendSt.ExecContext(ctx, j.row.buf)
		}
		j.row.reset()
	}
	j.row.reset()
	live(func(m *msg) {
		j.row.put(m)
		if len(j.row.buf) >= snapRow {
			emit()
		}
	})
	emit()
	if werr != nil {
		return werr
	}
	if _, err := j.conn.ExecContext(ctx, `DELETE FROM log WHERE seq < ?`, first); err != nil {
		return err
	}
	if j.legacy {
		if _, err := j.conn.ExecContext(ctx, `DROP TABLE messages`); err != nil {
			return err
		}
	}
	if err := j.commit(ctx); err != nil {
		return err
	}
	j.legacy, j.retryAt = false, 0
	j.logBytes, j.snapBytes = written, written
	// The old rows' pages are free now: let the next idle moment checkpoint.
	j.sinceCheckpoint = max(j.sinceCheckpoint, checkpointIdle)
	return nil
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

// load reads every live message, in id order, and every dead letter.
func (j *journal) load(ctx context.Context, onMsg func(s *stored), onDead func(d *deadMsg)) error {
	live := map[int64]*stored{}
	if j.legacy {
		if err := j.loadLegacy(ctx, live); err != nil {
			return err
		}
	}
	rows, err := j.conn.QueryContext(ctx, `SELECT seq, rec FROM log ORDER BY seq`)
	if err != nil {
		return err
	}
	j.logBytes = 0
	for rows.Next() {
		var (
			seq int64
			rec []byte
		)
		if err := rows.Scan(&seq, &rec); err != nil {
			rows.Close()
			return err
		}
		j.logBytes += len(rec)
		if err := replay(rec, live); err != nil {
			rows.Close()
			return fmt.Errorf("log row %d: %w", seq, err)
		}
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}
	ids := make([]int64, 0, len(live))
	for id := range live {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		onMsg(live[id])
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

// loadLegacy reads the first format's messages table.
func (j *journal) loadLegacy(ctx context.Context, live map[int64]*stored) error {
	rows, err := j.conn.QueryContext(ctx, `SELECT id, queue, body, sent_at, receive_count, delay_until, reason FROM messages`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			s           stored
			sent, delay int64
		)
		if err := rows.Scan(&s.id, &s.queue, &s.body, &sent, &s.receives, &delay, &s.reason); err != nil {
			return err
		}
		s.sentAt, s.delayUntil = fromNanos(sent), fromNanos(delay)
		live[s.id] = &s
	}
	return rows.Err()
}
