package local

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// sqliteMagic starts every SQLite database file: the bus files written
// before the journal became a plain file (see journal.go) were SQLite.
const sqliteMagic = "SQLite format 3\x00"

// loadSQLite reads a bus file of an earlier format into st, for migration.
// Two formats were SQLite: the first kept a row per message and queue in a
// messages table; the second appended each group commit's records
// (record.go) as a row of a log table. Both kept dead letters in a table.
// The file is closed again before loadSQLite returns; the caller replaces
// it.
func loadSQLite(ctx context.Context, path string, st *replayed) (err error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(2000)")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	tables := map[string]bool{}
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}
		tables[name] = true
	}
	if err := closeRows(rows); err != nil {
		return err
	}
	if tables["messages"] {
		if err := loadFirstFormat(ctx, db, st); err != nil {
			return fmt.Errorf("messages table: %w", err)
		}
	}
	if tables["log"] {
		rows, err := db.QueryContext(ctx, `SELECT seq, rec FROM log ORDER BY seq`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var (
				seq int64
				rec []byte
			)
			if err := rows.Scan(&seq, &rec); err != nil {
				rows.Close()
				return err
			}
			if err := replay(rec, st); err != nil {
				rows.Close()
				return fmt.Errorf("log row %d: %w", seq, err)
			}
		}
		if err := closeRows(rows); err != nil {
			return err
		}
	}
	if !tables["dead_letters"] {
		return nil
	}
	rows, err = db.QueryContext(ctx, `SELECT id, queue, body, sent_at, receive_count, reason, dead_at FROM dead_letters ORDER BY id`)
	if err != nil {
		return err
	}
	for rows.Next() {
		d := &deadMsg{persisted: true}
		var sent, dead int64
		if err := rows.Scan(&d.id, &d.queue, &d.body, &sent, &d.receives, &d.reason, &dead); err != nil {
			rows.Close()
			return err
		}
		d.sentAt, d.deadAt = fromNanos(sent), fromNanos(dead)
		st.dead[d.id] = d
	}
	return closeRows(rows)
}

// loadFirstFormat reads the first format's messages table.
func loadFirstFormat(ctx context.Context, db *sql.DB, st *replayed) error {
	rows, err := db.QueryContext(ctx, `SELECT id, queue, body, sent_at, receive_count, delay_until, reason FROM messages`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var (
			s           stored
			sent, delay int64
		)
		if err := rows.Scan(&s.id, &s.queue, &s.body, &sent, &s.receives, &delay, &s.reason); err != nil {
			rows.Close()
			return err
		}
		s.sentAt, s.delayUntil = fromNanos(sent), fromNanos(delay)
		st.live[s.id] = &s
	}
	return closeRows(rows)
}

func closeRows(rows *sql.Rows) error {
	return errors.Join(rows.Err(), rows.Close())
}

// removeSQLiteSidecars deletes the WAL and shared-memory files SQLite may
// have left beside path; after a migration they belong to no database.
func removeSQLiteSidecars(path string) error {
	var errs []error
	for _, p := range []string{path + "-wal", path + "-shm", path + "-journal"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
