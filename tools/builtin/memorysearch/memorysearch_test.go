package memorysearch_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/platform/state/sqlite"
	"github.com/agentbus/agentbus/tools"
	"github.com/agentbus/agentbus/tools/builtin/memorysearch"
)

func entry(t *testing.T, s memorysearch.Searcher) *tools.Entry {
	t.Helper()
	tool, err := memorysearch.New(s)
	if err != nil {
		t.Fatal(err)
	}
	r := tools.NewRegistry()
	if err := r.Register(tool); err != nil {
		t.Fatal(err)
	}
	e, err := r.Lookup(memorysearch.Name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func run(t *testing.T, e *tools.Entry, session, input string) (memorysearch.Output, error) {
	t.Helper()
	b, err := e.Run(context.Background(), tools.Call{SessionID: session, Input: json.RawMessage(input)})
	if err != nil {
		return memorysearch.Output{}, err
	}
	var o memorysearch.Output
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatal(err)
	}
	return o, nil
}

// appendEvent stores a real CloudEvent in the session's history.
func appendEvent(t *testing.T, st *sqlite.Store, session string, p events.Payload) {
	t.Helper()
	ev, err := events.NewPayload("test", session, p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AppendHistory(context.Background(), session, state.Entry{Source: ev.Source(), ID: ev.ID(), Type: ev.Type(), Time: ev.Time(), Data: b}); err != nil {
		t.Fatal(err)
	}
}

func TestSearchHistoryOfOwnSessionOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := sqlite.OpenMemory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	appendEvent(t, st, "s1", events.AgentRequested{Prompt: "What is the capital of Norway? nonce-AAA"})
	appendEvent(t, st, "s1", events.ToolInvocationCompleted{Step: 1, CallID: "c1", Tool: "http_get", Output: json.RawMessage(`{"body":"Oslo is the capital"}`)})
	appendEvent(t, st, "s1", events.ToolInvocationRequested{Step: 2, CallID: "c2", Tool: "memory_search", Input: json.RawMessage(`{"query":"capital"}`), IdempotencyKey: "s1/2/c2"})
	appendEvent(t, st, "s2", events.AgentRequested{Prompt: "capital of Sweden nonce-BBB"})

	e := entry(t, memorysearch.FromHistory(st))
	if !e.Spec().Idempotent {
		t.Fatal("memory_search must be idempotent")
	}
	tests := []struct {
		name, session, input string
		wantTypes            []string
		wantText             []string
	}{
		{"newest first, own search dropped", "s1", `{"query":"CAPITAL"}`,
			[]string{events.TypeToolInvocationCompleted, events.TypeAgentRequested}, []string{"Oslo", "Norway"}},
		{"limit", "s1", `{"query":"capital","limit":1}`, []string{events.TypeToolInvocationCompleted}, []string{"Oslo"}},
		{"other session's nonce invisible", "s1", `{"query":"nonce-BBB"}`, nil, nil},
		{"own nonce", "s2", `{"query":"nonce-bbb"}`, []string{events.TypeAgentRequested}, []string{"Sweden"}},
		{"no hits", "s1", `{"query":"zebra"}`, nil, nil},
		{"unknown session", "nobody", `{"query":"capital"}`, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o, err := run(t, e, tt.session, tt.input)
			if err != nil {
				t.Fatal(err)
			}
			if len(o.Hits) != len(tt.wantTypes) {
				t.Fatalf("got %d hits %+v, want %d", len(o.Hits), o.Hits, len(tt.wantTypes))
			}
			for i, h := range o.Hits {
				if h.Type != tt.wantTypes[i] || !strings.Contains(h.Text, tt.wantText[i]) || h.Seq == 0 || h.Time.IsZero() {
					t.Errorf("hit %d = %+v, want type %s containing %q", i, h, tt.wantTypes[i], tt.wantText[i])
				}
			}
			if o.Hits == nil {
				t.Error("hits must be [] not null")
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	e := entry(t, memorysearch.SearchFunc(func(context.Context, string, string, int) ([]memorysearch.Hit, error) {
		return nil, nil
	}))
	for _, in := range []string{`{}`, `{"query":""}`, `{"query":"   "}`, `{"query":"a","limit":0}`, `{"query":"a","limit":21}`, `{"query":"a","session":"s2"}`, `{"query":7}`} {
		if _, err := run(t, e, "s1", in); !errors.Is(err, tools.ErrInvalidInput) {
			t.Errorf("input %s: %v, want ErrInvalidInput", in, err)
		}
	}
	if _, err := run(t, e, "", `{"query":"a"}`); err == nil {
		t.Error("a call without a session must fail")
	}
	if _, err := memorysearch.New(nil); err == nil {
		t.Error("New(nil) must fail")
	}
}

func TestSearcherErrorAndSnippet(t *testing.T) {
	t.Parallel()
	boom := errors.New("store down")
	e := entry(t, memorysearch.SearchFunc(func(context.Context, string, string, int) ([]memorysearch.Hit, error) {
		return nil, boom
	}))
	if _, err := run(t, e, "s1", `{"query":"x"}`); !errors.Is(err, boom) {
		t.Fatalf("got %v, want the searcher's error", err)
	}

	long := strings.Repeat("ä", 1000) + "NEEDLE" + strings.Repeat("ö", 1000)
	var gotLimit int
	e = entry(t, memorysearch.SearchFunc(func(_ context.Context, sid, q string, limit int) ([]memorysearch.Hit, error) {
		gotLimit = limit
		return []memorysearch.Hit{{Seq: 1, Type: "x", Time: time.Unix(1, 0), Text: long}}, nil
	}))
	o, err := run(t, e, "s1", `{"query":"needle"}`)
	if err != nil {
		t.Fatal(err)
	}
	if gotLimit < memorysearch.DefaultLimit {
		t.Errorf("searcher asked for %d, want at least the default %d", gotLimit, memorysearch.DefaultLimit)
	}
	s := o.Hits[0].Text
	if !strings.Contains(s, "NEEDLE") || len(s) > memorysearch.MaxSnippet+2*len("…") || !utf8.ValidString(s) ||
		!strings.HasPrefix(s, "…") || !strings.HasSuffix(s, "…") {
		t.Fatalf("snippet of %d bytes: %.80q…", len(s), s)
	}
}
