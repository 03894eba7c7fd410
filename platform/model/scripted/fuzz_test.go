package scripted_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/model"
	"github.com/agentbus/agentbus/platform/model/scripted"
)

// FuzzScript: a script file is user input. Parse never panics and either
// rejects with ErrInvalidScript or yields a model whose answers are
// well-formed (or classified errors) for any prompt.
func FuzzScript(f *testing.F) {
	f.Add(scripted.DefaultJSON(), "What is 1+2, and what time is it?")
	f.Add([]byte(`{"default":{"repeatLast":true,"turns":[{"calls":[{"name":"x","input":{"a":"{{group 1}}"}}]}]}}`), "p")
	f.Add([]byte(`{"entries":[{"match":{"regex":"(a+)(b)?"},"turns":[{"answer":"{{group 2}}{{field \"x\" \"a.0\"}}"}]}]}`), "aaa")
	f.Add([]byte(`{"default":{"turns":[{"fail":{"kind":"throttled","times":1},"answer":"{{.Prompt}}","usage":{"inputTokens":1,"outputTokens":99}}]}}`), "q")
	f.Fuzz(func(t *testing.T, src []byte, prompt string) {
		// go test -fuzz does not report hangs; a stuck input panics here, so
		// it is recorded as a crasher.
		watchdog := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("HANG src=%q prompt=%q", src, prompt)) })
		defer watchdog.Stop()
		s, err := scripted.Parse(src)
		if err != nil {
			if !errors.Is(err, scripted.ErrInvalidScript) {
				t.Fatalf("Parse error %v does not wrap ErrInvalidScript", err)
			}
			return
		}
		if prompt == "" {
			prompt = "x"
		}
		m := scripted.New(s)
		req := model.Request{Messages: []model.Message{model.UserText(prompt)}, MaxTokens: 8}
		// A scripted delay is cut short by the ctx.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		for turn := 0; turn < 3; turn++ {
			resp, err := m.Converse(ctx, req)
			if err != nil {
				var me *model.Error
				if !errors.As(err, &me) && !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("unclassified error %v", err)
				}
				return
			}
			if resp.Usage.OutputTokens > req.MaxTokens || !resp.StopReason.Known() {
				t.Fatalf("response %+v breaks max tokens or stop reason", resp)
			}
			if len(resp.ToolUses) == 0 {
				return
			}
			next := append(append([]model.Message(nil), req.Messages...), resp.Message())
			var results []model.Block
			for _, u := range resp.ToolUses {
				if !json.Valid(u.Input) {
					t.Fatalf("tool input %q is not JSON", u.Input)
				}
				results = append(results, model.ToolResultBlock(model.ToolResult{ToolUseID: u.ID, Content: json.RawMessage(`{"a":[1]}`)}))
			}
			req.Messages = append(next, model.Message{Role: model.RoleUser, Content: results})
		}
	})
}
