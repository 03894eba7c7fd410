package claimcheck_test

import (
	"context"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/bus/claimcheck"
)

// BenchmarkPublish measures what the claim check adds to a publish (the
// downstream publisher does nothing): a small event is measured and passed
// on; a 5 MB one is stored in an in-memory blob store and sent without data.
func BenchmarkPublish(b *testing.B) {
	for _, c := range []struct {
		name string
		size int
	}{{"1KB", 1 << 10}, {"200KB", 200 << 10}, {"5MB", 5 << 20}} {
		b.Run(c.name, func(b *testing.B) {
			ev := newEvent(b, "s", c.size)
			next := bus.PublisherFunc(func(context.Context, ...event.Event) error { return nil })
			p, err := claimcheck.NewPublisher(next, &fakeStore{})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(c.size))
			b.ReportAllocs()
			for b.Loop() {
				if err := p.Publish(b.Context(), ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
