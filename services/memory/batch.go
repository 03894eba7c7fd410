package memory

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/agentbus/agentbus/platform/state"
)

// Option configures a Service.
type Option func(*Service)

// WithBatching makes concurrent Handle calls share history writes: the
// first event waits up to linger (or until max events are waiting) for
// others, and all of them are appended together, one write per session,
// before any of their handlers returns. The memory service is off the loop's
// critical path, but its writes compete with the loop's for the CPU and the
// store; one write per few events instead of one per event leaves both to
// the loop (the loop benchmark's durable mode: five history writes per tool
// step). History and the hot context lag by up to linger, except for a
// session's AgentRequested, which is written at once. Set max to the
// worker's concurrency: when every handler slot is waiting, waiting longer
// gains nothing.
func WithBatching(linger time.Duration, max int) Option {
	return func(s *Service) {
		if linger > 0 && max > 1 {
			s.batch = &appender{s: s, linger: linger, max: max}
		}
	}
}

// appender collects the entries of concurrent Handle calls into batches.
// The call that opens a batch leads it: it waits, then writes the batch and
// tells the others how their entry fared; no goroutine of its own to stop.
type appender struct {
	s      *Service
	linger time.Duration
	max    int

	mu   sync.Mutex
	open *batch
	last *batch // the batch opened last: the next one writes after it
}

type batch struct {
	// prev is the batch opened before this one: this one writes only once
	// prev's write is done, so that a session's history keeps the order in
	// which its events came (a later batch's write would otherwise race an
	// earlier one's, and a session's terminal event could be recorded
	// before the events that led to it).
	prev    *batch
	sids    []string
	entries []state.Entry
	full    chan struct{} // closed when max entries are in
	done    chan struct{} // closed when errs is final
	errs    []error
}

// commitTimeout bounds the write a leader makes for the whole batch, even if
// its own handler was cancelled: the others wait for it.
const commitTimeout = 30 * time.Second

func (a *appender) append(ctx context.Context, sid string, e state.Entry) error {
	a.mu.Lock()
	b := a.open
	lead := b == nil
	if lead {
		b = &batch{full: make(chan struct{}), done: make(chan struct{}), prev: a.last}
		a.open, a.last = b, b
	}
	i := len(b.entries)
	b.sids = append(b.sids, sid)
	b.entries = append(b.entries, e)
	if len(b.entries) >= a.max {
		a.open = nil
		close(b.full)
	}
	a.mu.Unlock()

	if !lead {
		select {
		case <-b.done:
			return b.errs[i]
		case <-ctx.Done():
			// The entry may still be written: a redelivery then appends
			// nothing (history is idempotent on source+id).
			return ctx.Err()
		}
	}
	t := time.NewTimer(a.linger)
	select {
	case <-b.full:
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	a.mu.Lock()
	if a.open == b {
		a.open = nil
	}
	a.mu.Unlock()
	if b.prev != nil {
		<-b.prev.done
		b.prev = nil
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	b.errs = a.write(wctx, b)
	close(b.done)
	a.mu.Lock()
	if a.last == b {
		a.last = nil // written: a batch opened from now on need not wait
	}
	a.mu.Unlock()
	return b.errs[i]
}

// write appends a batch, one write per session, each session's entries in
// the order of their events' times (the handlers of one batch call append in
// no particular order), the sessions concurrently
// (so a store that groups concurrent commits, like SQLite's, commits them
// together), and returns each entry's error. A session's write that fails is
// retried entry by entry, so that one bad entry fails alone.
func (a *appender) write(ctx context.Context, b *batch) []error {
	errs := make([]error, len(b.entries))
	bySession := map[string][]int{}
	var order []string
	for i, sid := range b.sids {
		if _, ok := bySession[sid]; !ok {
			order = append(order, sid)
		}
		bySession[sid] = append(bySession[sid], i)
	}
	var wg sync.WaitGroup
	for _, sid := range order {
		idx := bySession[sid]
		slices.SortStableFunc(idx, func(i, j int) int { return b.entries[i].Time.Compare(b.entries[j].Time) })
		wg.Go(func() {
			es := make([]state.Entry, len(idx))
			for k, i := range idx {
				es[k] = b.entries[i]
			}
			n, err := a.s.history.AppendHistory(ctx, sid, es...)
			if err != nil && len(idx) > 1 {
				n, err = 0, nil
				for _, i := range idx {
					m, ierr := a.s.history.AppendHistory(ctx, sid, b.entries[i])
					n += m
					errs[i] = wrapAppend(b.entries[i], sid, ierr)
				}
			} else if err != nil {
				errs[idx[0]] = wrapAppend(b.entries[idx[0]], sid, err)
			}
			if n > 0 {
				a.s.invalidate(ctx, sid)
			}
		})
	}
	wg.Wait()
	return errs
}

func wrapAppend(e state.Entry, sid string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("memory: append %s to session %s: %w", e.ID, sid, err)
}
