// Package memory is the agent loop's memory service. It consumes every
// event of a session and appends it to the session's durable history (the
// state store; idempotent on source+id, so redeliveries and duplicates are
// recorded once), keeps the session's hot context coherent (the cache entry
// is invalidated on every write and reloaded from history on the next read),
// and answers context reads (recent turns trimmed to a token budget) and
// history searches for the planner, the memory_search tool and the API.
package memory

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/model"
	"github.com/agentbus/agentbus/platform/state"
)

// History is the part of the state store the memory service uses.
type History interface {
	AppendHistory(ctx context.Context, sessionID string, entries ...state.Entry) (int, error)
	ReadHistory(ctx context.Context, sessionID string, afterSeq int64, limit int) ([]state.Entry, error)
	SearchHistory(ctx context.Context, sessionID, query string, limit int) ([]state.Entry, error)
}

// HotContext is the cache in front of history: the service invalidates a
// session on every write, and reads through it.
type HotContext interface {
	Invalidate(ctx context.Context, sessionID string) error
	// Recent returns the session's newest entries, loading them with load
	// on a miss.
	Recent(ctx context.Context, sessionID string, load func(ctx context.Context) ([]state.Entry, error)) ([]state.Entry, error)
}

// Service handles the memory service's events and reads. Create it with New.
type Service struct {
	history History
	hot     HotContext
	log     *slog.Logger
	batch   *appender // nil: one write per event
}

// New returns a memory service. hot may be nil (no cache); log may be nil.
func New(h History, hot HotContext, log *slog.Logger, opts ...Option) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{history: h, hot: hot, log: log}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Handle records one event; it is a bus.Handler.
func (s *Service) Handle(ctx context.Context, ev event.Event) error {
	sid := events.SessionID(ev)
	if err := state.ValidateSessionID(sid); err != nil {
		return fmt.Errorf("memory: event %s from %s: %v: %w", ev.ID(), ev.Source(), err, bus.ErrPermanent)
	}
	// The SDK's encoder directly (json.Marshal would re-scan and copy its
	// output): an event off the bus was decoded from JSON or validated at
	// publish, so its data is JSON.
	b, err := ev.MarshalJSON()
	if err != nil {
		return fmt.Errorf("memory: encode event %s: %v: %w", ev.ID(), err, bus.ErrPermanent)
	}
	e := state.Entry{Source: ev.Source(), ID: ev.ID(), Type: ev.Type(), Time: ev.Time(), Data: b}
	// The request that opens a session is written at once: until the
	// planner has created the session record, the history is how every
	// other reader (another API server, `agentbus sessions`) learns that
	// the session exists.
	if s.batch != nil && ev.Type() != events.TypeAgentRequested {
		return s.batch.append(ctx, sid, e)
	}
	n, err := s.history.AppendHistory(ctx, sid, e)
	if err != nil {
		return wrapAppend(e, sid, err)
	}
	if n > 0 {
		s.invalidate(ctx, sid)
	}
	return nil
}

// invalidate drops the session's hot context after a write that appended.
func (s *Service) invalidate(ctx context.Context, sid string) {
	if s.hot == nil {
		return
	}
	// A failed invalidation must not fail the write the history already
	// holds; the cache wrapper logs and recovers on its own.
	if err := s.hot.Invalidate(ctx, sid); err != nil {
		s.log.Warn("memory: invalidate hot context", "session", sid, "err", err)
	}
}

// Turn is one event of a session rendered for a model's context.
type Turn struct {
	Seq  int64     `json:"seq"`
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	// Text is the event's data as compact JSON.
	Text string `json:"text"`
}

// contextWindow is how many of a session's newest events a context read
// considers before trimming to the token budget.
const contextWindow = 200

// Context returns the session's most recent turns, oldest first, as many
// as fit in tokenBudget (estimated with model.EstimateTokens); a budget <= 0
// means no trimming.
func (s *Service) Context(ctx context.Context, sessionID string, tokenBudget int) ([]Turn, error) {
	load := func(ctx context.Context) ([]state.Entry, error) { return s.tail(ctx, sessionID, contextWindow) }
	var (
		es  []state.Entry
		err error
	)
	if s.hot != nil {
		es, err = s.hot.Recent(ctx, sessionID, load)
	} else {
		es, err = load(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("memory: context of %s: %w", sessionID, err)
	}
	turns := make([]Turn, 0, len(es))
	used := 0
	for i := len(es) - 1; i >= 0; i-- {
		t := render(es[i])
		cost := model.EstimateTokens(t.Type) + model.EstimateTokens(t.Text)
		if tokenBudget > 0 && used+cost > tokenBudget {
			break
		}
		used += cost
		turns = append(turns, t)
	}
	for i, j := 0, len(turns)-1; i < j; i, j = i+1, j-1 {
		turns[i], turns[j] = turns[j], turns[i]
	}
	return turns, nil
}

// Search returns up to limit turns of the session whose event contains
// query (case-insensitive), newest first.
func (s *Service) Search(ctx context.Context, sessionID, query string, limit int) ([]Turn, error) {
	es, err := s.history.SearchHistory(ctx, sessionID, query, limit)
	if err != nil {
		return nil, fmt.Errorf("memory: search %s: %w", sessionID, err)
	}
	out := make([]Turn, len(es))
	for i, e := range es {
		out[i] = render(e)
	}
	return out, nil
}

// tail reads the newest n entries of a session's history, oldest first.
func (s *Service) tail(ctx context.Context, sessionID string, n int) ([]state.Entry, error) {
	var all []state.Entry
	after := int64(0)
	for {
		page, err := s.history.ReadHistory(ctx, sessionID, after, state.MaxPageSize)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(all) > n {
			all = all[len(all)-n:]
		}
		if len(page) < state.MaxPageSize {
			return all, nil
		}
		after = page[len(page)-1].Seq
	}
}

// render turns a history entry into a Turn: the event's data as compact
// JSON (or its dataref, when a claim check offloaded the data).
func render(e state.Entry) Turn {
	t := Turn{Seq: e.Seq, Type: e.Type, Time: e.Time}
	var ev event.Event
	if err := json.Unmarshal(e.Data, &ev); err != nil {
		t.Text = string(e.Data)
		return t
	}
	if d := ev.Data(); len(d) > 0 {
		t.Text = strings.TrimSpace(string(d))
	} else if ref := events.DataRef(ev); ref != "" {
		t.Text = `{"dataref":` + fmt.Sprintf("%q", ref) + `}`
	}
	return t
}
