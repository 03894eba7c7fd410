package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/bus/bustest"
	"github.com/agentbus/agentbus/platform/bus/local"
)

// Both sides run the same shape: 8 goroutines publish one CloudEvent per
// call and wait for the durable acknowledgement; every subscriber receives
// in batches, decodes the event, records publish→handler latency and acks.
// Throughput is unpaced; latency is paced at half of that side's own
// maximum.

const eventType = "agentbus.tool.invocation.requested.v1"

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type result struct {
	perSec   float64
	p50, p99 time.Duration
	cpu      time.Duration
}

func (r result) report(b *testing.B) {
	b.ReportMetric(r.perSec, "events/s")
	b.ReportMetric(float64(r.p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(r.p99.Microseconds()), "p99-µs")
	b.ReportMetric(float64(r.cpu.Nanoseconds())/1000, "cpu-µs/event")
}

// --- agentbus local (durable SQLite) ---

func openLocal(b *testing.B, subs int) (*local.Bus, []bus.Queue) {
	opts := local.Options{Path: filepath.Join(b.TempDir(), "bus.db")}
	for i := range subs {
		name := fmt.Sprintf("sub%d", i)
		opts.Rules = append(opts.Rules, local.Rule{Name: name, Queue: name, Pattern: []byte(`{"detail-type":["` + eventType + `"]}`)})
		opts.Queues = append(opts.Queues, local.QueueConfig{Name: name, MaxReceiveCount: 5, Visibility: 30 * time.Second})
	}
	lb, err := local.Open(context.Background(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { lb.Close() })
	var qs []bus.Queue
	for i := range subs {
		qs = append(qs, lb.Queue(fmt.Sprintf("sub%d", i)))
	}
	return lb, qs
}

func runLocal(b *testing.B, subs, rate, n int) result {
	lb, qs := openLocal(b, subs)
	r := bustest.RunBench(b, bustest.BenchConfig{
		Publisher: lb, Queues: qs, Rate: rate, Template: bustest.BenchTemplate(eventType),
		Worker: bus.WorkerConfig{Concurrency: 64, Batch: 64, AckBatch: 256, Wait: time.Second},
	}, n)
	return result{perSec: r.PerSec, p50: r.P50, p99: r.P99, cpu: r.CPUPerEvent}
}

// --- NATS JetStream (embedded, file store) ---

func openJetStream(b *testing.B, subs int) (jetstream.JetStream, []jetstream.Consumer) {
	ns, err := server.NewServer(&server.Options{
		JetStream: true, StoreDir: b.TempDir(), DontListen: true, NoLog: true, NoSigs: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		b.Fatal("nats server not ready")
	}
	b.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(nats.DefaultURL, nats.InProcessServer(ns))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	// One subscriber: a work-queue stream. Several: every subscriber must
	// get every event, which a work queue cannot do, so an interest stream
	// with one durable pull consumer each.
	retention := jetstream.WorkQueuePolicy
	if subs > 1 {
		retention = jetstream.InterestPolicy
	}
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "BENCH", Subjects: []string{"bench.>"}, Retention: retention, Storage: jetstream.FileStorage,
	})
	if err != nil {
		b.Fatal(err)
	}
	var cs []jetstream.Consumer
	for i := range subs {
		c, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable: fmt.Sprintf("sub%d", i), AckPolicy: jetstream.AckExplicitPolicy,
			MaxAckPending: 10_000, AckWait: 30 * time.Second,
		})
		if err != nil {
			b.Fatal(err)
		}
		cs = append(cs, c)
	}
	return js, cs
}

func runJetStream(b *testing.B, subs, rate, n int) result {
	js, cs := openJetStream(b, subs)
	tmpl := bustest.BenchTemplate(eventType)
	sent := make([]atomic.Int64, n)
	lat := make([][]time.Duration, subs)
	var remaining atomic.Int64
	remaining.Store(int64(n * subs))
	allDone := make(chan struct{})
	epoch := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for ci, c := range cs {
		lat[ci] = make([]time.Duration, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				batch, err := c.Fetch(100, jetstream.FetchMaxWait(time.Second))
				if err != nil {
					continue
				}
				for m := range batch.Messages() {
					var ev event.Event
					if err := json.Unmarshal(m.Data(), &ev); err != nil {
						b.Errorf("decode: %v", err)
					}
					now := time.Since(epoch)
					if i, err := strconv.Atoi(ev.ID()); err == nil && i < n && lat[ci][i] == 0 {
						lat[ci][i] = now - time.Duration(sent[i].Load())
						if remaining.Add(-1) == 0 {
							close(allDone)
						}
					}
					_ = m.Ack()
				}
			}
		}()
	}
	start, cpu0 := time.Now(), cpuTime()
	const publishers = 8
	var pwg sync.WaitGroup
	per := (n + publishers - 1) / publishers
	for p := range publishers {
		lo, hi := p*per, min(n, (p+1)*per)
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			var interval time.Duration
			if rate > 0 {
				interval = time.Duration(float64(time.Second) * publishers / float64(rate))
			}
			next := time.Now()
			for i := lo; i < hi; i++ {
				if interval > 0 {
					next = next.Add(interval)
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
				}
				ev := bustest.BenchEvent(tmpl, i)
				sent[i].Store(int64(time.Since(epoch)))
				data, err := json.Marshal(ev)
				if err != nil {
					b.Error(err)
					return
				}
				if _, err := js.Publish(ctx, "bench.tool", data); err != nil {
					b.Errorf("publish: %v", err)
					return
				}
			}
		}()
	}
	pwg.Wait()
	select {
	case <-allDone:
	case <-time.After(time.Minute + time.Duration(n)*time.Millisecond):
		b.Errorf("only %d of %d deliveries", int64(n*subs)-remaining.Load(), n*subs)
	}
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	cancel()
	wg.Wait()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	return result{perSec: float64(n) / elapsed.Seconds(), p50: all[len(all)/2], p99: all[len(all)*99/100], cpu: cpu / time.Duration(n)}
}

type runner func(b *testing.B, subs, rate, n int) result

var peers = []struct {
	name string
	run  runner
}{{"agentbus-local-durable", runLocal}, {"nats-jetstream-file", runJetStream}}

func BenchmarkThroughput(b *testing.B) {
	for _, p := range peers {
		for _, subs := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/subs=%d", p.name, subs), func(b *testing.B) {
				p.run(b, subs, 0, b.N).report(b)
			})
		}
	}
}

func BenchmarkLatency(b *testing.B) {
	for _, p := range peers {
		for _, subs := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/subs=%d", p.name, subs), func(b *testing.B) {
				maxRate := p.run(b, subs, 0, 20_000).perSec
				r := p.run(b, subs, int(maxRate/2), b.N)
				r.report(b)
				b.ReportMetric(maxRate/2, "paced-events/s")
			})
		}
	}
}
