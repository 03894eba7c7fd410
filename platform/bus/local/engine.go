package local

import (
	"container/heap"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/platform/bus"
)

// The engine is one goroutine that owns all queue state. Publishers, receivers
// and ackers send it requests; it takes every request that is waiting, applies
// them to memory, writes the changes to the journal in ONE transaction (group
// commit), and only then answers. So a burst of concurrent publishes and acks
// costs one commit, a publish is acknowledged only once durable, and a message
// is handed to a receiver only once its receive count is durable (a poison
// message that crashes the process still reaches the DLQ).
//
// Written by hand because no embeddable Go queue library gives SQS semantics
// (per-message visibility, receive counts, redrive) over SQLite.

const maxBatch = 1024 // requests per group commit

type msgState uint8

const (
	stReady msgState = iota // visible, in q.ready
	stTimed                 // invisible until visibleAt (in flight, or nacked with a delay)
	stGone                  // acked, dead-lettered or purged
)

type msg struct {
	id        int64
	q         *queueState
	body      []byte
	ev        *event.Event // the event as published; nil when loaded from disk
	sentAt    time.Time
	visibleAt time.Time
	receives  int
	gen       uint64 // receipt generation: bumped on every delivery
	hidx      int    // index in q.timed, -1 when not there
	state     msgState
	inflight  bool // stTimed because delivered (not because nacked with a delay)
	reason    string
	persisted bool
	dirty     bool
}

// delayUntil is the visibility time worth keeping across a restart: a nack
// delay. An in-flight message is visible at once after a restart, because
// the process that held it is gone.
func (m *msg) delayUntil() time.Time {
	if m.state == stTimed && !m.inflight {
		return m.visibleAt
	}
	return time.Time{}
}

type deadMsg struct {
	id        int64
	queue     string
	body      []byte
	sentAt    time.Time
	receives  int
	reason    string
	deadAt    time.Time
	persisted bool
	gone      bool
	dirty     bool
}

// timedHeap orders the invisible messages of a queue by visibleAt. Each
// message is in it at most once (hidx), and leaves it as soon as it is no
// longer invisible, so acked messages are not kept alive until their old
// timeout.
type timedHeap []*msg

func (h timedHeap) Len() int           { return len(h) }
func (h timedHeap) Less(i, j int) bool { return h[i].visibleAt.Before(h[j].visibleAt) }
func (h timedHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *timedHeap) Push(x any) {
	m := x.(*msg)
	m.hidx = len(*h)
	*h = append(*h, m)
}
func (h *timedHeap) Pop() any {
	old := *h
	m := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	m.hidx = -1
	return m
}

type queueState struct {
	name    string
	cfg     QueueConfig
	msgs    map[int64]*msg
	ready   []*msg // FIFO; entries whose state is no longer stReady are skipped
	head    int
	timed   timedHeap
	dead    []*deadMsg
	waiters []*receiveReq
}

// untime takes m out of the timed heap, if it is there.
func (q *queueState) untime(m *msg) {
	if m.hidx >= 0 {
		heap.Remove(&q.timed, m.hidx)
	}
}

// setGone marks m acked/dead/purged and drops it from the queue's indexes.
func (q *queueState) setGone(m *msg) {
	q.untime(m)
	m.state = stGone
	delete(q.msgs, m.id)
}

func (q *queueState) pushReady(m *msg) {
	q.untime(m)
	m.state = stReady
	m.inflight = false
	q.ready = append(q.ready, m)
}

func (q *queueState) popReady() *msg {
	for q.head < len(q.ready) {
		m := q.ready[q.head]
		q.ready[q.head] = nil
		q.head++
		if q.head > 1024 && q.head*2 > len(q.ready) {
			n := copy(q.ready, q.ready[q.head:])
			clear(q.ready[n:])
			q.ready = q.ready[:n]
			q.head = 0
		}
		if m.state == stReady {
			return m
		}
	}
	return nil
}

// claimed is what the engine hands a receiver: a snapshot, so the receiver
// can build bus.Messages outside the engine goroutine.
type claimed struct {
	id       int64
	gen      uint64
	receives int
	body     []byte
	ev       *event.Event
	sentAt   time.Time
}

// request is anything the engine applies. apply runs on the engine
// goroutine; done runs there too, after the batch committed (err != nil if
// it did not).
type request interface {
	apply(e *engine, now time.Time)
	done(err error)
}

type engine struct {
	reqs   chan request
	quit   chan struct{}
	exited chan struct{}
	j      *journal // nil in memory mode
	log    *slog.Logger
	defCfg QueueConfig

	queues  map[string]*queueState
	waiting map[*queueState]struct{}
	nextID  int64
	nextDID int64
	gen     uint64

	commits, requests, rows, compactions atomic.Int64

	dirty     []*msg
	deadDirty []*deadMsg
	batch     []request
}

func newEngine(j *journal, defCfg QueueConfig, log *slog.Logger) *engine {
	return &engine{
		reqs:    make(chan request, maxBatch),
		quit:    make(chan struct{}),
		exited:  make(chan struct{}),
		j:       j,
		log:     log,
		defCfg:  defCfg,
		queues:  map[string]*queueState{},
		waiting: map[*queueState]struct{}{},
		nextID:  1,
		nextDID: 1,
	}
}

func (e *engine) queue(name string) *queueState {
	q := e.queues[name]
	if q == nil {
		cfg := e.defCfg
		cfg.Name = name
		q = &queueState{name: name, cfg: cfg, msgs: map[int64]*msg{}}
		e.queues[name] = q
	}
	return q
}

// load rebuilds memory from the journal (on open, and after a failed commit).
func (e *engine) load(ctx context.Context) error {
	for _, q := range e.queues {
		q.msgs = map[int64]*msg{}
		q.ready, q.head, q.timed, q.dead = nil, 0, nil, nil
	}
	if e.j == nil {
		return nil
	}
	now := time.Now()
	return e.j.load(ctx,
		func(s *stored) {
			q := e.queue(s.queue)
			m := &msg{id: s.id, q: q, body: s.body, sentAt: s.sentAt, receives: s.receives, reason: s.reason, persisted: true, hidx: -1}
			q.msgs[s.id] = m
			if s.delayUntil.After(now) {
				m.state, m.visibleAt = stTimed, now.Add(s.delayUntil.Sub(now))
				e.pushTimed(m)
			} else {
				q.pushReady(m)
			}
			e.nextID = max(e.nextID, s.id+1)
		},
		func(d *deadMsg) {
			q := e.queue(d.queue)
			q.dead = append(q.dead, d)
			e.nextDID = max(e.nextDID, d.id+1)
		})
}

// pushTimed (re)schedules m for m.visibleAt.
func (e *engine) pushTimed(m *msg) {
	if m.hidx >= 0 {
		heap.Fix(&m.q.timed, m.hidx)
		return
	}
	heap.Push(&m.q.timed, m)
}

func (e *engine) markDirty(m *msg) {
	if e.j != nil && !m.dirty {
		m.dirty = true
		e.dirty = append(e.dirty, m)
	}
}

func (e *engine) markDeadDirty(d *deadMsg) {
	if e.j != nil && !d.dirty {
		d.dirty = true
		e.deadDirty = append(e.deadDirty, d)
	}
}

// promote makes messages whose visibility ran out ready again.
func (e *engine) promote(q *queueState, now time.Time) {
	for len(q.timed) > 0 && !q.timed[0].visibleAt.After(now) {
		q.pushReady(heap.Pop(&q.timed).(*msg))
	}
}

// claim delivers up to max ready messages of q, redriving to the DLQ those
// that have used up their receives (as SQS does: on the receive after the
// last allowed one).
func (e *engine) claim(q *queueState, max int, vis time.Duration, now time.Time, out []claimed) []claimed {
	e.promote(q, now)
	for len(out) < max {
		m := q.popReady()
		if m == nil {
			break
		}
		if q.cfg.MaxReceiveCount > 0 && m.receives >= q.cfg.MaxReceiveCount {
			reason := m.reason
			if reason == "" {
				reason = fmt.Sprintf("maxReceiveCount %d exceeded", q.cfg.MaxReceiveCount)
			}
			e.toDead(m, reason, now)
			continue
		}
		e.gen++
		m.gen, m.receives = e.gen, m.receives+1
		m.state, m.inflight, m.visibleAt = stTimed, true, now.Add(vis)
		e.pushTimed(m)
		e.markDirty(m)
		out = append(out, claimed{id: m.id, gen: m.gen, receives: m.receives, body: m.body, ev: m.ev, sentAt: m.sentAt})
	}
	return out
}

func (e *engine) toDead(m *msg, reason string, now time.Time) {
	q := m.q
	q.setGone(m)
	e.markDirty(m)
	d := &deadMsg{id: e.nextDID, queue: q.name, body: m.body, sentAt: m.sentAt, receives: m.receives, reason: reason, deadAt: now}
	e.nextDID++
	q.dead = append(q.dead, d)
	e.markDeadDirty(d)
}

// byReceipt finds the message a receipt names, if it is still the current
// delivery.
func (e *engine) byReceipt(q *queueState, r receipt) (*msg, error) {
	m := q.msgs[r.id]
	if m == nil || m.gen != r.gen || m.state == stGone {
		return nil, fmt.Errorf("queue %s: receipt %s: %w", q.name, r, bus.ErrStaleReceipt)
	}
	return m, nil
}

func (e *engine) run() {
	defer close(e.exited)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var wake <-chan time.Time
		if at, ok := e.nextWake(); ok {
			timer.Reset(time.Until(at))
			wake = timer.C
		}
		e.batch = e.batch[:0]
		select {
		case r := <-e.reqs:
			e.batch = append(e.batch, r)
		case <-wake:
		case <-e.quit:
			e.shutdown()
			return
		}
		timer.Stop()
		// Let goroutines that are about to send (publishers woken by the
		// previous commit) get their requests in: a bigger group commit.
		runtime.Gosched()
	drain:
		for len(e.batch) < maxBatch {
			select {
			case r := <-e.reqs:
				e.batch = append(e.batch, r)
			default:
				break drain
			}
		}
		e.requests.Add(int64(len(e.batch)))
		e.step()
		if e.j != nil {
			e.maintain(len(e.reqs) == 0)
		}
	}
}

// maintain compacts the journal when it is due (in an idle moment unless
// long overdue) and has it synced in the background.
func (e *engine) maintain(idle bool) {
	if e.j.needsCompaction(idle) {
		if err := e.compact(); err != nil {
			e.log.Warn("local bus: journal compaction failed", "err", err)
		}
	}
	e.j.maybeSync(idle)
}

func (e *engine) compact() error {
	if err := e.j.compact(e.eachLive, e.eachDead); err != nil {
		return err
	}
	e.compactions.Add(1)
	return nil
}

// eachLive calls f for every message that is not gone.
func (e *engine) eachLive(f func(*msg)) {
	for _, q := range e.queues {
		for _, m := range q.msgs {
			f(m)
		}
	}
}

// eachDead calls f for every dead letter.
func (e *engine) eachDead(f func(*deadMsg)) {
	for _, q := range e.queues {
		for _, d := range q.dead {
			f(d)
		}
	}
}

func (e *engine) step() {
	ctx := context.Background()
	now := time.Now()
	for _, r := range e.batch {
		r.apply(e, now)
	}
	// Waiters served in this step answer after the commit like everyone else.
	served := e.serveWaiters(now)
	err := e.flush()
	if err != nil {
		e.log.Error("local bus: commit failed; reloading state from disk", "err", err)
		if lerr := e.load(ctx); lerr != nil {
			e.log.Error("local bus: reload failed", "err", lerr)
		}
		err = fmt.Errorf("local bus: commit: %w", err)
	}
	for _, r := range e.batch {
		r.done(err)
	}
	for _, r := range served {
		r.done(err)
	}
}

func (e *engine) flush() error {
	defer func() {
		for _, m := range e.dirty {
			m.dirty = false
		}
		for _, d := range e.deadDirty {
			d.dirty = false
		}
		e.dirty, e.deadDirty = e.dirty[:0], e.deadDirty[:0]
	}()
	if e.j == nil || len(e.dirty)+len(e.deadDirty) == 0 {
		return nil
	}
	e.commits.Add(1)
	e.rows.Add(int64(len(e.dirty) + len(e.deadDirty)))
	if err := e.j.write(e.dirty, e.deadDirty); err != nil {
		return err
	}
	for _, m := range e.dirty {
		m.persisted = m.state != stGone
	}
	for _, d := range e.deadDirty {
		d.persisted = !d.gone
	}
	return nil
}

// serveWaiters hands ready messages to parked receivers and expires those
// whose wait is over. It returns the receivers to answer.
func (e *engine) serveWaiters(now time.Time) []request {
	var out []request
	for q := range e.waiting {
		for len(q.waiters) > 0 {
			w := q.waiters[0]
			w.msgs = e.claim(q, w.max, w.vis, now, w.msgs)
			if len(w.msgs) == 0 {
				break
			}
			w.parked = false
			q.waiters = q.waiters[1:]
			out = append(out, w)
		}
		kept := q.waiters[:0]
		for _, w := range q.waiters {
			if !w.deadline.After(now) {
				w.parked = false
				out = append(out, w)
				continue
			}
			kept = append(kept, w)
		}
		clear(q.waiters[len(kept):])
		q.waiters = kept
		if len(q.waiters) == 0 {
			delete(e.waiting, q)
		}
	}
	return out
}

// nextWake is when the engine must look again without a request: the
// earliest of a parked receiver's deadline and a timed message of a queue
// someone waits on.
func (e *engine) nextWake() (time.Time, bool) {
	var at time.Time
	for q := range e.waiting {
		for _, w := range q.waiters {
			if at.IsZero() || w.deadline.Before(at) {
				at = w.deadline
			}
		}
		if len(q.timed) > 0 && (at.IsZero() || q.timed[0].visibleAt.Before(at)) {
			at = q.timed[0].visibleAt
		}
	}
	return at, !at.IsZero()
}

func (e *engine) shutdown() {
	for q := range e.waiting {
		for _, w := range q.waiters {
			w.done(bus.ErrClosed)
		}
		q.waiters = nil
	}
	clear(e.waiting)
	for {
		select {
		case r := <-e.reqs:
			r.done(bus.ErrClosed)
		default:
			return
		}
	}
}
