package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	psaga "github.com/agentbus/agentbus/platform/saga"
	"github.com/agentbus/agentbus/platform/saga/local"
	"github.com/agentbus/agentbus/platform/saga/sagatest"
)

// BenchmarkExecution measures the runner's own cost of a four-step saga
// (SagaLinear) with an Invoker that answers at once: per execution, two
// writes per task (the attempt before, the outcome with the transition
// after) plus the start and the end.
func BenchmarkExecution(b *testing.B) {
	for _, mode := range []string{"memory", "file"} {
		b.Run(mode, func(b *testing.B) {
			cfg := local.Config{
				Definitions: sagatest.NewLookup(sagatest.Definitions()[sagatest.SagaLinear]),
				Invoker: invokerFunc(func(context.Context, psaga.Task) (json.RawMessage, error) {
					return json.RawMessage(`{"ref":"r"}`), nil
				}),
			}
			if mode == "file" {
				cfg.Path = filepath.Join(b.TempDir(), "s.db")
			}
			r, err := local.New(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				name := fmt.Sprintf("bench-%d", i)
				if _, err := r.Start(ctx, psaga.StartRequest{Saga: sagatest.SagaLinear, Name: name, Session: "s", Input: json.RawMessage(`{"amount":1}`)}); err != nil {
					b.Fatal(err)
				}
				o, err := r.Wait(ctx, name)
				if err != nil || o.Status != psaga.StatusSucceeded {
					b.Fatalf("%+v %v", o, err)
				}
			}
		})
	}
}
