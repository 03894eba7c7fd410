package bedrock_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"

	"github.com/agentbus/agentbus/platform/model"
	"github.com/agentbus/agentbus/platform/model/bedrock"
)

const haiku = "anthropic.claude-3-5-haiku-20241022-v1:0"

var fastRetry = bedrock.WithRetryPolicy(model.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond})

func jsonEq(t *testing.T, what string, got json.RawMessage, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v in %s", what, err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad want: %v", what, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Fatalf("%s = %s, want %s", what, gb, wb)
	}
}

// TestRequestShape asserts the JSON the SDK sends for a full conversation:
// path, system, toolConfig, inferenceConfig, toolUse and toolResult blocks.
func TestRequestShape(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(w http.ResponseWriter, _ *http.Request, _ cvRequest, _ int) {
		writeJSON(w, textResponse("ok", "end_turn", 10, 1))
	})
	m := f.model(haiku, fastRetry, bedrock.WithLogger(quietLogger))
	req := model.Request{
		System:    "You are terse.",
		MaxTokens: 300,
		Tools: []model.ToolSpec{
			{Name: "calculator", Description: "Evaluates arithmetic.", InputSchema: json.RawMessage(`{"type":"object","properties":{"expression":{"type":"string"}},"required":["expression"]}`)},
			{Name: "clock", InputSchema: json.RawMessage(`{"type":"object"}`)},
		},
		Messages: []model.Message{
			model.UserText("What is 6*7, and the time?"),
			{Role: model.RoleAssistant, Content: []model.Block{
				model.TextBlock("Computing."),
				model.ToolUseBlock(model.ToolUse{ID: "tu1", Name: "calculator", Input: json.RawMessage(`{"expression":"6*7","big":12345678901234567890,"f":0.1}`)}),
				model.ToolUseBlock(model.ToolUse{ID: "tu2", Name: "clock", Input: json.RawMessage(`{}`)}),
			}},
			{Role: model.RoleUser, Content: []model.Block{
				model.ToolResultBlock(model.ToolResult{ToolUseID: "tu1", Content: json.RawMessage(`42`)}),
				model.ToolResultBlock(model.ToolResult{ToolUseID: "tu2", Content: json.RawMessage(`{"reason":"timeout","message":"slow"}`), IsError: true}),
			}},
			{Role: model.RoleAssistant, Content: []model.Block{
				model.ToolUseBlock(model.ToolUse{ID: "tu3", Name: "clock", Input: json.RawMessage(`{"timezone":"UTC"}`)}),
			}},
			{Role: model.RoleUser, Content: []model.Block{
				model.ToolResultBlock(model.ToolResult{ToolUseID: "tu3", Content: json.RawMessage(`"12:00"`)}),
			}},
		},
	}
	if _, err := m.Converse(context.Background(), req); err != nil {
		t.Fatalf("Converse: %v", err)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	got := reqs[0]
	if got.Path != "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse" {
		t.Errorf("path %q", got.Path)
	}
	if a := got.Header.Get("Authorization"); !strings.HasPrefix(a, "AWS4-HMAC-SHA256 ") || !strings.Contains(a, "/us-east-1/bedrock/aws4_request") {
		t.Errorf("not SigV4-signed for bedrock in us-east-1: %q", a)
	}
	if ct := got.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	r := got.Req
	if len(r.System) != 1 || r.System[0].Text != "You are terse." {
		t.Errorf("system = %+v", r.System)
	}
	if r.InferenceConfig == nil || r.InferenceConfig.MaxTokens == nil || *r.InferenceConfig.MaxTokens != 300 {
		t.Errorf("inferenceConfig = %+v", r.InferenceConfig)
	}
	if r.ToolConfig == nil || len(r.ToolConfig.Tools) != 2 {
		t.Fatalf("toolConfig = %+v", r.ToolConfig)
	}
	calc := r.ToolConfig.Tools[0].ToolSpec
	if calc.Name != "calculator" || calc.Description != "Evaluates arithmetic." {
		t.Errorf("toolSpec 0 = %+v", calc)
	}
	jsonEq(t, "calculator inputSchema.json", calc.InputSchema.JSON, string(req.Tools[0].InputSchema))
	if clock := r.ToolConfig.Tools[1].ToolSpec; clock.Name != "clock" || clock.Description != "" {
		t.Errorf("toolSpec 1 = %+v (an empty description must be omitted)", clock)
	}

	if len(r.Messages) != 5 {
		t.Fatalf("%d messages", len(r.Messages))
	}
	roles := []string{}
	for _, m := range r.Messages {
		roles = append(roles, m.Role)
	}
	if !slices.Equal(roles, []string{"user", "assistant", "user", "assistant", "user"}) {
		t.Errorf("roles %v", roles)
	}
	if b := r.Messages[0].Content; len(b) != 1 || b[0].Text == nil || *b[0].Text != "What is 6*7, and the time?" {
		t.Errorf("message 0 = %+v", b)
	}
	a := r.Messages[1].Content
	if len(a) != 3 || a[0].Text == nil || *a[0].Text != "Computing." || a[1].ToolUse == nil || a[2].ToolUse == nil {
		t.Fatalf("message 1 = %+v", a)
	}
	if u := a[1].ToolUse; u.ToolUseID != "tu1" || u.Name != "calculator" {
		t.Errorf("toolUse = %+v", u)
	}
	// Numbers keep their exact text (no float64 round trip).
	if !strings.Contains(string(a[1].ToolUse.Input), "12345678901234567890") {
		t.Errorf("big integer changed: %s", a[1].ToolUse.Input)
	}
	jsonEq(t, "toolUse input", a[1].ToolUse.Input, `{"expression":"6*7","big":12345678901234567890,"f":0.1}`)
	jsonEq(t, "empty toolUse input", a[2].ToolUse.Input, `{}`)

	res := r.Messages[2].Content
	if len(res) != 2 || res[0].ToolResult == nil || res[1].ToolResult == nil {
		t.Fatalf("message 2 = %+v", res)
	}
	r0, r1 := res[0].ToolResult, res[1].ToolResult
	if r0.ToolUseID != "tu1" || r0.Status != "success" || len(r0.Content) != 1 || r0.Content[0].Text == nil || *r0.Content[0].Text != "42" {
		t.Errorf("number result = %+v (want a text block \"42\")", r0)
	}
	if r1.ToolUseID != "tu2" || r1.Status != "error" || len(r1.Content) != 1 || r1.Content[0].JSON == nil {
		t.Fatalf("error result = %+v (want status error and a json block)", r1)
	}
	jsonEq(t, "error result json", r1.Content[0].JSON, `{"reason":"timeout","message":"slow"}`)
	if r2 := r.Messages[4].Content[0].ToolResult; r2 == nil || len(r2.Content) != 1 || r2.Content[0].Text == nil || *r2.Content[0].Text != "12:00" {
		t.Errorf("string result = %+v (want a text block)", r2)
	}
}

func TestRequestWithoutOptionalParts(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(w http.ResponseWriter, _ *http.Request, _ cvRequest, _ int) {
		writeJSON(w, textResponse("ok", "end_turn", 3, 1))
	})
	m := f.model(haiku)
	if _, err := m.Converse(context.Background(), model.Request{Messages: []model.Message{model.UserText("hi")}}); err != nil {
		t.Fatal(err)
	}
	body := string(f.requests()[0].Body)
	for _, absent := range []string{"system", "toolConfig", "inferenceConfig"} {
		if strings.Contains(body, `"`+absent+`"`) {
			t.Errorf("request %s carries %q though the Request has none", body, absent)
		}
	}
}

func TestModelIDOverride(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(w http.ResponseWriter, _ *http.Request, _ cvRequest, _ int) {
		writeJSON(w, textResponse("ok", "end_turn", 3, 1))
	})
	req := model.Request{ModelID: "us.amazon.nova-lite-v1:0", Messages: []model.Message{model.UserText("hi")}}
	if _, err := f.model(haiku).Converse(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if got := modelIDFromPath(f.requests()[0].Path); got != "us.amazon.nova-lite-v1:0" {
		t.Fatalf("model id %q", got)
	}
	_, err := f.model("").Converse(context.Background(), model.Request{Messages: []model.Message{model.UserText("hi")}})
	if !errors.Is(err, model.ErrInvalidRequest) || !strings.Contains(err.Error(), "no model id") {
		t.Fatalf("no model id: %v", err)
	}
	if n := len(f.requests()); n != 1 {
		t.Fatalf("a request without model id was sent (%d requests)", n)
	}
}

func TestResponseParsing(t *testing.T) {
	t.Parallel()
	const body = `{
	  "output": {"message": {"role": "assistant", "content": [
	    {"reasoningContent": {"reasoningText": {"text": "thinking..."}}},
	    {"text": "I will use two tools."},
	    {"toolUse": {"toolUseId": "tooluse_a1", "name": "calculator", "input": {"expression": "2+2", "n": 12345678901234567890}}},
	    {"toolUse": {"toolUseId": "tooluse_b2", "name": "clock", "input": {}}},
	    {"text": "Second text."}
	  ]}},
	  "stopReason": "tool_use",
	  "usage": {"inputTokens": 125, "outputTokens": 60, "totalTokens": 185},
	  "metrics": {"latencyMs": 830}
	}`
	f := newFake(t, func(w http.ResponseWriter, _ *http.Request, _ cvRequest, _ int) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	})
	resp, err := f.model(haiku).Converse(context.Background(), model.Request{Messages: []model.Message{model.UserText("go")}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Text != "I will use two tools.\nSecond text." {
		t.Errorf("text %q", resp.Text)
	}
	if resp.StopReason != model.StopToolUse || resp.Usage != (model.Usage{InputTokens: 125, OutputTokens: 60}) {
		t.Errorf("stop %s usage %+v", resp.StopReason, resp.Usage)
	}
	if len(resp.ToolUses) != 2 || resp.ToolUses[0].ID != "tooluse_a1" || resp.ToolUses[0].Name != "calculator" ||
		resp.ToolUses[1].ID != "tooluse_b2" || resp.ToolUses[1].Name != "clock" {
		t.Fatalf("tool uses %+v", resp.ToolUses)
	}
	jsonEq(t, "input 0", resp.ToolUses[0].Input, `{"expression":"2+2","n":12345678901234567890}`)
	if !strings.Contains(string(resp.ToolUses[0].Input), "12345678901234567890") {
		t.Errorf("big integer changed: %s", resp.ToolUses[0].Input)
	}
	jsonEq(t, "input 1", resp.ToolUses[1].Input, `{}`)
	// The response is ready to go back into the conversation.
	next := model.Request{Messages: []model.Message{model.UserText("go"), resp.Message(), {Role: model.RoleUser, Content: []model.Block{
		model.ToolResultBlock(model.ToolResult{ToolUseID: "tooluse_a1", Content: json.RawMessage(`4`)}),
		model.ToolResultBlock(model.ToolResult{ToolUseID: "tooluse_b2", Content: json.RawMessage(`"now"`)}),
	}}}}
	if err := next.Validate(); err != nil {
		t.Fatalf("follow-up request invalid: %v", err)
	}
}

func TestEveryStopReason(t *testing.T) {
	t.Parallel()
	values := types.StopReason("").Values()
	if len(values) < 9 {
		t.Fatalf("SDK lists %d stop reasons", len(values))
	}
	for _, sr := range append(values, "some_future_reason") {
		t.Run(string(sr), func(t *testing.T) {
			t.Parallel()
			f := newFake(t, func(w http.ResponseWriter, _ *http.Request, _ cvRequest, _ int) {
				writeJSON(w, textResponse("x", string(sr), 2, 1))
			})
			resp, err := f.model(haiku).Converse(context.Background(), model.Request{Messages: []model.Message{model.UserText("x")}})
			if err != nil {
				t.Fatal(err)
			}
			if string(resp.StopReason) != string(sr) {
				t.Fatalf("stop reason %q, want %q", resp.StopReason, sr)
			}
			if known := sr != "some_future_reason"; resp.StopReason.Known() != known {
				t.Fatalf("Known() = %v for %q: model.StopReasons does not cover the SDK enum", !known, sr)
			}
		})
	}
}

func TestThrottlingThenSuccess(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(w http.ResponseWriter, _ *http.Request, _ cvRequest, n int) {
		if n <= 2 {
			writeError(w, http.StatusTooManyRequests, "ThrottlingException", "Too many requests, please wait before trying again.")
			return
		}
		writeJSON(w, textResponse("finally", "end_turn", 5, 2))
	})
	resp, err := f.model(haiku, fastRetry, bedrock.WithLogger(quietLogger)).Converse(context.Background(), model.Request{Messages: []model.Message{model.UserText("x")}})
	if err != nil || resp.Text != "finally" {
		t.Fatalf("%+v %v", resp, err)
	}
	if n := len(f.requests()); n != 3 {
		t.Fatalf("%d requests, want 3 (2 throttled + 1)", n)
	}
}

func TestErrorClassification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status   int
		code     string
		kind     error
		attempts int
	}{
		{429, "ThrottlingException", model.ErrThrottled, 3},
		{400, "ServiceQuotaExceededException", model.ErrThrottled, 3},
		{503, "ServiceUnavailableException", model.ErrTransient, 3},
		{500, "InternalServerException", model.ErrTransient, 3},
		{429, "ModelNotReadyException", model.ErrTransient, 3},
		{408, "ModelTimeoutException", model.ErrTransient, 3},
		{502, "", model.ErrTransient, 3}, // a gateway error without a code: by status
		{400, "ValidationException", model.ErrInvalidRequest, 1},
		{403, "AccessDeniedException", model.ErrAccessDenied, 1},
		{404, "ResourceNotFoundException", model.ErrModelNotFound, 1},
		{424, "ModelErrorException", model.ErrModel, 1},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d %s", tc.status, tc.code), func(t *testing.T) {
			t.Parallel()
			f := newFake(t, func(w http.ResponseWriter, _ *http.Request, _ cvRequest, _ int) {
				if tc.code == "" {
					w.WriteHeader(tc.status)
					_, _ = w.Write([]byte("<html>bad gateway</html>"))
					return
				}
				writeError(w, tc.status, tc.code, "details of "+tc.code)
			})
			_, err := f.model(haiku, fastRetry, bedrock.WithLogger(quietLogger)).Converse(context.Background(), model.Request{Messages: []model.Message{model.UserText("x")}})
			if !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v, want %v", err, tc.kind)
			}
			var me *model.Error
			if !errors.As(err, &me) || me.Attempts != tc.attempts {
				t.Fatalf("err %v: want %d attempts", err, tc.attempts)
			}
			if n := len(f.requests()); n != tc.attempts {
				t.Fatalf("%d requests, want %d", n, tc.attempts)
			}
			if tc.code != "" && !strings.Contains(err.Error(), tc.code) {
				t.Fatalf("message %q does not name %s", err, tc.code)
			}
		})
	}
}

func TestCallTimeout(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, _ cvRequest, _ int) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
			writeJSON(w, textResponse("too late", "end_turn", 1, 1))
		}
	})
	m := f.model(haiku, bedrock.WithCallTimeout(100*time.Millisecond), fastRetry, bedrock.WithLogger(quietLogger))
	start := time.Now()
	_, err := m.Converse(context.Background(), model.Request{Messages: []model.Message{model.UserText("x")}})
	if !errors.Is(err, model.ErrTransient) || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v, want a transient timeout", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a per-call timeout must not look like the caller's deadline: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
	// Count attempts on the error: under load an attempt can time out before
	// the server has read its request.
	var me *model.Error
	if !errors.As(err, &me) || me.Attempts != 3 {
		t.Fatalf("err %v: want 3 attempts", err)
	}
	if n := len(f.requests()); n > 3 {
		t.Fatalf("%d requests, want at most 3", n)
	}
}

func TestMalformedResponses(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"not json":  `{"output":`,
		"no output": `{"stopReason":"end_turn","usage":{"inputTokens":1,"outputTokens":1,"totalTokens":2},"metrics":{"latencyMs":1}}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, func(w http.ResponseWriter, _ *http.Request, _ cvRequest, _ int) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(body))
			})
			_, err := f.model(haiku, fastRetry).Converse(context.Background(), model.Request{Messages: []model.Message{model.UserText("x")}})
			if !errors.Is(err, model.ErrModel) || model.Retryable(err) {
				t.Fatalf("err = %v, want ErrModel", err)
			}
		})
	}
}

func TestNetworkErrorIsTransient(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(http.ResponseWriter, *http.Request, cvRequest, int) {})
	m := f.model(haiku, fastRetry, bedrock.WithLogger(quietLogger))
	f.srv.Close() // nothing listens any more
	_, err := m.Converse(context.Background(), model.Request{Messages: []model.Message{model.UserText("x")}})
	var me *model.Error
	if !errors.Is(err, model.ErrTransient) || !errors.As(err, &me) || me.Attempts != 3 {
		t.Fatalf("err = %v, want transient after 3 attempts", err)
	}
}

// fakeAPI is a function-type ConverseAPI for paths the HTTP fake cannot
// reach.
type fakeAPI func(ctx context.Context, in *bedrockruntime.ConverseInput, optFns ...func(*bedrockruntime.Options)) (*bedrockruntime.ConverseOutput, error)

func (f fakeAPI) Converse(ctx context.Context, in *bedrockruntime.ConverseInput, optFns ...func(*bedrockruntime.Options)) (*bedrockruntime.ConverseOutput, error) {
	return f(ctx, in, optFns...)
}

func TestSDKRetriesAreOff(t *testing.T) {
	t.Parallel()
	var opts bedrockruntime.Options
	api := fakeAPI(func(_ context.Context, in *bedrockruntime.ConverseInput, optFns ...func(*bedrockruntime.Options)) (*bedrockruntime.ConverseOutput, error) {
		for _, fn := range optFns {
			fn(&opts)
		}
		return &bedrockruntime.ConverseOutput{
			Output:     &types.ConverseOutputMemberMessage{Value: types.Message{Role: types.ConversationRoleAssistant, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: aws.ToString(in.ModelId)}}}},
			StopReason: types.StopReasonEndTurn,
		}, nil
	})
	resp, err := bedrock.NewFromClient(api, "m-1").Converse(context.Background(), model.Request{Messages: []model.Message{model.UserText("x")}})
	if err != nil || resp.Text != "m-1" {
		t.Fatalf("%+v %v", resp, err)
	}
	if _, ok := opts.Retryer.(aws.NopRetryer); !ok {
		t.Fatalf("SDK retryer %T, want aws.NopRetryer (retries are the adapter's)", opts.Retryer)
	}
}

func TestInvalidRequestNotSent(t *testing.T) {
	t.Parallel()
	calls := 0
	api := fakeAPI(func(context.Context, *bedrockruntime.ConverseInput, ...func(*bedrockruntime.Options)) (*bedrockruntime.ConverseOutput, error) {
		calls++
		return nil, errors.New("must not be called")
	})
	_, err := bedrock.NewFromClient(api, "m").Converse(context.Background(), model.Request{Messages: []model.Message{{Role: model.RoleUser}}})
	if !errors.Is(err, model.ErrInvalidRequest) || calls != 0 {
		t.Fatalf("err %v, %d calls", err, calls)
	}
}

func TestIAMActions(t *testing.T) {
	t.Parallel()
	if !slices.Equal(bedrock.IAMActions, []string{"bedrock:InvokeModel"}) {
		t.Fatalf("IAMActions = %v", bedrock.IAMActions)
	}
}
