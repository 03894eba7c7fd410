// Package claimcheck keeps events that are too large for the bus off it: the
// Publisher moves an oversized event's data to a blob.Store and publishes the
// event without data, carrying the CloudEvents "dataref" extension; the
// Resolver, a consumer bus.Middleware, puts the data back before the handler
// runs. Rules never see the difference: they route on attributes and
// extensions, never on data.
//
// Wire-up order: on the publishing side, validate the full event BEFORE the
// claim check (bus.WrapPublisher(p, validate, claimcheck)); on the consuming
// side, resolve BEFORE validation and decoding (bus.Chain(h, resolver, ...)).
//
// dataref format: "blob://" followed by the blob key verbatim:
//
//	blob://claimcheck/<sessionid>/<source>/<id>
//
// where each of <sessionid>, <source> and <id> is percent-encoded as one path
// segment (url.PathEscape; "/" becomes %2F, "." and ".." become %2E and
// %2E%2E), and a segment longer than 200 bytes is shortened to its first 150
// bytes, "~" and 16 hex digits of its SHA-256. The key is a function of the
// event's sessionid, source and id, so republishing an event (outbox relay,
// retry) rewrites the same blob, and one session's blobs can be removed with
// blob.Store.DeletePrefix("claimcheck/<sessionid>/"). When the data was
// binary (data_base64), the extension "datarefbase64" is true so that the
// resolved event is re-encoded the same way.
package claimcheck

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/blob"
	"github.com/agentbus/agentbus/platform/bus"
)

const (
	// DefaultLimit is EventBridge's default PutEvents entry limit (256 KiB).
	// AWS raised the limit to 1 MB in 2026; WithLimit sets it per bus.
	DefaultLimit = 256 << 10
	// MinLimit is the smallest limit accepted: below it, events without any
	// data would not fit either.
	MinLimit = 4 << 10
	// SafetyMargin is added to every measured size, for what the measurement
	// cannot see (a bus adding attributes, a longer region name, SQS message
	// attributes on redrive).
	SafetyMargin = 1 << 10
	// DefaultKeyPrefix is the folder under which claim-check blobs are stored.
	DefaultKeyPrefix = "claimcheck/"
	// Scheme starts every dataref this package writes.
	Scheme = "blob://"
	// ExtBase64 is the extension that marks offloaded binary data.
	ExtBase64 = "datarefbase64"
)

// maxSegment bounds one key segment (blob.MaxSegmentLen).
const maxSegment = blob.MaxSegmentLen

// Option configures a Publisher or Resolver.
type Option func(*options) error

type options struct {
	limit  int
	prefix string
}

func defaults() options { return options{limit: DefaultLimit, prefix: DefaultKeyPrefix} }

// WithLimit sets the largest event (as measured by Size) published whole.
func WithLimit(n int) Option {
	return func(o *options) error {
		if n < MinLimit {
			return fmt.Errorf("claimcheck: limit %d below the minimum %d", n, MinLimit)
		}
		o.limit = n
		return nil
	}
}

// WithKeyPrefix sets the folder of claim-check blobs (default "claimcheck/").
// It must end with "/" and be a valid blob prefix; the Resolver refuses
// datarefs outside it, so a forged event cannot read other blobs.
func WithKeyPrefix(p string) Option {
	return func(o *options) error {
		if !strings.HasSuffix(p, "/") {
			return fmt.Errorf("claimcheck: key prefix %q must end with /", p)
		}
		if err := blob.ValidatePrefix(p); err != nil {
			return fmt.Errorf("claimcheck: key prefix: %w", err)
		}
		o.prefix = p
		return nil
	}
}

func build(opts []Option) (options, error) {
	o := defaults()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}

// Size is the conservative size of ev on the bus: the EventBridge delivery
// envelope an SQS target receives (which contains every field EventBridge
// counts towards the PutEvents entry limit, and more), with worst-case
// placeholder values, plus SafetyMargin.
//
// The envelope is not rendered: its size is the envelope's fixed part plus
// the CloudEvent JSON, which is exact because that JSON is already compact
// and escaped the way the envelope's encoder escapes it (the tests hold this
// for data full of <, >, & and U+2028), and it avoids rendering a large
// event twice.
func Size(ev event.Event) (int, error) {
	env, err := events.ToEnvelope(ev)
	if err != nil {
		return 0, err
	}
	detail := len(env.Detail)
	env.Detail = json.RawMessage("{}")
	fixed := len(events.EnvelopeJSON(env, placeholderID, placeholderTime, placeholderAccount, placeholderRegion)) - len("{}")
	return fixed + detail + SafetyMargin, nil
}

// sizeBound returns an upper bound of Size(ev) computed from the lengths of
// ev's fields alone, without rendering anything, and false when ev has
// something it cannot bound (another spec version, an extension value that
// is not a string, integer or boolean). Publish uses it to skip the exact
// measurement (~3% of the embedded loop's CPU, which encoded every event
// just to count its bytes) when even the bound is under the limit.
//
// Why it bounds: every string in the envelope and in the CloudEvent JSON is
// written escaped, and JSON escaping (including the HTML and line-separator
// escapes of encoding/json) turns one input byte into at most 6 output bytes
// (\u00XX; a 3-byte U+2028 becomes 6); data is written raw and compacted
// (never longer than escaped), as a JSON string (at most 6 per byte) or in
// base64 (4 per 3 bytes). Field names, quotes, separators and the
// placeholders are a fixed part far below fixedBound.
func sizeBound(ev event.Event) (int, bool) {
	if ev.SpecVersion() != event.CloudEventsVersionV1 {
		return 0, false
	}
	n := 0
	for _, s := range [...]string{ev.ID(), ev.Source(), ev.Type(), ev.Subject(), ev.DataContentType(), ev.DataSchema(),
		// source and type again: the envelope's source and detail-type.
		ev.Source(), ev.Type()} {
		n += len(s)
	}
	for name, v := range ev.Extensions() {
		n += len(name)
		switch v := v.(type) {
		case string:
			n += len(v)
		case int32:
			n += 11
		case bool:
			n += 5
		default:
			return 0, false
		}
	}
	n += len(ev.Data())
	return fixedBound + 6*n + len(ev.Extensions())*extBound + SafetyMargin, true
}

const (
	// fixedBound covers the envelope's and the event's field names, quotes,
	// separators, the placeholders and a time (well under 600 bytes).
	fixedBound = 1 << 10
	// extBound covers one extension's quotes, colon and comma.
	extBound = 8
)

var (
	placeholderID      = "00000000-0000-0000-0000-000000000000"
	placeholderTime    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	placeholderAccount = "000000000000"
	placeholderRegion  = "xx-xxxxxxxxxxxxxxxx-9" // longer than any AWS region name
)

// Key returns the blob key of ev's data under prefix (see the package doc).
func Key(prefix string, ev event.Event) string {
	return SessionKeyPrefix(prefix, events.SessionID(ev)) + segment(ev.Source()) + "/" + segment(ev.ID())
}

// SessionKeyPrefix returns the blob prefix holding every claim-check blob of
// one session under keyPrefix, for blob.Store.DeletePrefix when a session is
// removed.
func SessionKeyPrefix(keyPrefix, sessionID string) string {
	if sessionID == "" {
		sessionID = "_"
	}
	return keyPrefix + segment(sessionID) + "/"
}

func segment(s string) string {
	switch s {
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	e := url.PathEscape(s)
	if len(e) > maxSegment {
		sum := sha256.Sum256([]byte(s))
		e = e[:150] + "~" + hex.EncodeToString(sum[:8])
	}
	return e
}

// Publisher publishes through next, offloading the data of events over the
// limit. Safe for concurrent use if next and the store are.
type Publisher struct {
	next  bus.Publisher
	store blob.Store
	opts  options
}

var _ bus.Publisher = (*Publisher)(nil)

// NewPublisher wraps next with a claim check on store.
func NewPublisher(next bus.Publisher, store blob.Store, opts ...Option) (*Publisher, error) {
	if next == nil || store == nil {
		return nil, errors.New("claimcheck: nil publisher or store")
	}
	o, err := build(opts)
	if err != nil {
		return nil, err
	}
	return &Publisher{next: next, store: store, opts: o}, nil
}

// Limit returns the configured size limit.
func (p *Publisher) Limit() int { return p.opts.limit }

// Publish publishes events, each whole when Size(ev) <= limit, otherwise as
// a claim check: the data is stored first, then the event goes out without
// it, so a consumer never sees a dataref to an unwritten blob. An event whose
// data cannot be stored, or that is still over the limit without its data,
// is reported in a *bus.PublishError (ErrTooLarge for the latter) and the
// others are published.
func (p *Publisher) Publish(ctx context.Context, evs ...event.Event) error {
	out := make([]event.Event, 0, len(evs))
	index := make([]int, 0, len(evs)) // out[i] is evs[index[i]]
	var failures []bus.PublishFailure
	for i, ev := range evs {
		sent, err := p.prepare(ctx, ev)
		if err != nil {
			failures = append(failures, bus.PublishFailure{Index: i, ID: ev.ID(), Source: ev.Source(), Err: err})
			continue
		}
		out = append(out, sent)
		index = append(index, i)
	}
	if len(out) > 0 {
		if err := p.next.Publish(ctx, out...); err != nil {
			var pe *bus.PublishError
			if !errors.As(err, &pe) {
				if len(failures) == 0 {
					return err
				}
				// next failed as a whole: every event it got failed.
				for j, ev := range out {
					failures = append(failures, bus.PublishFailure{Index: index[j], ID: ev.ID(), Source: ev.Source(), Err: err})
				}
			} else {
				for _, f := range pe.Failures {
					if f.Index >= 0 && f.Index < len(index) {
						f.Index = index[f.Index]
					}
					failures = append(failures, f)
				}
			}
		}
	}
	if len(failures) == 0 {
		return nil
	}
	return &bus.PublishError{Failures: failures}
}

// prepare returns ev as it goes on the bus: untouched, or without data and
// with a dataref once the data is stored.
func (p *Publisher) prepare(ctx context.Context, ev event.Event) (event.Event, error) {
	data := ev.Data()
	// Data alone at the limit: offload without rendering megabytes twice
	// (offloading an event that compaction would have squeezed under the
	// limit costs only a blob write).
	if len(data) < p.opts.limit {
		if bound, ok := sizeBound(ev); ok && bound <= p.opts.limit {
			return ev, nil // Size(ev) <= bound: passes whole, as below
		}
		size, err := Size(ev)
		if err != nil {
			// Not measurable means not a valid event: next owns the verdict.
			return ev, nil
		}
		if size <= p.opts.limit {
			return ev, nil
		}
	}
	key := Key(p.opts.prefix, ev)
	light := ev.Clone()
	light.DataEncoded = nil
	light.DataBase64 = false
	light.SetExtension(events.ExtDataRef, Scheme+key)
	if ev.DataBase64 {
		light.SetExtension(ExtBase64, true)
	}
	lightSize, err := Size(light)
	if err != nil {
		return ev, fmt.Errorf("claimcheck: measure offloaded event: %w", err)
	}
	if lightSize > p.opts.limit {
		return ev, fmt.Errorf("claimcheck: %w: %d bytes without its data (limit %d)", bus.ErrTooLarge, lightSize, p.opts.limit)
	}
	if err := p.store.Put(ctx, key, data); err != nil {
		return ev, fmt.Errorf("claimcheck: store %d bytes of data: %w", len(data), err)
	}
	return light, nil
}

// Resolver puts offloaded data back into events. Use it as a consumer
// middleware (Middleware) or call Resolve directly (DLQ inspection, history
// reads).
type Resolver struct {
	store blob.Store
	opts  options
}

// NewResolver returns a resolver reading from store. Only WithKeyPrefix
// matters to it; it must match the publisher's.
func NewResolver(store blob.Store, opts ...Option) (*Resolver, error) {
	if store == nil {
		return nil, errors.New("claimcheck: nil store")
	}
	o, err := build(opts)
	if err != nil {
		return nil, err
	}
	return &Resolver{store: store, opts: o}, nil
}

// ErrMissingBlob is wrapped (with bus.ErrPermanent) when a dataref names a
// blob that does not exist: deleted, expired by a lifecycle rule, or written
// to another store. Retrying cannot bring it back.
var ErrMissingBlob = errors.New("claim-check blob missing")

// ErrBadDataRef is wrapped (with bus.ErrPermanent) for a dataref this
// resolver cannot follow: another scheme, a key outside its prefix, an
// invalid key.
var ErrBadDataRef = errors.New("unresolvable dataref")

// Resolve returns ev with its data fetched when it carries a dataref and no
// data; otherwise ev unchanged. The dataref and datarefbase64 extensions are
// removed from the resolved event. A missing blob or an unusable dataref
// yields an error wrapping bus.ErrPermanent; a failed fetch is retryable.
func (r *Resolver) Resolve(ctx context.Context, ev event.Event) (event.Event, error) {
	ref := events.DataRef(ev)
	if ref == "" || len(ev.Data()) > 0 {
		return ev, nil
	}
	key, ok := strings.CutPrefix(ref, Scheme)
	if !ok {
		return ev, fmt.Errorf("claimcheck: %w: %w: %q is not a %s reference", bus.ErrPermanent, ErrBadDataRef, ref, Scheme)
	}
	if !strings.HasPrefix(key, r.opts.prefix) {
		return ev, fmt.Errorf("claimcheck: %w: %w: %q is outside %q", bus.ErrPermanent, ErrBadDataRef, ref, r.opts.prefix)
	}
	if err := blob.ValidateKey(key); err != nil {
		return ev, fmt.Errorf("claimcheck: %w: %w: %w", bus.ErrPermanent, ErrBadDataRef, err)
	}
	data, err := r.store.Get(ctx, key)
	if err != nil {
		if errors.Is(err, blob.ErrNotFound) {
			return ev, fmt.Errorf("claimcheck: %w: %w: event %s/%s references %s, which is not in the store: %w",
				bus.ErrPermanent, ErrMissingBlob, ev.Source(), ev.ID(), ref, err)
		}
		return ev, fmt.Errorf("claimcheck: fetch %s for event %s/%s: %w", ref, ev.Source(), ev.ID(), err)
	}
	out := ev.Clone()
	out.DataEncoded = data
	out.DataBase64 = isTrue(ev.Extensions()[ExtBase64])
	out.SetExtension(events.ExtDataRef, nil)
	out.SetExtension(ExtBase64, nil)
	if !out.DataBase64 && isJSON(ev.DataContentType()) && !json.Valid(data) {
		return ev, fmt.Errorf("claimcheck: %w: %w: blob %s is not valid JSON for %s", bus.ErrPermanent, ErrBadDataRef, ref, ev.DataContentType())
	}
	return out, nil
}

// Middleware resolves each event before next sees it.
func (r *Resolver) Middleware(next bus.Handler) bus.Handler {
	return func(ctx context.Context, ev event.Event) error {
		resolved, err := r.Resolve(ctx, ev)
		if err != nil {
			return err
		}
		return next(ctx, resolved)
	}
}

// isTrue reads a boolean extension, which arrives as a bool from Go code and
// as a bool or "true" after a JSON round trip.
func isTrue(v any) bool {
	switch b := v.(type) {
	case bool:
		return b
	case string:
		return b == "true"
	}
	return false
}

func isJSON(contentType string) bool {
	ct, _, _ := strings.Cut(contentType, ";")
	ct = strings.TrimSpace(strings.ToLower(ct))
	return ct == "" || ct == "application/json" || ct == "text/json" || strings.HasSuffix(ct, "+json")
}
