package local

import (
	"testing"
	"time"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus/bustest"
	"github.com/agentbus/agentbus/platform/pattern"
)

// BenchmarkPerEventCosts measures the fixed per-event work outside the
// queue machinery, to explain where the end-to-end CPU goes.
func BenchmarkPerEventCosts(b *testing.B) {
	tmpl := bustest.BenchTemplate("agentbus.tool.invocation.requested.v1")
	detail, _ := marshalDetail(&tmpl)
	body := appendEnvelope(nil, tmpl.Source(), tmpl.Type(), detail, "id", time.Now(), "000000000000", "local")
	m := pattern.NewMatcher()
	_ = m.Add("r", pattern.MustCompile(`{"detail-type":["agentbus.tool.invocation.requested.v1"],"detail":{"toolname":["calculator"]}}`))
	b.Run("marshal-cloudevent", func(b *testing.B) {
		for b.Loop() {
			_, _ = marshalDetail(&tmpl)
		}
	})
	b.Run("envelope", func(b *testing.B) {
		for b.Loop() {
			_ = appendEnvelope(make([]byte, 0, len(detail)+256), tmpl.Source(), tmpl.Type(), detail, "id", time.Now(), "000000000000", "local")
		}
	})
	b.Run("match", func(b *testing.B) {
		for b.Loop() {
			_, _ = m.Match(body)
		}
	})
	b.Run("clone-for-delivery", func(b *testing.B) {
		for b.Loop() {
			_ = tmpl.Clone()
		}
	})
	b.Run("decode-from-body", func(b *testing.B) {
		for b.Loop() {
			_, _ = events.FromDelivery(body)
		}
	})
	b.ReportMetric(float64(len(body)), "body-bytes")
}
