package planner

import (
	"container/list"
	"slices"
	"sync"

	"github.com/agentbus/agentbus/platform/state"
)

// runCache keeps the runs of the sessions this planner wrote last (most
// recently used first, at most max runs and maxBytes encoded), so that the next event of a session
// does not read its record back and decode it again. It is only right for a
// planner that writes its sessions alone (Config.CacheRuns). A cached run
// can still be behind the store: a run written by someone else, or one this
// planner wrote whose event was published, and handled, before put. So it
// is trusted only to act: a write from a stale run conflicts, which evicts
// it and the redelivery reads the store; and an event the cached run calls
// late is checked against the stored run before it is dropped.
type runCache struct {
	max, maxBytes int

	mu    sync.Mutex
	order *list.List               // of *cachedRun, most recent first
	byID  map[string]*list.Element // session id -> its element
	bytes int                      // the cached runs' encoded sizes, summed
}

type cachedRun struct {
	sess state.Session
	run  run
	size int // the run's encoded size
}

// maxCachedBytes bounds the runs' encoded sizes summed: a run holds its
// whole conversation, which can reach hundreds of KB.
const maxCachedBytes = 64 << 20

func newRunCache(max, maxBytes int) *runCache {
	if max <= 0 {
		return nil
	}
	return &runCache{max: max, maxBytes: maxBytes, order: list.New(), byID: map[string]*list.Element{}}
}

// get returns a copy of the session's cached run; the caller may change it.
func (c *runCache) get(id string) (state.Session, *run, bool) {
	if c == nil {
		return state.Session{}, nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byID[id]
	if !ok {
		return state.Session{}, nil, false
	}
	c.order.MoveToFront(el)
	cr := el.Value.(*cachedRun)
	r := cr.run
	r.Messages = slices.Clone(cr.run.Messages) // a turn appends to them
	return cr.sess, &r, true
}

// put keeps a copy of the run just written as sess (whose Version is the
// stored one) and size bytes long encoded; a run that ended is dropped
// instead, no event moves it on.
func (c *runCache) put(sess state.Session, r *run, size int) {
	if c == nil {
		return
	}
	if sess.Status != state.StatusRunning {
		c.drop(sess.ID)
		return
	}
	cr := &cachedRun{sess: sess, run: *r, size: size}
	cr.sess.Data = nil // the run is kept decoded
	cr.run.Messages = slices.Clone(r.Messages)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[sess.ID]; ok {
		// Two handlers of one session may put out of order: keep the later.
		if old := el.Value.(*cachedRun); old.sess.Version < sess.Version {
			c.bytes += cr.size - old.size
			el.Value = cr
		}
		c.order.MoveToFront(el)
	} else {
		c.byID[sess.ID] = c.order.PushFront(cr)
		c.bytes += cr.size
	}
	for c.order.Len() > c.max || (c.bytes > c.maxBytes && c.order.Len() > 0) {
		c.removeLocked(c.order.Back())
	}
}

// drop forgets the session's run.
func (c *runCache) drop(id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[id]; ok {
		c.removeLocked(el)
	}
}

func (c *runCache) removeLocked(el *list.Element) {
	cr := el.Value.(*cachedRun)
	c.order.Remove(el)
	delete(c.byID, cr.sess.ID)
	c.bytes -= cr.size
}
