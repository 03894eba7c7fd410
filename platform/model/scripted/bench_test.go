package scripted_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/agentbus/agentbus/platform/model"
	"github.com/agentbus/agentbus/platform/model/scripted"
)

// BenchmarkDemoAnswer measures the demo's last turn: prompt match, conversation
// analysis, two result lookups, template rendering and token estimates.
func BenchmarkDemoAnswer(b *testing.B) {
	s, err := scripted.Default()
	if err != nil {
		b.Fatal(err)
	}
	m := scripted.New(s)
	req := model.Request{System: "be brief", Messages: []model.Message{
		model.UserText("What is 12*(3+4), and what time is it?"),
		{Role: model.RoleAssistant, Content: []model.Block{model.ToolUseBlock(model.ToolUse{ID: "call-1-1", Name: "calculator", Input: json.RawMessage(`{"expression":"12*(3+4)"}`)})}},
		{Role: model.RoleUser, Content: []model.Block{model.ToolResultBlock(model.ToolResult{ToolUseID: "call-1-1", Content: json.RawMessage(`{"result":84}`)})}},
		{Role: model.RoleAssistant, Content: []model.Block{model.ToolUseBlock(model.ToolUse{ID: "call-2-1", Name: "clock", Input: json.RawMessage(`{"to":"UTC"}`)})}},
		{Role: model.RoleUser, Content: []model.Block{model.ToolResultBlock(model.ToolResult{ToolUseID: "call-2-1", Content: json.RawMessage(`{"time":"2026-11-25T14:00:00Z"}`)})}},
	}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := m.Converse(ctx, req)
		if err != nil || resp.StopReason != model.StopEndTurn {
			b.Fatalf("%+v %v", resp, err)
		}
	}
}
