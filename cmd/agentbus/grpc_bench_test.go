package main

import (
	"context"
	"testing"

	"github.com/agentbus/agentbus/client"
	"github.com/agentbus/agentbus/services/api"
)

// BenchmarkAPIRun measures one whole agent run (one step, two parallel
// calculator calls, the built-in scripted model) submitted and watched
// through the gRPC API on a loopback listener: the caller's view of
// latency, API overhead included.
func BenchmarkAPIRun(b *testing.B) {
	rt := startLoop(b, "", nil)
	srv, err := newAPIServer(rt, nil)
	if err != nil {
		b.Fatal(err)
	}
	l, err := api.Listen("127.0.0.1:0", api.Security{}, srv, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Stop(0)
	c, err := client.Dial(context.Background(), l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Run(ctx, "compute 2+3 and 10/4"); err != nil {
			b.Fatal(err)
		}
	}
}
