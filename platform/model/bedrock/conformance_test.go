package bedrock_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/model"
	"github.com/agentbus/agentbus/platform/model/bedrock"
	"github.com/agentbus/agentbus/platform/model/modeltest"
)

// scenarioHandler plays a modeltest.Scenario as Bedrock would answer it:
// the turn is the number of assistant messages in the request; maxTokens
// truncates; failures are Bedrock's error responses.
func scenarioHandler(t *testing.T, sc modeltest.Scenario) func(http.ResponseWriter, *http.Request, cvRequest, int) {
	var mu sync.Mutex
	failures := map[int]int{}
	return func(w http.ResponseWriter, r *http.Request, req cvRequest, _ int) {
		k := 0
		for _, m := range req.Messages {
			if m.Role == "assistant" {
				k++
			}
		}
		if k >= len(sc.Turns) {
			writeError(w, http.StatusBadRequest, "ValidationException", "scenario exhausted")
			return
		}
		turn := sc.Turns[k]
		if turn.Delay > 0 {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(turn.Delay):
			}
		}
		if turn.FailKind != nil {
			mu.Lock()
			fail := turn.FailTimes == 0 || failures[k] < turn.FailTimes
			failures[k]++
			mu.Unlock()
			if fail {
				e, ok := errorFor[turn.FailKind]
				if !ok {
					t.Errorf("no Bedrock error for %v", turn.FailKind)
				}
				writeError(w, e.status, e.code, "scenario failure")
				return
			}
		}
		text := turn.Text
		if ref := turn.AppendResultOf; ref != "" {
			text += resultText(t, req, ref)
		}
		var blocks []cvBlock
		if text != "" {
			blocks = append(blocks, cvBlock{Text: strp(text)})
		}
		outTokens := model.EstimateTokens(text)
		for _, u := range turn.ToolUses {
			blocks = append(blocks, cvBlock{ToolUse: &cvToolUse{ToolUseID: u.ID, Name: u.Name, Input: u.Input}})
			outTokens += model.EstimateBlockTokens(model.ToolUseBlock(u))
		}
		stop := turn.StopReason
		if stop == "" {
			stop = model.StopEndTurn
			if len(turn.ToolUses) > 0 {
				stop = model.StopToolUse
			}
		}
		if ic := req.InferenceConfig; ic != nil && ic.MaxTokens != nil && outTokens > *ic.MaxTokens {
			max := *ic.MaxTokens
			if len(text) > max*4 {
				text = text[:max*4]
			}
			blocks = []cvBlock{{Text: strp(text)}}
			outTokens, stop = max, model.StopMaxTokens
		}
		var resp cvResponse
		resp.Output.Message = &cvMessage{Role: "assistant", Content: blocks}
		resp.StopReason = string(stop)
		in := 0
		for _, m := range req.Messages {
			b, _ := json.Marshal(m)
			in += len(b) / 4
		}
		resp.Usage = &cvUsage{InputTokens: in, OutputTokens: max(outTokens, 1), TotalTokens: in + max(outTokens, 1)}
		writeJSON(w, resp)
	}
}

// resultText renders the toolResult for id found in the request as
// modeltest.RenderResult does.
func resultText(t *testing.T, req cvRequest, id string) string {
	for _, m := range req.Messages {
		for _, b := range m.Content {
			r := b.ToolResult
			if r == nil || r.ToolUseID != id {
				continue
			}
			var parts []string
			for _, c := range r.Content {
				switch {
				case c.Text != nil:
					parts = append(parts, *c.Text)
				case c.JSON != nil:
					var buf bytes.Buffer
					if err := json.Compact(&buf, c.JSON); err != nil {
						t.Errorf("toolResult json: %v", err)
					}
					parts = append(parts, buf.String())
				}
			}
			s := strings.Join(parts, "")
			if r.Status == "error" {
				s = "error: " + s
			}
			return s
		}
	}
	t.Errorf("no toolResult for %q in the request", id)
	return ""
}

func TestConformance(t *testing.T) {
	t.Parallel()
	modeltest.Run(t, func(t *testing.T, sc modeltest.Scenario) model.Model {
		f := newFake(t, scenarioHandler(t, sc))
		return f.model("anthropic.claude-3-5-haiku-20241022-v1:0",
			bedrock.WithRetryPolicy(model.RetryPolicy{MaxAttempts: modeltest.MaxAttempts, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}),
			bedrock.WithLogger(quietLogger))
	})
}
