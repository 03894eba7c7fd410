package local

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The journal stores the queues' messages as a log: each group commit
// appends ONE row (a frame of the journal file, journal.go) holding a record
// per message or dead letter it changed, and load replays the rows in order.
// A row is a sequence of records:
//
//	'P' id queue sentAt receives delayUntil reason body   a message as a whole
//	'U' id receives delayUntil reason                       a delivery or nack
//	'D' id                                                  an ack, purge or redrive
//	'L' id queue sentAt receives reason deadAt body         a dead letter
//	'R' id                                                  a dead letter redriven or purged
//
// Integers are varints; strings and bodies are a uvarint length and bytes. A
// body is either inline (its length + 1, then the bytes) or, when the same
// event went to several queues in this row, a reference to the k-th inline
// body before it (0, then k): an event fanned out to three queues is stored
// once per commit instead of three times.
//
// Written by hand because the format is the engine's own change set; the
// journal frames each row with its length and a checksum, so a row is
// applied whole or not at all.
const (
	recPut        = 'P'
	recUpdate     = 'U'
	recDelete     = 'D'
	recDead       = 'L'
	recDeadDelete = 'R'
)

// errCorrupt marks a journal row that cannot be decoded.
var errCorrupt = errors.New("corrupt journal record")

// rowEncoder builds one log row.
type rowEncoder struct {
	buf    []byte
	bodies map[bodyKey]int // an inline body -> its 1-based index
	n      int             // inline bodies so far
}

// bodyKey identifies a body slice: the queues' copies of one event share it.
type bodyKey struct {
	p *byte
	n int
}

func (w *rowEncoder) reset() {
	w.buf = w.buf[:0]
	clear(w.bodies)
	w.n = 0
}

func (w *rowEncoder) str(s string) {
	w.buf = binary.AppendUvarint(w.buf, uint64(len(s)))
	w.buf = append(w.buf, s...)
}

func (w *rowEncoder) put(m *msg) {
	w.buf = append(w.buf, recPut)
	w.buf = binary.AppendVarint(w.buf, m.id)
	w.str(m.q.name)
	w.buf = binary.AppendVarint(w.buf, nanos(m.sentAt))
	w.buf = binary.AppendUvarint(w.buf, uint64(m.receives))
	w.buf = binary.AppendVarint(w.buf, nanos(m.delayUntil()))
	w.str(m.reason)
	w.body(m.body)
}

// body writes b inline, or as a reference when this row already holds it.
func (w *rowEncoder) body(b []byte) {
	if len(b) > 0 {
		bk := bodyKey{&b[0], len(b)}
		if k, ok := w.bodies[bk]; ok {
			w.buf = binary.AppendUvarint(w.buf, 0)
			w.buf = binary.AppendUvarint(w.buf, uint64(k))
			return
		}
		if w.bodies == nil {
			w.bodies = map[bodyKey]int{}
		}
		w.n++
		w.bodies[bk] = w.n
	}
	w.buf = binary.AppendUvarint(w.buf, uint64(len(b))+1)
	w.buf = append(w.buf, b...)
}

func (w *rowEncoder) update(m *msg) {
	w.buf = append(w.buf, recUpdate)
	w.buf = binary.AppendVarint(w.buf, m.id)
	w.buf = binary.AppendUvarint(w.buf, uint64(m.receives))
	w.buf = binary.AppendVarint(w.buf, nanos(m.delayUntil()))
	w.str(m.reason)
}

func (w *rowEncoder) del(m *msg) {
	w.buf = append(w.buf, recDelete)
	w.buf = binary.AppendVarint(w.buf, m.id)
}

func (w *rowEncoder) dead(d *deadMsg) {
	w.buf = append(w.buf, recDead)
	w.buf = binary.AppendVarint(w.buf, d.id)
	w.str(d.queue)
	w.buf = binary.AppendVarint(w.buf, nanos(d.sentAt))
	w.buf = binary.AppendUvarint(w.buf, uint64(d.receives))
	w.str(d.reason)
	w.buf = binary.AppendVarint(w.buf, nanos(d.deadAt))
	w.body(d.body)
}

func (w *rowEncoder) deadDel(d *deadMsg) {
	w.buf = append(w.buf, recDeadDelete)
	w.buf = binary.AppendVarint(w.buf, d.id)
}

// stored is a message as the journal holds it.
type stored struct {
	id         int64
	queue      string
	body       []byte
	sentAt     time.Time
	receives   int
	delayUntil time.Time
	reason     string
}

// replayed is what the rows replayed so far hold: live messages and dead
// letters by id.
type replayed struct {
	live map[int64]*stored
	dead map[int64]*deadMsg
}

func newReplayed() *replayed {
	return &replayed{live: map[int64]*stored{}, dead: map[int64]*deadMsg{}}
}

// replay applies the records of one row to st.
func replay(row []byte, st *replayed) error {
	r := rowReader{b: row}
	var bodies [][]byte
	for r.err == nil && len(r.b) > 0 {
		tag := r.b[0]
		r.b = r.b[1:]
		switch tag {
		case recPut:
			s := &stored{id: r.varint(), queue: r.str(), sentAt: fromNanos(r.varint()),
				receives: r.count(), delayUntil: fromNanos(r.varint()), reason: r.str()}
			s.body = r.body(&bodies)
			if r.err == nil {
				st.live[s.id] = s
			}
		case recUpdate:
			id, receives, delay, reason := r.varint(), r.count(), fromNanos(r.varint()), r.str()
			if s := st.live[id]; s != nil && r.err == nil {
				s.receives, s.delayUntil, s.reason = receives, delay, reason
			}
		case recDelete:
			id := r.varint()
			if r.err == nil {
				delete(st.live, id)
			}
		case recDead:
			d := &deadMsg{id: r.varint(), queue: r.str(), sentAt: fromNanos(r.varint()),
				receives: r.count(), reason: r.str(), deadAt: fromNanos(r.varint()), persisted: true}
			d.body = r.body(&bodies)
			if r.err == nil {
				st.dead[d.id] = d
			}
		case recDeadDelete:
			id := r.varint()
			if r.err == nil {
				delete(st.dead, id)
			}
		default:
			r.fail("unknown record tag %q", tag)
		}
	}
	return r.err
}

// rowReader decodes a row; the first error sticks and later reads return
// zero values.
type rowReader struct {
	b   []byte
	err error
}

func (r *rowReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errCorrupt, fmt.Sprintf(format, args...))
	}
	r.b = nil
}

func (r *rowReader) uvarint() uint64 { return readVarint(r, binary.Uvarint, "unsigned varint") }

func (r *rowReader) varint() int64 { return readVarint(r, binary.Varint, "varint") }

// readVarint takes one varint off r with decode (binary.Uvarint or
// binary.Varint), which reports n <= 0 for a bad or short one.
func readVarint[T uint64 | int64](r *rowReader, decode func([]byte) (T, int), what string) T {
	v, n := decode(r.b)
	if n <= 0 {
		r.fail("bad %s", what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *rowReader) count() int {
	v := r.uvarint()
	if v > 1<<31 {
		r.fail("count %d out of range", v)
		return 0
	}
	return int(v)
}

func (r *rowReader) bytes(n uint64) []byte {
	if n > uint64(len(r.b)) {
		r.fail("%d bytes wanted, %d left", n, len(r.b))
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *rowReader) str() string { return string(r.bytes(r.uvarint())) }

// body reads a body written by rowEncoder.body; bodies are the row's inline
// bodies so far, which a reference points into.
func (r *rowReader) body(bodies *[][]byte) []byte {
	n := r.uvarint()
	switch {
	case r.err != nil:
		return nil
	case n == 0:
		k := r.uvarint()
		if k < 1 || k > uint64(len(*bodies)) {
			r.fail("body reference %d of %d", k, len(*bodies))
			return nil
		}
		return (*bodies)[k-1]
	}
	b := slices.Clone(r.bytes(n - 1))
	if len(b) > 0 {
		*bodies = append(*bodies, b)
	}
	return b
}
