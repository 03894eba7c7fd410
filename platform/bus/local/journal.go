package local

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/gofrs/flock"
)

// journal is the durable half of the bus: every state change the engine
// makes in memory is written here in the same batch, and the engine's state
// is rebuilt from it on open. Only the engine goroutine touches it.
//
// The journal is a file of frames, one per group commit, each holding the
// commit's records (record.go):
//
//	file  = magic frame*
//	frame = length (4 bytes, little endian) CRC-32C (4 bytes) records
//
// A frame is written with ONE write(2) at the end of the file, so a process
// crash leaves it whole or absent; after a power loss the last frames may
// be torn, and replay stops at the first frame whose length or checksum is
// wrong and cuts the file there. The file is compacted — rewritten as the
// live messages and dead letters alone, then renamed over the old one —
// when it has grown past twice what its last compaction wrote.
//
// Written by hand, not on SQLite (which the first two formats used): the
// engine already keeps every queue in memory and only needs its changes
// appended in order, and a SQLite commit of one row (statement, b-tree page,
// WAL frame of 4 KiB written as two system calls) cost four times an append
// of the same records; on a tool step of the agent loop that was ~15% of
// the CPU. No library we know appends with one unbuffered write per commit:
// the log libraries buffer (a process crash loses what a returned Publish
// promised) or fsync every write.
type journal struct {
	path string
	f    *os.File // nil until the file exists in this format
	lock *flock.Flock
	log  *slog.Logger
	// syncEach fsyncs every commit (Synchronous FULL).
	syncEach bool

	row   rowEncoder
	frame []byte
	// size is the file's length: where the next frame goes.
	size int64
	// broken is set when the file's content is unknown (a failed write
	// could not be cut off, an fsync failed): every later write fails with
	// it until the bus is reopened.
	broken error
	// legacy: the file is still SQLite (an earlier format); Open migrates
	// it with a compaction before anything is written.
	legacy bool

	// sinceSync is what was written since the last fsync; syncing is set
	// while a background fsync runs.
	sinceSync int
	lastSync  time.Time
	syncing   atomic.Bool

	// snapBytes is what the last compaction wrote (see logBytes).
	snapBytes  int
	compactMin int // Options.CompactAt, default compactMin
	// retryAt: after a failed compaction, the log size to wait for before
	// trying again (0: no failure pending).
	retryAt int
}

const (
	// journalMagic starts a journal file (and names its format version).
	journalMagic = "agentbus journal 1\n"
	frameHeader  = 8
	// maxFrame bounds one frame: the length field is 32 bits, and replay
	// holds a frame in memory.
	maxFrame = 1 << 30

	// compactMin is the log size below which it is never compacted; above
	// it, the log is compacted once it is twice what the last compaction
	// wrote. So the file stays within a few times the live messages, and a
	// long-lived message is rewritten once per doubling.
	compactMin = 8 << 20
	// snapRow caps one frame of a compaction.
	snapRow = 1 << 20

	// With Synchronous NORMAL the file is fsynced in the background, in an
	// idle moment at most once per syncEvery, or whenever syncForce bytes
	// are unsynced; a power loss can lose what was written since.
	syncEvery = time.Second
	syncForce = 16 << 20
)

// castagnoli is CRC-32C, which the CPU computes in hardware on amd64 and
// arm64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrInUse reports a bus file that another open Bus (in this process or
// another) holds.
var ErrInUse = errors.New("local bus: file is locked by another open bus")

func openJournal(path, synchronous string, log *slog.Logger) (*journal, error) {
	// One process owns the bus: the engine's memory is the truth while it
	// runs, so nobody else may write behind its back. The lock is a file of
	// its own because a compaction replaces the journal file.
	lock := flock.New(path + ".lock")
	ok, err := lock.TryLock()
	if err != nil {
		return nil, fmt.Errorf("local bus: lock %s: %w", path, err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrInUse, path)
	}
	j := &journal{path: path, lock: lock, log: log, syncEach: synchronous != "NORMAL", compactMin: compactMin, lastSync: time.Now()}
	if err := j.openFile(); err != nil {
		j.close()
		return nil, fmt.Errorf("local bus: open %s: %w", path, err)
	}
	return j, nil
}

// openFile opens the journal file, creating it when missing, and tells an
// earlier (SQLite) format apart.
func (j *journal) openFile() error {
	f, err := os.OpenFile(j.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	head := make([]byte, max(len(sqliteMagic), len(journalMagic)))
	n, err := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case n == 0 && err == io.EOF:
		if _, err := f.Write([]byte(journalMagic)); err != nil {
			f.Close()
			return err
		}
		if err := errors.Join(f.Sync(), syncDir(j.path)); err != nil {
			f.Close()
			return err
		}
		j.f, j.size = f, int64(len(journalMagic))
		return nil
	case err != nil && err != io.ErrUnexpectedEOF:
		f.Close()
		return err
	case bytes.HasPrefix(head, []byte(sqliteMagic)):
		f.Close()
		j.legacy = true
		return nil
	case bytes.HasPrefix(head, []byte(journalMagic)):
		j.f = f
		return nil
	}
	f.Close()
	return fmt.Errorf("not a bus journal (it starts with %q)", head)
}

// close syncs what a clean shutdown leaves unsynced and releases the file.
func (j *journal) close() error {
	var err error
	if j.f != nil {
		if j.sinceSync > 0 && j.broken == nil {
			err = j.f.Sync()
		}
		err = errors.Join(err, j.f.Close())
		j.f = nil
	}
	return errors.Join(err, j.lock.Unlock())
}

// appendFrame appends payload framed (length, CRC-32C) to dst.
func appendFrame(dst, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(payload, castagnoli))
	return append(dst, payload...)
}

// write appends one frame with the changes of a group commit: a message as
// a whole when it was never written, its mutable fields when it was, a
// delete when a written message is gone, and dead letters added or removed.
func (j *journal) write(ms []*msg, ds []*deadMsg) error {
	if j.broken != nil {
		return j.broken
	}
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
	for _, d := range ds {
		switch {
		case d.gone && d.persisted:
			j.row.deadDel(d)
		case d.gone:
		case !d.persisted:
			j.row.dead(d)
		}
	}
	if len(j.row.buf) == 0 {
		return nil
	}
	if len(j.row.buf) > maxFrame {
		return fmt.Errorf("journal: one commit of %d bytes (at most %d)", len(j.row.buf), maxFrame)
	}
	j.frame = appendFrame(j.frame[:0], j.row.buf)
	if _, err := j.f.WriteAt(j.frame, j.size); err != nil {
		// Part of the frame may be in the file: cut it off, or the next
		// frame would follow garbage. By name if the handle is what failed.
		if terr := j.f.Truncate(j.size); terr != nil && os.Truncate(j.path, j.size) != nil {
			j.broken = fmt.Errorf("journal %s: a failed write (%v) could not be cut off: %w", j.path, err, terr)
		}
		return err
	}
	if j.syncEach {
		if err := j.f.Sync(); err != nil {
			// After a failed fsync the kernel may have dropped the pages:
			// what the file holds is unknown.
			j.broken = fmt.Errorf("journal %s: fsync: %w", j.path, err)
			return j.broken
		}
	}
	j.size += int64(len(j.frame))
	if !j.syncEach {
		j.sinceSync += len(j.frame)
	}
	return nil
}

// maybeSync fsyncs the file in the background, off the engine goroutine,
// when enough time or bytes have gone by unsynced (Synchronous NORMAL: a
// commit is durable against a crash of the process when write returns,
// against a power loss once the file is synced).
func (j *journal) maybeSync(idle bool) {
	if j.syncEach || j.f == nil || j.sinceSync == 0 {
		return
	}
	if !(idle && time.Since(j.lastSync) >= syncEvery) && j.sinceSync < syncForce {
		return
	}
	if !j.syncing.CompareAndSwap(false, true) {
		return
	}
	j.sinceSync, j.lastSync = 0, time.Now()
	f, log := j.f, j.log
	go func() {
		defer j.syncing.Store(false)
		// Close waits for a running Sync; a file closed by a compaction
		// first (ErrClosed) was synced by it.
		if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
			log.Warn("local bus: journal fsync failed", "path", j.path, "err", err)
		}
	}()
}

// logBytes is what the file holds in frames: written since the last
// compaction, that compaction's snapshot included.
func (j *journal) logBytes() int { return int(j.size) - len(journalMagic) }

// needsCompaction reports whether the log should be rewritten: in an idle
// moment once it is due, and regardless once it is four times past due
// (a bus that is never idle).
func (j *journal) needsCompaction(idle bool) bool {
	if j.legacy {
		return true
	}
	if j.broken != nil || (j.retryAt > 0 && j.logBytes() < j.retryAt) {
		return false
	}
	due := max(j.compactMin, 2*j.snapBytes)
	if !idle {
		due *= 4
	}
	return j.logBytes() >= due
}

// compact writes the live messages (live calls its argument for each) and
// dead letters (dead likewise) to a new file and renames it over the
// journal. It changes nothing in the engine's memory, so a failed
// compaction only leaves the log as long as it was. It also moves a file of
// an earlier format into this one.
func (j *journal) compact(live func(func(*msg)), dead func(func(*deadMsg))) (err error) {
	if j.broken != nil {
		return j.broken
	}
	tmp := j.path + ".compact"
	defer func() {
		if err != nil {
			os.Remove(tmp)
			// Try again once another quarter of the threshold is written,
			// not after every commit.
			j.retryAt = j.logBytes() + j.compactMin/4
		}
	}()
	written, err := j.writeSnapshot(tmp, live, dead)
	if err != nil {
		return err
	}
	if j.f != nil {
		// Windows renames over an open file only when every opener allowed
		// it, which os.Open does not: close first.
		if err := j.f.Close(); err != nil {
			return j.reopen(err)
		}
		j.f = nil
	}
	if err := os.Rename(tmp, j.path); err != nil {
		return j.reopen(err)
	}
	// The rename is durable only once the directory is synced; until then
	// a power loss may bring back the old file, which holds the same state.
	if err := syncDir(j.path); err != nil {
		j.log.Warn("local bus: sync of the journal's folder failed", "path", j.path, "err", err)
	}
	if j.legacy {
		if err := removeSQLiteSidecars(j.path); err != nil {
			j.log.Warn("local bus: the earlier format's files could not be removed", "path", j.path, "err", err)
		}
		j.legacy = false
	}
	if err := j.reopen(nil); err != nil {
		return err
	}
	j.size = int64(len(journalMagic) + written)
	j.retryAt, j.sinceSync = 0, 0
	j.snapBytes = written
	return nil
}

// reopen opens the journal file again after a compaction closed it, and
// returns cause (the reason it is reopened early, if any). A file that
// cannot be reopened breaks the journal.
func (j *journal) reopen(cause error) error {
	if j.legacy && cause != nil {
		return cause // still SQLite, and never opened as a journal
	}
	f, err := os.OpenFile(j.path, os.O_RDWR, 0)
	if err != nil {
		j.broken = fmt.Errorf("journal %s: reopen: %w", j.path, errors.Join(cause, err))
		return j.broken
	}
	j.f = f
	return cause
}

// writeSnapshot writes the live messages and dead letters as a journal
// file at path, synced, and returns the bytes of frames written.
func (j *journal) writeSnapshot(path string, live func(func(*msg)), dead func(func(*deadMsg))) (written int, err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := w.WriteString(journalMagic); err != nil {
		return 0, err
	}
	var werr error
	emit := func() {
		if werr == nil && len(j.row.buf) > 0 {
			j.frame = appendFrame(j.frame[:0], j.row.buf)
			written += len(j.frame)
			_, werr = w.Write(j.frame)
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
	dead(func(d *deadMsg) {
		j.row.dead(d)
		if len(j.row.buf) >= snapRow {
			emit()
		}
	})
	emit()
	if werr != nil {
		return 0, werr
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	return written, f.Sync()
}

// syncDir fsyncs the folder holding path, so a file created or renamed
// there survives a power loss.
func syncDir(path string) error {
	if runtime.GOOS == "windows" {
		return nil // a folder cannot be opened for syncing there
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// load reads every live message, in id order, and every dead letter, in id
// order. A torn tail (a frame cut short or failing its checksum, which only
// a power loss or a failed write leaves) is cut off with a warning; a whole
// frame that does not decode is an error.
func (j *journal) load(ctx context.Context, onMsg func(s *stored), onDead func(d *deadMsg)) error {
	st := newReplayed()
	if j.legacy {
		if err := loadSQLite(ctx, j.path, st); err != nil {
			return fmt.Errorf("earlier format: %w", err)
		}
	} else if err := j.replayFile(st); err != nil {
		return err
	}
	for _, id := range slices.Sorted(maps.Keys(st.live)) {
		onMsg(st.live[id])
	}
	for _, id := range slices.Sorted(maps.Keys(st.dead)) {
		onDead(st.dead[id])
	}
	return nil
}

// replayFile applies every frame of the file to st and leaves j.size at
// the end of the last whole one.
func (j *journal) replayFile(st *replayed) error {
	fi, err := j.f.Stat()
	if err != nil {
		return err
	}
	end := fi.Size()
	r := bufio.NewReaderSize(io.NewSectionReader(j.f, 0, end), 1<<20)
	if _, err := r.Discard(len(journalMagic)); err != nil {
		return err
	}
	off := int64(len(journalMagic))
	var (
		head    [frameHeader]byte
		payload []byte
		torn    string
	)
	for off < end {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			torn = "a frame header cut short"
			break
		}
		n := int64(binary.LittleEndian.Uint32(head[:4]))
		if n == 0 || n > maxFrame || off+frameHeader+n > end {
			// No frame is empty (a commit without changes writes none):
			// zeros are what a file extended by a power loss holds.
			torn = fmt.Sprintf("a frame header claiming %d bytes with %d left", n, end-off-frameHeader)
			break
		}
		payload = slices.Grow(payload[:0], int(n))[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			return err
		}
		if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(head[4:]) {
			torn = "a frame failing its checksum"
			break
		}
		if err := replay(payload, st); err != nil {
			return fmt.Errorf("journal frame at offset %d: %w", off, err)
		}
		off += frameHeader + n
	}
	if torn != "" {
		j.log.Warn("local bus: journal ends in a torn write; cutting it off (only a power loss or a failed write leaves one)",
			"path", j.path, "offset", off, "dropped_bytes", end-off, "found", torn)
		if err := j.f.Truncate(off); err != nil {
			return fmt.Errorf("cut off the torn tail: %w", err)
		}
	}
	j.size = off
	return nil
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
