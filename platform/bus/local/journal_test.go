package local

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

func TestRecordsReplay(t *testing.T) {
	t.Parallel()
	q1, q2 := &queueState{name: "q1"}, &queueState{name: "q2"}
	shared := []byte(`{"shared":true}`)
	at := time.Unix(1700000000, 123)
	delay := at.Add(time.Minute)
	tests := []struct {
		name string
		rows [][]func(w *rowEncoder)
		want map[int64]stored
	}{
		{
			name: "one event fanned out to two queues stores its body once",
			rows: [][]func(w *rowEncoder){{
				func(w *rowEncoder) { w.put(&msg{id: 1, q: q1, body: shared, sentAt: at}) },
				func(w *rowEncoder) { w.put(&msg{id: 2, q: q2, body: shared, sentAt: at}) },
			}},
			want: map[int64]stored{
				1: {id: 1, queue: "q1", body: shared, sentAt: at},
				2: {id: 2, queue: "q2", body: shared, sentAt: at},
			},
		},
		{
			name: "updates and deletes in later rows",
			rows: [][]func(w *rowEncoder){
				{
					func(w *rowEncoder) { w.put(&msg{id: 1, q: q1, body: []byte("a"), sentAt: at}) },
					func(w *rowEncoder) { w.put(&msg{id: 2, q: q1, body: []byte("b"), sentAt: at}) },
				},
				{
					func(w *rowEncoder) {
						w.update(&msg{id: 1, receives: 3, state: stTimed, visibleAt: delay, reason: "boom"})
					},
					func(w *rowEncoder) { w.del(&msg{id: 2}) },
				},
			},
			want: map[int64]stored{1: {id: 1, queue: "q1", body: []byte("a"), sentAt: at, receives: 3, delayUntil: delay, reason: "boom"}},
		},
		{
			name: "an in-flight message is stored without its visibility",
			rows: [][]func(w *rowEncoder){{
				func(w *rowEncoder) {
					w.put(&msg{id: 7, q: q2, body: []byte("x"), receives: 1, state: stTimed, inflight: true, visibleAt: delay})
				},
			}},
			want: map[int64]stored{7: {id: 7, queue: "q2", body: []byte("x"), receives: 1}},
		},
		{
			name: "an empty body",
			rows: [][]func(w *rowEncoder){{func(w *rowEncoder) { w.put(&msg{id: 3, q: q1, sentAt: at}) }}},
			want: map[int64]stored{3: {id: 3, queue: "q1", body: []byte{}, sentAt: at}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			live := map[int64]*stored{}
			var w rowEncoder
			for _, row := range tt.rows {
				w.reset()
				for _, f := range row {
					f(&w)
				}
				if err := replay(w.buf, live); err != nil {
					t.Fatal(err)
				}
			}
			if len(live) != len(tt.want) {
				t.Fatalf("replayed %d messages, want %d", len(live), len(tt.want))
			}
			for id, want := range tt.want {
				got := live[id]
				if got == nil {
					t.Fatalf("message %d missing", id)
				}
				if got.queue != want.queue || string(got.body) != string(want.body) || !got.sentAt.Equal(want.sentAt) ||
					got.receives != want.receives || !got.delayUntil.Equal(want.delayUntil) || got.reason != want.reason {
					t.Errorf("message %d = %+v, want %+v", id, *got, want)
				}
			}
		})
	}
}

func TestSharedBodyIsWrittenOnce(t *testing.T) {
	t.Parallel()
	body := []byte(strings.Repeat("b", 1000))
	var w rowEncoder
	for i := range 3 {
		w.put(&msg{id: int64(i + 1), q: &queueState{name: "q"}, body: body})
	}
	if len(w.buf) > 1100 {
		t.Errorf("three queues' copies of a 1000-byte event took %d bytes, want the body once", len(w.buf))
	}
}

func TestReplayRejectsCorruptRows(t *testing.T) {
	t.Parallel()
	var w rowEncoder
	w.put(&msg{id: 1, q: &queueState{name: "q"}, body: []byte("body")})
	good := append([]byte(nil), w.buf...)
	tests := []struct {
		name string
		row  []byte
	}{
		{"unknown tag", []byte{'X', 1}},
		{"truncated put", good[:len(good)-2]},
		{"body longer than the row", append([]byte{recPut, 2, 1, 'q', 0, 0, 0, 0}, 100)},
		{"reference to a body not in the row", []byte{recPut, 2, 1, 'q', 0, 0, 0, 0, 0, 1}},
		{"truncated varint", []byte{recDelete, 0x80}},
		{"receive count out of range", []byte{recUpdate, 2, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := replay(tt.row, map[int64]*stored{}); !errors.Is(err, errCorrupt) {
				t.Errorf("replay = %v, want errCorrupt", err)
			}
		})
	}
}

func FuzzReplay(f *testing.F) {
	var w rowEncoder
	q := &queueState{name: "q"}
	w.put(&msg{id: 1, q: q, body: []byte("a")})
	w.put(&msg{id: 2, q: q, body: w.buf[len(w.buf)-1:]})
	w.update(&msg{id: 1, receives: 2, reason: "r"})
	w.del(&msg{id: 2})
	f.Add(w.buf)
	f.Fuzz(func(t *testing.T, row []byte) {
		if err := replay(row, map[int64]*stored{}); err != nil && !errors.Is(err, errCorrupt) {
			t.Fatalf("error not marked corrupt: %v", err)
		}
	})
}

// busFile opens a durable bus at path routing source "s" to queue "q".
func busFile(t *testing.T, path string) *Bus {
	t.Helper()
	b, err := Open(context.Background(), Options{
		Path:   path,
		Rules:  []Rule{{Name: "r", Pattern: []byte(`{"source":["s"]}`), Queue: "q"}},
		Queues: []QueueConfig{{Name: "q", MaxReceiveCount: 10}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func logRows(t *testing.T, b *Bus) (rows, bytes int) {
	t.Helper()
	r := &inspectReq{errReq: newErrReq(), f: func(e *engine) {
		err := e.j.conn.QueryRowContext(context.Background(), `SELECT COUNT(*), COALESCE(SUM(LENGTH(rec)), 0) FROM log`).Scan(&rows, &bytes)
		if err != nil {
			t.Error(err)
		}
	}}
	if err := b.do(context.Background(), r, r.ch); err != nil {
		t.Fatal(err)
	}
	return rows, bytes
}

// onEngine runs f on b's engine goroutine.
func onEngine(t *testing.T, b *Bus, f func(e *engine)) {
	t.Helper()
	r := &inspectReq{errReq: newErrReq(), f: f}
	if err := b.do(context.Background(), r, r.ch); err != nil {
		t.Fatal(err)
	}
}

// churn publishes n events of ~600 bytes to queue q, receives each, leaves
// every 50th in flight (delivered again after a reopen) and acks the rest.
// It returns the ids left in flight.
func churn(t *testing.T, b *Bus, from, n int) map[string]bool {
	t.Helper()
	ctx := context.Background()
	q := b.Queue("q")
	pad := strings.Repeat("p", 500)
	kept := map[string]bool{}
	for i := from; i < from+n; i++ {
		ev := event.New()
		ev.SetID(fmt.Sprint(i))
		ev.SetSource("s")
		ev.SetType("t")
		if err := ev.SetData(event.ApplicationJSON, map[string]string{"pad": pad}); err != nil {
			t.Fatal(err)
		}
		if err := b.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
		msgs, err := q.Receive(ctx, 1, 0, time.Minute)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("receive: %d, %v", len(msgs), err)
		}
		if i%50 == 0 {
			kept[ev.ID()] = true
		} else if err := q.Ack(ctx, msgs[0].Receipt); err != nil {
			t.Fatal(err)
		}
	}
	return kept
}

// wantAfterReopen reopens the bus file and checks that exactly the kept
// messages come back, each delivered for the second time.
func wantAfterReopen(t *testing.T, path string, kept map[string]bool) {
	t.Helper()
	b := busFile(t, path)
	defer b.Close()
	msgs, err := b.Queue("q").Receive(context.Background(), len(kept)+10, 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(kept) {
		t.Fatalf("after reopen: %d messages, want %d", len(msgs), len(kept))
	}
	for _, m := range msgs {
		if !kept[m.Event.ID()] || m.ReceiveCount != 2 {
			t.Errorf("message %s with ReceiveCount %d, want one of the kept ones with 2", m.Event.ID(), m.ReceiveCount)
		}
	}
}

func TestCompactionKeepsLiveMessages(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "bus.db")
	b := busFile(t, path)
	// Compact once the log holds 64 KiB.
	onEngine(t, b, func(e *engine) { e.j.compactMin = 64 << 10 })
	kept := churn(t, b, 0, 400)
	rows, size := logRows(t, b)
	if size > 200<<10 {
		t.Errorf("log holds %d bytes in %d rows after ~250 KiB of writes with 8 messages live: never compacted", size, rows)
	}
	b.Close()
	wantAfterReopen(t, path, kept)
}

// TestFailedCompactionLosesNothing makes compactions fail (a trigger
// refuses the delete of the old rows), checks that they are not retried
// after every commit, then lets them succeed.
func TestFailedCompactionLosesNothing(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "bus.db")
	b := busFile(t, path)
	onEngine(t, b, func(e *engine) {
		e.j.compactMin = 64 << 10
		if _, err := e.j.conn.ExecContext(context.Background(),
			`CREATE TRIGGER refuse BEFORE DELETE ON log BEGIN SELECT RAISE(ABORT, 'refused'); END`); err != nil {
			t.Error(err)
		}
	})
	kept := churn(t, b, 0, 200)
	var retryAt, logBytes int
	onEngine(t, b, func(e *engine) { retryAt, logBytes = e.j.retryAt, e.j.logBytes })
	if retryAt <= logBytes-16<<10 || b.EngineStats().Compactions != 0 {
		t.Fatalf("after failed compactions: retry at %d bytes with %d in the log, %d compactions; want a retry point ahead and none done",
			retryAt, logBytes, b.EngineStats().Compactions)
	}
	onEngine(t, b, func(e *engine) {
		if _, err := e.j.conn.ExecContext(context.Background(), `DROP TRIGGER refuse`); err != nil {
			t.Error(err)
		}
	})
	for id := range churn(t, b, 200, 300) {
		kept[id] = true
	}
	if b.EngineStats().Compactions == 0 {
		t.Fatal("no compaction succeeded after the trigger was dropped")
	}
	b.Close()
	wantAfterReopen(t, path, kept)
}

// TestFirstFormatFileIsMigrated opens a bus file written in the first
// format (a row per message) and checks its messages survive into the log.
func TestFirstFormatFileIsMigrated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "bus.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	body := appendEnvelope(nil, "s", "t", []byte(`{"specversion":"1.0","id":"old","source":"s","type":"t"}`), "old", time.Now(), "000000000000", "local")
	for _, s := range []string{
		`PRAGMA journal_mode=WAL`,
		`CREATE TABLE messages (id INTEGER PRIMARY KEY, queue TEXT NOT NULL, body BLOB NOT NULL, sent_at INTEGER NOT NULL,
			receive_count INTEGER NOT NULL, delay_until INTEGER NOT NULL, reason TEXT NOT NULL)`,
	} {
		if _, err := db.ExecContext(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO messages VALUES (41, 'q', ?, 1, 2, 0, 'earlier failure')`, body); err != nil {
		t.Fatal(err)
	}
	db.Close()

	for round := 3; round <= 4; round++ {
		b := busFile(t, path)
		msgs, err := b.Queue("q").Receive(ctx, 10, 0, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 1 || msgs[0].Event.ID() != "old" || msgs[0].ReceiveCount != round {
			t.Fatalf("round %d: received %d messages (%+v), want the old one with ReceiveCount %d", round, len(msgs), msgs, round)
		}
		var tables int
		var nextID int64
		r := &inspectReq{errReq: newErrReq(), f: func(e *engine) {
			nextID = e.nextID
			err = e.j.conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE name = 'messages'`).Scan(&tables)
		}}
		if derr := b.do(ctx, r, r.ch); derr != nil || err != nil {
			t.Fatal(derr, err)
		}
		if tables != 0 {
			t.Errorf("round %d: the first format's messages table is still there", round)
		}
		if nextID <= 41 {
			t.Errorf("round %d: next message id %d would reuse the old message's", round, nextID)
		}
		b.Close()
	}
}
