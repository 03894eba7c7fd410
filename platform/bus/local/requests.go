package local

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/platform/bus"
)

// receipt names one delivery: the message id and the delivery generation.
type receipt struct {
	id  int64
	gen uint64
}

func (r receipt) String() string {
	return strconv.FormatInt(r.id, 10) + "-" + strconv.FormatUint(r.gen, 10)
}

var errBadReceipt = errors.New("malformed receipt")

func parseReceipt(s string) (receipt, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return receipt{}, fmt.Errorf("%w %q", errBadReceipt, s)
	}
	id, err1 := strconv.ParseInt(a, 10, 64)
	gen, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return receipt{}, fmt.Errorf("%w %q", errBadReceipt, s)
	}
	return receipt{id: id, gen: gen}, nil
}

// errReq answers with an error on a buffered channel.
type errReq struct{ ch chan error }

func newErrReq() errReq         { return errReq{ch: make(chan error, 1)} }
func (r errReq) done(err error) { r.ch <- err }

type pubEntry struct {
	body   []byte
	ev     *event.Event
	queues []string
}

type publishReq struct {
	errReq
	entries []pubEntry
}

func (r *publishReq) apply(e *engine, now time.Time) {
	for _, en := range r.entries {
		for _, name := range en.queues {
			q := e.queue(name)
			m := &msg{id: e.nextID, q: q, body: en.body, ev: en.ev, sentAt: now, hidx: -1}
			e.nextID++
			q.msgs[m.id] = m
			q.pushReady(m)
			e.markDirty(m)
		}
	}
}

type receiveReq struct {
	queue    string
	max      int
	vis      time.Duration
	deadline time.Time
	wait     bool

	msgs     []claimed
	parked   bool
	answered bool
	reply    chan receiveReply
}

type receiveReply struct {
	msgs []claimed
	err  error
}

func (r *receiveReq) apply(e *engine, now time.Time) {
	q := e.queue(r.queue)
	if r.vis <= 0 {
		r.vis = q.cfg.Visibility
	}
	r.msgs = e.claim(q, r.max, r.vis, now, r.msgs)
	if len(r.msgs) == 0 && r.wait && r.deadline.After(now) {
		r.parked = true
		q.waiters = append(q.waiters, r)
		e.waiting[q] = struct{}{}
	}
}

func (r *receiveReq) done(err error) {
	if r.parked || r.answered {
		return
	}
	r.answered = true
	if err != nil {
		r.msgs = nil
	}
	r.reply <- receiveReply{msgs: r.msgs, err: err}
}

// cancelReq withdraws a parked receive whose caller gave up.
type cancelReq struct {
	errReq
	w *receiveReq
}

func (r *cancelReq) apply(e *engine, _ time.Time) {
	if !r.w.parked {
		return
	}
	q := e.queues[r.w.queue]
	for i, w := range q.waiters {
		if w == r.w {
			q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
			break
		}
	}
	if len(q.waiters) == 0 {
		delete(e.waiting, q)
	}
	r.w.parked = false
}

func (r *cancelReq) done(err error) {
	r.w.done(err)
	r.errReq.done(err)
}

type ackReq struct {
	errReq
	queue    string
	receipts []receipt
	errs     []error
}

func (r *ackReq) apply(e *engine, _ time.Time) {
	q := e.queue(r.queue)
	for _, rc := range r.receipts {
		m, err := e.byReceipt(q, rc)
		if err != nil {
			r.errs = append(r.errs, err)
			continue
		}
		q.setGone(m)
		e.markDirty(m)
	}
}

func (r *ackReq) done(err error) {
	if err == nil {
		err = errors.Join(r.errs...)
	}
	r.errReq.done(err)
}

type nackReq struct {
	errReq
	queue     string
	receipt   receipt
	delay     time.Duration
	reason    string
	setReason bool
	err       error
}

func (r *nackReq) apply(e *engine, now time.Time) {
	q := e.queue(r.queue)
	m, err := e.byReceipt(q, r.receipt)
	if err != nil {
		r.err = err
		return
	}
	if r.setReason {
		m.reason = r.reason
	}
	if r.delay <= 0 {
		q.pushReady(m)
	} else {
		m.state, m.inflight, m.visibleAt = stTimed, false, now.Add(r.delay)
		e.pushTimed(m)
	}
	e.markDirty(m)
}

func (r *nackReq) done(err error) {
	if err == nil {
		err = r.err
	}
	r.errReq.done(err)
}

type extendReq struct {
	errReq
	queue   string
	receipt receipt
	vis     time.Duration
	err     error
}

func (r *extendReq) apply(e *engine, now time.Time) {
	q := e.queue(r.queue)
	m, err := e.byReceipt(q, r.receipt)
	if err != nil {
		r.err = err
		return
	}
	// Visibility is not journaled: after a restart every in-flight message
	// is visible at once, since its handler died with the process.
	m.state, m.inflight, m.visibleAt = stTimed, true, now.Add(r.vis)
	e.pushTimed(m)
}

func (r *extendReq) done(err error) {
	if err == nil {
		err = r.err
	}
	r.errReq.done(err)
}

type deadLetterReq struct {
	errReq
	queue   string
	receipt receipt
	reason  string
	err     error
}

func (r *deadLetterReq) apply(e *engine, now time.Time) {
	q := e.queue(r.queue)
	m, err := e.byReceipt(q, r.receipt)
	if err != nil {
		r.err = err
		return
	}
	e.toDead(m, r.reason, now)
}

func (r *deadLetterReq) done(err error) {
	if err == nil {
		err = r.err
	}
	r.errReq.done(err)
}

type listDeadReq struct {
	errReq
	queue string
	max   int
	out   []bus.DeadLetter
}

func (r *listDeadReq) apply(e *engine, _ time.Time) {
	q := e.queue(r.queue)
	for _, d := range q.dead {
		if len(r.out) >= r.max {
			break
		}
		r.out = append(r.out, bus.DeadLetter{
			ID: strconv.FormatInt(d.id, 10), Body: d.body, Reason: d.reason,
			ReceiveCount: d.receives, DeadAt: d.deadAt,
		})
	}
}

type redriveReq struct {
	errReq
	queue string
	max   int
	moved int
}

func (r *redriveReq) apply(e *engine, now time.Time) {
	q := e.queue(r.queue)
	n := min(r.max, len(q.dead))
	for _, d := range q.dead[:n] {
		d.gone = true
		e.markDeadDirty(d)
		m := &msg{id: e.nextID, q: q, body: d.body, sentAt: now, hidx: -1}
		e.nextID++
		q.msgs[m.id] = m
		q.pushReady(m)
		e.markDirty(m)
	}
	clear(q.dead[:n])
	q.dead = q.dead[n:]
	r.moved = n
}

type purgeReq struct {
	errReq
	queue  string
	purged int
}

func (r *purgeReq) apply(e *engine, _ time.Time) {
	q := e.queue(r.queue)
	for _, m := range q.msgs {
		m.hidx = -1 // the heap is dropped whole below
		m.state = stGone
		e.markDirty(m)
		r.purged++
	}
	q.msgs = map[int64]*msg{}
	q.ready, q.head, q.timed = nil, 0, nil
}

type sendRawReq struct {
	errReq
	queue string
	body  []byte
}

func (r *sendRawReq) apply(e *engine, now time.Time) {
	q := e.queue(r.queue)
	m := &msg{id: e.nextID, q: q, body: r.body, sentAt: now, hidx: -1}
	e.nextID++
	q.msgs[m.id] = m
	q.pushReady(m)
	e.markDirty(m)
}

type statsReq struct {
	errReq
	queue string
	out   Stats
}

func (r *statsReq) apply(e *engine, now time.Time) {
	q := e.queue(r.queue)
	for _, m := range q.msgs {
		switch {
		case m.state == stReady || !m.visibleAt.After(now):
			r.out.Ready++
		case m.inflight:
			r.out.InFlight++
		default:
			r.out.Delayed++
		}
	}
	r.out.Dead = len(q.dead)
}

type declareReq struct {
	errReq
	cfg QueueConfig
}

func (r *declareReq) apply(e *engine, _ time.Time) {
	e.queue(r.cfg.Name).cfg = r.cfg
}

type queuesReq struct {
	errReq
	out []string
}

func (r *queuesReq) apply(e *engine, _ time.Time) {
	for name := range e.queues {
		r.out = append(r.out, name)
	}
}
