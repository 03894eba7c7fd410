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
//
// A tool declared idempotent whose call needs no lease renewal skips step 1:
// running it twice is harmless by its declaration, so the lease would only
// keep a duplicate delivery from running it meanwhile, at the price of a
// state write before every call. Its outcome is stored with
// CompleteUnclaimed, which keeps the first outcome stored. A redelivery
// (bus.ReceiveCount > 1) reads the claim first and, finding the call done,
// re-publishes the stored outcome without running the tool; a duplicate
// delivered as a new message may run it a second time, and its outcome is
// dropped for the stored one.
package toolgateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/platform/state/outbox"
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

// Points lists the crash points in the order a call reaches them (an
// idempotent tool's call, which takes no claim, reaches the last two).
func Points() []string {
	return []string{PointAfterClaim, PointAfterSideEffect, PointAfterComplete}
}

// Defaults for a zero Config.
const (
	// DefaultLeaseMargin is added to a tool's timeout to make the claim's
	// lease: a live holder always finishes (or times out) inside its lease,
	// so a takeover means the holder died.
	DefaultLeaseMargin = 30 * time.Second
	// DefaultLeaseRenewal: see Config.LeaseRenewal.
	DefaultLeaseRenewal = 30 * time.Second
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
	RenewClaim(ctx context.Context, sessionID, key, holder string, lease time.Duration) (state.Claim, error)
	CompleteClaim(ctx context.Context, sessionID, key, holder string, result []byte, out ...state.OutboxEvent) (state.Claim, error)
	CompleteUnclaimed(ctx context.Context, sessionID, key, holder string, ttl time.Duration, result []byte, out ...state.OutboxEvent) (state.Claim, bool, error)
	GetClaim(ctx context.Context, sessionID, key string) (state.Claim, error)
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
	// LeaseRenewal: a call whose timeout is longer than three times this
	// (a saga tool's can be an hour) holds a lease of three times this
	// plus LeaseMargin, renewed every LeaseRenewal while the tool runs, so
	// that a holder that died is taken over within that time rather than
	// after the whole timeout. Default DefaultLeaseRenewal.
	LeaseRenewal time.Duration
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
	if cfg.LeaseRenewal <= 0 {
		cfg.LeaseRenewal = DefaultLeaseRenewal
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

// job is one tool call under the claim ledger: an agent's call (Handle) or
// a saga task (Invoker). Both take the same claim, run the tool the same way
// and store their outcome with the claim; only what they store differs.
type job struct {
	session string
	key     string
	entry   *tools.Entry
	input   json.RawMessage
	timeout time.Duration
	// step and callID identify an agent's call (tools.Call); zero for a
	// saga task.
	step   int
	callID string
	log    *slog.Logger
}

// outcome is what a job's tool did: Output when Reason is "", else a failure.
type outcome struct {
	Output   json.RawMessage
	Reason   events.ToolFailureReason
	Message  string
	Duration time.Duration
	// Events are extra events the tool asked to emit with its result (the
	// saga tool's Saga* events), written to the outbox with the claim.
	Events []event.Event
}

func failure(reason events.ToolFailureReason, msg string) outcome {
	if len(msg) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "… (truncated)"
	}
	return outcome{Reason: reason, Message: msg}
}

// encoder turns a job's outcome into what CompleteClaim stores: the claim's
// result and the outbox events written with it.
type encoder func(o outcome) (result []byte, out []state.OutboxEvent, err error)

// errLostClaim: the job's lease expired and another holder took it over;
// that holder's outcome is the one recorded.
var errLostClaim = errors.New("lost the claim to another holder")

// execute claims j's key and, when this attempt holds it, runs the tool and
// completes the claim with encode's result. It returns the stored claim
// and whether this call ran (and completed) it. A claim done earlier is
// returned with ran = false and nothing run; a claim held by a live lease
// elsewhere is a bus.RetryAfter error. A claim lost to a takeover while the
// tool ran is errLostClaim; an interrupted run (ctx ended) leaves the claim
// pending for its lease and returns ctx's cause.
func (g *Gateway) execute(ctx context.Context, j job, encode encoder) (state.Claim, bool, error) {
	spec := j.entry.Spec()
	holder := g.cfg.InstanceID + ":" + uuid.NewString()
	lease, renew := j.timeout+g.cfg.LeaseMargin, false
	if j.timeout > 3*g.cfg.LeaseRenewal {
		lease, renew = 3*g.cfg.LeaseRenewal+g.cfg.LeaseMargin, true
	}
	if spec.Idempotent && !renew {
		return g.executeUnclaimed(ctx, j, holder, max(g.cfg.ClaimTTL, lease), encode)
	}
	claim, acquired, err := g.cfg.Store.Claim(ctx, state.ClaimRequest{
		SessionID: j.session, Key: j.key, Holder: holder,
		Lease: lease, TTL: max(g.cfg.ClaimTTL, lease),
	})
	if err != nil {
		return state.Claim{}, false, fmt.Errorf("claim %s: %w", j.key, err)
	}
	if !acquired {
		if claim.State == state.ClaimDone {
			j.log.Debug("toolgateway: call already done; redelivery", "attempt", claim.Attempt)
			return claim, false, nil
		}
		wait := claim.LeaseUntil.Sub(g.cfg.Now())
		if wait < time.Second {
			wait = time.Second
		}
		return claim, false, bus.RetryAfter(wait, fmt.Sprintf("tool call %s in progress (holder %s, attempt %d)", j.key, claim.Holder, claim.Attempt))
	}
	g.hook(PointAfterClaim)

	var o outcome
	invalid := j.entry.Validate(j.input)
	switch {
	case invalid != nil:
		// Validation is deterministic: an invalid input never ran the
		// tool, in this attempt or an earlier one.
		o = failure(events.ToolInvalidInput, invalid.Error())
	case claim.Attempt > 1 && !spec.Idempotent:
		// An earlier holder claimed the call and never stored a result:
		// the side effect may or may not have happened. Running it again
		// could do it twice, so the model and the user are told instead.
		j.log.Warn("toolgateway: earlier attempt died mid-call; outcome unknown", "attempt", claim.Attempt)
		o = failure(events.ToolOutcomeUnknown, fmt.Sprintf(
			"an earlier attempt (%d) of this %s call was interrupted before its result was stored; "+
				"its side effect may or may not have happened, and the tool is not idempotent, so it was not run again",
			claim.Attempt-1, spec.Name))
	default:
		if claim.Attempt > 1 {
			j.log.Info("toolgateway: re-running idempotent tool after an interrupted attempt", "attempt", claim.Attempt)
		}
		stopRenewal := func() {}
		if renew {
			stopRenewal = g.renew(ctx, j, holder, lease)
			defer stopRenewal()
		}
		var ok bool
		o, ok = g.run(ctx, j)
		stopRenewal()
		if !ok {
			// The handler's context ended (shutdown) before the tool
			// answered: leave the claim pending; the redelivery after its
			// lease decides.
			return claim, false, fmt.Errorf("%s interrupted: %w", j.key, context.Cause(ctx))
		}
	}
	g.hook(PointAfterSideEffect)

	result, out, err := encode(o)
	if err != nil {
		return claim, false, err
	}
	sctx, cancel := storeContext(ctx)
	defer cancel()
	stored, err := g.cfg.Store.CompleteClaim(sctx, j.session, j.key, holder, result, out...)
	if err != nil {
		if errors.Is(err, state.ErrConflict) {
			j.log.Warn("toolgateway: lost the claim before completing; the new holder reports the call", "key", j.key, "err", err)
			return claim, false, fmt.Errorf("complete %s: %w: %w", j.key, errLostClaim, err)
		}
		return claim, false, fmt.Errorf("complete %s: %w", j.key, err)
	}
	g.hook(PointAfterComplete)
	return stored, true, nil
}

// storeContext is the context a result in hand is stored with: it is
// stored even when the handler is being stopped, otherwise a finished side
// effect would be reported outcome_unknown (or, for an idempotent tool, run
// again).
func storeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), completeGrace)
}

// executeUnclaimed runs an idempotent tool's call without a claim and
// stores its outcome unless one is stored already (see the package doc).
// Its results are those of execute: ran = false with the stored claim when
// another delivery's outcome was stored first.
func (g *Gateway) executeUnclaimed(ctx context.Context, j job, holder string, ttl time.Duration, encode encoder) (state.Claim, bool, error) {
	// A redelivery (or a call whose delivery count is unknown) looks for a
	// stored outcome first, so a call that finished is not run again; a
	// first delivery, by far the most common, skips the read.
	if bus.ReceiveCount(ctx) != 1 {
		c, err := g.cfg.Store.GetClaim(ctx, j.session, j.key)
		switch {
		case err == nil && c.State == state.ClaimDone:
			j.log.Debug("toolgateway: call already done; redelivery", "attempt", c.Attempt)
			return c, false, nil
		case err != nil && !errors.Is(err, state.ErrNotFound):
			return state.Claim{}, false, fmt.Errorf("read claim %s: %w", j.key, err)
		}
	}
	var o outcome
	if invalid := j.entry.Validate(j.input); invalid != nil {
		o = failure(events.ToolInvalidInput, invalid.Error())
	} else {
		var ok bool
		if o, ok = g.run(ctx, j); !ok {
			// Nothing is stored: the redelivery runs the call again.
			return state.Claim{}, false, fmt.Errorf("%s interrupted: %w", j.key, context.Cause(ctx))
		}
	}
	g.hook(PointAfterSideEffect)
	result, out, err := encode(o)
	if err != nil {
		return state.Claim{}, false, err
	}
	sctx, cancel := storeContext(ctx)
	defer cancel()
	claim, stored, err := g.cfg.Store.CompleteUnclaimed(sctx, j.session, j.key, holder, ttl, result, out...)
	if err != nil {
		return state.Claim{}, false, fmt.Errorf("complete %s: %w", j.key, err)
	}
	if !stored {
		j.log.Debug("toolgateway: another delivery's outcome was stored first", "holder", claim.Holder)
		return claim, false, nil
	}
	g.hook(PointAfterComplete)
	return claim, true, nil
}

// renew keeps j's lease alive while its tool runs (see
// Config.LeaseRenewal) until the returned stop is called. A renewal that
// fails is logged: a lost lease shows when the claim is completed.
func (g *Gateway) renew(ctx context.Context, j job, holder string, lease time.Duration) (stop func()) {
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(g.cfg.LeaseRenewal)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				if _, err := g.cfg.Store.RenewClaim(rctx, j.session, j.key, holder, lease); err != nil && rctx.Err() == nil {
					j.log.Warn("toolgateway: renewing the claim's lease failed", "key", j.key, "err", err)
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }
}

// emitKey is the context key under which run hands a tool the collector of
// the events it wants emitted with its result (see emitWithResult).
type emitKey struct{}

// collector gathers a tool's events; the tool may be abandoned on its
// timeout and still write, hence the lock.
type collector struct {
	mu  sync.Mutex
	evs []event.Event
}

// emitWithResult asks the gateway running the tool to write ev to the
// outbox together with the call's result (atomically with the claim). It
// reports false when the tool is not run by a gateway (the caller then
// publishes ev itself).
func emitWithResult(ctx context.Context, ev event.Event) bool {
	c, ok := ctx.Value(emitKey{}).(*collector)
	if !ok {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evs = append(c.evs, ev)
	return true
}

// run runs the tool and turns what it did into an outcome; ok is false
// when ctx (the handler's, not the tool's timeout) ended first.
func (g *Gateway) run(ctx context.Context, j job) (o outcome, ok bool) {
	spec := j.entry.Spec()
	col := &collector{}
	tctx, cancel := context.WithTimeout(context.WithValue(ctx, emitKey{}, col), j.timeout)
	defer cancel()
	input := j.input
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
		out, err := j.entry.Tool().Run(tctx, tools.Call{
			Input: input, IdempotencyKey: j.key, SessionID: j.session, Step: j.step, CallID: j.callID,
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
	col.mu.Lock()
	evs := slices.Clone(col.evs)
	col.mu.Unlock()
	switch {
	case ctx.Err() != nil && (r.err != nil || r.panic != nil):
		// Not the tool's timeout but the handler's end: no outcome to report.
		return outcome{}, false
	case r.panic != nil:
		if !spec.Idempotent {
			o = failure(events.ToolOutcomeUnknown, fmt.Sprintf("tool panicked mid-call (%v); its side effect may or may not have happened", r.panic))
		} else {
			o = failure(events.ToolError, fmt.Sprintf("tool panicked: %v", r.panic))
		}
	case r.err != nil && tctx.Err() != nil && errors.Is(tctx.Err(), context.DeadlineExceeded):
		msg := fmt.Sprintf("no answer within %s", j.timeout)
		if !spec.Idempotent {
			msg += "; its side effect may or may not have happened"
		}
		o = failure(events.ToolTimeout, msg)
	case errors.Is(r.err, tools.ErrInvalidInput):
		o = failure(events.ToolInvalidInput, r.err.Error())
	case r.err != nil:
		o = failure(events.ToolError, r.err.Error())
	default:
		out := r.out
		if len(out) == 0 {
			out = json.RawMessage(`null`)
		}
		if !json.Valid(out) {
			o = failure(events.ToolError, "tool returned output that is not JSON")
		} else {
			o = outcome{Output: out}
		}
	}
	o.Duration = elapsed
	o.Events = evs
	return o, true
}

// maxMessage bounds a failure message: it goes to the model, and a tool's
// error can carry a whole response body.
const maxMessage = 4096

// call is one decoded ToolInvocationRequested.
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
	timeout := entry.Spec().EffectiveTimeout()
	if req.TimeoutMs > 0 {
		timeout = min(timeout, time.Duration(req.TimeoutMs)*time.Millisecond)
	}
	j := job{
		session: c.session, key: c.key, entry: entry, input: req.Input, timeout: timeout,
		step: req.Step, callID: req.CallID,
		log: g.log.With("session", c.session, "step", req.Step, "call", req.CallID, "tool", req.Tool),
	}
	claim, ran, err := g.execute(ctx, j, func(o outcome) ([]byte, []state.OutboxEvent, error) { return g.encodeCall(c, o) })
	switch {
	case errors.Is(err, errLostClaim):
		return nil // nothing of ours is stored; the new holder reports the call
	case errors.Is(err, state.ErrInvalid):
		return fmt.Errorf("toolgateway: %w: %w", bus.ErrPermanent, err)
	case err != nil:
		var ra *bus.RetryAfterError
		if errors.As(err, &ra) {
			return err
		}
		return fmt.Errorf("toolgateway: %w", err)
	case !ran:
		return g.republish(ctx, claim)
	}
	return nil
}

// payload is the result event's data for an agent's call.
func (c call) payload(o outcome) events.Payload {
	if o.Reason != "" {
		return events.ToolInvocationFailed{Step: c.req.Step, CallID: c.req.CallID, Tool: c.req.Tool, Reason: o.Reason, Message: o.Message}
	}
	return events.ToolInvocationCompleted{
		Step: c.req.Step, CallID: c.req.CallID, Tool: c.req.Tool, Output: o.Output, DurationMs: o.Duration.Milliseconds(),
	}
}

// encodeCall stores an agent call's result event with the claim and in the
// outbox (with any events the tool emitted), atomically.
func (g *Gateway) encodeCall(c call, o outcome) ([]byte, []state.OutboxEvent, error) {
	res, err := g.build(c, c.payload(o))
	if err != nil {
		return nil, nil, err
	}
	if len(res.Payload) > state.MaxInlineValue {
		// The claim must hold the whole result to answer redeliveries; an
		// output this large is reported instead of stored.
		size := len(res.Payload)
		if res, err = g.build(c, c.payload(failure(events.ToolError, fmt.Sprintf(
			"tool output too large: result event of %d bytes exceeds the %d-byte limit", size, state.MaxInlineValue)))); err != nil {
			return nil, nil, err
		}
	}
	extra, err := outbox.FromEvents(o.Events...)
	if err != nil {
		return nil, nil, fmt.Errorf("toolgateway: %w", err)
	}
	return res.Payload, append([]state.OutboxEvent{res}, extra...), nil
}

// eventID is the one id of a call's result event, whatever its type: a call
// has one outcome, and every emission of it carries this id.
func (g *Gateway) eventID(c call) string {
	return events.DeterministicID(c.session, "toolgateway", strconv.Itoa(c.req.Step), c.req.CallID, "result")
}

// build makes the result event as an outbox event; its JSON is also what
// the claim stores.
func (g *Gateway) build(c call, data events.Payload) (state.OutboxEvent, error) {
	opts := []events.Option{events.WithID(g.eventID(c)), events.WithTime(g.cfg.Now())}
	if events.ValidTraceParent(events.TraceParent(c.cause)) {
		opts = append(opts, events.CausedBy(c.cause))
	}
	ev, err := events.NewPayload(g.cfg.Source, c.session, data, opts...)
	if err != nil {
		return state.OutboxEvent{}, fmt.Errorf("toolgateway: build result: %w", err)
	}
	out, err := outbox.FromEvents(ev)
	if err != nil {
		return state.OutboxEvent{}, fmt.Errorf("toolgateway: encode result: %w", err)
	}
	return out[0], nil
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
