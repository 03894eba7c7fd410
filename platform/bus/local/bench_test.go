package local_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/bus/bustest"
	"github.com/agentbus/agentbus/platform/bus/local"
)

// Benchmarks of the whole path: Publish (envelope, rule match, group commit)
// → Worker (batch receive, handler, batched ack). Run with e.g.
//
//	go test -run '^$' -bench . -benchtime 100000x ./platform/bus/local/
//
// BenchmarkEndToEnd reports sustained events/s; BenchmarkLatency paces the
// publishers at half the measured maximum and reports publish→handler p50
// and p99.

func benchBus(b *testing.B, durable bool, subs int) (*local.Bus, []bus.Queue) {
	b.Helper()
	opts := local.Options{}
	if durable {
		opts.Path = filepath.Join(b.TempDir(), "bench.db")
	}
	var queues []bus.Queue
	for i := range subs {
		name := fmt.Sprintf("sub%d", i)
		opts.Rules = append(opts.Rules, local.Rule{
			Name: name, Queue: name,
			Pattern: []byte(`{"detail-type":["agentbus.tool.invocation.requested.v1"],"detail":{"toolname":["calculator"]}}`),
		})
		opts.Queues = append(opts.Queues, local.QueueConfig{Name: name, MaxReceiveCount: 5, Visibility: 30 * time.Second})
	}
	bb, err := local.Open(context.Background(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bb.Close() })
	for i := range subs {
		queues = append(queues, bb.Queue(fmt.Sprintf("sub%d", i)))
	}
	return bb, queues
}

func benchConfig(p bus.Publisher, queues []bus.Queue, rate int) bustest.BenchConfig {
	return bustest.BenchConfig{
		Publisher: p, Queues: queues, Rate: rate,
		Template: bustest.BenchTemplate("agentbus.tool.invocation.requested.v1"),
		Worker:   bus.WorkerConfig{Concurrency: 64, Batch: 64, AckBatch: 256, Wait: time.Second},
	}
}

var modes = []struct {
	name    string
	durable bool
}{{"durable", true}, {"memory", false}}

func BenchmarkEndToEnd(b *testing.B) {
	for _, m := range modes {
		for _, subs := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/subs=%d", m.name, subs), func(b *testing.B) {
				bb, queues := benchBus(b, m.durable, subs)
				b.ResetTimer()
				r := bustest.RunBench(b, benchConfig(bb, queues, 0), b.N)
				r.Report(b)
				es := bb.EngineStats()
				b.ReportMetric(float64(es.Commits)/float64(b.N), "commits/event")
				b.ReportMetric(float64(es.Requests)/float64(b.N), "requests/event")
			})
		}
	}
}

var (
	maxOnce sync.Map // mode/subs -> *maxRate
)

type maxRate struct {
	once sync.Once
	rate float64
}

// maxThroughput measures (once per configuration) the sustained rate the
// latency benchmark paces at half of.
func maxThroughput(b *testing.B, durable bool, subs int) float64 {
	v, _ := maxOnce.LoadOrStore(fmt.Sprint(durable, subs), &maxRate{})
	mr := v.(*maxRate)
	mr.once.Do(func() {
		bb, queues := benchBus(b, durable, subs)
		n := 50_000
		if !durable {
			n = 200_000
		}
		mr.rate = bustest.RunBench(b, benchConfig(bb, queues, 0), n).PerSec
	})
	return mr.rate
}

func BenchmarkLatency(b *testing.B) {
	for _, m := range modes {
		for _, subs := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/subs=%d", m.name, subs), func(b *testing.B) {
				rate := int(maxThroughput(b, m.durable, subs) / 2)
				bb, queues := benchBus(b, m.durable, subs)
				b.ResetTimer()
				r := bustest.RunBench(b, benchConfig(bb, queues, rate), b.N)
				r.Report(b)
				b.ReportMetric(float64(rate), "paced-events/s")
			})
		}
	}
}

// BenchmarkLatencyLowRate is the latency floor: one publisher at 1,000
// events/s, so nothing queues behind anything.
func BenchmarkLatencyLowRate(b *testing.B) {
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			bb, queues := benchBus(b, m.durable, 1)
			cfg := benchConfig(bb, queues, 1000)
			cfg.Publishers = 1
			b.ResetTimer()
			bustest.RunBench(b, cfg, b.N).Report(b)
		})
	}
}
