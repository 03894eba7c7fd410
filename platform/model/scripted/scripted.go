// Package scripted is a deterministic, offline model.Model driven by a script
// file: per prompt, which tools to call with which input, turn by turn, and
// then the final answer. It is the model of the embedded default runtime and of
// the tests. The script format is documented in docs/model.md.
//
// The model is stateless across calls: the turn it plays is derived from the
// conversation itself (the number of assistant messages after the prompt), so
// a run survives a crash and restart of the process. The only in-memory state
// is the counter of scripted failures ("fail": {"times": N}), which restarts at
// zero in a new process.
//
// Token usage is deterministic: input tokens are model.EstimateInputTokens of
// the request and output tokens model.EstimateOutputTokens of the response,
// unless the turn overrides them.
//
// The scripted model does not retry its scripted failures; wrap it with
// model.WithRetry to get the retry behaviour of the Bedrock model.
package scripted

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"
	"time"
	"unicode/utf8"

	"github.com/agentbus/agentbus/platform/model"
)

// Model is the scripted model. It is safe for concurrent use.
type Model struct {
	script *Script

	mu       sync.Mutex
	failures map[string]int // scripted failures served, per entry/turn/conversation
}

var _ model.Model = (*Model)(nil)

// New returns a model that plays script.
func New(script *Script) *Model {
	return &Model{script: script, failures: map[string]int{}}
}

const op = "scripted"

// conversation is what a turn is computed from.
type conversation struct {
	prompt  string
	turn    int // 0-based: assistant messages after the prompt
	results []toolResult
	groups  []string // regex submatches of the prompt ([0] = whole match)
}

type toolResult struct {
	id, name string
	content  json.RawMessage
	isError  bool
}

// Converse plays the scripted turn for req. See the package doc.
func (m *Model) Converse(ctx context.Context, req model.Request) (model.Response, error) {
	if err := ctx.Err(); err != nil {
		return model.Response{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := req.Validate(); err != nil {
		return model.Response{}, &model.Error{Kind: model.ErrInvalidRequest, Op: op, Attempts: 1, Err: err}
	}
	conv, err := analyze(req)
	if err != nil {
		return model.Response{}, &model.Error{Kind: model.ErrInvalidRequest, Op: op, Attempts: 1, Err: err}
	}
	e, groups := m.script.match(conv.prompt)
	if e == nil {
		return model.Response{}, modelErr(fmt.Errorf("no script entry matches the prompt %q and the script has no default", clip(conv.prompt)))
	}
	conv.groups = groups
	var t *turn
	switch {
	case conv.turn < len(e.turns):
		t = e.turns[conv.turn]
	case e.repeatLast:
		t = e.turns[len(e.turns)-1]
	default:
		return model.Response{}, modelErr(fmt.Errorf("script entry %q has %d turns; the conversation asks for turn %d", e.label(), len(e.turns), conv.turn+1))
	}
	if t.delayMs > 0 {
		timer := time.NewTimer(time.Duration(t.delayMs) * time.Millisecond)
		select {
		case <-ctx.Done():
			timer.Stop()
			return model.Response{}, fmt.Errorf("%s: %w", op, ctx.Err())
		case <-timer.C:
		}
	}
	if f := t.fail; f != nil && m.shouldFail(f, e, conv.turn, req) {
		msg := f.message
		if msg == "" {
			msg = "scripted failure"
		}
		return model.Response{}, &model.Error{Kind: f.kind, Op: op, Attempts: 1, Err: errors.New(msg)}
	}
	resp, err := render(t, conv)
	if err != nil {
		return model.Response{}, modelErr(fmt.Errorf("script entry %q turn %d: %w", e.label(), conv.turn+1, err))
	}
	resp.Usage = model.Usage{InputTokens: model.EstimateInputTokens(req), OutputTokens: model.EstimateOutputTokens(resp)}
	if t.usage != nil {
		resp.Usage = *t.usage
	}
	if req.MaxTokens > 0 && resp.Usage.OutputTokens > req.MaxTokens {
		// The turn does not fit: cut the text to the cap and drop the tool
		// uses (a cut-off tool use is unusable), as a real model stopping at
		// max_tokens would.
		resp.Text = truncate(resp.Text, req.MaxTokens*4)
		resp.ToolUses = nil
		resp.StopReason = model.StopMaxTokens
		resp.Usage.OutputTokens = req.MaxTokens
	}
	return resp, nil
}

func modelErr(err error) error {
	return &model.Error{Kind: model.ErrModel, Op: op, Attempts: 1, Err: err}
}

// analyze finds the prompt (the last user message with text and no tool
// results), the turn number and the tool results after the prompt.
func analyze(req model.Request) (conversation, error) {
	pi := -1
	for i := len(req.Messages) - 1; i >= 0; i-- {
		msg := req.Messages[i]
		if msg.Role != model.RoleUser {
			continue
		}
		hasText, hasResult := false, false
		for _, b := range msg.Content {
			hasText = hasText || b.Text != ""
			hasResult = hasResult || b.ToolResult != nil
		}
		if hasText && !hasResult {
			pi = i
			break
		}
	}
	if pi < 0 {
		return conversation{}, errors.New("no user message with a text prompt (and no tool results)")
	}
	var c conversation
	var texts []string
	for _, b := range req.Messages[pi].Content {
		if b.Text != "" {
			texts = append(texts, b.Text)
		}
	}
	c.prompt = strings.Join(texts, "\n")
	names := map[string]string{}
	for _, msg := range req.Messages[pi+1:] {
		for _, b := range msg.Content {
			switch {
			case b.ToolUse != nil:
				names[b.ToolUse.ID] = b.ToolUse.Name
			case b.ToolResult != nil:
				r := b.ToolResult
				c.results = append(c.results, toolResult{id: r.ToolUseID, name: names[r.ToolUseID], content: r.Content, isError: r.IsError})
			}
		}
		if msg.Role == model.RoleAssistant {
			c.turn++
		}
	}
	return c, nil
}

func (s *Script) match(prompt string) (*entry, []string) {
	for _, e := range s.entries {
		switch {
		case e.exact != nil:
			if prompt == *e.exact {
				return e, []string{prompt}
			}
		case e.contains != nil:
			if strings.Contains(prompt, *e.contains) {
				return e, []string{prompt}
			}
		case e.regex != nil:
			if g := e.regex.FindStringSubmatch(prompt); g != nil {
				return e, g
			}
		}
	}
	if s.def != nil {
		return s.def, []string{prompt}
	}
	return nil, nil
}

func (e *entry) label() string {
	if e.name != "" {
		return e.name
	}
	return "(unnamed)"
}

// shouldFail counts a scripted failure for this entry, turn and conversation
// and reports whether this call fails.
func (m *Model) shouldFail(f *failure, e *entry, turn int, req model.Request) bool {
	if f.times == 0 {
		return true
	}
	h := sha256.New()
	_ = json.NewEncoder(h).Encode(struct {
		S string
		M []model.Message
	}{req.System, req.Messages})
	key := fmt.Sprintf("%p/%d/%s", e, turn, hex.EncodeToString(h.Sum(nil)))
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failures[key] >= f.times {
		return false
	}
	m.failures[key]++
	return true
}

func render(t *turn, c conversation) (model.Response, error) {
	var resp model.Response
	if t.answer != nil {
		s, err := execute(t.answer, c)
		if err != nil {
			return resp, err
		}
		resp.Text = s
		resp.StopReason = model.StopEndTurn
	} else {
		if t.text != nil {
			s, err := execute(t.text, c)
			if err != nil {
				return resp, err
			}
			resp.Text = s
		}
		for i, cl := range t.calls {
			in, err := renderValue(cl.input, cl.tmpls, c)
			if err != nil {
				return resp, fmt.Errorf("call %s: %w", cl.name, err)
			}
			raw, err := json.Marshal(in)
			if err != nil {
				return resp, fmt.Errorf("call %s: %w", cl.name, err)
			}
			id := cl.id
			if id == "" {
				id = fmt.Sprintf("call-%d-%d", c.turn+1, i+1)
			}
			resp.ToolUses = append(resp.ToolUses, model.ToolUse{ID: id, Name: cl.name, Input: raw})
		}
		resp.StopReason = model.StopToolUse
	}
	if t.stopReason != "" {
		resp.StopReason = t.stopReason
	}
	return resp, nil
}

func renderValue(v any, tmpls map[string]*template.Template, c conversation) (any, error) {
	switch x := v.(type) {
	case string:
		return execute(tmpls[x], c)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			r, err := renderValue(e, tmpls, c)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := renderValue(e, tmpls, c)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	default:
		return v, nil
	}
}

// Template functions. At parse time they are placeholders (so that unknown
// functions are rejected when the script is loaded); each execution binds
// them to the conversation.
var placeholderFuncs = template.FuncMap{
	"prompt": func() string { return "" },
	"turn":   func() int { return 0 },
	"group":  func(int) string { return "" },
	"result": func(string) (string, error) { return "", nil },
	"field":  func(string, string) (string, error) { return "", nil },
	"ok":     func(string) (bool, error) { return false, nil },
}

func parseTemplate(name, src string) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(placeholderFuncs).Parse(src)
	if err != nil {
		return nil, err
	}
	// range has nothing to iterate in a script's data and {{template}}
	// nothing to reuse, but both can spin ({{range 1000000000}}, a
	// self-calling template); a script is config, so reject them up front.
	for _, tt := range t.Templates() {
		if tt.Tree != nil && hasRange(tt.Tree.Root) {
			return nil, fmt.Errorf("template %q: range and template actions are not supported in scripts", src)
		}
	}
	return t, nil
}

func hasRange(n parse.Node) bool {
	switch x := n.(type) {
	case *parse.RangeNode, *parse.TemplateNode:
		return true
	case *parse.ListNode:
		if x == nil {
			return false
		}
		for _, c := range x.Nodes {
			if hasRange(c) {
				return true
			}
		}
	case *parse.IfNode:
		return hasRange(x.List) || hasRange(x.ElseList)
	case *parse.WithNode:
		return hasRange(x.List) || hasRange(x.ElseList)
	}
	return false
}

// maxRender bounds one rendered template (a defence in depth: without
// range and template actions output grows only with the data).
const maxRender = 1 << 20

// cappedBuilder fails writes beyond maxRender, which stops the template.
type cappedBuilder struct{ strings.Builder }

func (b *cappedBuilder) Write(p []byte) (int, error) {
	if b.Len()+len(p) > maxRender {
		return 0, fmt.Errorf("rendered text exceeds %d bytes", maxRender)
	}
	return b.Builder.Write(p)
}

// templateData is the dot of a template.
type templateData struct {
	Prompt string
	Turn   int
}

func execute(t *template.Template, c conversation) (string, error) {
	find := func(ref string) (toolResult, error) {
		for i := len(c.results) - 1; i >= 0; i-- {
			if r := c.results[i]; r.id == ref || r.name == ref {
				return r, nil
			}
		}
		return toolResult{}, fmt.Errorf("no tool result for %q in the conversation", ref)
	}
	funcs := template.FuncMap{
		"prompt": func() string { return c.prompt },
		"turn":   func() int { return c.turn + 1 },
		"group": func(n int) string {
			if n < 0 || n >= len(c.groups) {
				return ""
			}
			return c.groups[n]
		},
		"result": func(ref string) (string, error) {
			r, err := find(ref)
			if err != nil {
				return "", err
			}
			return jsonText(r.content), nil
		},
		"field": func(ref, path string) (string, error) {
			r, err := find(ref)
			if err != nil {
				return "", err
			}
			var v any
			if err := json.Unmarshal(r.content, &v); err != nil {
				return "", err
			}
			for _, p := range strings.Split(path, ".") {
				switch x := v.(type) {
				case map[string]any:
					var ok bool
					if v, ok = x[p]; !ok {
						return "", fmt.Errorf("result of %q has no field %q", ref, path)
					}
				case []any:
					i, err := strconv.Atoi(p)
					if err != nil || i < 0 || i >= len(x) {
						return "", fmt.Errorf("result of %q has no element %q", ref, path)
					}
					v = x[i]
				default:
					return "", fmt.Errorf("result of %q has no field %q", ref, path)
				}
			}
			raw, err := json.Marshal(v)
			if err != nil {
				return "", err
			}
			return jsonText(raw), nil
		},
		"ok": func(ref string) (bool, error) {
			r, err := find(ref)
			return err == nil && !r.isError, err
		},
	}
	clone, err := t.Clone()
	if err != nil {
		return "", err
	}
	var b cappedBuilder
	if err := clone.Funcs(funcs).Execute(&b, templateData{Prompt: c.prompt, Turn: c.turn + 1}); err != nil {
		return "", err
	}
	return b.String(), nil
}

// jsonText renders a JSON value for text: a string without its quotes,
// anything else as compact JSON.
func jsonText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

func truncate(s string, maxBytes int) string {
	if len(s) <= maxBytes {
		return s
	}
	s = s[:maxBytes]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

func clip(s string) string { return truncate(s, 80) }
