package toolgateway_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/platform/state/sqlite"
	"github.com/agentbus/agentbus/services/toolgateway"
	"github.com/agentbus/agentbus/tools"
	"github.com/agentbus/agentbus/tools/builtin/calculator"
)

// BenchmarkHandle measures one calculator call through the gateway with the
// embedded SQLite store in memory: claim, validate, run, complete + outbox.
func BenchmarkHandle(b *testing.B) {
	ctx := context.Background()
	st, err := sqlite.OpenMemory(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	reg := tools.NewRegistry()
	if err := reg.Register(calculator.Tool{}); err != nil {
		b.Fatal(err)
	}
	g, err := toolgateway.New(toolgateway.Config{Store: st, Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	reqs := make([]event.Event, b.N)
	for i := range reqs {
		reqs[i] = request(b, "bench", 1, fmt.Sprintf("c%d", i), "calculator", `{"expression":"(1+2)*3^2/sqrt(16)"}`)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range reqs {
		if err := g.Handle(ctx, reqs[i]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandleRedelivery measures a redelivery that finds the call done.
func BenchmarkHandleRedelivery(b *testing.B) {
	ctx := context.Background()
	st, err := sqlite.OpenMemory(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	reg := tools.NewRegistry()
	if err := reg.Register(calculator.Tool{}); err != nil {
		b.Fatal(err)
	}
	g, err := toolgateway.New(toolgateway.Config{Store: st, Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	req := request(b, "bench", 1, "c", "calculator", `{"expression":"1+1"}`)
	if err := g.Handle(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := g.Handle(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
