package scripted_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/model"
	"github.com/agentbus/agentbus/platform/model/scripted"
)

func mustParse(t *testing.T, src string) *scripted.Model {
	t.Helper()
	s, err := scripted.Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return scripted.New(s)
}

// conv drives a conversation the way the planner does: append the response,
// answer its tool uses with results, ask again.
type conv struct {
	t   *testing.T
	m   model.Model
	req model.Request
}

func newConv(t *testing.T, m model.Model, prompt string) *conv {
	return &conv{t: t, m: m, req: model.Request{Messages: []model.Message{model.UserText(prompt)}}}
}

func (c *conv) next() model.Response {
	c.t.Helper()
	resp, err := c.m.Converse(context.Background(), c.req)
	if err != nil {
		c.t.Fatalf("Converse turn %d: %v", len(c.req.Messages)/2+1, err)
	}
	return resp
}

// answer records resp and the results (by call id) of its tool uses.
func (c *conv) answer(resp model.Response, results map[string]string) {
	c.t.Helper()
	c.req.Messages = append(c.req.Messages, resp.Message())
	var blocks []model.Block
	for _, u := range resp.ToolUses {
		out, ok := results[u.ID]
		if !ok {
			out = results[u.Name]
		}
		blocks = append(blocks, model.ToolResultBlock(model.ToolResult{ToolUseID: u.ID, Content: json.RawMessage(out)}))
	}
	c.req.Messages = append(c.req.Messages, model.Message{Role: model.RoleUser, Content: blocks})
}

func TestDefaultScriptDemo(t *testing.T) {
	t.Parallel()
	s, err := scripted.Default()
	if err != nil {
		t.Fatalf("Default: %v", err)
	}
	m := scripted.New(s)
	c := newConv(t, m, "What is 12*(3+4), and what time is it in Asia/Tokyo?")

	r1 := c.next()
	if r1.StopReason != model.StopToolUse || len(r1.ToolUses) != 1 || r1.ToolUses[0].Name != "calculator" ||
		string(r1.ToolUses[0].Input) != `{"expression":"12*(3+4)"}` {
		t.Fatalf("turn 1 = %+v", r1)
	}
	// Results shaped like the built-in tools' outputs (tools/builtin).
	c.answer(r1, map[string]string{"calculator": `{"expression":"12*(3+4)","result":84}`})
	r2 := c.next()
	if len(r2.ToolUses) != 1 || r2.ToolUses[0].Name != "clock" || string(r2.ToolUses[0].Input) != `{"to":"Asia/Tokyo"}` {
		t.Fatalf("turn 2 = %+v", r2)
	}
	if r2.ToolUses[0].ID == r1.ToolUses[0].ID {
		t.Fatalf("tool use ids repeat: %q", r1.ToolUses[0].ID)
	}
	c.answer(r2, map[string]string{"clock": `{"time":"2026-11-25T23:00:00+09:00","zone":"Asia/Tokyo","rfc3339":"2026-11-25T23:00:00+09:00"}`})
	r3 := c.next()
	want := "12*(3+4) = 84. The time in Asia/Tokyo is 2026-11-25T23:00:00+09:00."
	if r3.StopReason != model.StopEndTurn || r3.Text != want || len(r3.ToolUses) != 0 {
		t.Fatalf("answer = %+v, want text %q", r3, want)
	}

	// Without a time zone the clock is asked for UTC.
	c2 := newConv(t, m, "what is 1+1 and what time is it")
	c2.answer(c2.next(), map[string]string{"calculator": `{"result":2}`})
	if r := c2.next(); string(r.ToolUses[0].Input) != `{"to":"UTC"}` {
		t.Fatalf("default time zone: %s", r.ToolUses[0].Input)
	}
}

func TestDefaultScriptEntries(t *testing.T) {
	t.Parallel()
	s, err := scripted.Default()
	if err != nil {
		t.Fatal(err)
	}
	m := scripted.New(s)

	c := newConv(t, m, "Compute 2+2 and 3*3.")
	r := c.next()
	if len(r.ToolUses) != 2 || r.ToolUses[0].ID != "calc-a" || r.ToolUses[1].ID != "calc-b" ||
		string(r.ToolUses[1].Input) != `{"expression":"3*3"}` {
		t.Fatalf("parallel turn = %+v", r)
	}
	c.answer(r, map[string]string{"calc-a": `{"result":4}`, "calc-b": `{"result":9}`})
	if r := c.next(); r.Text != "2+2 = 4 and 3*3 = 9." {
		t.Fatalf("parallel answer %q", r.Text)
	}

	c = newConv(t, m, "search my memory for invoices")
	r = c.next()
	if r.ToolUses[0].Name != "memory_search" || string(r.ToolUses[0].Input) != `{"query":"invoices"}` {
		t.Fatalf("memory turn %+v", r)
	}

	c = newConv(t, m, "fetch https://example.com/x")
	r = c.next()
	if r.ToolUses[0].Name != "http_get" || string(r.ToolUses[0].Input) != `{"url":"https://example.com/x"}` {
		t.Fatalf("fetch turn %+v", r)
	}
	c.req.Messages = append(c.req.Messages, r.Message(), model.Message{Role: model.RoleUser, Content: []model.Block{
		model.ToolResultBlock(model.ToolResult{ToolUseID: r.ToolUses[0].ID, Content: json.RawMessage(`{"reason":"not_allowed"}`), IsError: true})}})
	if r := c.next(); !strings.HasPrefix(r.Text, "Could not fetch https://example.com/x: ") {
		t.Fatalf("failed fetch answer %q", r.Text)
	}

	nonce := "nonce-7f3a9c"
	r = newConv(t, m, "tell me about "+nonce).next()
	if r.StopReason != model.StopEndTurn || !strings.Contains(r.Text, nonce) {
		t.Fatalf("default entry answer %q lacks the prompt", r.Text)
	}
}

func TestStatelessAcrossInstances(t *testing.T) {
	t.Parallel()
	src := `{"entries":[{"match":{"exact":"go"},"turns":[
		{"calls":[{"name":"clock"}]},
		{"calls":[{"name":"calculator","input":{"expression":"1+{{result \"clock\"}}"}}]},
		{"answer":"done {{result \"calculator\"}}"}]}]}`
	c := newConv(t, mustParse(t, src), "go")
	r := c.next()
	c.answer(r, map[string]string{"clock": `"1"`})
	// A "restarted process": a fresh model continues the same conversation.
	c.m = mustParse(t, src)
	r = c.next()
	if string(r.ToolUses[0].Input) != `{"expression":"1+1"}` {
		t.Fatalf("turn 2 after restart: %s", r.ToolUses[0].Input)
	}
	c.answer(r, map[string]string{"calculator": `2`})
	c.m = mustParse(t, src)
	if r := c.next(); r.Text != "done 2" {
		t.Fatalf("answer after restart %q", r.Text)
	}
}

func TestPromptIsLastUserText(t *testing.T) {
	t.Parallel()
	m := mustParse(t, `{"entries":[{"match":{"contains":"second"},"turns":[{"answer":"turn {{turn}}: {{prompt}}"}]}],
		"default":{"turns":[{"answer":"default"}]}}`)
	// Earlier runs of the session sit before the prompt; only what follows it counts.
	req := model.Request{Messages: []model.Message{
		model.UserText("first question"),
		{Role: model.RoleAssistant, Content: []model.Block{model.TextBlock("first answer")}},
		model.UserText("second question"),
	}}
	resp, err := m.Converse(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Text != "turn 1: second question" {
		t.Fatalf("got %q", resp.Text)
	}
}

func TestTemplates(t *testing.T) {
	t.Parallel()
	src := `{"entries":[{"match":{"regex":"^id (\\w+)$"},"turns":[
		{"calls":[{"id":"x1","name":"lookup","input":{"id":"{{group 1}}","n":3,"tags":["{{group 1}}-tag",true]}}]},
		{"answer":"{{field \"lookup\" \"user.name\"}} / {{field \"x1\" \"list.1\"}} / {{result \"x1\"}} / ok={{ok \"x1\"}} / {{.Prompt}} / {{.Turn}}"}]}]}`
	c := newConv(t, mustParse(t, src), "id abc")
	r := c.next()
	if got := string(r.ToolUses[0].Input); got != `{"id":"abc","n":3,"tags":["abc-tag",true]}` {
		t.Fatalf("input %s", got)
	}
	c.answer(r, map[string]string{"x1": `{"user": {"name": "Ada"}, "list": [1, "two"]}`})
	want := `Ada / two / {"user":{"name":"Ada"},"list":[1,"two"]} / ok=true / id abc / 2`
	if r := c.next(); r.Text != want {
		t.Fatalf("answer %q, want %q", r.Text, want)
	}
}

func TestTemplateErrorsAreModelErrors(t *testing.T) {
	t.Parallel()
	for _, answer := range []string{`{{result \"nope\"}}`, `{{field \"c\" \"missing\"}}`, `{{.Nope}}`} {
		src := fmt.Sprintf(`{"default":{"turns":[{"calls":[{"id":"c","name":"t"}]},{"answer":"%s"}]}}`, answer)
		c := newConv(t, mustParse(t, src), "p")
		c.answer(c.next(), map[string]string{"c": `{"a":1}`})
		_, err := c.m.Converse(context.Background(), c.req)
		if !errors.Is(err, model.ErrModel) {
			t.Errorf("answer %s: err = %v, want ErrModel", answer, err)
		}
	}
}

func TestRenderedTextIsBounded(t *testing.T) {
	t.Parallel()
	// A 600 KiB prompt quoted twice: 1.2 MiB, over the 1 MiB cap.
	m := mustParse(t, `{"default":{"turns":[{"answer":"{{.Prompt}}{{.Prompt}}"}]}}`)
	_, err := m.Converse(context.Background(), model.Request{Messages: []model.Message{model.UserText(strings.Repeat("p", 600<<10))}})
	if !errors.Is(err, model.ErrModel) || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("err = %v, want ErrModel for an oversized answer", err)
	}
}

func TestUnknownToolIsRequestedAsScripted(t *testing.T) {
	t.Parallel()
	m := mustParse(t, `{"default":{"turns":[{"calls":[{"name":"no_such_tool","input":{"a":1}}]}]}}`)
	req := model.Request{
		Messages: []model.Message{model.UserText("x")},
		Tools:    []model.ToolSpec{{Name: "calculator", InputSchema: json.RawMessage(`{"type":"object"}`)}},
	}
	resp, err := m.Converse(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ToolUses[0].Name != "no_such_tool" || resp.ToolUses[0].ID != "call-1-1" {
		t.Fatalf("got %+v", resp.ToolUses)
	}
}

func TestRepeatLastAndExhaustion(t *testing.T) {
	t.Parallel()
	loop := mustParse(t, `{"default":{"repeatLast":true,"turns":[{"calls":[{"name":"clock"}]}]}}`)
	c := newConv(t, loop, "forever")
	for i := 1; i <= 5; i++ {
		r := c.next()
		if len(r.ToolUses) != 1 || r.ToolUses[0].ID != fmt.Sprintf("call-%d-1", i) {
			t.Fatalf("turn %d = %+v", i, r)
		}
		c.answer(r, map[string]string{"clock": `"now"`})
	}

	short := mustParse(t, `{"default":{"turns":[{"calls":[{"name":"clock"}]}]}}`)
	c = newConv(t, short, "once")
	c.answer(c.next(), map[string]string{"clock": `"now"`})
	_, err := short.Converse(context.Background(), c.req)
	if !errors.Is(err, model.ErrModel) || !strings.Contains(err.Error(), "has 1 turns") {
		t.Fatalf("exhausted script: %v", err)
	}
}

func TestScriptedFailures(t *testing.T) {
	t.Parallel()
	kinds := map[string]error{
		"throttled": model.ErrThrottled, "transient": model.ErrTransient, "invalid_request": model.ErrInvalidRequest,
		"access_denied": model.ErrAccessDenied, "model_not_found": model.ErrModelNotFound, "model_error": model.ErrModel,
	}
	for name, kind := range kinds {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m := mustParse(t, fmt.Sprintf(`{"default":{"turns":[{"fail":{"kind":%q,"times":2,"message":"scripted %s"},"answer":"ok"}]}}`, name, name))
			req := model.Request{Messages: []model.Message{model.UserText("p")}}
			for i := 1; i <= 2; i++ {
				_, err := m.Converse(context.Background(), req)
				if !errors.Is(err, kind) || !strings.Contains(err.Error(), "scripted "+name) {
					t.Fatalf("call %d: %v, want %v", i, err, kind)
				}
			}
			// Another conversation has its own count.
			if _, err := m.Converse(context.Background(), model.Request{Messages: []model.Message{model.UserText("q")}}); !errors.Is(err, kind) {
				t.Fatalf("other conversation: %v", err)
			}
			resp, err := m.Converse(context.Background(), req)
			if err != nil || resp.Text != "ok" {
				t.Fatalf("third call: %+v, %v", resp, err)
			}
		})
	}

	always := mustParse(t, `{"default":{"turns":[{"fail":{"kind":"model_error"}}]}}`)
	for i := 0; i < 3; i++ {
		if _, err := always.Converse(context.Background(), model.Request{Messages: []model.Message{model.UserText("p")}}); !errors.Is(err, model.ErrModel) {
			t.Fatalf("always-failing turn: %v", err)
		}
	}
}

func TestWithRetryOverScripted(t *testing.T) {
	t.Parallel()
	fast := model.RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}
	req := model.Request{Messages: []model.Message{model.UserText("p")}}

	ok := model.WithRetry(mustParse(t, `{"default":{"turns":[{"fail":{"kind":"throttled","times":2},"answer":"fine"}]}}`), fast)
	if resp, err := ok.Converse(context.Background(), req); err != nil || resp.Text != "fine" {
		t.Fatalf("2 throttles, 3 attempts: %+v %v", resp, err)
	}
	exhausted := model.WithRetry(mustParse(t, `{"default":{"turns":[{"fail":{"kind":"transient","times":5},"answer":"fine"}]}}`), fast)
	_, err := exhausted.Converse(context.Background(), req)
	var me *model.Error
	if !errors.Is(err, model.ErrTransient) || !errors.As(err, &me) || me.Attempts != 3 {
		t.Fatalf("5 failures, 3 attempts: %v", err)
	}
	permanent := model.WithRetry(mustParse(t, `{"default":{"turns":[{"fail":{"kind":"access_denied","times":1},"answer":"fine"}]}}`), fast)
	if _, err := permanent.Converse(context.Background(), req); !errors.Is(err, model.ErrAccessDenied) || !errors.As(err, &me) || me.Attempts != 1 {
		t.Fatalf("a permanent failure was retried: %v", err)
	}
}

func TestUsageAndMaxTokens(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("word ", 100) // 500 bytes = 125 tokens
	m := mustParse(t, fmt.Sprintf(`{"entries":[
		{"match":{"exact":"long"},"turns":[{"answer":%q}]},
		{"match":{"exact":"calls"},"turns":[{"text":"hm","calls":[{"name":"calculator","input":{"expression":"1+1"}}]}]},
		{"match":{"exact":"priced"},"turns":[{"answer":"x","usage":{"inputTokens":1000,"outputTokens":40}}]}]}`, long))
	req := func(p string, max int) model.Request {
		return model.Request{System: "sys", Messages: []model.Message{model.UserText(p)}, MaxTokens: max}
	}

	r, err := m.Converse(context.Background(), req("long", 0))
	if err != nil {
		t.Fatal(err)
	}
	if r.Usage.InputTokens != model.EstimateInputTokens(req("long", 0)) || r.Usage.OutputTokens != 125 || r.StopReason != model.StopEndTurn {
		t.Fatalf("usage %+v stop %s", r.Usage, r.StopReason)
	}
	r, _ = m.Converse(context.Background(), req("long", 10))
	if r.StopReason != model.StopMaxTokens || r.Usage.OutputTokens != 10 || len(r.Text) != 40 || r.Text != long[:40] {
		t.Fatalf("capped: stop %s usage %+v text %q", r.StopReason, r.Usage, r.Text)
	}
	r, _ = m.Converse(context.Background(), req("calls", 2))
	if r.StopReason != model.StopMaxTokens || len(r.ToolUses) != 0 || r.Usage.OutputTokens != 2 {
		t.Fatalf("capped tool turn: %+v", r)
	}
	r, _ = m.Converse(context.Background(), req("calls", 100))
	if r.StopReason != model.StopToolUse || r.Text != "hm" || len(r.ToolUses) != 1 {
		t.Fatalf("uncapped tool turn: %+v", r)
	}
	r, _ = m.Converse(context.Background(), req("priced", 0))
	if r.Usage != (model.Usage{InputTokens: 1000, OutputTokens: 40}) {
		t.Fatalf("usage override %+v", r.Usage)
	}
	r, _ = m.Converse(context.Background(), req("priced", 30))
	if r.StopReason != model.StopMaxTokens || r.Usage.OutputTokens != 30 {
		t.Fatalf("usage override over the cap: %+v", r)
	}
}

func TestStopReasonOverride(t *testing.T) {
	t.Parallel()
	for _, sr := range model.StopReasons() {
		m := mustParse(t, fmt.Sprintf(`{"default":{"turns":[{"answer":"a","stopReason":%q}]}}`, sr))
		r, err := m.Converse(context.Background(), model.Request{Messages: []model.Message{model.UserText("p")}})
		if err != nil || r.StopReason != sr {
			t.Fatalf("%s: %+v %v", sr, r, err)
		}
	}
}

func TestDelayAndCancellation(t *testing.T) {
	t.Parallel()
	m := mustParse(t, `{"default":{"turns":[{"answer":"slow","delayMs":5000}]}}`)
	req := model.Request{Messages: []model.Message{model.UserText("p")}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := m.Converse(ctx, req)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := m.Converse(done, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v", err)
	}
	fast := mustParse(t, `{"default":{"turns":[{"answer":"quick","delayMs":20}]}}`)
	if r, err := fast.Converse(context.Background(), req); err != nil || r.Text != "quick" {
		t.Fatalf("short delay: %+v %v", r, err)
	}
}

func TestInvalidRequests(t *testing.T) {
	t.Parallel()
	m := mustParse(t, `{"default":{"turns":[{"answer":"a"}]}}`)
	for name, req := range map[string]model.Request{
		"no messages": {},
		"only tool results": {Messages: []model.Message{{Role: model.RoleUser, Content: []model.Block{
			model.ToolResultBlock(model.ToolResult{ToolUseID: "x", Content: json.RawMessage(`1`)})}}}},
		"negative max": {Messages: []model.Message{model.UserText("p")}, MaxTokens: -5},
	} {
		if _, err := m.Converse(context.Background(), req); !errors.Is(err, model.ErrInvalidRequest) {
			t.Errorf("%s: %v, want ErrInvalidRequest", name, err)
		}
	}
	noDefault := mustParse(t, `{"entries":[{"match":{"exact":"a"},"turns":[{"answer":"a"}]}]}`)
	if _, err := noDefault.Converse(context.Background(), model.Request{Messages: []model.Message{model.UserText("b")}}); !errors.Is(err, model.ErrModel) {
		t.Errorf("no matching entry: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, src, want string }{
		{"not json", `{`, "unexpected EOF"},
		{"trailing", `{"default":{"turns":[{"answer":"a"}]}} {}`, "trailing"},
		{"unknown field", `{"default":{"turns":[{"answr":"a"}]}}`, "unknown field"},
		{"empty", `{}`, "no entries"},
		{"no match", `{"entries":[{"name":"n","turns":[{"answer":"a"}]}]}`, "entries[0] (n): no match"},
		{"two matches", `{"entries":[{"match":{"exact":"a","contains":"b"},"turns":[{"answer":"a"}]}]}`, "exactly one"},
		{"bad regex", `{"entries":[{"match":{"regex":"("},"turns":[{"answer":"a"}]}]}`, "match.regex"},
		{"default with match", `{"default":{"match":{"exact":"a"},"turns":[{"answer":"a"}]}}`, "default has no match"},
		{"no turns", `{"default":{}}`, "no turns"},
		{"empty turn", `{"default":{"turns":[{}]}}`, "needs calls or an answer"},
		{"calls and answer", `{"default":{"turns":[{"answer":"a","calls":[{"name":"x"}]}]}}`, "not both"},
		{"text with answer", `{"default":{"turns":[{"answer":"a","text":"t"}]}}`, "text goes with calls"},
		{"call without name", `{"default":{"turns":[{"calls":[{"input":{}}]}]}}`, "no name"},
		{"input not object", `{"default":{"turns":[{"calls":[{"name":"x","input":[1]}]}]}}`, "not a JSON object"},
		{"repeated id", `{"default":{"turns":[{"calls":[{"id":"a","name":"x"},{"id":"a","name":"y"}]}]}}`, "repeated"},
		{"bad template", `{"default":{"turns":[{"answer":"{{end}}"}]}}`, "turns[0]"},
		{"unknown func", `{"default":{"turns":[{"answer":"{{nope}}"}]}}`, "not defined"},
		{"bad input template", `{"default":{"turns":[{"calls":[{"name":"x","input":{"a":"{{"}}]}]}}`, "calls[0] (x)"},
		{"range", `{"default":{"turns":[{"answer":"{{if true}}{{range 1000000000}}x{{end}}{{end}}"}]}}`, "not supported"},
		{"range in define", `{"default":{"turns":[{"answer":"{{define \"a\"}}{{range 5}}{{end}}{{end}}x"}]}}`, "not supported"},
		{"template call", `{"default":{"turns":[{"answer":"{{define \"a\"}}{{template \"a\"}}{{end}}{{template \"a\"}}"}]}}`, "not supported"},
		{"bad kind", `{"default":{"turns":[{"fail":{"kind":"oops"}}]}}`, "fail.kind"},
		{"negative times", `{"default":{"turns":[{"fail":{"kind":"throttled","times":-1},"answer":"a"}]}}`, "negative"},
		{"always fail with answer", `{"default":{"turns":[{"fail":{"kind":"throttled"},"answer":"a"}]}}`, "always fails"},
		{"bad stop reason", `{"default":{"turns":[{"answer":"a","stopReason":"bored"}]}}`, "stopReason"},
		{"negative delay", `{"default":{"turns":[{"answer":"a","delayMs":-1}]}}`, "delayMs"},
		{"huge delay", `{"default":{"turns":[{"answer":"a","delayMs":600001}]}}`, "delayMs"},
		{"negative usage", `{"default":{"turns":[{"answer":"a","usage":{"inputTokens":-1}}]}}`, "usage"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := scripted.Parse([]byte(tc.src))
			if err == nil || !errors.Is(err, scripted.ErrInvalidScript) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse = %v, want ErrInvalidScript containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, scripted.DefaultJSON(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := scripted.LoadFile(good); err != nil {
		t.Fatalf("LoadFile(default copy): %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"default":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := scripted.LoadFile(bad); !errors.Is(err, scripted.ErrInvalidScript) || !strings.Contains(err.Error(), "bad.json") {
		t.Fatalf("LoadFile(bad) = %v", err)
	}
	if _, err := scripted.LoadFile(filepath.Join(dir, "missing.json")); !errors.Is(err, scripted.ErrInvalidScript) {
		t.Fatalf("LoadFile(missing) = %v", err)
	}
}

func TestConcurrentSessions(t *testing.T) {
	t.Parallel()
	s, err := scripted.Default()
	if err != nil {
		t.Fatal(err)
	}
	m := scripted.New(s)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nonce := fmt.Sprintf("n%03d", i)
			req := model.Request{Messages: []model.Message{model.UserText("What is " + nonce + "+1, and what time is it?")}}
			r, err := m.Converse(context.Background(), req)
			if err != nil || string(r.ToolUses[0].Input) != fmt.Sprintf(`{"expression":"%s+1"}`, nonce) {
				errs <- fmt.Errorf("session %d: %+v %v", i, r, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
