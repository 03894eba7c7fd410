package main

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/model/scripted"
	"github.com/agentbus/agentbus/tools"
)

// noopTool answers at once: the loop benchmark measures agentbus, not tools.
type noopTool struct{}

func (noopTool) Spec() tools.Spec {
	return tools.Spec{Name: "noop", Description: "does nothing", Idempotent: true,
		InputSchema: json.RawMessage(`{"type":"object"}`)}
}

func (noopTool) Run(context.Context, tools.Call) (json.RawMessage, error) {
	return json.RawMessage(`{}`), nil
}

// benchScript: three tool steps, then an answer; the scripted model itself
// takes no time.
const benchScript = `{"entries": [{"name": "bench", "match": {"contains": "bench"}, "turns": [
  {"calls": [{"name": "noop", "input": {}}]},
  {"calls": [{"name": "noop", "input": {}}]},
  {"calls": [{"name": "noop", "input": {}}]},
  {"answer": "done"}]}]}`

const benchSteps = 3

// hopsPerToolStep are the bus hops on a tool step's critical path:
// StepPlanned (planner→executor), ToolInvocationRequested
// (executor→tool-gateway), ToolInvocationCompleted (tool-gateway→executor),
// StepCompleted (executor→planner). The memory service's copies are off the
// critical path.
const hopsPerToolStep = 4

// benchModes: "memory" keeps the bus and the state in memory (as the loop
// tests do); "durable" is what `agentbus run` and `dev` use by default: the
// bus and the state in SQLite files (WAL) in a data folder.
var benchModes = []struct {
	name    string
	durable bool
}{{"memory", false}, {"durable", true}}

func startBenchLoop(b *testing.B, durable bool) *embedded {
	b.Helper()
	reg := tools.NewRegistry()
	if err := reg.Register(noopTool{}); err != nil {
		b.Fatal(err)
	}
	s, err := scripted.Parse([]byte(benchScript))
	if err != nil {
		b.Fatal(err)
	}
	cfg := embeddedConfig{Model: scripted.New(s), Tools: reg}
	if durable {
		cfg.DataDir = b.TempDir()
	}
	rt, err := startEmbedded(context.Background(), cfg)
	if err != nil {
		b.Fatalf("start runtime: %v", err)
	}
	b.Cleanup(func() { rt.Close() })
	return rt
}

// runSession submits one bench run and waits for its end, then closes the
// caller's subscription as a finished `agentbus run` does (otherwise every
// past session's rule would stay in the bus's matcher and slow routing).
func runSession(b *testing.B, rt *embedded, s *session) {
	defer s.sub.close(context.Background())
	end := s.end(b, 5*time.Minute)
	if end.Type() != events.TypeAgentCompleted {
		b.Errorf("bench run ended with %s: %s", end.Type(), end.Data())
	}
}

// stepLatencies runs one session and returns each tool step's duration: from
// the event that started the step's model turn (AgentRequested or the
// previous StepCompleted) to its StepCompleted, by the events' own times.
func stepLatencies(b *testing.B, rt *embedded) []time.Duration {
	s := submit(b, rt, "bench", nil)
	runSession(b, rt, s)
	var start time.Time
	var out []time.Duration
	for _, ev := range s.events {
		switch ev.Type() {
		case events.TypeAgentRequested:
			start = ev.Time()
		case events.TypeStepCompleted:
			out = append(out, ev.Time().Sub(start))
			start = ev.Time()
		}
	}
	if start.IsZero() {
		// The client subscribed before publishing, so AgentRequested is
		// always seen; guard anyway.
		b.Fatal("no AgentRequested seen")
	}
	return out
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// BenchmarkLoopStep: per-step latency of the embedded loop at concurrency 1.
func BenchmarkLoopStep(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			rt := startBenchLoop(b, m.durable)
			stepLatencies(b, rt) // warm up
			var all []time.Duration
			cpu0 := cpuTime()
			for b.Loop() {
				all = append(all, stepLatencies(b, rt)...)
			}
			reportCPU(b, cpuTime()-cpu0, len(all))
			b.ReportMetric(float64(percentile(all, 0.50).Microseconds())/1000, "p50-ms/step")
			b.ReportMetric(float64(percentile(all, 0.99).Microseconds())/1000, "p99-ms/step")
			b.ReportMetric(hopsPerToolStep, "hops/step")
		})
	}
}

// BenchmarkLoopThroughput: tool steps per second across 100 concurrent
// sessions.
func BenchmarkLoopThroughput(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			rt := startBenchLoop(b, m.durable)
			const sessions = 100
			var total time.Duration
			steps := 0
			cpu0 := cpuTime()
			for b.Loop() {
				start := time.Now()
				ss := make([]*session, sessions)
				for i := range ss {
					ss[i] = submit(b, rt, "bench", nil)
				}
				var wg sync.WaitGroup
				for _, s := range ss {
					wg.Add(1)
					go func() {
						defer wg.Done()
						runSession(b, rt, s)
					}()
				}
				wg.Wait()
				total += time.Since(start)
				steps += sessions * benchSteps
			}
			reportCPU(b, cpuTime()-cpu0, steps)
			b.ReportMetric(float64(steps)/total.Seconds(), "steps/s")
		})
	}
}

// cpuTime is the process's user+system CPU time so far. CPU per step, unlike
// wall time, holds when other work shares the machine: it bounds the steps/s
// that idle cores could reach (2 cores / cpu-per-step).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time (all goroutines: the critical path, the
// memory service, GC) per tool step.
func reportCPU(b *testing.B, cpu time.Duration, steps int) {
	if steps > 0 && cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/1000/float64(steps), "cpu-ms/step")
	}
}
