package local_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/bus/bustest"
)

func BenchmarkRawPublishOnly(b *testing.B) {
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			bb, _ := benchBus(b, m.durable, 1)
			tmpl := bustest.BenchTemplate("agentbus.tool.invocation.requested.v1")
			b.ResetTimer()
			var wg sync.WaitGroup
			per := b.N / 8
			for p := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := p * per; i < (p+1)*per; i++ {
						if err := bb.Publish(context.Background(), bustest.BenchEvent(tmpl, i)); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			q := bb.Queue("sub0")
			start := time.Now()
			n := 0
			for n < per*8 {
				msgs, err := q.Receive(context.Background(), 256, time.Second, time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				rs := make([]string, len(msgs))
				for i, m := range msgs {
					rs[i] = m.Receipt
				}
				if err := q.Ack(context.Background(), rs...); err != nil {
					b.Fatal(err)
				}
				n += len(msgs)
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "drain/s")
		})
	}
}
