package scripted_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/platform/model"
	"github.com/agentbus/agentbus/platform/model/scripted"
)

// TestDocsExample keeps the script example in docs/model.md valid.
func TestDocsExample(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "model.md"))
	if err != nil {
		t.Fatalf("docs/model.md: %v", err)
	}
	_, rest, ok := strings.Cut(string(doc), "```json\n")
	if !ok {
		t.Fatal("docs/model.md has no json example")
	}
	example, _, _ := strings.Cut(rest, "```")
	s, err := scripted.Parse([]byte(example))
	if err != nil {
		t.Fatalf("the documented example does not parse: %v", err)
	}
	c := newConv(t, scripted.New(s), "what is 2+3 and what time is it?")
	r := c.next()
	c.answer(r, map[string]string{"calculator": `5`})
	r = c.next()
	if len(r.ToolUses) != 2 || r.ToolUses[0].ID != "t" {
		t.Fatalf("turn 2 = %+v", r)
	}
	c.answer(r, map[string]string{"t": `"noon"`, "memory_search": `[]`})
	if r := c.next(); r.Text != "2+3 = 5; it is noon." {
		t.Fatalf("answer %q", r.Text)
	}
	resp, err := scripted.New(s).Converse(context.Background(), model.Request{Messages: []model.Message{model.UserText("xyz")}})
	if err != nil || resp.Text != "No script for: xyz" {
		t.Fatalf("default: %+v %v", resp, err)
	}
}
