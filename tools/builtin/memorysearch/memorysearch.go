// Package memorysearch is the built-in `memory_search` tool: it searches the
// calling session's own history (never another session's) for a text.
package memorysearch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/tools"
)

// Name is the tool's name.
const Name = "memory_search"

// Limits of one search.
const (
	DefaultLimit = 5
	MaxLimit     = 20
	// MaxSnippet bounds each hit's text (bytes) so that a search cannot
	// flood the model's context with whole tool outputs.
	MaxSnippet = 600
)

// Hit is one history event that matched.
type Hit struct {
	Seq  int64     `json:"seq"`
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	// Text is the event's data (compact JSON), or a part of it around the
	// match when longer than MaxSnippet.
	Text string `json:"text"`
}

// Searcher searches one session's history, newest first. The memory service
// and the state store satisfy it through SearchFunc and FromHistory.
type Searcher interface {
	Search(ctx context.Context, sessionID, query string, limit int) ([]Hit, error)
}

// SearchFunc adapts a function to Searcher.
type SearchFunc func(ctx context.Context, sessionID, query string, limit int) ([]Hit, error)

// Search calls f.
func (f SearchFunc) Search(ctx context.Context, sessionID, query string, limit int) ([]Hit, error) {
	return f(ctx, sessionID, query, limit)
}

// HistorySearcher is the part of state.History FromHistory needs.
type HistorySearcher interface {
	SearchHistory(ctx context.Context, sessionID, query string, limit int) ([]state.Entry, error)
}

// FromHistory searches a state store's history directly (the event's data
// becomes the hit's text), for a tool-gateway that runs without the memory
// service beside it.
func FromHistory(h HistorySearcher) Searcher {
	return SearchFunc(func(ctx context.Context, sessionID, query string, limit int) ([]Hit, error) {
		es, err := h.SearchHistory(ctx, sessionID, query, limit)
		if err != nil {
			return nil, err
		}
		hits := make([]Hit, 0, len(es))
		for _, e := range es {
			h := Hit{Seq: e.Seq, Type: e.Type, Time: e.Time, Text: string(e.Data)}
			var ev event.Event
			if err := json.Unmarshal(e.Data, &ev); err == nil && len(ev.Data()) > 0 {
				h.Text = strings.TrimSpace(string(ev.Data()))
			}
			hits = append(hits, h)
		}
		return hits, nil
	})
}

// Tool is memory_search.
type Tool struct {
	searcher Searcher
}

var _ tools.Tool = (*Tool)(nil)

// New returns the tool searching through s.
func New(s Searcher) (*Tool, error) {
	if s == nil {
		return nil, errors.New("memory_search: nil searcher")
	}
	return &Tool{searcher: s}, nil
}

// Spec describes memory_search.
func (t *Tool) Spec() tools.Spec {
	return tools.Spec{
		Name: Name,
		Description: "Searches this conversation's history (earlier prompts, tool calls and results) for a text, " +
			"case-insensitively, newest first. Returns up to `limit` matching events with a snippet of each.",
		InputSchema: json.RawMessage(`{"type":"object","properties":{` +
			`"query":{"type":"string","minLength":1,"maxLength":200},` +
			`"limit":{"type":"integer","minimum":1,"maximum":20,"default":5}` +
			`},"required":["query"],"additionalProperties":false}`),
		Idempotent: true,
		Timeout:    10 * time.Second,
	}
}

type input struct {
	Query string `json:"query"`
	Limit int    `json:"limit"`
}

// Output is what the tool returns.
type Output struct {
	Query string `json:"query"`
	Hits  []Hit  `json:"hits"`
}

// Run searches the calling session's history.
func (t *Tool) Run(ctx context.Context, call tools.Call) (json.RawMessage, error) {
	var in input
	if err := json.Unmarshal(call.Input, &in); err != nil {
		return nil, fmt.Errorf("%w: %v", tools.ErrInvalidInput, err)
	}
	if strings.TrimSpace(in.Query) == "" {
		return nil, fmt.Errorf("%w: /query: blank query", tools.ErrInvalidInput)
	}
	if call.SessionID == "" {
		return nil, errors.New("memory_search: call has no session")
	}
	limit := in.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	// Over-fetch: the search's own invocation events match the query too
	// and are dropped below.
	found, err := t.searcher.Search(ctx, call.SessionID, in.Query, limit+4)
	if err != nil {
		return nil, fmt.Errorf("memory_search: %w", err)
	}
	out := Output{Query: in.Query, Hits: make([]Hit, 0, limit)}
	for _, h := range found {
		if len(out.Hits) == limit {
			break
		}
		if ownCall(h) {
			continue
		}
		h.Text = snippet(h.Text, in.Query)
		out.Hits = append(out.Hits, h)
	}
	return json.Marshal(out)
}

// ownCall reports whether h is an invocation of memory_search itself (its
// request or result), which always contains the query and says nothing new.
func ownCall(h Hit) bool {
	if !strings.HasPrefix(h.Type, "agentbus.tool.invocation.") {
		return false
	}
	var d struct {
		Tool string `json:"tool"`
	}
	return json.Unmarshal([]byte(h.Text), &d) == nil && d.Tool == Name
}

// snippet returns text, or at most MaxSnippet bytes of it centred on the
// first case-insensitive match, marked with "…" where cut.
func snippet(text, query string) string {
	if len(text) <= MaxSnippet {
		return text
	}
	i := strings.Index(strings.ToLower(text), strings.ToLower(query))
	if i < 0 {
		i = 0
	}
	start := max(0, i-(MaxSnippet-len(query))/2)
	end := min(len(text), start+MaxSnippet)
	start = max(0, end-MaxSnippet)
	// Move inwards to rune boundaries.
	for start < end && !utf8.RuneStart(text[start]) {
		start++
	}
	for end < len(text) && end > start && !utf8.RuneStart(text[end]) {
		end--
	}
	s := text[start:end]
	if start > 0 {
		s = "…" + s
	}
	if end < len(text) {
		s += "…"
	}
	return s
}
