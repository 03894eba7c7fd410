package scripted_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/model"
	"github.com/agentbus/agentbus/platform/model/modeltest"
	"github.com/agentbus/agentbus/platform/model/scripted"
)

var failKindNames = map[error]string{
	model.ErrThrottled: "throttled", model.ErrTransient: "transient", model.ErrInvalidRequest: "invalid_request",
	model.ErrAccessDenied: "access_denied", model.ErrModelNotFound: "model_not_found", model.ErrModel: "model_error",
}

// scriptFor writes sc as a script: one default entry whose turns play sc's.
func scriptFor(t *testing.T, sc modeltest.Scenario) []byte {
	t.Helper()
	var turns []map[string]any
	for _, turn := range sc.Turns {
		tj := map[string]any{}
		if turn.FailKind != nil {
			name, ok := failKindNames[turn.FailKind]
			if !ok {
				t.Fatalf("no script kind for %v", turn.FailKind)
			}
			tj["fail"] = map[string]any{"kind": name, "times": turn.FailTimes}
			if turn.FailTimes == 0 {
				turns = append(turns, tj)
				continue
			}
		}
		if len(turn.ToolUses) > 0 {
			var calls []map[string]any
			for _, u := range turn.ToolUses {
				calls = append(calls, map[string]any{"id": u.ID, "name": u.Name, "input": json.RawMessage(u.Input)})
			}
			tj["calls"] = calls
			if turn.Text != "" {
				tj["text"] = turn.Text
			}
		} else {
			answer := turn.Text
			if ref := turn.AppendResultOf; ref != "" {
				answer += fmt.Sprintf(`{{if not (ok %q)}}error: {{end}}{{result %q}}`, ref, ref)
			}
			tj["answer"] = answer
		}
		if turn.StopReason != "" {
			tj["stopReason"] = string(turn.StopReason)
		}
		if turn.Delay > 0 {
			tj["delayMs"] = turn.Delay.Milliseconds()
		}
		turns = append(turns, tj)
	}
	src, err := json.Marshal(map[string]any{"default": map[string]any{"turns": turns}})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestConformance(t *testing.T) {
	t.Parallel()
	modeltest.Run(t, func(t *testing.T, sc modeltest.Scenario) model.Model {
		s, err := scripted.Parse(scriptFor(t, sc))
		if err != nil {
			t.Fatalf("scenario %s: %v", sc.Name, err)
		}
		return model.WithRetry(scripted.New(s), model.RetryPolicy{
			MaxAttempts: modeltest.MaxAttempts, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
	})
}
