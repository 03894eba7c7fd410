// Package toolgateway is the service that runs the tools served in this
// process: on ToolInvocationRequested for one of them it validates the input,
// runs the tool with its timeout under an idempotency claim, and emits
// ToolInvocationCompleted or ToolInvocationFailed.
//
// Exactly-once effects on an at-least-once bus (see docs/tools.md):
//
//  1. The call's key "<sessionid>/<step>/<callId>" is claimed in the state
//     store as a lease (conditional write) BEFORE the tool runs.
//  2. The tool runs with the key (tools.Call.IdempotencyKey).
//  3. The result event is stored with the claim (CompleteClaim) and written
//     to the transactional outbox in the same transaction; the outbox relay
//     publishes it with its deterministic id. Nothing is published directly,
//     so a crash anywhere leaves either no stored result (the request is
//     redelivered) or a stored result that the relay will publish.
//
// A redelivered request finds the claim: done → nothing to run (the stored
// event is re-published when a Publisher is configured, same id, so
// consumers dedupe); pending with a live lease → bus.RetryAfter until the
// lease ends; pending with an expired lease (the holder died mid-call) → the
// call is re-run with the same key only for a tool declared idempotent, and
// any other tool gets ToolInvocationFailed reason outcome_unknown. A side
// effect never silently runs twice.
package toolgateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/tools"
)

// Crash points: Config.Hook is called with these names, so a crash test can
// kill the process exactly there.
const (
	// PointAfterClaim: the claim is taken, the tool has not run.
	PointAfterClaim = "after_claim"
	// PointAfterSideEffect: the tool returned (its effect happened), the
	// result is not stored yet.
	PointAfterSideEffect = "after_side_effect"
	// PointAfterComplete: the result is stored with the claim and in the
	// outbox; the request is not acked yet.
	PointAfterComplete = "after_complete"
)

// Points lists the crash points in the order a call reaches them.
func Points() []string {
	return []string{PointAfterClaim, PointAfterSideEffect, PointAfterComplete}
}

// Defaults for a zero Config.
const (
	// DefaultLeaseMargin is added to a tool's timeout to make the claim's
	// lease: a live holder always finishes (or times out) inside its lease,
	// so a takeover means the holder died.
	DefaultLeaseMargin = 30 * time.Second
	// DefaultClaimTTL is how long a call's claim (and stored result) is
	// remembered: SQS keeps a message at most 14 days, so a redelivery or a
	// DLQ redrive within that time still finds it.
	DefaultClaimTTL = 14 * 24 * time.Hour
)

// completeGrace bounds storing a result after the handler's context ended.
const completeGrace = 10 * time.Second

// Store is what the gateway needs from the state store (platform/state
// Claims, with the outbox written by CompleteClaim).
type Store interface {
	Claim(ctx context.Context, req state.ClaimRequest) (state.Claim, bool, error)
	CompleteClaim(ctx context.Context, sessionID, key, holder string, result []byte, out ...state.OutboxEvent) (state.Claim, error)
}

// Config wires a Gateway.
type Config struct {
	// Store holds the claims and the outbox. Required.
	Store Store
	// Registry holds the tools; only those with a local implementation are
	// served, requests for others are ignored (a plug-in serves them).
	// Required.
	Registry *tools.Registry
	// Publisher, when set, re-publishes the stored result when a redelivered
	// request finds its claim done. The outbox already guarantees the first
	// publish; this only shortens recovery when an earlier publish was lost
	// downstream. Optional.
	Publisher bus.Publisher
	// Source is the CloudEvents source of emitted events; default
	// agentbus/toolgateway (a plug-in reusing this package sets its own).
	Source string
	// InstanceID prefixes claim holders (logs, debugging); default a random id.
	InstanceID string
	// LeaseMargin is added to a call's timeout to make its lease.
	LeaseMargin time.Duration
	// ClaimTTL is how long claims are remembered.
	ClaimTTL time.Duration
	// Now is the clock for event times and lease waits (it should be the
	// store's clock); default time.Now.
	Now func() time.Time
	// Hook is called at each crash point (see Points); nil in production.
	Hook   func(point string)
	Logger *slog.Logger
}

// Gateway handles ToolInvocationRequested events.
type Gateway struct {
	cfg Config
	log *slog.Logger
}

// New returns a Gateway for cfg.
func New(cfg Config) (*Gateway, error) {
	if cfg.Store == nil {
		return nil, errors.New("toolgateway: nil Store")
	}
	if cfg.Registry == nil {
		return nil, errors.New("toolgateway: nil Registry")
	}
	if cfg.Source == "" {
		cfg.Source = events.SourceToolGateway
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = "toolgateway-" + uuid.NewString()[:8]
	}
	if cfg.LeaseMargin <= 0 {
		cfg.LeaseMargin = DefaultLeaseMargin
	}
	if cfg.ClaimTTL <= 0 {
		cfg.ClaimTTL = DefaultClaimTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Gateway{cfg: cfg, log: cfg.Logger}, nil
}

// Serves reports whether the gateway runs the named tool.
func (g *Gateway) Serves(name string) bool {
	e, err := g.cfg.Registry.Lookup(name)
	return err == nil && e.Local()
}

func (g *Gateway) hook(point string) {
	if g.cfg.Hook != nil {
		g.cfg.Hook(point)
	}
}

// call is one decoded request.
type call struct {
	cause   event.Event
	session string
	req     events.ToolInvocationRequested
	key     string
}

// Handle is the bus.Handler for the gateway's queue. It ignores events other
// than ToolInvocationRequested and requests for tools it does not serve.
func (g *Gateway) Handle(ctx context.Context, ev event.Event) error {
	if ev.Type() != events.TypeToolInvocationRequested {
		return nil
	}
	req, err := events.Decode[events.ToolInvocationRequested](ev)
	if err != nil {
		return fmt.Errorf("toolgateway: %w: %w", bus.ErrPermanent, err)
	}
	c := call{cause: ev, session: events.SessionID(ev), req: req}
	if c.session == "" || req.CallID == "" || req.Tool == "" {
		return fmt.Errorf("toolgateway: %w: request %s/%s lacks session, callId or tool", bus.ErrPermanent, ev.Source(), ev.ID())
	}
	entry, err := g.cfg.Registry.Lookup(req.Tool)
	if err != nil || !entry.Local() {
		return nil // not ours: a plug-in (or the executor, for unknown tools) answers
	}
	// The key is derived, not taken from the request: it is fixed by the
	// contract, and a malformed key must not collide with another call's.
	c.key = tools.IdempotencyKey(c.session, req.Step, req.CallID)
	if req.IdempotencyKey != "" && req.IdempotencyKey != c.key {
		g.log.Warn("toolgateway: request carries a different idempotency key; using the derived one",
			"got", req.IdempotencyKey, "key", c.key)
	}
	log := g.log.With("session", c.session, "step", req.Step, "call", req.CallID, "tool", req.Tool)
	spec := entry.Spec()
	timeout := spec.EffectiveTimeout()
	if req.TimeoutMs > 0 {
		timeout = min(timeout, time.Duration(req.TimeoutMs)*time.Millisecond)
	}

	holder := g.cfg.InstanceID + ":" + uuid.NewString()
	claim, acquired, err := g.cfg.Store.Claim(ctx, state.ClaimRequest{
		SessionID: c.session, Key: c.key, Holder: holder,
		Lease: timeout + g.cfg.LeaseMargin, TTL: g.cfg.ClaimTTL,
	})
	if err != nil {
		if errors.Is(err, state.ErrInvalid) {
			return fmt.Errorf("toolgateway: claim %s: %w: %w", c.key, bus.ErrPermanent, err)
		}
		return fmt.Errorf("toolgateway: claim %s: %w", c.key, err)
	}
	if !acquired {
		if claim.State == state.ClaimDone {
			log.Debug("toolgateway: call already done; redelivery", "attempt", claim.Attempt)
			return g.republish(ctx, claim)
		}
		wait := claim.LeaseUntil.Sub(g.cfg.Now())
		if wait < time.Second {
			wait = time.Second
		}
		return bus.RetryAfter(wait, fmt.Sprintf("tool call %s in progress (holder %s, attempt %d)", c.key, claim.Holder, claim.Attempt))
	}
	g.hook(PointAfterClaim)

	// Validation is deterministic: an invalid input never ran the tool, in
	// this attempt or an earlier one.
	if err := entry.Validate(req.Input); err != nil {
		g.hook(PointAfterSideEffect)
		return g.complete(ctx, c, holder, failed(c, events.ToolInvalidInput, err.Error()))
	}
	if claim.Attempt > 1 && !spec.Idempotent {
		// An earlier holder claimed the call and never stored a result: the
		// side effect may or may not have happened. Running it again could
		// do it twice, so the model and the user are told instead.
		log.Warn("toolgateway: earlier attempt died mid-call; outcome unknown", "attempt", claim.Attempt)
		return g.complete(ctx, c, holder, failed(c, events.ToolOutcomeUnknown, fmt.Sprintf(
			"an earlier attempt (%d) of this %s call was interrupted before its result was stored; "+
				"its side effect may or may not have happened, and the tool is not idempotent, so it was not run again",
			claim.Attempt-1, req.Tool)))
	}
	if claim.Attempt > 1 {
		log.Info("toolgateway: re-running idempotent tool after an interrupted attempt", "attempt", claim.Attempt)
	}

	data := g.run(ctx, c, entry, timeout)
	if data == nil {
		// The handler's context ended (shutdown) before the tool answered:
		// leave the claim pending; the redelivery after its lease decides.
		return fmt.Errorf("toolgateway: %s interrupted: %w", c.key, context.Cause(ctx))
	}
	g.hook(PointAfterSideEffect)
	return g.complete(ctx, c, holder, data)
}

// run runs the tool and turns its outcome into a result payload; nil when
// ctx (the handler's, not the tool's timeout) ended first.
func (g *Gateway) run(ctx context.Context, c call, entry *tools.Entry, timeout time.Duration) events.Payload {
	spec := entry.Spec()
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	input := c.req.Input
	if len(input) == 0 {
		input = json.RawMessage(`{}`)
	}
	type result struct {
		out   json.RawMessage
		err   error
		panic any
	}
	done := make(chan result, 1)
	start := time.Now()
	// The tool runs in its own goroutine so that a tool ignoring its
	// context cannot hold the call past its timeout (the goroutine is left
	// to finish on its own).
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- result{panic: p}
			}
		}()
		out, err := entry.Tool().Run(tctx, tools.Call{
			Input: input, IdempotencyKey: c.key, SessionID: c.session, Step: c.req.Step, CallID: c.req.CallID,
		})
		done <- result{out: out, err: err}
	}()
	var r result
	select {
	case r = <-done:
	case <-tctx.Done():
		r = result{err: tctx.Err()}
	}
	elapsed := time.Since(start)
	switch {
	case ctx.Err() != nil && (r.err != nil || r.panic != nil):
		// Not the tool's timeout but the handler's end: no outcome to report.
		return nil
	case r.panic != nil:
		if !spec.Idempotent {
			return failed(c, events.ToolOutcomeUnknown, fmt.Sprintf("tool panicked mid-call (%v); its side effect may or may not have happened", r.panic))
		}
		return failed(c, events.ToolError, fmt.Sprintf("tool panicked: %v", r.panic))
	case r.err != nil && tctx.Err() != nil && errors.Is(tctx.Err(), context.DeadlineExceeded):
		msg := fmt.Sprintf("no answer within %s", timeout)
		if !spec.Idempotent {
			msg += "; its side effect may or may not have happened"
		}
		return failed(c, events.ToolTimeout, msg)
	case errors.Is(r.err, tools.ErrInvalidInput):
		return failed(c, events.ToolInvalidInput, r.err.Error())
	case r.err != nil:
		return failed(c, events.ToolError, r.err.Error())
	}
	out := r.out
	if len(out) == 0 {
		out = json.RawMessage(`null`)
	}
	if !json.Valid(out) {
		return failed(c, events.ToolError, "tool returned output that is not JSON")
	}
	return events.ToolInvocationCompleted{
		Step: c.req.Step, CallID: c.req.CallID, Tool: c.req.Tool, Output: out, DurationMs: elapsed.Milliseconds(),
	}
}

// maxMessage bounds a failure message: it goes to the model, and a tool's
// error can carry a whole response body.
const maxMessage = 4096

func failed(c call, reason events.ToolFailureReason, msg string) events.ToolInvocationFailed {
	if len(msg) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "… (truncated)"
	}
	return events.ToolInvocationFailed{Step: c.req.Step, CallID: c.req.CallID, Tool: c.req.Tool, Reason: reason, Message: msg}
}

// eventID is the one id of a call's result event, whatever its type: a call
// has one outcome, and every emission of it carries this id.
func (g *Gateway) eventID(c call) string {
	return events.DeterministicID(c.session, "toolgateway", strconv.Itoa(c.req.Step), c.req.CallID, "result")
}

// build makes the result event and its JSON.
func (g *Gateway) build(c call, data events.Payload) ([]byte, error) {
	opts := []events.Option{events.WithID(g.eventID(c)), events.WithTime(g.cfg.Now())}
	if events.ValidTraceParent(events.TraceParent(c.cause)) {
		opts = append(opts, events.CausedBy(c.cause))
	}
	ev, err := events.NewPayload(g.cfg.Source, c.session, data, opts...)
	if err != nil {
		return nil, fmt.Errorf("toolgateway: build result: %w", err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("toolgateway: encode result: %w", err)
	}
	return b, nil
}

// complete stores the result with the claim and in the outbox, atomically.
func (g *Gateway) complete(ctx context.Context, c call, holder string, data events.Payload) error {
	b, err := g.build(c, data)
	if err != nil {
		return err
	}
	if len(b) > state.MaxInlineValue {
		// The claim must hold the whole result to answer redeliveries; an
		// output this large is reported instead of stored.
		size := len(b)
		if b, err = g.build(c, failed(c, events.ToolError, fmt.Sprintf(
			"tool output too large: result event of %d bytes exceeds the %d-byte limit", size, state.MaxInlineValue))); err != nil {
			return err
		}
	}
	ev := state.OutboxEvent{ID: g.cfg.Source + " " + g.eventID(c), Payload: b}
	// A result in hand is stored even when the handler is being stopped:
	// otherwise a finished side effect would be reported outcome_unknown.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), completeGrace)
	defer cancel()
	if _, err := g.cfg.Store.CompleteClaim(sctx, c.session, c.key, holder, b, ev); err != nil {
		if errors.Is(err, state.ErrConflict) {
			// Our lease expired and another holder took the call over: its
			// outcome is the one recorded. Nothing of ours is stored.
			g.log.Warn("toolgateway: lost the claim before completing; the new holder reports the call",
				"key", c.key, "err", err)
			return nil
		}
		return fmt.Errorf("toolgateway: complete %s: %w", c.key, err)
	}
	g.hook(PointAfterComplete)
	return nil
}

// republish publishes a done claim's stored result again (same id).
func (g *Gateway) republish(ctx context.Context, claim state.Claim) error {
	if g.cfg.Publisher == nil {
		return nil // the outbox relay publishes the stored result
	}
	var ev event.Event
	if err := json.Unmarshal(claim.Result, &ev); err != nil {
		return fmt.Errorf("toolgateway: stored result of %s: %w: %w", claim.Key, bus.ErrPermanent, err)
	}
	if err := g.cfg.Publisher.Publish(ctx, ev); err != nil {
		return fmt.Errorf("toolgateway: re-publish %s: %w", claim.Key, err)
	}
	return nil
}
