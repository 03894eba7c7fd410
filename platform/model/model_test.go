package model_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/platform/model"
)

func validReq() model.Request {
	return model.Request{
		System: "be brief",
		Tools: []model.ToolSpec{{Name: "calculator", Description: "math",
			InputSchema: json.RawMessage(`{"type":"object","properties":{"expression":{"type":"string"}}}`)}},
		Messages: []model.Message{
			model.UserText("what is 6*7?"),
			{Role: model.RoleAssistant, Content: []model.Block{
				model.TextBlock("let me compute"),
				model.ToolUseBlock(model.ToolUse{ID: "c1", Name: "calculator", Input: json.RawMessage(`{"expression":"6*7"}`)}),
			}},
			{Role: model.RoleUser, Content: []model.Block{
				model.ToolResultBlock(model.ToolResult{ToolUseID: "c1", Content: json.RawMessage(`42`)}),
			}},
		},
		MaxTokens: 100,
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(r *model.Request)
		want   string // substring of the error; "" = valid
	}{
		{"valid", func(*model.Request) {}, ""},
		{"negative max tokens", func(r *model.Request) { r.MaxTokens = -1 }, "negative"},
		{"no messages", func(r *model.Request) { r.Messages = nil }, "no messages"},
		{"starts with assistant", func(r *model.Request) { r.Messages = r.Messages[1:] }, "roles alternate"},
		{"empty content", func(r *model.Request) { r.Messages[0].Content = nil }, "no content"},
		{"empty block", func(r *model.Request) { r.Messages[0].Content = []model.Block{{}} }, "exactly one"},
		{"two parts", func(r *model.Request) {
			r.Messages[0].Content = []model.Block{{Text: "x", ToolResult: &model.ToolResult{}}}
		}, "exactly one"},
		{"tool use from user", func(r *model.Request) {
			r.Messages[0].Content = []model.Block{model.ToolUseBlock(model.ToolUse{ID: "x", Name: "y", Input: json.RawMessage(`{}`)})}
		}, "toolUse in a user"},
		{"tool use input not object", func(r *model.Request) {
			r.Messages[1].Content[1].ToolUse.Input = json.RawMessage(`[1]`)
		}, "not a JSON object"},
		{"tool use without id", func(r *model.Request) { r.Messages[1].Content[1].ToolUse.ID = "" }, "needs id"},
		{"result for unknown use", func(r *model.Request) { r.Messages[2].Content[0].ToolResult.ToolUseID = "zz" }, "answers no toolUse"},
		{"result invalid json", func(r *model.Request) { r.Messages[2].Content[0].ToolResult.Content = json.RawMessage(`{`) }, "not valid JSON"},
		{"result from assistant", func(r *model.Request) {
			r.Messages[1].Content = append(r.Messages[1].Content, model.ToolResultBlock(model.ToolResult{ToolUseID: "c1", Content: json.RawMessage(`1`)}))
		}, "toolResult in a assistant"},
		{"tool use unanswered", func(r *model.Request) {
			r.Messages[1].Content = append(r.Messages[1].Content,
				model.ToolUseBlock(model.ToolUse{ID: "c2", Name: "calculator", Input: json.RawMessage(`{}`)}))
		}, `no toolResult for toolUse "c2"`},
		{"tool use answered by text only", func(r *model.Request) {
			r.Messages[2] = model.UserText("never mind")
		}, `no toolResult for toolUse "c1"`},
		{"trailing assistant tool use", func(r *model.Request) { r.Messages = r.Messages[:2] }, ""},
		{"tool without name", func(r *model.Request) { r.Tools[0].Name = "" }, "no name"},
		{"duplicate tool", func(r *model.Request) { r.Tools = append(r.Tools, r.Tools[0]) }, "twice"},
		{"schema not object", func(r *model.Request) { r.Tools[0].InputSchema = json.RawMessage(`"x"`) }, "inputSchema"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := validReq()
			tc.mutate(&r)
			err := r.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want error containing %q", err, tc.want)
			}
			if !errors.Is(err, model.ErrInvalidRequest) {
				t.Fatalf("error %v does not wrap ErrInvalidRequest", err)
			}
		})
	}
}

func TestErrorClassification(t *testing.T) {
	t.Parallel()
	cause := errors.New("boom")
	for _, tc := range []struct {
		kind      error
		retryable bool
	}{
		{model.ErrThrottled, true}, {model.ErrTransient, true},
		{model.ErrInvalidRequest, false}, {model.ErrAccessDenied, false},
		{model.ErrModelNotFound, false}, {model.ErrModel, false},
	} {
		err := fmt.Errorf("planner: %w", &model.Error{Kind: tc.kind, Op: "test", Attempts: 3, Err: cause})
		if !errors.Is(err, tc.kind) || !errors.Is(err, cause) {
			t.Errorf("%v: errors.Is does not reach kind and cause", err)
		}
		if got := model.Retryable(err); got != tc.retryable {
			t.Errorf("Retryable(%v) = %v, want %v", err, got, tc.retryable)
		}
		if !strings.Contains(err.Error(), "after 3 attempts") {
			t.Errorf("message %q lacks the attempt count", err)
		}
	}
	if model.Retryable(errors.New("plain")) {
		t.Error("an unclassified error is retryable")
	}
}

func TestStopReasons(t *testing.T) {
	t.Parallel()
	for _, s := range model.StopReasons() {
		if !s.Known() {
			t.Errorf("%s not Known", s)
		}
	}
	if model.StopReason("something_new").Known() {
		t.Error("unlisted stop reason reported Known")
	}
}

func TestEstimates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    string
		want int
	}{{"", 0}, {"a", 1}, {"abcd", 1}, {"abcde", 2}, {strings.Repeat("x", 400), 100}} {
		if got := model.EstimateTokens(tc.s); got != tc.want {
			t.Errorf("EstimateTokens(%q) = %d, want %d", tc.s, got, tc.want)
		}
	}
	r := validReq()
	base := model.EstimateInputTokens(r)
	if base <= 0 {
		t.Fatalf("EstimateInputTokens = %d", base)
	}
	if again := model.EstimateInputTokens(r); again != base {
		t.Fatalf("not deterministic: %d then %d", base, again)
	}
	r.Messages[0].Content[0].Text += strings.Repeat("y", 400)
	if got := model.EstimateInputTokens(r); got != base+100 {
		t.Fatalf("400 more bytes of prompt: %d, want %d", got, base+100)
	}
	resp := model.Response{Text: "abcd", ToolUses: []model.ToolUse{{ID: "c1", Name: "calc", Input: json.RawMessage(`{"e":1}`)}}}
	if got := model.EstimateOutputTokens(resp); got != 1+1+1+2 {
		t.Fatalf("EstimateOutputTokens = %d, want 5", got)
	}
}

func TestResponseMessage(t *testing.T) {
	t.Parallel()
	resp := model.Response{Text: "hi", ToolUses: []model.ToolUse{{ID: "a", Name: "clock", Input: json.RawMessage(`{}`)}}}
	m := resp.Message()
	if m.Role != model.RoleAssistant || len(m.Content) != 2 || m.Content[0].Text != "hi" || m.Content[1].ToolUse.ID != "a" {
		t.Fatalf("Message() = %+v", m)
	}
	if n := len((model.Response{ToolUses: resp.ToolUses}).Message().Content); n != 1 {
		t.Fatalf("empty text produced a block: %d blocks", n)
	}
	u := model.Usage{InputTokens: 3, OutputTokens: 4}.Add(model.Usage{InputTokens: 1, OutputTokens: 2})
	if u.Total() != 10 {
		t.Fatalf("Usage sum %+v", u)
	}
}
