package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// WorkerConfig tunes a Worker. The zero value gives the defaults noted on
// each field.
type WorkerConfig struct {
	// Concurrency is how many handlers run at once (default 8). The worker
	// receives only as many messages as it has free handler slots, so a slow
	// handler applies back-pressure instead of letting messages time out.
	Concurrency int
	// Batch caps messages per Receive (default min(Concurrency, 10); SQS
	// allows at most 10).
	Batch int
	// Wait is the long-poll wait of each Receive (default 10s).
	Wait time.Duration
	// BatchWindow, when set, makes the worker pause for BatchWindow after a
	// receive that did not fill its batch, so that what arrives meanwhile is
	// received together: a lone message is handed over at once, a stream of
	// them in batches at most BatchWindow apart. For a consumer off the
	// latency path, such as one recording history: while it pauses, a
	// publish does not wake it, and the messages of a burst share one
	// receive, one ack and (with a handler that groups concurrent calls) one
	// write, so it competes less with the latency path for the CPU, at the
	// cost of up to BatchWindow of delay. Default 0: receive again at once.
	BatchWindow time.Duration
	// Visibility is the visibility timeout asked for on receive and renewed
	// every Visibility/3 while a handler runs (default 30s).
	Visibility time.Duration
	// MinBackoff and MaxBackoff bound the redelivery delay after a handler
	// error: MinBackoff·2^(receives-1), capped at MaxBackoff, with jitter
	// (defaults 1s and 5m).
	MinBackoff, MaxBackoff time.Duration
	// AckBatch caps the receipts acked in one call (default 10). Acks are
	// batched opportunistically: whatever has finished while the previous
	// Ack ran goes in the next one, so a lone ack is not delayed.
	AckBatch int
	// ShutdownTimeout bounds how long Run waits for in-flight handlers after
	// its context ends (default 10s). Handlers still running then get a
	// cancelled context and their messages are released (Nack 0).
	ShutdownTimeout time.Duration
	// Logger receives receive/ack errors and dead-letter notices (default:
	// discard).
	Logger *slog.Logger
}

func (c WorkerConfig) withDefaults() WorkerConfig {
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.Batch <= 0 {
		c.Batch = min(c.Concurrency, 10)
	}
	c.Batch = min(c.Batch, c.Concurrency)
	if c.Wait <= 0 {
		c.Wait = 10 * time.Second
	}
	if c.Visibility <= 0 {
		c.Visibility = 30 * time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Minute
	}
	c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
	if c.AckBatch <= 0 {
		c.AckBatch = 10
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Worker runs a Handler over a Queue: receive in batches, run up to
// Concurrency handlers, keep each message invisible while its handler runs,
// ack on success, nack with backoff on error, and dead-letter at once on
// ErrPermanent or on a message that cannot be decoded.
type Worker struct {
	q   Queue
	h   Handler
	cfg WorkerConfig
}

// NewWorker returns a worker for q and h. Wrap h with Chain for middleware.
func NewWorker(q Queue, h Handler, cfg WorkerConfig) *Worker {
	return &Worker{q: q, h: h, cfg: cfg.withDefaults()}
}

// Run receives and handles messages until ctx ends, then shuts down
// gracefully (see WorkerConfig.ShutdownTimeout) and returns nil.
func (w *Worker) Run(ctx context.Context) error {
	cfg := w.cfg
	// Handlers outlive ctx by up to ShutdownTimeout, so they get their own
	// context that carries ctx's values but is cancelled only here.
	hctx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	// Settling (ack/nack) must work during shutdown too.
	sctx := context.WithoutCancel(ctx)

	ack := newAcker(sctx, w.q, cfg.AckBatch, cfg.Logger)
	hb := &beats{running: map[string]time.Time{}}
	stopBeats := make(chan struct{})
	beatsDone := make(chan struct{})
	go func() { defer close(beatsDone); w.heartbeat(sctx, hb, stopBeats) }()
	slots := make(chan struct{}, cfg.Concurrency)
	// A fixed pool of Concurrency handler goroutines rather than one per
	// message: a fresh goroutine grows its stack again on every message
	// (handlers go deep, into SQLite), which cost ~4.5% of CPU in the loop
	// benchmark. The slots still bound what is received to what the pool can
	// take, so a send on work never waits for long.
	work := make(chan Message, cfg.Concurrency)
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range work {
				w.handle(hctx, sctx, m, ack, hb)
				<-slots
			}
		}()
	}
	failures := 0
	pause := false

receive:
	for {
		if pause {
			t := time.NewTimer(cfg.BatchWindow)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				break receive
			}
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			break receive
		}
		n := 1
	more:
		for n < cfg.Batch {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		msgs, err := w.q.Receive(ctx, n, cfg.Wait, cfg.Visibility)
		pause = err == nil && len(msgs) < n && cfg.BatchWindow > 0
		for i := len(msgs); i < n; i++ {
			<-slots
		}
		if ctx.Err() != nil {
			// Received while stopping: give them back untouched.
			for _, m := range msgs {
				w.settle("release", func() error { return w.q.Nack(sctx, m.Receipt, 0) })
				<-slots
			}
			break
		}
		if err != nil {
			failures++
			d := backoff(failures, 100*time.Millisecond, 10*time.Second)
			cfg.Logger.Warn("bus: receive failed", "queue", w.q.Name(), "err", err, "retry_in", d)
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
			continue
		}
		failures = 0
		for _, m := range msgs {
			work <- m
		}
	}
	close(work)

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(cfg.ShutdownTimeout):
		cfg.Logger.Warn("bus: shutdown timeout, cancelling handlers", "queue", w.q.Name())
		cancelHandlers()
		<-done
	}
	close(stopBeats)
	<-beatsDone
	ack.close()
	return nil
}

type receiveCountKey struct{}

// ReceiveCount is how many times the message a Worker's handler was given
// with ctx has been delivered, this delivery included (1: the first); 0
// when ctx is not a handler's (the count is unknown). A handler can skip a
// check that only a redelivery needs.
func ReceiveCount(ctx context.Context) int {
	n, _ := ctx.Value(receiveCountKey{}).(int)
	return n
}

// WithReceiveCount returns ctx carrying a message's receive count, as a
// Worker gives its handler: for a handler called by other means (an AWS
// Lambda's SQS event source, a test).
func WithReceiveCount(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, receiveCountKey{}, n)
}

// handle runs the handler for one message and settles it.
func (w *Worker) handle(hctx, sctx context.Context, m Message, ack *acker, hb *beats) {
	cfg := w.cfg
	if m.DecodeErr != nil {
		w.deadLetter(sctx, m, "decode: "+m.DecodeErr.Error())
		return
	}
	hb.add(m.Receipt)
	err := w.h(WithReceiveCount(hctx, m.ReceiveCount), m.Event)
	hb.remove(m.Receipt)
	switch {
	case err == nil:
		ack.add(m.Receipt)
	case hctx.Err() != nil:
		// Shutdown cut the handler short: not the event's fault.
		w.settle("release", func() error { return w.q.Nack(sctx, m.Receipt, 0) })
	case errors.Is(err, ErrPermanent):
		w.deadLetter(sctx, m, err.Error())
	default:
		d := backoff(m.ReceiveCount, cfg.MinBackoff, cfg.MaxBackoff)
		if ra, ok := retryDelay(err); ok {
			d = ra
		} else {
			// SQS keeps no reason with a redelivered message: the log does.
			cfg.Logger.Warn("bus: handler failed; message will be redelivered", "queue", w.q.Name(),
				"id", m.ID, "receive_count", m.ReceiveCount, "retry_in", d, "err", err)
		}
		if fn, ok := w.q.(FailureNacker); ok {
			w.settle("nack", func() error { return fn.NackFailure(sctx, m.Receipt, d, err.Error()) })
		} else {
			w.settle("nack", func() error { return w.q.Nack(sctx, m.Receipt, d) })
		}
	}
}

func (w *Worker) deadLetter(ctx context.Context, m Message, reason string) {
	w.cfg.Logger.Warn("bus: dead-lettering message", "queue", w.q.Name(), "id", m.ID, "reason", reason)
	w.settle("dead-letter", func() error { return w.q.DeadLetter(ctx, m, reason) })
}

func (w *Worker) settle(what string, f func() error) {
	if err := f(); err != nil {
		// The message will come back after its visibility timeout.
		w.cfg.Logger.Warn("bus: "+what+" failed", "queue", w.q.Name(), "err", err)
	}
}

// beats keeps the messages of running handlers invisible: one ticker per
// worker extends every message whose handler has run for Visibility/3 since
// it was received or last extended (cheaper than a timer per message, most
// of which would never fire).
type beats struct {
	mu      sync.Mutex
	running map[string]time.Time // receipt -> last received/extended
}

func (b *beats) add(receipt string) {
	b.mu.Lock()
	b.running[receipt] = time.Now()
	b.mu.Unlock()
}

func (b *beats) remove(receipt string) {
	b.mu.Lock()
	delete(b.running, receipt)
	b.mu.Unlock()
}

func (w *Worker) heartbeat(ctx context.Context, b *beats, stop <-chan struct{}) {
	every := w.cfg.Visibility / 3
	t := time.NewTicker(max(every/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			var due []string
			b.mu.Lock()
			for r, last := range b.running {
				if now.Sub(last) >= every {
					due = append(due, r)
					b.running[r] = now
				}
			}
			b.mu.Unlock()
			for _, r := range due {
				if err := w.q.Extend(ctx, r, w.cfg.Visibility); err != nil {
					w.cfg.Logger.Warn("bus: extend visibility failed", "queue", w.q.Name(), "err", err)
				}
			}
		}
	}
}

// backoff is min·2^(n-1) capped at max, jittered into [d/2, d] so that
// messages failing together do not come back together.
func backoff(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half+1)
}

// acker batches acks: one goroutine acks whatever receipts have accumulated
// while its previous Ack call ran.
type acker struct {
	ch   chan string
	done chan struct{}
}

func newAcker(ctx context.Context, q Queue, batch int, log *slog.Logger) *acker {
	a := &acker{ch: make(chan string, 4*batch), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		buf := make([]string, 0, batch)
		for r := range a.ch {
			buf = append(buf[:0], r)
		drain:
			for len(buf) < batch {
				select {
				case r, ok := <-a.ch:
					if !ok {
						break drain
					}
					buf = append(buf, r)
				default:
					break drain
				}
			}
			if err := q.Ack(ctx, buf...); err != nil {
				log.Warn("bus: ack failed", "queue", q.Name(), "err", fmt.Errorf("%d receipt(s): %w", len(buf), err))
			}
		}
	}()
	return a
}

func (a *acker) add(receipt string) { a.ch <- receipt }

// close flushes pending acks and waits for them.
func (a *acker) close() {
	close(a.ch)
	<-a.done
}
