package bustest

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/platform/bus"
)

// BenchEvent is the event the benchmarks publish: about 400 bytes of
// CloudEvent (routing extensions and a small JSON payload), id i.
func BenchEvent(tmpl event.Event, i int) event.Event {
	ev := tmpl.Clone()
	ev.SetID(strconv.Itoa(i))
	return ev
}

// BenchTemplate returns the template of BenchEvent with the given type.
func BenchTemplate(eventType string) event.Event {
	ev := event.New()
	ev.SetSource("agentbus/bench")
	ev.SetType(eventType)
	ev.SetTime(time.Now())
	ev.SetExtension("sessionid", "0191e7e2-3c1d-7c4e-9a51-2f4f0c8b9d10")
	ev.SetExtension("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	ev.SetExtension("toolname", "calculator")
	ev.SetExtension("step", 3)
	_ = ev.SetData(event.ApplicationJSON, map[string]any{
		"step": 3, "callId": "toolu_01A09q90qw90lq917835lq9", "tool": "calculator",
		"input": map[string]any{"expression": "(1234 * 5678) / 9"}, "timeoutMs": 30000,
		"idempotencyKey": "0191e7e2-3c1d-7c4e-9a51-2f4f0c8b9d10/3/toolu_01A09q90qw90lq917835lq9",
	})
	return ev
}

// BenchConfig describes one end-to-end benchmark run.
type BenchConfig struct {
	Publisher bus.Publisher
	// Queues are the subscriber queues; every event must reach each.
	Queues []bus.Queue
	// Template is the event published (ids are set per event).
	Template event.Event
	// Publishers is how many goroutines publish, one event per call
	// (default 8), so a backend's group commit has company to batch.
	Publishers int
	// Rate paces publishing to this many events/s in total (0: as fast as
	// possible).
	Rate int
	// Worker configures the Worker run on each queue.
	Worker bus.WorkerConfig
}

// BenchResult is what one run measured.
type BenchResult struct {
	Events   int
	Elapsed  time.Duration
	PerSec   float64       // events published and handled by every queue, per second
	P50, P99 time.Duration // publish call → handler start, over all deliveries
	// CPUPerEvent is process CPU time (all cores) per event; 2 cores at
	// full use would sustain about 2s/CPUPerEvent events/s.
	CPUPerEvent time.Duration
}

// RunBench publishes n events and handles them with a Worker per queue,
// measuring throughput and publish→handler latency.
func RunBench(tb testing.TB, cfg BenchConfig, n int) BenchResult {
	tb.Helper()
	if cfg.Publishers <= 0 {
		cfg.Publishers = 8
	}
	sent := make([]atomic.Int64, n)
	lat := make([][]time.Duration, len(cfg.Queues))
	var remaining atomic.Int64
	remaining.Store(int64(n * len(cfg.Queues)))
	allDone := make(chan struct{})
	epoch := time.Now()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for qi, q := range cfg.Queues {
		lat[qi] = make([]time.Duration, n)
		h := func(_ context.Context, ev event.Event) error {
			now := time.Since(epoch)
			i, err := strconv.Atoi(ev.ID())
			if err != nil || i < 0 || i >= n {
				return nil // not ours (a previous run's leftovers)
			}
			if lat[qi][i] == 0 {
				lat[qi][i] = now - time.Duration(sent[i].Load())
				if remaining.Add(-1) == 0 {
					close(allDone)
				}
			}
			return nil
		}
		w := bus.NewWorker(q, h, cfg.Worker)
		wg.Add(1)
		go func() { defer wg.Done(); _ = w.Run(ctx) }()
	}

	start, cpu0 := time.Now(), cpuTime()
	var pwg sync.WaitGroup
	per := (n + cfg.Publishers - 1) / cfg.Publishers
	for p := range cfg.Publishers {
		lo, hi := p*per, min(n, (p+1)*per)
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			var interval time.Duration
			if cfg.Rate > 0 {
				interval = time.Duration(float64(time.Second) * float64(cfg.Publishers) / float64(cfg.Rate))
			}
			next := time.Now()
			for i := lo; i < hi; i++ {
				if interval > 0 {
					next = next.Add(interval)
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
				}
				ev := BenchEvent(cfg.Template, i)
				sent[i].Store(int64(time.Since(epoch)))
				if err := cfg.Publisher.Publish(ctx, ev); err != nil {
					tb.Errorf("publish: %v", err)
					return
				}
			}
		}()
	}
	pwg.Wait()
	select {
	case <-allDone:
	case <-time.After(time.Minute + time.Duration(n)*time.Millisecond):
		tb.Errorf("only %d of %d deliveries within the time limit", int64(n*len(cfg.Queues))-remaining.Load(), n*len(cfg.Queues))
	}
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	cancel()
	wg.Wait()

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	res := BenchResult{Events: n, Elapsed: elapsed, PerSec: float64(n) / elapsed.Seconds(), CPUPerEvent: cpu / time.Duration(n)}
	if len(all) > 0 {
		res.P50 = all[len(all)/2]
		res.P99 = all[len(all)*99/100]
	}
	return res
}

// Report adds r's figures to b's output.
func (r BenchResult) Report(b *testing.B) {
	b.ReportMetric(r.PerSec, "events/s")
	if r.CPUPerEvent > 0 {
		b.ReportMetric(float64(r.CPUPerEvent.Nanoseconds())/1000, "cpu-µs/event")
	}
	if r.P50 > 0 {
		b.ReportMetric(float64(r.P50.Microseconds()), "p50-µs")
		b.ReportMetric(float64(r.P99.Microseconds()), "p99-µs")
	}
}
