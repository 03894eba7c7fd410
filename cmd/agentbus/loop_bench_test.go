package main

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/events"
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

func startBenchLoop(b *testing.B) *embedded {
	reg := tools.NewRegistry()
	if err := reg.Register(noopTool{}); err != nil {
		b.Fatal(err)
	}
	return startLoop(b, benchScript, reg)
}

// stepLatencies runs one session and returns each tool step's duration: from
// the event that started the step's model turn (AgentRequested or the
// previous StepCompleted) to its StepCompleted, by the events' own times.
func stepLatencies(b *testing.B, rt *embedded) []time.Duration {
	s := submit(b, rt, "bench", nil)
	end := s.end(b, time.Minute)
	if end.Type() != events.TypeAgentCompleted {
		b.Fatalf("bench run ended with %s: %s", end.Type(), end.Data())
	}
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
	rt := startBenchLoop(b)
	stepLatencies(b, rt) // warm up
	var all []time.Duration
	b.ResetTimer()
	for b.Loop() {
		all = append(all, stepLatencies(b, rt)...)
	}
	b.ReportMetric(float64(percentile(all, 0.50).Microseconds())/1000, "p50-ms/step")
	b.ReportMetric(float64(percentile(all, 0.99).Microseconds())/1000, "p99-ms/step")
	b.ReportMetric(hopsPerToolStep, "hops/step")
}

// BenchmarkLoopThroughput: tool steps per second across 100 concurrent
// sessions.
func BenchmarkLoopThroughput(b *testing.B) {
	rt := startBenchLoop(b)
	const sessions = 100
	var total time.Duration
	steps := 0
	b.ResetTimer()
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
				if ev := s.end(b, 5*time.Minute); ev.Type() != events.TypeAgentCompleted {
					b.Errorf("bench run ended with %s", ev.Type())
				}
			}()
		}
		wg.Wait()
		total += time.Since(start)
		steps += sessions * benchSteps
	}
	b.ReportMetric(float64(steps)/total.Seconds(), "steps/s")
}
