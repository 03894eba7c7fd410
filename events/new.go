package events

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/google/uuid"
)

var (
	// ErrNoData reports an event without data where data was needed.
	ErrNoData = errors.New("events: event has no data")
	// ErrDataOffloaded reports an event whose data a claim check moved to a
	// blob store (dataref set) and that was not resolved before decoding.
	ErrDataOffloaded = errors.New("events: data offloaded (dataref), not resolved")
	// ErrWrongType reports decoding an event into the payload of another type.
	ErrWrongType = errors.New("events: payload type does not match event type")
)

type options struct {
	id          string
	time        time.Time
	traceParent string
	traceState  string
	toolName    string
	step        *int
	subject     string
	err         error
}

// Option adjusts an event built by New.
type Option func(*options)

// WithID sets the event id instead of a fresh UUIDv7; outbox relays pass a
// DeterministicID so a re-relayed event deduplicates on source+id.
func WithID(id string) Option { return func(o *options) { o.id = id } }

// WithTime sets the event time instead of now.
func WithTime(t time.Time) Option { return func(o *options) { o.time = t } }

// WithTraceParent propagates a W3C traceparent verbatim (e.g. the caller's
// current span). An invalid value makes New fail.
func WithTraceParent(tp string) Option {
	return func(o *options) {
		if !ValidTraceParent(tp) {
			o.err = fmt.Errorf("events: invalid traceparent %q", tp)
			return
		}
		o.traceParent = tp
	}
}

// WithTraceState sets the optional W3C tracestate.
func WithTraceState(ts string) Option { return func(o *options) { o.traceState = ts } }

// CausedBy continues the trace of the event that caused this one: same trace
// id and flags, a fresh parent id (this hop), and the parent's tracestate.
func CausedBy(parent event.Event) Option {
	return func(o *options) {
		tp := TraceParent(parent)
		if !ValidTraceParent(tp) {
			o.err = fmt.Errorf("events: causing event %s/%s has no valid traceparent", parent.Source(), parent.ID())
			return
		}
		span, err := randomHex(8)
		if err != nil {
			o.err = err
			return
		}
		o.traceParent = tp[:36] + span + tp[52:]
		if ts := extString(parent, ExtTraceState); ts != "" {
			o.traceState = ts
		}
	}
}

// WithToolName sets the toolname extension (New copies it from tool payloads).
func WithToolName(name string) Option { return func(o *options) { o.toolName = name } }

// WithStep sets the step extension (New copies it from step and tool payloads).
func WithStep(step int) Option { return func(o *options) { o.step = &step } }

// WithSubject sets the CloudEvents subject.
func WithSubject(s string) Option { return func(o *options) { o.subject = s } }

// New builds a CloudEvent in structured JSON mode: id (UUIDv7 unless WithID),
// time, datacontenttype application/json, sessionid, traceparent (fresh
// unless given) and, for step and tool payloads, the step and toolname
// extensions copied from data. A Payload whose type differs from typ is an
// error. data may be a Go value or raw JSON ([]byte, json.RawMessage).
// New does not run the JSON Schema; publishers call Validator.Validate.
func New(typ, source, sessionID string, data any, opts ...Option) (event.Event, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.err != nil {
		return event.Event{}, o.err
	}
	switch {
	case typ == "":
		return event.Event{}, errors.New("events: new: empty type")
	case source == "":
		return event.Event{}, fmt.Errorf("events: new %s: empty source", typ)
	case sessionID == "":
		return event.Event{}, fmt.Errorf("events: new %s: empty session id", typ)
	case data == nil:
		return event.Event{}, fmt.Errorf("events: new %s: %w", typ, ErrNoData)
	}
	if p, ok := data.(Payload); ok && p.EventType() != typ {
		return event.Event{}, fmt.Errorf("%w: new %s with %T (a %s payload)", ErrWrongType, typ, data, p.EventType())
	}

	ev := event.New()
	if o.id == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return event.Event{}, fmt.Errorf("events: new %s: id: %w", typ, err)
		}
		o.id = id.String()
	}
	if o.time.IsZero() {
		o.time = time.Now()
	}
	if o.traceParent == "" {
		tp, err := NewTraceParent()
		if err != nil {
			return event.Event{}, fmt.Errorf("events: new %s: %w", typ, err)
		}
		o.traceParent = tp
	}
	ev.SetID(o.id)
	ev.SetType(typ)
	ev.SetSource(source)
	ev.SetTime(o.time.UTC())
	if o.subject != "" {
		ev.SetSubject(o.subject)
	}
	ev.SetExtension(ExtSessionID, sessionID)
	ev.SetExtension(ExtTraceParent, o.traceParent)
	if o.traceState != "" {
		ev.SetExtension(ExtTraceState, o.traceState)
	}
	if s, ok := data.(stepKeyed); ok && o.step == nil {
		step := s.routingStep()
		o.step = &step
	}
	if o.step != nil {
		ev.SetExtension(ExtStep, *o.step)
	}
	if t, ok := data.(toolKeyed); ok && o.toolName == "" {
		o.toolName = t.routingTool()
	}
	if o.toolName != "" {
		ev.SetExtension(ExtToolName, o.toolName)
	}
	if raw, ok := data.([]byte); ok {
		data = json.RawMessage(raw)
	}
	if raw, ok := data.(json.RawMessage); ok && !json.Valid(raw) {
		return event.Event{}, fmt.Errorf("events: new %s: data is not valid JSON", typ)
	}
	if err := ev.SetData(ContentTypeJSON, data); err != nil {
		return event.Event{}, fmt.Errorf("events: new %s: data: %w", typ, err)
	}
	if err := ev.Validate(); err != nil {
		return event.Event{}, fmt.Errorf("events: new %s: %w", typ, err)
	}
	return ev, nil
}

// NewPayload is New with the type taken from the payload.
func NewPayload(source, sessionID string, p Payload, opts ...Option) (event.Event, error) {
	if p == nil {
		return event.Event{}, fmt.Errorf("events: new: %w", ErrNoData)
	}
	return New(p.EventType(), source, sessionID, p, opts...)
}

// Decode unmarshals the event's data into T. When T is a Payload, the event
// type must be T's type. Unknown fields in data are ignored (additive
// changes keep the type version).
func Decode[T any](ev event.Event) (T, error) {
	var v T
	if p, ok := any(v).(Payload); ok && p.EventType() != ev.Type() {
		return v, fmt.Errorf("%w: %s event %s/%s decoded as %T", ErrWrongType, ev.Type(), ev.Source(), ev.ID(), v)
	}
	if len(ev.Data()) == 0 {
		if ref := DataRef(ev); ref != "" {
			return v, fmt.Errorf("%w: %s event %s/%s (dataref %s)", ErrDataOffloaded, ev.Type(), ev.Source(), ev.ID(), ref)
		}
		return v, fmt.Errorf("%w: %s event %s/%s", ErrNoData, ev.Type(), ev.Source(), ev.ID())
	}
	if err := json.Unmarshal(ev.Data(), &v); err != nil {
		return v, fmt.Errorf("%w: %s event %s/%s: data: %v", ErrInvalidEvent, ev.Type(), ev.Source(), ev.ID(), err)
	}
	return v, nil
}

func extString(ev event.Event, name string) string {
	var (
		v  any
		ok bool
	)
	// Extensions() copies the whole map on every call; a v1 context (every
	// event here) is read in place.
	if ec, isV1 := ev.Context.(*event.EventContextV1); isV1 && ec != nil {
		v, ok = ec.Extensions[name]
	} else {
		v, ok = ev.Extensions()[name]
	}
	if !ok {
		return ""
	}
	s, err := types.ToString(v)
	if err != nil {
		return ""
	}
	return s
}

// SessionID returns the sessionid extension ("" when absent).
func SessionID(ev event.Event) string { return extString(ev, ExtSessionID) }

// TraceParent returns the traceparent extension ("" when absent).
func TraceParent(ev event.Event) string { return extString(ev, ExtTraceParent) }

// ToolName returns the toolname extension ("" when absent).
func ToolName(ev event.Event) string { return extString(ev, ExtToolName) }

// DataRef returns the dataref extension a claim check set ("" when absent).
func DataRef(ev event.Event) string { return extString(ev, ExtDataRef) }

// Step returns the step extension and whether it is present and an integer.
func Step(ev event.Event) (int, bool) {
	v, ok := ev.Extensions()[ExtStep]
	if !ok {
		return 0, false
	}
	n, err := types.ToInteger(v)
	if err != nil {
		return 0, false
	}
	return int(n), true
}

// NewTraceParent returns a fresh, sampled W3C traceparent (version 00) for an
// event that starts a trace.
func NewTraceParent() (string, error) {
	trace, err := randomHex(16)
	if err != nil {
		return "", err
	}
	span, err := randomHex(8)
	if err != nil {
		return "", err
	}
	return "00-" + trace + "-" + span + "-01", nil
}

// ValidTraceParent reports whether s is a W3C traceparent of version 00:
// lowercase hex fields of fixed width, trace id and parent id not all zero.
// Written by hand because the format is fixed-width and otel's propagator
// needs a carrier and a context for what is one string check.
func ValidTraceParent(s string) bool {
	if len(s) != 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' || s[:2] != "00" {
		return false
	}
	for _, f := range []string{s[3:35], s[36:52], s[53:55]} {
		for i := 0; i < len(f); i++ {
			if !(f[i] >= '0' && f[i] <= '9' || f[i] >= 'a' && f[i] <= 'f') {
				return false
			}
		}
	}
	return s[3:35] != "00000000000000000000000000000000" && s[36:52] != "0000000000000000"
}

// randomHex returns n random bytes in hex, never all zero (an all-zero trace
// or span id is invalid in W3C trace context).
func randomHex(n int) (string, error) {
	b := make([]byte, n)
	for {
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("events: random id: %w", err)
		}
		for _, c := range b {
			if c != 0 {
				return hex.EncodeToString(b), nil
			}
		}
	}
}

// DeterministicID derives a stable event id (a UUIDv5) from its parts, e.g.
// session, step and event kind, so an outbox relay that publishes the same
// row twice produces the same source+id and consumers deduplicate it. Parts
// are length-prefixed, so ("a","bc") and ("ab","c") differ.
func DeterministicID(parts ...string) string {
	ns := uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/agentbus/agentbus/events"))
	var buf []byte
	for _, p := range parts {
		buf = binary.AppendUvarint(buf, uint64(len(p)))
		buf = append(buf, p...)
	}
	return uuid.NewSHA1(ns, buf).String()
}
