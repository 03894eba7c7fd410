// Package planner is the agent loop's reasoning service. On AgentRequested
// and on StepCompleted it builds the conversation, asks the model for the
// next turn with the agent's allowed tools, and emits StepPlanned (one or
// more tool calls) or AgentCompleted. Guards are checked before every model
// call (fail closed): max steps, token budget, deadline; a model error after
// retries or a call to a tool outside the allow-list ends the run with
// AgentFailed and a machine-readable reason. AgentCancelRequested ends a run
// with AgentCancelled.
//
// The planner keeps each run's conversation in the session record it owns
// (state.Session.Data) and moves it forward with conditional writes: the
// session version is the step transition, and the event that announces a
// transition is written to the outbox in the same transaction. Redelivered
// or late events for a step that is no longer awaited are ignored, so every
// handler is idempotent.
package planner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/model"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/platform/state/outbox"
	"github.com/agentbus/agentbus/tools"
)

// Store is the part of the state store the planner uses.
type Store interface {
	CreateSession(ctx context.Context, s state.Session, out ...state.OutboxEvent) (state.Session, error)
	GetSession(ctx context.Context, id string) (state.Session, error)
	UpdateSession(ctx context.Context, s state.Session, out ...state.OutboxEvent) (state.Session, error)
}

// ToolCatalog gives the specs of the tools an agent may use.
type ToolCatalog interface {
	Specs(allow []string) []tools.Spec
	Missing(allow []string) []string
}

// Config sets the planner's defaults for agents that do not set their own.
type Config struct {
	// DefaultModel is the model id for agents that name none.
	DefaultModel  string
	DefaultSystem string
	// DefaultTools is the allow-list for agents that give none; nil means
	// every registered tool.
	DefaultTools    []string
	MaxSteps        int
	MaxTokens       int
	Timeout         time.Duration
	MaxOutputTokens int
	// CacheRuns, when > 0, keeps the runs of that many recently written
	// sessions in memory (64 MiB of them encoded at most), so the next
	// event of a session skips reading and decoding its record. Only for a planner that writes its sessions
	// alone (the embedded runtime): with several planner instances a
	// cached run is often stale, and a stale run costs a model call whose
	// conditional write then conflicts (and is retried from the store).
	CacheRuns int
}

// Planner handles the planner's events. Create it with New.
type Planner struct {
	store Store
	model model.Model
	tools ToolCatalog
	cfg   Config
	now   func() time.Time
	log   *slog.Logger
	runs  *runCache // nil unless cfg.CacheRuns > 0
}

// New returns a planner. now may be nil (time.Now); log may be nil.
func New(store Store, m model.Model, tc ToolCatalog, cfg Config, now func() time.Time, log *slog.Logger) *Planner {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Planner{store: store, model: m, tools: tc, cfg: cfg, now: now, log: log, runs: newRunCache(cfg.CacheRuns, maxCachedBytes)}
}

// run is the planner's view of one session, stored as the session's Data.
type run struct {
	Agent    agent           `json:"agent"`
	Messages []model.Message `json:"messages"`
	// Turns counts model calls that produced a transition.
	Turns int `json:"turns"`
	// Awaiting is the step whose StepCompleted the run waits for (0: none).
	Awaiting int          `json:"awaiting"`
	Steps    int          `json:"steps"`
	Usage    events.Usage `json:"usage"`
	Deadline time.Time    `json:"deadline"`
	// TraceParent of the request, so the run's events stay in one trace.
	TraceParent string `json:"traceParent,omitempty"`
}

// Handle dispatches one event; it is a bus.Handler.
func (p *Planner) Handle(ctx context.Context, ev event.Event) error {
	switch ev.Type() {
	case events.TypeAgentRequested:
		return p.onRequested(ctx, ev)
	case events.TypeStepCompleted:
		return p.onStepCompleted(ctx, ev)
	case events.TypeAgentCancelRequested:
		return p.onCancel(ctx, ev)
	default:
		// The planner's rules route only the types above; anything else is a
		// routing mistake that retrying cannot fix.
		return fmt.Errorf("planner: unexpected event type %q: %w", ev.Type(), bus.ErrPermanent)
	}
}

func (p *Planner) onRequested(ctx context.Context, ev event.Event) error {
	sid := events.SessionID(ev)
	req, err := events.Decode[events.AgentRequested](ev)
	if err != nil {
		return fmt.Errorf("planner: AgentRequested %s: %v: %w", ev.ID(), err, bus.ErrPermanent)
	}
	if existing, err := p.store.GetSession(ctx, sid); err == nil {
		p.log.Debug("planner: session exists, request is a redelivery", "session", sid, "status", existing.Status)
		return nil
	} else if !errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("planner: read session %s: %w", sid, err)
	}

	a := p.cfg.resolve(req.Agent)
	r := &run{
		Agent:       a,
		Messages:    []model.Message{model.UserText(req.Prompt)},
		Deadline:    p.now().Add(a.Timeout),
		TraceParent: events.TraceParent(ev),
	}
	sess := state.Session{ID: sid, AgentName: a.Name, Status: state.StatusRunning}

	var out []state.OutboxEvent
	if msg := p.invalidRequest(req, a); msg != "" {
		out, err = p.finish(r, &sess, ev, events.AgentInvalidRequest, msg)
	} else {
		out, err = p.turn(ctx, r, &sess, ev)
	}
	if err != nil {
		return err
	}
	if sess.Data, err = json.Marshal(r); err != nil {
		return fmt.Errorf("planner: encode run: %w", err)
	}
	created, err := p.store.CreateSession(ctx, sess, out...)
	if err != nil {
		if errors.Is(err, state.ErrConflict) {
			// Another delivery (or a cancel) created the session first.
			return nil
		}
		return fmt.Errorf("planner: create session %s: %w", sid, err)
	}
	p.runs.put(created, r, len(sess.Data))
	return nil
}

// invalidRequest names what makes a request unusable, or "".
func (p *Planner) invalidRequest(req events.AgentRequested, a agent) string {
	if req.Agent != nil {
		if err := ValidateAgent(*req.Agent); err != nil {
			return err.Error()
		}
	}
	if missing := p.tools.Missing(a.Tools); len(missing) > 0 {
		return fmt.Sprintf("agent %q allows tools that are not registered: %v", a.Name, missing)
	}
	return ""
}

func (p *Planner) onStepCompleted(ctx context.Context, ev event.Event) error {
	sid := events.SessionID(ev)
	sc, err := events.Decode[events.StepCompleted](ev)
	if err != nil {
		return fmt.Errorf("planner: StepCompleted %s: %v: %w", ev.ID(), err, bus.ErrPermanent)
	}
	sess, r, cached, err := p.load(ctx, sid)
	if err != nil {
		return err
	}
	if cached && (sess.Status != state.StatusRunning || r.Awaiting != sc.Step) {
		// Only the stored run may say that an event is late: a cached one
		// can be behind it (the write that moved the run on published this
		// step's event before the cache had the run it wrote).
		p.runs.drop(sid)
		if sess, r, _, err = p.load(ctx, sid); err != nil {
			return err
		}
	}
	if sess.Status != state.StatusRunning || r.Awaiting != sc.Step {
		p.log.Debug("planner: ignoring late or duplicate StepCompleted", "session", sid, "step", sc.Step, "awaiting", r.Awaiting, "status", sess.Status)
		return nil
	}
	r.Messages = append(r.Messages, toolResultsMessage(sc))
	r.Awaiting = 0
	out, err := p.turn(ctx, r, &sess, ev)
	if err != nil {
		return err
	}
	return p.save(ctx, sess, r, out)
}

func (p *Planner) onCancel(ctx context.Context, ev event.Event) error {
	sid := events.SessionID(ev)
	c, err := events.Decode[events.AgentCancelRequested](ev)
	if err != nil {
		return fmt.Errorf("planner: AgentCancelRequested %s: %v: %w", ev.ID(), err, bus.ErrPermanent)
	}
	reason := c.Reason
	if reason == "" {
		reason = "cancelled by request"
	}
	sess, r, _, err := p.load(ctx, sid)
	if errors.Is(err, state.ErrNotFound) {
		// Cancelled before the planner saw the request: record the session
		// as cancelled so a late AgentRequested finds it and does nothing.
		r = &run{TraceParent: events.TraceParent(ev)}
		sess = state.Session{ID: sid, Status: state.StatusCancelled, AgentName: DefaultAgentName}
		out, err := p.cancelled(r, sid, ev, reason)
		if err != nil {
			return err
		}
		if sess.Data, err = json.Marshal(r); err != nil {
			return err
		}
		if _, err := p.store.CreateSession(ctx, sess, out...); err != nil && !errors.Is(err, state.ErrConflict) {
			return fmt.Errorf("planner: create cancelled session %s: %w", sid, err)
		} else if errors.Is(err, state.ErrConflict) {
			return fmt.Errorf("planner: session %s appeared while cancelling; retry", sid)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if sess.Status != state.StatusRunning {
		return nil
	}
	sess.Status = state.StatusCancelled
	out, err := p.cancelled(r, sid, ev, reason)
	if err != nil {
		return err
	}
	return p.save(ctx, sess, r, out)
}

func (p *Planner) cancelled(r *run, sid string, cause event.Event, reason string) ([]state.OutboxEvent, error) {
	r.Awaiting = 0
	return p.emit(sid, cause, "cancelled", events.AgentCancelled{Reason: reason, Steps: r.Steps, Usage: r.Usage})
}

// turn runs the guards and, if they pass, one model call; it updates r and
// sess and returns the event that announces the transition.
func (p *Planner) turn(ctx context.Context, r *run, sess *state.Session, cause event.Event) ([]state.OutboxEvent, error) {
	a := r.Agent
	if !p.now().Before(r.Deadline) {
		return p.finish(r, sess, cause, events.AgentDeadline, fmt.Sprintf("deadline of %s passed", a.Timeout))
	}
	if r.Turns >= a.MaxSteps {
		return p.finish(r, sess, cause, events.AgentMaxSteps, fmt.Sprintf("max steps (%d) reached without an answer", a.MaxSteps))
	}
	req := model.Request{
		ModelID:  a.Model,
		System:   a.System,
		Messages: r.Messages,
		Tools:    modelSpecs(p.tools.Specs(a.Tools)),
	}
	used := r.Usage.InputTokens + r.Usage.OutputTokens
	remaining := a.MaxTokens - used
	in := model.EstimateInputTokens(req)
	if in >= remaining {
		return p.finish(r, sess, cause, events.AgentTokenBudget,
			fmt.Sprintf("token budget %d: %d used, next call needs about %d input tokens", a.MaxTokens, used, in))
	}
	req.MaxTokens = min(a.MaxOutputTokens, remaining-in)

	callCtx, cancel := context.WithDeadline(ctx, r.Deadline)
	resp, err := p.model.Converse(callCtx, req)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("planner: model call interrupted: %w", ctx.Err())
		}
		if !p.now().Before(r.Deadline) {
			return p.finish(r, sess, cause, events.AgentDeadline, fmt.Sprintf("deadline of %s passed during a model call", a.Timeout))
		}
		return p.finish(r, sess, cause, events.AgentModelError, err.Error())
	}
	r.Turns++
	r.Usage = r.Usage.Add(events.Usage{InputTokens: resp.Usage.InputTokens, OutputTokens: resp.Usage.OutputTokens})
	if total := r.Usage.InputTokens + r.Usage.OutputTokens; total > a.MaxTokens {
		return p.finish(r, sess, cause, events.AgentTokenBudget, fmt.Sprintf("token budget %d exceeded: %d used", a.MaxTokens, total))
	}

	if len(resp.ToolUses) == 0 {
		if resp.StopReason == model.StopMaxTokens && req.MaxTokens < a.MaxOutputTokens {
			return p.finish(r, sess, cause, events.AgentTokenBudget, "the answer was cut off by the remaining token budget")
		}
		r.Messages = append(r.Messages, resp.Message())
		sess.Status = state.StatusCompleted
		return p.emit(sess.ID, cause, "completed", events.AgentCompleted{Answer: resp.Text, Steps: r.Steps, Usage: r.Usage})
	}
	for _, u := range resp.ToolUses {
		if !allowed(a, u.Name) {
			return p.finish(r, sess, cause, events.AgentToolNotAllowed,
				fmt.Sprintf("the model asked for tool %q, which agent %q does not allow", u.Name, a.Name))
		}
	}
	r.Steps++
	r.Awaiting = r.Steps
	r.Messages = append(r.Messages, resp.Message())
	calls := make([]events.ToolCall, len(resp.ToolUses))
	for i, u := range resp.ToolUses {
		calls[i] = events.ToolCall{ID: u.ID, Name: u.Name, Input: u.Input}
	}
	return p.emit(sess.ID, cause, "planned-"+strconv.Itoa(r.Steps), events.StepPlanned{
		Step: r.Steps, Calls: calls, Text: resp.Text,
		Usage: events.Usage{InputTokens: resp.Usage.InputTokens, OutputTokens: resp.Usage.OutputTokens},
	})
}

// finish ends the run with AgentFailed.
func (p *Planner) finish(r *run, sess *state.Session, cause event.Event, reason events.AgentFailureReason, msg string) ([]state.OutboxEvent, error) {
	r.Awaiting = 0
	sess.Status = state.StatusFailed
	p.log.Info("planner: run failed", "session", sess.ID, "reason", reason, "message", msg)
	return p.emit(sess.ID, cause, "failed", events.AgentFailed{Reason: reason, Message: msg, Steps: r.Steps, Usage: r.Usage})
}

// emit builds the outbox row of a transition event. Its id is derived from
// the session and the transition, so a redelivered event that loses the
// conditional write produces nothing new, and a relay that publishes twice
// publishes the same id.
func (p *Planner) emit(sid string, cause event.Event, kind string, data events.Payload) ([]state.OutboxEvent, error) {
	ev, err := events.NewPayload(events.SourcePlanner, sid, data,
		events.WithID(events.DeterministicID(sid, "planner", kind)), events.CausedBy(cause), events.WithTime(p.now()))
	if err != nil {
		return nil, fmt.Errorf("planner: build %T: %w", data, err)
	}
	return outbox.FromEvents(ev)
}

// load returns the session's run: the cached one if there is one (cached
// reports it; see Config.CacheRuns), else the stored one.
func (p *Planner) load(ctx context.Context, sid string) (_ state.Session, _ *run, cached bool, _ error) {
	if sess, r, ok := p.runs.get(sid); ok {
		return sess, r, true, nil
	}
	sess, err := p.store.GetSession(ctx, sid)
	if err != nil {
		return sess, nil, false, fmt.Errorf("planner: read session %s: %w", sid, err)
	}
	r := &run{}
	if err := json.Unmarshal(sess.Data, r); err != nil {
		return sess, nil, false, fmt.Errorf("planner: session %s holds a run it cannot read: %v: %w", sid, err, bus.ErrPermanent)
	}
	return sess, r, false, nil
}

func (p *Planner) save(ctx context.Context, sess state.Session, r *run, out []state.OutboxEvent) error {
	var err error
	if sess.Data, err = json.Marshal(r); err != nil {
		return fmt.Errorf("planner: encode run: %w", err)
	}
	updated, err := p.store.UpdateSession(ctx, sess, out...)
	if err != nil {
		// ErrConflict: another delivery moved the run on; retrying this
		// event will find it no longer awaited and ignore it. The cached
		// run, if any, is stale (or unknown after another error): the
		// retry reads the store.
		p.runs.drop(sess.ID)
		return fmt.Errorf("planner: update session %s: %w", sess.ID, err)
	}
	p.runs.put(updated, r, len(sess.Data))
	return nil
}

// allowed reports whether the agent may call the tool. With no allow-list
// every name passes: a name nobody registered then fails in the executor with
// unknown_tool, which the model sees and can recover from.
func allowed(a agent, name string) bool {
	return a.Tools == nil || slices.Contains(a.Tools, name)
}

func modelSpecs(specs []tools.Spec) []model.ToolSpec {
	out := make([]model.ToolSpec, len(specs))
	for i, s := range specs {
		out[i] = model.ToolSpec{Name: s.Name, Description: s.Description, InputSchema: s.InputSchema}
	}
	return out
}

// toolResultsMessage turns a step's results into the user message that
// carries them back to the model: outputs as they are, failures as
// {"reason","message"} marked as errors so the model sees them and decides.
func toolResultsMessage(sc events.StepCompleted) model.Message {
	m := model.Message{Role: model.RoleUser}
	for _, res := range sc.Results {
		tr := model.ToolResult{ToolUseID: res.CallID}
		if res.OK {
			tr.Content = res.Output
			if len(tr.Content) == 0 {
				tr.Content = json.RawMessage("null")
			}
		} else {
			tr.IsError = true
			tr.Content, _ = json.Marshal(map[string]string{"reason": string(res.Reason), "message": res.Message})
		}
		m.Content = append(m.Content, model.ToolResultBlock(tr))
	}
	return m
}
