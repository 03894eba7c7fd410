package redis_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/cache"
	"github.com/agentbus/agentbus/platform/cache/memory"
)

// BenchmarkGetHit reads a cached session of 64 entries of 500 bytes (a
// typical hot context) from each implementation.
func BenchmarkGetHit(b *testing.B) {
	impls := map[string]func(*testing.B) cache.Cache{
		"memory": func(*testing.B) cache.Cache { return memory.New(memory.Options{}) },
		"redis":  func(b *testing.B) cache.Cache { return newRedisB(b) },
	}
	for name, mk := range impls {
		b.Run(name, func(b *testing.B) {
			c := mk(b)
			es := make([]cache.Entry, 64)
			for i := range es {
				es[i] = cache.Entry{Seq: int64(i + 1), Data: fmt.Appendf(nil, "%0500d", i)}
			}
			_, _, v, err := c.Get(b.Context(), "s")
			if err != nil {
				b.Fatal(err)
			}
			if ok, err := c.Fill(b.Context(), "s", v, es, time.Hour); !ok || err != nil {
				b.Fatal(ok, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, hit, _, err := c.Get(b.Context(), "s"); !hit || err != nil {
					b.Fatal(hit, err)
				}
			}
		})
	}
}
