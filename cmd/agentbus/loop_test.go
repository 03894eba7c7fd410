package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/model/scripted"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/tools"
)

// startLoop starts an in-memory embedded runtime with the given script
// ("" = the built-in demo script) and extra tool registrations.
func startLoop(t testing.TB, script string, reg *tools.Registry) *embedded {
	t.Helper()
	var (
		s   *scripted.Script
		err error
	)
	if script == "" {
		s, err = scripted.Default()
	} else {
		s, err = scripted.Parse([]byte(script))
	}
	if err != nil {
		t.Fatalf("script: %v", err)
	}
	rt, err := startEmbedded(context.Background(), embeddedConfig{Model: scripted.New(s), Tools: reg})
	if err != nil {
		t.Fatalf("start runtime: %v", err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// session is one run followed through the caller's own subscription.
type session struct {
	id     string
	sub    *sessionSub
	events []event.Event
	seen   map[string]bool
}

func submit(t testing.TB, rt *embedded, prompt string, spec *events.AgentSpec) *session {
	t.Helper()
	ctx := context.Background()
	s := &session{id: uuid.NewString(), seen: map[string]bool{}}
	sub, err := subscribeSession(ctx, rt.Bus, s.id)
	if err != nil {
		t.Fatal(err)
	}
	s.sub = sub
	t.Cleanup(func() { sub.close(context.Background()) })
	req, err := events.NewPayload(events.SourceClient, s.id, events.AgentRequested{Prompt: prompt, Agent: spec})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Publisher.Publish(ctx, req); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitFor reads the session's events until one of type typ arrives.
func (s *session) waitFor(t testing.TB, typ string, within time.Duration) event.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for _, ev := range s.events {
		if ev.Type() == typ {
			return ev
		}
	}
	for {
		msgs, err := s.sub.q.Receive(ctx, 10, 200*time.Millisecond, 30*time.Second)
		if err != nil {
			t.Fatalf("session %s: waiting for %s: %v (got %v)", s.id, typ, err, s.types())
		}
		for _, m := range msgs {
			_ = s.sub.q.Ack(context.Background(), m.Receipt)
			k := m.Event.Source() + " " + m.Event.ID()
			if s.seen[k] {
				continue
			}
			s.seen[k] = true
			s.events = append(s.events, m.Event)
			if m.Event.Type() == typ {
				return m.Event
			}
		}
	}
}

// end waits for the terminal event.
func (s *session) end(t testing.TB, within time.Duration) event.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		for _, ev := range s.events {
			switch ev.Type() {
			case events.TypeAgentCompleted, events.TypeAgentFailed, events.TypeAgentCancelled:
				return ev
			}
		}
		msgs, err := s.sub.q.Receive(ctx, 10, 200*time.Millisecond, 30*time.Second)
		if err != nil {
			t.Fatalf("session %s did not end: %v (got %v)", s.id, err, s.types())
		}
		for _, m := range msgs {
			_ = s.sub.q.Ack(context.Background(), m.Receipt)
			k := m.Event.Source() + " " + m.Event.ID()
			if !s.seen[k] {
				s.seen[k] = true
				s.events = append(s.events, m.Event)
			}
		}
	}
}

func (s *session) types() []string {
	var out []string
	for _, ev := range s.events {
		out = append(out, ev.Type())
	}
	return out
}

func (s *session) count(typ string) int {
	n := 0
	for _, ev := range s.events {
		if ev.Type() == typ {
			n++
		}
	}
	return n
}

func mustDecode[T any](t testing.TB, ev event.Event) T {
	t.Helper()
	v, err := events.Decode[T](ev)
	if err != nil {
		t.Fatalf("decode %s: %v", ev.Type(), err)
	}
	return v
}

func TestLoopDemoTwoToolsTwoSteps(t *testing.T) {
	t.Parallel()
	rt := startLoop(t, "", nil)
	s := submit(t, rt, "What is 6*7, and what time is it in Europe/Paris?", nil)
	end := s.end(t, 20*time.Second)
	if end.Type() != events.TypeAgentCompleted {
		t.Fatalf("ended with %s: %s", end.Type(), end.Data())
	}
	done := mustDecode[events.AgentCompleted](t, end)
	if done.Steps != 2 || !strings.Contains(done.Answer, "6*7 = 42") || !strings.Contains(done.Answer, "Europe/Paris") {
		t.Fatalf("answer %+v", done)
	}
	if done.Usage.InputTokens == 0 || done.Usage.OutputTokens == 0 {
		t.Fatalf("usage not counted: %+v", done.Usage)
	}
	if n := s.count(events.TypeStepCompleted); n != 2 {
		t.Fatalf("%d StepCompleted, want 2 (%v)", n, s.types())
	}
}

func TestLoopParallelCalls(t *testing.T) {
	t.Parallel()
	rt := startLoop(t, "", nil)
	s := submit(t, rt, "compute 2+3 and 10/4", nil)
	end := s.end(t, 20*time.Second)
	done := mustDecode[events.AgentCompleted](t, end)
	if done.Steps != 1 || !strings.Contains(done.Answer, "2+3 = 5") || !strings.Contains(done.Answer, "10/4 = 2.5") {
		t.Fatalf("answer %+v", done)
	}
	planned := mustDecode[events.StepPlanned](t, s.waitFor(t, events.TypeStepPlanned, time.Second))
	if len(planned.Calls) != 2 {
		t.Fatalf("planned %d calls, want 2", len(planned.Calls))
	}
	sc := mustDecode[events.StepCompleted](t, s.waitFor(t, events.TypeStepCompleted, time.Second))
	if len(sc.Results) != 2 || !sc.Results[0].OK || !sc.Results[1].OK {
		t.Fatalf("step results %+v", sc.Results)
	}
}

// loopScript is a script with one entry per test prompt.
const loopScript = `{
  "entries": [
    {"name": "forever", "match": {"exact": "loop forever"}, "repeatLast": true,
     "turns": [{"calls": [{"name": "calculator", "input": {"expression": "1+1"}}]}]},
    {"name": "slow", "match": {"exact": "think slowly"},
     "turns": [{"delayMs": 3000, "answer": "too late"}]},
    {"name": "broken", "match": {"exact": "break the model"},
     "turns": [{"fail": {"kind": "model_error", "message": "the model is broken"}}]},
    {"name": "calc", "match": {"exact": "use the calculator"},
     "turns": [{"calls": [{"name": "calculator", "input": {"expression": "1+1"}}]}, {"answer": "done"}]},
    {"name": "unknown", "match": {"exact": "call a tool nobody has"},
     "turns": [{"calls": [{"id": "x", "name": "no_such_tool", "input": {}}]},
               {"answer": "{{if ok \"x\"}}worked{{else}}failed: {{result \"x\"}}{{end}}"}]},
    {"name": "silent", "match": {"exact": "call the silent plug-in"},
     "turns": [{"calls": [{"id": "s", "name": "silent_plugin", "input": {}}]},
               {"answer": "{{if ok \"s\"}}worked{{else}}failed: {{result \"s\"}}{{end}}"}]},
    {"name": "nonce", "match": {"regex": "^nonce ([a-f0-9-]+)$"},
     "turns": [{"calls": [{"id": "c", "name": "calculator", "input": {"expression": "2*21"}}]},
               {"answer": "nonce {{group 1}} answered {{field \"c\" \"result\"}}"}]}
  ]
}`

func TestLoopLimitsEndTheRun(t *testing.T) {
	t.Parallel()
	rt := startLoop(t, loopScript, nil)
	cases := []struct {
		name   string
		prompt string
		limits *events.Limits
		tools  []string
		reason events.AgentFailureReason
	}{
		{"max steps", "loop forever", &events.Limits{MaxSteps: 3}, nil, events.AgentMaxSteps},
		{"token budget before the first call", "use the calculator", &events.Limits{MaxTokens: 5}, nil, events.AgentTokenBudget},
		{"token budget across turns", "loop forever", &events.Limits{MaxTokens: 400, MaxSteps: 100}, nil, events.AgentTokenBudget},
		{"deadline", "think slowly", &events.Limits{TimeoutSeconds: 1}, nil, events.AgentDeadline},
		{"model error", "break the model", nil, nil, events.AgentModelError},
		{"tool not allowed", "use the calculator", nil, []string{"clock"}, events.AgentToolNotAllowed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := submit(t, rt, c.prompt, &events.AgentSpec{Limits: c.limits, Tools: c.tools})
			end := s.end(t, 20*time.Second)
			if end.Type() != events.TypeAgentFailed {
				t.Fatalf("ended with %s %s, want AgentFailed", end.Type(), end.Data())
			}
			f := mustDecode[events.AgentFailed](t, end)
			if f.Reason != c.reason || f.Message == "" {
				t.Fatalf("failed with %q (%s), want %q", f.Reason, f.Message, c.reason)
			}
			if c.reason == events.AgentMaxSteps && f.Steps > c.limits.MaxSteps {
				t.Fatalf("ran %d steps past max %d", f.Steps, c.limits.MaxSteps)
			}
			if c.reason == events.AgentTokenBudget && f.Usage.InputTokens+f.Usage.OutputTokens > c.limits.MaxTokens {
				t.Fatalf("spent %+v past the budget %d", f.Usage, c.limits.MaxTokens)
			}
		})
	}
}

func TestLoopUnknownToolAndTimeoutReachTheModel(t *testing.T) {
	t.Parallel()
	reg := tools.NewRegistry()
	// A plug-in's tool: its spec is known here, but nothing serves it.
	if err := reg.RegisterSpec(tools.Spec{Name: "silent_plugin", Description: "never answers",
		InputSchema: json.RawMessage(`{"type":"object"}`), Timeout: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	rt := startLoop(t, loopScript, reg)
	cases := []struct {
		prompt string
		reason events.ToolFailureReason
	}{
		{"call a tool nobody has", events.ToolUnknown},
		{"call the silent plug-in", events.ToolTimeout},
	}
	for _, c := range cases {
		t.Run(string(c.reason), func(t *testing.T) {
			t.Parallel()
			s := submit(t, rt, c.prompt, nil)
			end := s.end(t, 20*time.Second)
			done := mustDecode[events.AgentCompleted](t, end)
			if !strings.Contains(done.Answer, "failed") || !strings.Contains(done.Answer, string(c.reason)) {
				t.Fatalf("answer %q does not report %s", done.Answer, c.reason)
			}
			sc := mustDecode[events.StepCompleted](t, s.waitFor(t, events.TypeStepCompleted, time.Second))
			if len(sc.Results) != 1 || sc.Results[0].OK || sc.Results[0].Reason != c.reason {
				t.Fatalf("step results %+v", sc.Results)
			}
		})
	}
}

func TestLoopCancel(t *testing.T) {
	t.Parallel()
	reg := tools.NewRegistry()
	if err := reg.RegisterSpec(tools.Spec{Name: "silent_plugin", Description: "never answers",
		InputSchema: json.RawMessage(`{"type":"object"}`), Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	rt := startLoop(t, loopScript, reg)
	s := submit(t, rt, "call the silent plug-in", nil)
	s.waitFor(t, events.TypeStepPlanned, 10*time.Second)
	c, err := events.NewPayload(events.SourceClient, s.id, events.AgentCancelRequested{Reason: "user pressed stop"})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Publisher.Publish(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	end := s.end(t, 10*time.Second)
	if end.Type() != events.TypeAgentCancelled {
		t.Fatalf("ended with %s", end.Type())
	}
	if got := mustDecode[events.AgentCancelled](t, end); got.Reason != "user pressed stop" || got.Steps != 1 {
		t.Fatalf("cancelled %+v", got)
	}
	sess, err := rt.Store.GetSession(context.Background(), s.id)
	if err != nil || sess.Status != state.StatusCancelled {
		t.Fatalf("session %+v, %v", sess, err)
	}
}

func TestLoopMalformedRequestIsRejectedAndKept(t *testing.T) {
	t.Parallel()
	rt := startLoop(t, "", nil)
	ctx := context.Background()
	sid := uuid.NewString()
	bad, err := events.New(events.TypeAgentRequested, events.SourceClient, sid, map[string]any{"prompt": ""})
	if err != nil {
		t.Fatal(err)
	}
	// The validating publisher refuses it with an error naming the field.
	err = rt.Publisher.Publish(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "/data/prompt") {
		t.Fatalf("publish of an empty prompt: %v", err)
	}
	// Published around the validation, it is not lost: the planner's
	// worker dead-letters it with the reason.
	if err := rt.Bus.Publish(ctx, bad); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		dls, err := rt.Bus.DLQ("planner").List(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dls {
			if strings.Contains(string(d.Body), sid) {
				if !strings.Contains(d.Reason, "/data/prompt") {
					t.Fatalf("dead letter reason %q does not name the field", d.Reason)
				}
				if _, err := rt.Store.GetSession(ctx, sid); err == nil {
					t.Fatal("a session was started from a malformed request")
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("malformed request not in the planner DLQ: %+v", dls)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLoopDuplicateDeliveriesAreIgnored(t *testing.T) {
	t.Parallel()
	rt := startLoop(t, "", nil)
	s := submit(t, rt, "compute 1+1 and 2+2", nil)
	s.end(t, 20*time.Second)
	ctx := context.Background()
	// Replay every event of the finished session, as a redelivery storm.
	var replay []event.Event
	for _, ev := range s.events {
		if ev.Type() != events.TypeAgentCompleted {
			replay = append(replay, ev)
		}
	}
	if err := rt.Bus.Publish(ctx, replay...); err != nil {
		t.Fatal(err)
	}
	// Late events for old steps change nothing: no second step or answer.
	time.Sleep(500 * time.Millisecond)
	s.end(t, time.Second)
	extra, _ := s.sub.q.Receive(ctx, 100, 500*time.Millisecond, time.Minute)
	for _, m := range extra {
		k := m.Event.Source() + " " + m.Event.ID()
		if !s.seen[k] && m.Event.Type() != events.TypeAgentRequested {
			t.Errorf("replay produced a new event %s %s", m.Event.Type(), m.Event.Data())
		}
	}
	sess, err := rt.Store.GetSession(ctx, s.id)
	if err != nil || sess.Status != state.StatusCompleted {
		t.Fatalf("session %+v %v", sess, err)
	}
}

func TestLoopConcurrentSessionsStayApart(t *testing.T) {
	t.Parallel()
	n := 100
	if testing.Short() {
		n = 20
	}
	rt := startLoop(t, loopScript, nil)
	nonces := make([]string, n)
	sessions := make([]*session, n)
	for i := range n {
		nonces[i] = uuid.NewString()
		sessions[i] = submit(t, rt, "nonce "+nonces[i], nil)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := sessions[i]
			ev := s.end(t, 60*time.Second)
			if ev.Type() != events.TypeAgentCompleted {
				errs <- fmt.Errorf("session %d ended with %s: %s", i, ev.Type(), ev.Data())
				return
			}
			done, err := events.Decode[events.AgentCompleted](ev)
			if err != nil {
				errs <- fmt.Errorf("session %d: %v", i, err)
				return
			}
			if done.Answer != "nonce "+nonces[i]+" answered 42" {
				errs <- fmt.Errorf("session %d answered %q", i, done.Answer)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Each history holds its own nonce and no other.
	ctx := context.Background()
	for i, s := range sessions {
		// The memory service records asynchronously: wait for the answer
		// to reach the history.
		var text string
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			hist, err := readAllHistory(ctx, rt.Store, s.id)
			if err != nil {
				t.Fatal(err)
			}
			var all strings.Builder
			for _, e := range hist {
				all.Write(e.Data)
			}
			text = all.String()
			if strings.Contains(text, events.TypeAgentCompleted) || time.Now().After(deadline) {
				break
			}
		}
		if !strings.Contains(text, nonces[i]) || !strings.Contains(text, events.TypeAgentCompleted) {
			t.Errorf("session %d history lacks its nonce", i)
		}
		for j, other := range nonces {
			if j != i && strings.Contains(text, other) {
				t.Errorf("session %d history holds session %d's nonce", i, j)
			}
		}
	}
}
