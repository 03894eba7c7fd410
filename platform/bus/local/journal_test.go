package local

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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
			st := newReplayed()
			var w rowEncoder
			for _, row := range tt.rows {
				w.reset()
				for _, f := range row {
					f(&w)
				}
				if err := replay(w.buf, st); err != nil {
					t.Fatal(err)
				}
			}
			live := st.live
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

func TestDeadLetterRecordsReplay(t *testing.T) {
	t.Parallel()
	at, later := time.Unix(1700000000, 5), time.Unix(1700000100, 7)
	body := []byte(`{"poison":true}`)
	var w rowEncoder
	st := newReplayed()
	// A message moved to the DLQ: its delete and its dead letter share a
	// row, and the dead letter's body refers to a put in the same row.
	w.put(&msg{id: 1, q: &queueState{name: "q"}, body: body, sentAt: at})
	w.dead(&deadMsg{id: 1, queue: "q", body: body, sentAt: at, receives: 5, reason: "boom", deadAt: later})
	w.dead(&deadMsg{id: 2, queue: "q", body: []byte("other"), sentAt: at, receives: 1, reason: "r2", deadAt: later})
	w.del(&msg{id: 1})
	if err := replay(w.buf, st); err != nil {
		t.Fatal(err)
	}
	w.reset()
	w.deadDel(&deadMsg{id: 2})
	if err := replay(w.buf, st); err != nil {
		t.Fatal(err)
	}
	if len(st.live) != 0 || len(st.dead) != 1 {
		t.Fatalf("replayed %d messages and %d dead letters, want 0 and 1", len(st.live), len(st.dead))
	}
	d := st.dead[1]
	if d == nil || d.queue != "q" || string(d.body) != string(body) || !d.sentAt.Equal(at) || d.receives != 5 ||
		d.reason != "boom" || !d.deadAt.Equal(later) || !d.persisted {
		t.Errorf("dead letter = %+v", d)
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
		{"truncated dead letter", []byte{recDead, 2, 1, 'q', 0}},
		{"dead letter body longer than the row", []byte{recDead, 2, 1, 'q', 0, 0, 0, 0, 50}},
		{"truncated put", good[:len(good)-2]},
		{"body longer than the row", append([]byte{recPut, 2, 1, 'q', 0, 0, 0, 0}, 100)},
		{"reference to a body not in the row", []byte{recPut, 2, 1, 'q', 0, 0, 0, 0, 0, 1}},
		{"truncated varint", []byte{recDelete, 0x80}},
		{"receive count out of range", []byte{recUpdate, 2, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := replay(tt.row, newReplayed()); !errors.Is(err, errCorrupt) {
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
	w.dead(&deadMsg{id: 1, queue: "q", body: []byte("a"), reason: "r"})
	w.deadDel(&deadMsg{id: 1})
	f.Add(w.buf)
	f.Fuzz(func(t *testing.T, row []byte) {
		if err := replay(row, newReplayed()); err != nil && !errors.Is(err, errCorrupt) {
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

// logSize reports the bytes of frames the journal holds.
func logSize(t *testing.T, b *Bus) int {
	t.Helper()
	var n int
	onEngine(t, b, func(e *engine) { n = e.j.logBytes() })
	return n
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
	if size := logSize(t, b); size > 200<<10 {
		t.Errorf("log holds %d bytes after ~250 KiB of writes with 8 messages live: never compacted", size)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != int64(logSize(t, b)+len(journalMagic)) {
		t.Errorf("file after compactions: %v, %v; want the journal's size", fi, err)
	}
	b.Close()
	wantAfterReopen(t, path, kept)
}

// TestFailedCompactionLosesNothing makes compactions fail (a folder with a
// file in it sits where the new file would be written), checks that they
// are not retried after every commit, then lets them succeed.
func TestFailedCompactionLosesNothing(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "bus.db")
	obstacle := path + ".compact"
	if err := os.MkdirAll(filepath.Join(obstacle, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	b := busFile(t, path)
	onEngine(t, b, func(e *engine) { e.j.compactMin = 64 << 10 })
	kept := churn(t, b, 0, 200)
	var retryAt, logBytes int
	onEngine(t, b, func(e *engine) { retryAt, logBytes = e.j.retryAt, e.j.logBytes() })
	if retryAt <= logBytes-16<<10 || b.EngineStats().Compactions != 0 {
		t.Fatalf("after failed compactions: retry at %d bytes with %d in the log, %d compactions; want a retry point ahead and none done",
			retryAt, logBytes, b.EngineStats().Compactions)
	}
	if err := os.RemoveAll(obstacle); err != nil {
		t.Fatal(err)
	}
	for id := range churn(t, b, 200, 300) {
		kept[id] = true
	}
	if b.EngineStats().Compactions == 0 {
		t.Fatal("no compaction succeeded after the obstacle was removed")
	}
	b.Close()
	wantAfterReopen(t, path, kept)
}

// sqliteFile creates an SQLite database where a bus file would be, to
// write an earlier format into.
func sqliteFile(t *testing.T) (string, *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bus.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	return path, db
}

// storedBody is the envelope the bus stores for an event with id, routed
// from source "s".
func storedBody(id string) []byte {
	return appendEnvelope(nil, "s", "t", []byte(`{"specversion":"1.0","id":"`+id+`","source":"s","type":"t"}`), id, time.Now(), "000000000000", "local")
}

// TestFirstFormatFileIsMigrated opens a bus file written in the first
// format (a row per message) and checks its messages survive into the log.
func TestFirstFormatFileIsMigrated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path, db := sqliteFile(t)
	body := storedBody("old")
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
		var nextID int64
		onEngine(t, b, func(e *engine) { nextID = e.nextID })
		wantJournalFormat(t, path)
		if nextID <= 41 {
			t.Errorf("round %d: next message id %d would reuse the old message's", round, nextID)
		}
		b.Close()
	}
}

// wantJournalFormat checks that path is a journal file and that no SQLite
// file of an earlier format is left beside it.
func wantJournalFormat(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte(journalMagic)) {
		t.Errorf("%s starts with %q, want the journal's magic", path, data[:min(len(data), 20)])
	}
	for _, side := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(path + side); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s%s is still there (%v)", path, side, err)
		}
	}
}

// TestSecondFormatFileIsMigrated opens a bus file of the second format
// (SQLite: a log table of records and a dead_letters table) and checks that
// its messages, their receive counts and delays, and its dead letters come
// through into the journal.
func TestSecondFormatFileIsMigrated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path, db := sqliteFile(t)
	body := storedBody
	q := &queueState{name: "q"}
	var w rowEncoder
	w.put(&msg{id: 7, q: q, body: body("live"), receives: 2})
	w.put(&msg{id: 8, q: q, body: body("acked")})
	w.put(&msg{id: 9, q: q, body: body("delayed"), receives: 1, state: stTimed, visibleAt: time.Now().Add(time.Hour)})
	row1 := slices.Clone(w.buf)
	w.reset()
	w.del(&msg{id: 8})
	row2 := slices.Clone(w.buf)
	for _, st := range []struct {
		q    string
		args []any
	}{
		{`PRAGMA journal_mode=WAL`, nil},
		{`CREATE TABLE log (seq INTEGER PRIMARY KEY, rec BLOB NOT NULL)`, nil},
		{`CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, queue TEXT NOT NULL, body BLOB NOT NULL, sent_at INTEGER NOT NULL,
			receive_count INTEGER NOT NULL, reason TEXT NOT NULL, dead_at INTEGER NOT NULL)`, nil},
		{`INSERT INTO log (rec) VALUES (?), (?)`, []any{row1, row2}},
		{`INSERT INTO dead_letters VALUES (3, 'q', ?, 1, 5, 'poison', 2)`, []any{body("dead")}},
	} {
		if _, err := db.ExecContext(ctx, st.q, st.args...); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	b := busFile(t, path)
	defer b.Close()
	wantJournalFormat(t, path)
	st, err := b.Stats(ctx, "q")
	if err != nil || st.Ready != 1 || st.Delayed != 1 || st.Dead != 1 {
		t.Fatalf("stats after migration = %+v, %v; want 1 ready, 1 delayed, 1 dead", st, err)
	}
	msgs, err := b.Queue("q").Receive(ctx, 10, 0, time.Minute)
	if err != nil || len(msgs) != 1 || msgs[0].Event.ID() != "live" || msgs[0].ReceiveCount != 3 {
		t.Fatalf("received %+v, %v; want the live message with ReceiveCount 3", msgs, err)
	}
	dl, err := b.DLQ("q").List(ctx, 10)
	if err != nil || len(dl) != 1 || dl[0].Reason != "poison" || dl[0].ReceiveCount != 5 || !bytes.Contains(dl[0].Body, []byte(`"dead"`)) {
		t.Errorf("dead letters after migration = %+v, %v", dl, err)
	}
}

// journalWithMessages writes a bus file holding n messages published to q
// and returns its path.
func journalWithMessages(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bus.db")
	b := busFile(t, path)
	for i := range n {
		if err := b.Publish(context.Background(), testEvent(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func testEvent(id string) event.Event {
	ev := event.New()
	ev.SetID(id)
	ev.SetSource("s")
	ev.SetType("t")
	return ev
}

// readyIDs returns the ids of the messages ready on queue q of the bus file
// at path, and closes it again.
func readyIDs(t *testing.T, path string) []string {
	t.Helper()
	b := busFile(t, path)
	defer b.Close()
	msgs, err := b.Queue("q").Receive(context.Background(), 100, 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.Event.ID())
	}
	slices.Sort(ids)
	return ids
}

// TestTornTailIsCutOff appends what a power loss can leave after the last
// frame and checks that every whole frame is kept, the tail is cut off, and
// the bus writes on after it.
func TestTornTailIsCutOff(t *testing.T) {
	t.Parallel()
	frame := appendFrame(nil, []byte{recDelete, 2})
	badCRC := slices.Clone(frame)
	badCRC[5] ^= 0xff
	for name, tail := range map[string][]byte{
		"a header cut short":             frame[:5],
		"a frame cut short":              frame[:len(frame)-1],
		"a frame failing its checksum":   badCRC,
		"zeros where the frame would be": make([]byte, 4096),
		"a length past the end":          {0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0, 1},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := journalWithMessages(t, 3)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(tail); err != nil {
				t.Fatal(err)
			}
			f.Close()
			b := busFile(t, path)
			if after, err := os.Stat(path); err != nil || after.Size() != fi.Size() {
				t.Errorf("file after open: %v, %v; want the torn tail cut off (%d bytes)", after, err, fi.Size())
			}
			if err := b.Publish(context.Background(), testEvent("after")); err != nil {
				t.Fatal(err)
			}
			b.Close()
			if got := readyIDs(t, path); !slices.Equal(got, []string{"0", "1", "2", "after"}) {
				t.Errorf("messages after reopen = %v, want 0, 1, 2 and the one published after the cut", got)
			}
		})
	}
}

// TestUndecodableFrameFailsOpen: a whole frame (its checksum holds) whose
// records do not decode is not a torn write but a bug or tampering; Open
// refuses the file rather than dropping what follows.
func TestUndecodableFrameFailsOpen(t *testing.T) {
	t.Parallel()
	path := journalWithMessages(t, 1)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(appendFrame(nil, []byte{'?', 1})); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = Open(context.Background(), Options{Path: path})
	if !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), "offset") {
		t.Errorf("open = %v, want a corrupt-record error naming the frame's offset", err)
	}
}

func TestOpenRefusesOtherFiles(t *testing.T) {
	t.Parallel()
	for name, content := range map[string]string{
		"text":                  "hello, this is not a bus\n",
		"shorter than magic":    "agentbus",
		"another journal magic": "agentbus journal 9\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "bus.db")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(context.Background(), Options{Path: path}); err == nil || !strings.Contains(err.Error(), "not a bus journal") {
				t.Errorf("open = %v, want a refusal", err)
			}
			if data, _ := os.ReadFile(path); string(data) != content {
				t.Errorf("the refused file was changed to %q", data)
			}
		})
	}
}

// TestFailedWriteLosesNothing makes one commit's write fail (the journal's
// file handle is swapped for a read-only one): that publish fails, the
// engine reloads its state from the file, and once writes work again
// nothing acknowledged is lost and nothing refused appears.
func TestFailedWriteLosesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := journalWithMessages(t, 2)
	b := busFile(t, path)
	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var rw *os.File
	onEngine(t, b, func(e *engine) { rw, e.j.f = e.j.f, ro })
	if err := b.Publish(ctx, testEvent("refused")); err == nil {
		t.Fatal("publish succeeded with an unwritable journal")
	}
	onEngine(t, b, func(e *engine) { e.j.f = rw })
	ro.Close()
	if st, err := b.Stats(ctx, "q"); err != nil || st.Ready != 2 {
		t.Errorf("stats after the failed commit = %+v, %v; want the 2 earlier messages", st, err)
	}
	if err := b.Publish(ctx, testEvent("accepted")); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if got := readyIDs(t, path); !slices.Equal(got, []string{"0", "1", "accepted"}) {
		t.Errorf("messages after reopen = %v, want 0, 1 and accepted", got)
	}
}

func TestSynchronousFullKeepsEveryCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "bus.db")
	b, err := Open(ctx, Options{Path: path, Synchronous: "FULL", Rules: []Rule{{Name: "r", Pattern: []byte(`{"source":["s"]}`), Queue: "q"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if err := b.Publish(ctx, testEvent(id)); err != nil {
			t.Fatal(err)
		}
	}
	onEngine(t, b, func(e *engine) {
		if !e.j.syncEach || e.j.sinceSync != 0 {
			t.Errorf("FULL: syncEach %v, %d bytes unsynced; want every commit synced", e.j.syncEach, e.j.sinceSync)
		}
	})
	b.Close()
	if got := readyIDs(t, path); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("messages after reopen = %v", got)
	}
}

// FuzzReplayFile feeds arbitrary bytes after the magic to the file replay:
// it must not panic, and fails only on a whole frame that does not decode.
func FuzzReplayFile(f *testing.F) {
	var w rowEncoder
	w.put(&msg{id: 1, q: &queueState{name: "q"}, body: []byte("a")})
	good := appendFrame(nil, w.buf)
	f.Add(good)
	f.Add(append(slices.Clone(good), good[:6]...))
	f.Add(append(slices.Clone(good), appendFrame(nil, []byte{recDelete, 2})...))
	f.Fuzz(func(t *testing.T, frames []byte) {
		path := filepath.Join(t.TempDir(), "bus.db")
		if err := os.WriteFile(path, append([]byte(journalMagic), frames...), 0o600); err != nil {
			t.Fatal(err)
		}
		fh, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		j := &journal{path: path, f: fh, log: slog.New(slog.DiscardHandler)}
		err = j.replayFile(newReplayed())
		if err != nil && !errors.Is(err, errCorrupt) {
			t.Fatalf("error not marked corrupt: %v", err)
		}
		if err != nil {
			return
		}
		if fi, serr := fh.Stat(); serr != nil || fi.Size() != j.size || j.size > int64(len(journalMagic)+len(frames)) {
			t.Fatalf("after replay: file %v (%v), size %d of %d", fi, serr, j.size, len(journalMagic)+len(frames))
		}
	})
}
