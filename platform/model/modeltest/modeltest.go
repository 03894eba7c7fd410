// Package modeltest is the conformance suite every model.Model implementation
// passes. A test of an implementation calls Run with a Factory that programs
// the model under test to play a Scenario (a fixed list of turns: text,
// tool uses, stop reason, failures, delays); the suite then drives
// conversations through model.Model alone and checks what comes back: text
// answers, tool-use round trips (tool use → tool result → answer that quotes
// the result), parallel tool uses, usage, max tokens, ctx cancellation and
// error classification.
//
// How a turn is chosen is part of the contract: the model plays
// Scenario.Turns[k] where k is the number of assistant messages in the
// request, so the same conversation always gets the same turn.
package modeltest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/model"
)

// Turn is one turn the model under test must play.
type Turn struct {
	// Text is the assistant's text: the answer, or commentary next to ToolUses.
	Text string
	// ToolUses the model requests (several = parallel), with fixed ids.
	ToolUses []model.ToolUse
	// AppendResultOf, when set, appends to Text the result of the tool use
	// with this id as found in the request: "error: " first when the result
	// is marked as an error, then the content (a JSON string as its text,
	// any other value as compact JSON). It proves tool results reach the
	// model intact.
	AppendResultOf string
	// StopReason to report; "" means tool_use when there are ToolUses, else
	// end_turn.
	StopReason model.StopReason
	// FailKind, when set, makes the turn fail with that model.Err* kind
	// FailTimes times before it succeeds; FailTimes 0 means always.
	FailKind  error
	FailTimes int
	// Delay before the model answers (to test cancellation).
	Delay time.Duration
}

// Scenario is what a Factory programs the model to play for every
// conversation it is given.
type Scenario struct {
	Name  string
	Turns []Turn
}

// Factory returns the model under test programmed with sc, wrapped the way
// callers use it: retryable failures retried with a fast policy of at most
// MaxAttempts attempts.
type Factory func(t *testing.T, sc Scenario) model.Model

// MaxAttempts is the number of attempts the Factory's retry policy must
// allow (scenarios fail fewer times than this to test recovery, and always
// to test exhaustion).
const MaxAttempts = 3

// FailKinds are the error kinds a Factory must be able to produce.
var FailKinds = []error{
	model.ErrThrottled, model.ErrTransient, model.ErrInvalidRequest,
	model.ErrAccessDenied, model.ErrModelNotFound, model.ErrModel,
}

// RenderResult renders a tool result the way AppendResultOf specifies.
func RenderResult(content json.RawMessage, isError bool) string {
	var s string
	if json.Unmarshal(content, &s) != nil {
		var b bytes.Buffer
		if json.Compact(&b, content) == nil {
			s = b.String()
		} else {
			s = string(content)
		}
	}
	if isError {
		return "error: " + s
	}
	return s
}

var calcSchema = json.RawMessage(`{"type":"object","properties":{"expression":{"type":"string"}},"required":["expression"]}`)
var clockSchema = json.RawMessage(`{"type":"object","properties":{"timezone":{"type":"string"}}}`)

func tools() []model.ToolSpec {
	return []model.ToolSpec{
		{Name: "calculator", Description: "Evaluates an arithmetic expression.", InputSchema: calcSchema},
		{Name: "clock", Description: "Tells the time in a time zone.", InputSchema: clockSchema},
	}
}

func request(prompt string) model.Request {
	return model.Request{
		System:    "You are a careful assistant.",
		Messages:  []model.Message{model.UserText(prompt)},
		Tools:     tools(),
		MaxTokens: 512,
	}
}

// Run runs the suite.
func Run(t *testing.T, newModel Factory) {
	t.Run("TextAnswer", func(t *testing.T) { t.Parallel(); testTextAnswer(t, newModel) })
	t.Run("ToolRoundTrip", func(t *testing.T) { t.Parallel(); testToolRoundTrip(t, newModel) })
	t.Run("ParallelToolUses", func(t *testing.T) { t.Parallel(); testParallel(t, newModel) })
	t.Run("MaxTokens", func(t *testing.T) { t.Parallel(); testMaxTokens(t, newModel) })
	t.Run("StopReasons", func(t *testing.T) { t.Parallel(); testStopReasons(t, newModel) })
	t.Run("Cancellation", func(t *testing.T) { t.Parallel(); testCancellation(t, newModel) })
	t.Run("Errors", func(t *testing.T) { t.Parallel(); testErrors(t, newModel) })
	t.Run("InvalidRequest", func(t *testing.T) { t.Parallel(); testInvalidRequest(t, newModel) })
}

func converse(t *testing.T, m model.Model, req model.Request) model.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := m.Converse(ctx, req)
	if err != nil {
		t.Fatalf("Converse: %v", err)
	}
	return resp
}

func checkUsage(t *testing.T, resp model.Response, maxTokens int) {
	t.Helper()
	if resp.Usage.InputTokens <= 0 || resp.Usage.OutputTokens <= 0 {
		t.Errorf("usage not reported: %+v", resp.Usage)
	}
	if maxTokens > 0 && resp.Usage.OutputTokens > maxTokens {
		t.Errorf("output tokens %d exceed maxTokens %d", resp.Usage.OutputTokens, maxTokens)
	}
}

func testTextAnswer(t *testing.T, newModel Factory) {
	const answer = "Paris is the capital of France."
	m := newModel(t, Scenario{Name: "text", Turns: []Turn{{Text: answer}}})
	req := request("What is the capital of France?")
	resp := converse(t, m, req)
	if resp.Text != answer || resp.StopReason != model.StopEndTurn || len(resp.ToolUses) != 0 {
		t.Fatalf("got %+v, want text %q, end_turn, no tool uses", resp, answer)
	}
	checkUsage(t, resp, req.MaxTokens)
	// Deterministic: the same conversation gets the same turn.
	if again := converse(t, m, req); again.Text != answer {
		t.Fatalf("second call: %q", again.Text)
	}
}

func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xa, yb)
}

func checkToolUses(t *testing.T, got, want []model.ToolUse) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("tool uses = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].ID != want[i].ID || got[i].Name != want[i].Name || !sameJSON(got[i].Input, want[i].Input) {
			t.Fatalf("tool use %d = {%s %s %s}, want {%s %s %s}", i,
				got[i].ID, got[i].Name, got[i].Input, want[i].ID, want[i].Name, want[i].Input)
		}
	}
}

// withResults appends resp and one user message answering its tool uses.
func withResults(req model.Request, resp model.Response, results map[string]model.ToolResult) model.Request {
	req.Messages = append(append([]model.Message(nil), req.Messages...), resp.Message())
	var blocks []model.Block
	for _, u := range resp.ToolUses {
		r := results[u.ID]
		r.ToolUseID = u.ID
		blocks = append(blocks, model.ToolResultBlock(r))
	}
	req.Messages = append(req.Messages, model.Message{Role: model.RoleUser, Content: blocks})
	return req
}

func testToolRoundTrip(t *testing.T, newModel Factory) {
	use := model.ToolUse{ID: "tu-calc-1", Name: "calculator", Input: json.RawMessage(`{"expression":"6*7"}`)}
	sc := Scenario{Name: "round trip", Turns: []Turn{
		{Text: "Let me compute that.", ToolUses: []model.ToolUse{use}},
		{Text: "The answer is ", AppendResultOf: use.ID},
	}}
	for _, tc := range []struct {
		name    string
		content string
		isError bool
	}{
		{"number", `42`, false},
		{"string", `"forty-two"`, false},
		{"object", `{"unit":"none","value":42}`, false},
		{"array", `[4,2]`, false},
		// Keys in sorted order: an implementation may re-encode objects.
		{"error", `{"message":"took too long","reason":"timeout"}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := newModel(t, sc)
			req := request("What is 6*7?")
			r1 := converse(t, m, req)
			if r1.StopReason != model.StopToolUse || r1.Text != "Let me compute that." {
				t.Fatalf("turn 1 = %+v, want tool_use with text", r1)
			}
			checkToolUses(t, r1.ToolUses, []model.ToolUse{use})
			checkUsage(t, r1, req.MaxTokens)

			req2 := withResults(req, r1, map[string]model.ToolResult{use.ID: {Content: json.RawMessage(tc.content), IsError: tc.isError}})
			r2 := converse(t, m, req2)
			want := "The answer is " + RenderResult(json.RawMessage(tc.content), tc.isError)
			if r2.Text != want || r2.StopReason != model.StopEndTurn || len(r2.ToolUses) != 0 {
				t.Fatalf("turn 2 = %+v, want text %q", r2, want)
			}
			checkUsage(t, r2, req2.MaxTokens)
			if r2.Usage.InputTokens <= r1.Usage.InputTokens {
				t.Errorf("a longer conversation reported fewer input tokens: %d then %d", r1.Usage.InputTokens, r2.Usage.InputTokens)
			}
		})
	}
}

func testParallel(t *testing.T, newModel Factory) {
	uses := []model.ToolUse{
		{ID: "tu-a", Name: "calculator", Input: json.RawMessage(`{"expression":"2+2"}`)},
		{ID: "tu-b", Name: "clock", Input: json.RawMessage(`{"timezone":"Europe/Paris"}`)},
		{ID: "tu-c", Name: "calculator", Input: json.RawMessage(`{"expression":"10/4"}`)},
	}
	m := newModel(t, Scenario{Name: "parallel", Turns: []Turn{
		{ToolUses: uses},
		{Text: "b=", AppendResultOf: "tu-b"},
	}})
	req := request("Compute 2+2 and 10/4 and tell me the time in Paris.")
	r1 := converse(t, m, req)
	if r1.StopReason != model.StopToolUse {
		t.Fatalf("stop reason %s", r1.StopReason)
	}
	checkToolUses(t, r1.ToolUses, uses)
	r2 := converse(t, m, withResults(req, r1, map[string]model.ToolResult{
		"tu-a": {Content: json.RawMessage(`4`)},
		"tu-b": {Content: json.RawMessage(`"12:00"`)},
		"tu-c": {Content: json.RawMessage(`2.5`)},
	}))
	if r2.Text != "b=12:00" {
		t.Fatalf("answer %q, want %q (results of parallel calls matched by id)", r2.Text, "b=12:00")
	}
}

func testMaxTokens(t *testing.T, newModel Factory) {
	long := strings.Repeat("All work and no play makes a dull model. ", 50) // ~2000 bytes
	m := newModel(t, Scenario{Name: "long", Turns: []Turn{{Text: long}}})
	req := request("Write a long text.")
	req.MaxTokens = 16
	resp := converse(t, m, req)
	if resp.StopReason != model.StopMaxTokens {
		t.Fatalf("stop reason %s, want max_tokens", resp.StopReason)
	}
	checkUsage(t, resp, req.MaxTokens)
	if len(resp.Text) >= len(long) || !strings.HasPrefix(long, resp.Text) {
		t.Fatalf("text of %d bytes is not a truncation of the %d-byte answer", len(resp.Text), len(long))
	}
	req.MaxTokens = 4096
	if full := converse(t, m, req); full.Text != long || full.StopReason != model.StopEndTurn {
		t.Fatalf("with room: stop %s, %d bytes", full.StopReason, len(full.Text))
	}
}

func testStopReasons(t *testing.T, newModel Factory) {
	for _, sr := range model.StopReasons() {
		t.Run(string(sr), func(t *testing.T) {
			t.Parallel()
			turn := Turn{Text: "stopped", StopReason: sr}
			if sr == model.StopToolUse {
				turn.ToolUses = []model.ToolUse{{ID: "t1", Name: "clock", Input: json.RawMessage(`{}`)}}
			}
			m := newModel(t, Scenario{Name: string(sr), Turns: []Turn{turn}})
			resp := converse(t, m, request("stop"))
			if resp.StopReason != sr {
				t.Fatalf("stop reason %q, want %q", resp.StopReason, sr)
			}
		})
	}
}

func testCancellation(t *testing.T, newModel Factory) {
	m := newModel(t, Scenario{Name: "slow", Turns: []Turn{{Text: "late", Delay: 20 * time.Second}}})
	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		go func() { time.Sleep(50 * time.Millisecond); cancel() }()
		start := time.Now()
		_, err := m.Converse(ctx, request("hurry"))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if model.Retryable(err) {
			t.Fatalf("a cancelled call is reported retryable: %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("returned %v after cancel", d)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := m.Converse(ctx, request("hurry"))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("returned %v after the deadline", d)
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := m.Converse(ctx, request("hurry")); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

func testErrors(t *testing.T, newModel Factory) {
	for _, kind := range FailKinds {
		retryable := model.Retryable(kind)
		t.Run(strings.TrimPrefix(kind.Error(), "model: ")+"/always", func(t *testing.T) {
			t.Parallel()
			m := newModel(t, Scenario{Name: "fail", Turns: []Turn{{Text: "never", FailKind: kind}}})
			_, err := m.Converse(context.Background(), request("fail"))
			if !errors.Is(err, kind) {
				t.Fatalf("err = %v, want kind %v", err, kind)
			}
			for _, other := range FailKinds {
				if other != kind && errors.Is(err, other) {
					t.Fatalf("err %v matches %v too", err, other)
				}
			}
			if model.Retryable(err) != retryable {
				t.Fatalf("Retryable(%v) = %v", err, !retryable)
			}
			var me *model.Error
			if !errors.As(err, &me) {
				t.Fatalf("err %v is not a *model.Error", err)
			}
			wantAttempts := 1
			if retryable {
				wantAttempts = MaxAttempts
			}
			if me.Attempts != wantAttempts {
				t.Fatalf("attempts = %d, want %d", me.Attempts, wantAttempts)
			}
		})
		if !retryable {
			continue
		}
		t.Run(strings.TrimPrefix(kind.Error(), "model: ")+"/recovers", func(t *testing.T) {
			t.Parallel()
			m := newModel(t, Scenario{Name: "flaky", Turns: []Turn{{Text: "recovered", FailKind: kind, FailTimes: MaxAttempts - 1}}})
			resp, err := m.Converse(context.Background(), request("flaky"))
			if err != nil || resp.Text != "recovered" {
				t.Fatalf("after %d failures: %+v, %v", MaxAttempts-1, resp, err)
			}
		})
	}
}

func testInvalidRequest(t *testing.T, newModel Factory) {
	m := newModel(t, Scenario{Name: "any", Turns: []Turn{{Text: "ok"}}})
	bad := map[string]model.Request{
		"no messages":        {Tools: tools()},
		"assistant first":    {Messages: []model.Message{{Role: model.RoleAssistant, Content: []model.Block{model.TextBlock("hi")}}}},
		"negative maxTokens": {Messages: []model.Message{model.UserText("x")}, MaxTokens: -1},
		"orphan tool result": {Messages: []model.Message{{Role: model.RoleUser, Content: []model.Block{
			model.ToolResultBlock(model.ToolResult{ToolUseID: "nope", Content: json.RawMessage(`1`)})}}}},
	}
	for name, req := range bad {
		_, err := m.Converse(context.Background(), req)
		if !errors.Is(err, model.ErrInvalidRequest) || model.Retryable(err) {
			t.Errorf("%s: err = %v, want ErrInvalidRequest", name, err)
		}
	}
}

// String describes a turn (for harness error messages).
func (t Turn) String() string {
	return fmt.Sprintf("{text %q, %d tool uses, appendResultOf %q, stop %q, fail %v x%d, delay %v}",
		t.Text, len(t.ToolUses), t.AppendResultOf, t.StopReason, t.FailKind, t.FailTimes, t.Delay)
}
