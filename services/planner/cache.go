package planner

import (
	"container/list"
	"slices"
	"sync"

	"github.com/agentbus/agentbus/platform/state"
)

// runCache keeps the runs of the sessions this planner wrote last (most
// recently used first, at most max), so that the next event of a session
// does not read its record back and decode it again. It is only right for a
// planner that writes its sessions alone (Config.CacheRuns). A cached run
// can still be behind the store: a run written by someone else, or one this
// planner wrote whose event was published, and handled, before put. So it
// is trusted only to act: a write from a stale run conflicts, which evicts
// it and the redelivery reads the store; and an event the cached run calls
// late is checked against the stored run before it is dropped.
type runCache struct {
	max int

	mu    sync.Mutex
	order *list.List               // of *cachedRun, most recent first
	byID  map[string]*list.Element // session id -> its element
}

type cachedRun struct {
	sess state.Session
	run  run
}

func newRunCache(max int) *runCache {
	if max <= 0 {
		return nil
	}
	return &runCache{max: max, order: list.New(), byID: map[string]*list.Element{}}
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
// stored one); a run that ended is dropped instead, no event moves it on.
func (c *runCache) put(sess state.Session, r *run) {
	if c == nil {
		return
	}
	if sess.Status != state.StatusRunning {
		c.drop(sess.ID)
		return
	}
	cr := &cachedRun{sess: sess, run: *r}
	cr.sess.Data = nil // the run is kept decoded
	cr.run.Messages = slices.Clone(r.Messages)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[sess.ID]; ok {
		// Two handlers of one session may put out of order: keep the later.
		if el.Value.(*cachedRun).sess.Version < sess.Version {
			el.Value = cr
		}
		c.order.MoveToFront(el)
		return
	}
	c.byID[sess.ID] = c.order.PushFront(cr)
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byID, last.Value.(*cachedRun).sess.ID)
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
		c.order.Remove(el)
		delete(c.byID, id)
	}
}
