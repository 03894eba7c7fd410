package claimcheck_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/blob"
	"github.com/agentbus/agentbus/platform/blob/localfs"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/bus/claimcheck"
)

// wire is an in-memory bus: Publish renders each event as the EventBridge
// delivery envelope (the bytes an SQS target would hold) and enforces a size
// limit the way EventBridge does, so anything the claim check lets through
// too large is caught.
type wire struct {
	mu     sync.Mutex
	limit  int
	bodies [][]byte
}

func (w *wire) Publish(_ context.Context, evs ...event.Event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var failures []bus.PublishFailure
	for i, ev := range evs {
		env, err := events.ToEnvelope(ev)
		if err != nil {
			failures = append(failures, bus.PublishFailure{Index: i, ID: ev.ID(), Source: ev.Source(), Err: err})
			continue
		}
		body := events.EnvelopeJSON(env, "6a7e8feb-b491-4cf7-a9f1-bf3703467718", time.Now(), "123456789012", "us-east-1")
		if w.limit > 0 && len(body) > w.limit {
			failures = append(failures, bus.PublishFailure{Index: i, ID: ev.ID(), Source: ev.Source(), Err: bus.ErrTooLarge})
			continue
		}
		w.bodies = append(w.bodies, body)
	}
	if failures != nil {
		return &bus.PublishError{Failures: failures}
	}
	return nil
}

// deliver decodes every body as a consumer would and runs h on it.
func (w *wire) deliver(t *testing.T, h bus.Handler) []error {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	for _, b := range w.bodies {
		ev, err := events.FromDelivery(b)
		if err != nil {
			t.Fatalf("FromDelivery: %v", err)
		}
		errs = append(errs, h(t.Context(), ev))
	}
	return errs
}

func newStore(t *testing.T) *localfs.Store {
	t.Helper()
	s, err := localfs.New(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newEvent(t testing.TB, session string, promptLen int, opts ...events.Option) event.Event {
	t.Helper()
	ev, err := events.NewPayload("agentbus/client", session, events.AgentRequested{
		Prompt: strings.Repeat("p", promptLen),
	}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func mustJSON(t *testing.T, ev event.Event) []byte {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// collect returns a handler recording what it receives.
func collect() (bus.Handler, *[]event.Event) {
	var mu sync.Mutex
	var got []event.Event
	return func(_ context.Context, ev event.Event) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, ev)
		return nil
	}, &got
}

func TestLargeEventEndToEnd(t *testing.T) {
	t.Parallel()
	for _, limit := range []int{claimcheck.DefaultLimit, 1 << 20} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			t.Parallel()
			store := newStore(t)
			w := &wire{limit: limit}
			p, err := claimcheck.NewPublisher(w, store, claimcheck.WithLimit(limit))
			if err != nil {
				t.Fatal(err)
			}
			big := newEvent(t, "sess-1", 5<<20) // 5 MB prompt
			small := newEvent(t, "sess-1", 100)
			if err := p.Publish(t.Context(), small, big); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			// On the wire: the big event has no data and a dataref; both fit.
			if len(w.bodies) != 2 {
				t.Fatalf("%d bodies on the wire, want 2", len(w.bodies))
			}
			onWire, err := events.FromDelivery(w.bodies[1])
			if err != nil {
				t.Fatal(err)
			}
			wantRef := "blob://claimcheck/sess-1/agentbus%2Fclient/" + big.ID()
			if got := events.DataRef(onWire); got != wantRef {
				t.Errorf("dataref = %q, want %q", got, wantRef)
			}
			if len(onWire.Data()) != 0 {
				t.Errorf("offloaded event still carries %d bytes of data", len(onWire.Data()))
			}
			// Routing attributes survive.
			if events.SessionID(onWire) != "sess-1" || onWire.Type() != big.Type() || onWire.DataContentType() != big.DataContentType() {
				t.Errorf("attributes changed: %v", onWire)
			}
			// The blob holds the data byte for byte.
			stored, err := store.Get(t.Context(), strings.TrimPrefix(wantRef, "blob://"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(stored, big.Data()) {
				t.Errorf("stored %d bytes, want the event's %d bytes of data", len(stored), len(big.Data()))
			}
			// The consumer sees both events exactly as published.
			r, err := claimcheck.NewResolver(store)
			if err != nil {
				t.Fatal(err)
			}
			h, got := collect()
			for _, err := range w.deliver(t, bus.Chain(h, r.Middleware)) {
				if err != nil {
					t.Fatalf("handler: %v", err)
				}
			}
			for i, want := range []event.Event{small, big} {
				if !bytes.Equal(mustJSON(t, (*got)[i]), mustJSON(t, want)) {
					t.Errorf("event %d differs after the round trip", i)
				}
			}
			req, err := events.Decode[events.AgentRequested]((*got)[1])
			if err != nil || len(req.Prompt) != 5<<20 {
				t.Fatalf("Decode: %d bytes, %v", len(req.Prompt), err)
			}
		})
	}
}

func TestUnderLimitUntouched(t *testing.T) {
	t.Parallel()
	store := &fakeStore{}
	var got []event.Event
	next := bus.PublisherFunc(func(_ context.Context, evs ...event.Event) error {
		got = append(got, evs...)
		return nil
	})
	// 500 KB passes whole under a 1 MB limit.
	p, err := claimcheck.NewPublisher(next, store, claimcheck.WithLimit(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	ev := newEvent(t, "s", 500<<10)
	if err := p.Publish(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !bytes.Equal(mustJSON(t, got[0]), mustJSON(t, ev)) || events.DataRef(got[0]) != "" {
		t.Fatalf("event changed on its way through the claim check")
	}
	if store.puts != 0 {
		t.Errorf("%d blob puts for an event under the limit", store.puts)
	}
}

func TestLimitBoundary(t *testing.T) {
	t.Parallel()
	ev := newEvent(t, "s", 10_000)
	size, err := claimcheck.Size(ev)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		limit    int
		offloads bool
	}{
		{size, false},
		{size + 1, false},
		{size - 1, true},
	}
	for _, tt := range tests {
		store := &fakeStore{}
		var got event.Event
		next := bus.PublisherFunc(func(_ context.Context, evs ...event.Event) error { got = evs[0]; return nil })
		p, err := claimcheck.NewPublisher(next, store, claimcheck.WithLimit(tt.limit))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Publish(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
		if off := events.DataRef(got) != ""; off != tt.offloads || (store.puts == 1) != tt.offloads {
			t.Errorf("limit %d (size %d): offloaded=%v puts=%d, want offloaded=%v", tt.limit, size, off, store.puts, tt.offloads)
		}
	}
}

// TestSizeIsConservative: the measured size is never below what a bus
// actually carries, even for data that JSON escaping inflates.
func TestSizeIsConservative(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ev   event.Event
	}{
		{"plain", newEvent(t, "s", 1000)},
		{"html escapes", func() event.Event {
			ev, err := events.NewPayload("agentbus/client", "s", events.AgentRequested{Prompt: strings.Repeat("<&>", 1000)})
			if err != nil {
				t.Fatal(err)
			}
			return ev
		}()},
		{"raw data with html and separators", func() event.Event {
			raw := `{"prompt":"` + strings.Repeat("<&>\u2028\u2029", 1000) + `"}`
			ev, err := events.New(events.TypeAgentRequested, "agentbus/client", "s", []byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			return ev
		}()},
		{"line separators", func() event.Event {
			ev, err := events.NewPayload("agentbus/client", "s", events.AgentRequested{Prompt: strings.Repeat("\u2028x\u2029", 1000)})
			if err != nil {
				t.Fatal(err)
			}
			return ev
		}()},
		{"pretty data", func() event.Event {
			ev, err := events.New(events.TypeAgentRequested, "agentbus/client", "s", []byte("{\n  \"prompt\" :   \"x\"\n}"))
			if err != nil {
				t.Fatal(err)
			}
			return ev
		}()},
		{"binary", func() event.Event {
			ev := newEvent(t, "s", 1)
			if err := ev.SetData("application/octet-stream", bytes.Repeat([]byte{0xff, 0, '<'}, 1000)); err != nil {
				t.Fatal(err)
			}
			return ev
		}()},
	}
	for _, tt := range tests {
		size, err := claimcheck.Size(tt.ev)
		if err != nil {
			t.Fatal(err)
		}
		env, err := events.ToEnvelope(tt.ev)
		if err != nil {
			t.Fatal(err)
		}
		body := events.EnvelopeJSON(env, "6a7e8feb-b491-4cf7-a9f1-bf3703467718", time.Now(), "123456789012", "ap-southeast-2")
		// EventBridge's own PutEvents entry size: time + source + detail-type + detail.
		entry := 14 + len(env.Source) + len(env.DetailType) + len(env.Detail)
		if size < len(body) || size < entry || size < len(mustJSON(t, tt.ev)) {
			t.Errorf("%s: Size = %d, below delivery %d / entry %d", tt.name, size, len(body), entry)
		}
		// Tight: the rendered envelope with the placeholders' worst-case
		// lengths plus the margin.
		if size-claimcheck.SafetyMargin > len(body)+64 {
			t.Errorf("%s: Size = %d, far above the rendered %d + margin", tt.name, size, len(body))
		}
	}
}

func TestBinaryDataRoundTrip(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	w := &wire{}
	p, _ := claimcheck.NewPublisher(w, store)
	ev := newEvent(t, "s", 1)
	payload := bytes.Repeat([]byte{0, 1, 2, 0xfe, 0xff}, 100<<10)
	if err := ev.SetData("application/octet-stream", payload); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	r, _ := claimcheck.NewResolver(store)
	h, got := collect()
	for _, err := range w.deliver(t, r.Middleware(h)) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal((*got)[0].Data(), payload) || !bytes.Equal(mustJSON(t, (*got)[0]), mustJSON(t, ev)) {
		t.Fatal("binary event differs after the round trip")
	}
}

func TestKey(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("i", 300)
	tests := []struct {
		name, session, source, id, want string
	}{
		{"plain", "s1", "agentbus/planner", "e1", "claimcheck/s1/agentbus%2Fplanner/e1"},
		{"dots", "..", ".", "..", "claimcheck/%2E%2E/%2E/%2E%2E"},
		{"specials", "a b?#", "urn:x", "ü%", "claimcheck/a%20b%3F%23/urn:x/%C3%BC%25"},
		{"no session", "", "src", "e", "claimcheck/_/src/e"},
	}
	for _, tt := range tests {
		ev := event.New()
		ev.SetID(tt.id)
		ev.SetSource(tt.source)
		if tt.session != "" {
			ev.SetExtension(events.ExtSessionID, tt.session)
		}
		if got := claimcheck.Key(claimcheck.DefaultKeyPrefix, ev); got != tt.want {
			t.Errorf("%s: Key = %q, want %q", tt.name, got, tt.want)
		}
		if err := blob.ValidateKey(claimcheck.Key(claimcheck.DefaultKeyPrefix, ev)); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	// Long ids are shortened, stay valid and distinct.
	a, b := event.New(), event.New()
	a.SetSource("s")
	b.SetSource("s")
	a.SetID(long + "a")
	b.SetID(long + "b")
	ka, kb := claimcheck.Key("claimcheck/", a), claimcheck.Key("claimcheck/", b)
	if ka == kb || blob.ValidateKey(ka) != nil || blob.ValidateKey(kb) != nil {
		t.Errorf("long ids: %q, %q", ka, kb)
	}
}

func TestSameEventSameBlob(t *testing.T) {
	t.Parallel()
	store := &fakeStore{}
	p, _ := claimcheck.NewPublisher(bus.PublisherFunc(func(context.Context, ...event.Event) error { return nil }), store)
	ev := newEvent(t, "s", 300<<10)
	for range 2 {
		if err := p.Publish(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if store.puts != 2 || len(store.keys()) != 1 {
		t.Errorf("republishing wrote %d puts to %v, want 2 puts to one key", store.puts, store.keys())
	}
}

func TestPublishFailures(t *testing.T) {
	t.Parallel()
	boom := errors.New("s3 down")
	store := &fakeStore{putErr: boom}
	var forwarded []event.Event
	next := bus.PublisherFunc(func(_ context.Context, evs ...event.Event) error {
		forwarded = append(forwarded, evs...)
		return nil
	})
	p, _ := claimcheck.NewPublisher(next, store)
	small1, big, small2 := newEvent(t, "s", 10), newEvent(t, "s", 300<<10), newEvent(t, "s", 10)
	// Extensions alone over the limit: cannot be offloaded.
	huge := newEvent(t, "s", 300<<10)
	huge.SetExtension("bulk", strings.Repeat("x", 300<<10))

	err := p.Publish(t.Context(), small1, big, small2, huge)
	var pe *bus.PublishError
	if !errors.As(err, &pe) || len(pe.Failures) != 2 {
		t.Fatalf("Publish = %v, want a PublishError with 2 failures", err)
	}
	if pe.Failures[0].Index != 1 || !errors.Is(pe.Failures[0].Err, boom) {
		t.Errorf("failure 0 = %+v, want index 1 wrapping the store error", pe.Failures[0])
	}
	if pe.Failures[1].Index != 3 || !errors.Is(pe.Failures[1].Err, bus.ErrTooLarge) {
		t.Errorf("failure 1 = %+v, want index 3 wrapping ErrTooLarge", pe.Failures[1])
	}
	if len(forwarded) != 2 || forwarded[0].ID() != small1.ID() || forwarded[1].ID() != small2.ID() {
		t.Errorf("forwarded %d events, want the two small ones", len(forwarded))
	}
	if store.puts != 1 {
		t.Errorf("%d puts, want 1 (no blob for an event that cannot fit anyway)", store.puts)
	}
}

func TestPublishRemapsDownstreamFailures(t *testing.T) {
	t.Parallel()
	store := &fakeStore{putErr: errors.New("down")}
	next := bus.PublisherFunc(func(_ context.Context, evs ...event.Event) error {
		// Downstream fails its second event (index 1 of what it got).
		return &bus.PublishError{Failures: []bus.PublishFailure{{Index: 1, ID: evs[1].ID(), Source: evs[1].Source(), Err: bus.ErrClosed}}}
	})
	p, _ := claimcheck.NewPublisher(next, store)
	a, big, c := newEvent(t, "s", 10), newEvent(t, "s", 300<<10), newEvent(t, "s", 10)
	err := p.Publish(t.Context(), a, big, c)
	var pe *bus.PublishError
	if !errors.As(err, &pe) || len(pe.Failures) != 2 {
		t.Fatalf("Publish = %v", err)
	}
	if pe.Failures[1].Index != 2 || pe.Failures[1].ID != c.ID() || !errors.Is(err, bus.ErrClosed) {
		t.Errorf("downstream failure = %+v, want index 2 (event c)", pe.Failures[1])
	}

	// A downstream error that is not a PublishError is returned as is when
	// nothing else failed.
	plain := errors.New("connection refused")
	p2, _ := claimcheck.NewPublisher(bus.PublisherFunc(func(context.Context, ...event.Event) error { return plain }), &fakeStore{})
	if err := p2.Publish(t.Context(), a); !errors.Is(err, plain) {
		t.Errorf("Publish = %v, want %v", err, plain)
	}
}

func TestResolverErrors(t *testing.T) {
	t.Parallel()
	withRef := func(ref string) event.Event {
		ev := newEvent(t, "s", 1)
		ev.DataEncoded = nil
		ev.SetExtension(events.ExtDataRef, ref)
		return ev
	}
	fetchErr := errors.New("timeout talking to s3")
	tests := []struct {
		name      string
		store     *fakeStore
		ev        event.Event
		permanent bool
		is        error
	}{
		{"missing blob", &fakeStore{}, withRef("blob://claimcheck/s/src/gone"), true, claimcheck.ErrMissingBlob},
		{"fetch failure", &fakeStore{getErr: fetchErr}, withRef("blob://claimcheck/s/src/x"), false, fetchErr},
		{"other scheme", &fakeStore{}, withRef("s3://bucket/claimcheck/s/x"), true, claimcheck.ErrBadDataRef},
		{"outside prefix", &fakeStore{data: map[string][]byte{"secrets/k": []byte(`{}`)}}, withRef("blob://secrets/k"), true, claimcheck.ErrBadDataRef},
		{"traversal", &fakeStore{}, withRef("blob://claimcheck/../secrets/k"), true, claimcheck.ErrBadDataRef},
		{"not JSON", &fakeStore{data: map[string][]byte{"claimcheck/s/src/x": []byte("{oops")}}, withRef("blob://claimcheck/s/src/x"), true, claimcheck.ErrBadDataRef},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, _ := claimcheck.NewResolver(tt.store)
			called := false
			h := r.Middleware(func(context.Context, event.Event) error { called = true; return nil })
			err := h(t.Context(), tt.ev)
			if err == nil || called {
				t.Fatalf("handler called=%v, err=%v; want an error before the handler", called, err)
			}
			if errors.Is(err, bus.ErrPermanent) != tt.permanent {
				t.Errorf("err %v: permanent=%v, want %v", err, errors.Is(err, bus.ErrPermanent), tt.permanent)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("err %v does not wrap %v", err, tt.is)
			}
		})
	}
}

func TestResolverPassThrough(t *testing.T) {
	t.Parallel()
	store := &fakeStore{getErr: errors.New("must not be called")}
	r, _ := claimcheck.NewResolver(store)
	plain := newEvent(t, "s", 10)
	// data and dataref both present: the data wins, nothing is fetched.
	both := newEvent(t, "s", 10)
	both.SetExtension(events.ExtDataRef, "https://example.com/x")
	for _, ev := range []event.Event{plain, both} {
		got, err := r.Resolve(t.Context(), ev)
		if err != nil || !bytes.Equal(mustJSON(t, got), mustJSON(t, ev)) {
			t.Errorf("Resolve changed an event that needs no resolving: %v", err)
		}
	}
	if store.gets != 0 {
		t.Errorf("%d fetches, want 0", store.gets)
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	next := bus.PublisherFunc(func(context.Context, ...event.Event) error { return nil })
	bad := []claimcheck.Option{
		claimcheck.WithLimit(100),
		claimcheck.WithKeyPrefix("no-slash"),
		claimcheck.WithKeyPrefix("../x/"),
		claimcheck.WithKeyPrefix("/"),
	}
	for i, o := range bad {
		if _, err := claimcheck.NewPublisher(next, &fakeStore{}, o); err == nil {
			t.Errorf("option %d accepted", i)
		}
	}
	if _, err := claimcheck.NewPublisher(nil, &fakeStore{}); err == nil {
		t.Error("nil next accepted")
	}
	if _, err := claimcheck.NewResolver(nil); err == nil {
		t.Error("nil store accepted")
	}
	// A custom prefix is used by both sides.
	store := &fakeStore{}
	w := &wire{}
	p, err := claimcheck.NewPublisher(w, store, claimcheck.WithKeyPrefix("cc/v1/"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Limit() != claimcheck.DefaultLimit {
		t.Errorf("Limit = %d", p.Limit())
	}
	ev := newEvent(t, "s", 300<<10)
	if err := p.Publish(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	if keys := store.keys(); len(keys) != 1 || !strings.HasPrefix(keys[0], "cc/v1/s/") {
		t.Errorf("keys = %v", keys)
	}
	rDefault, _ := claimcheck.NewResolver(store)
	rCustom, _ := claimcheck.NewResolver(store, claimcheck.WithKeyPrefix("cc/v1/"))
	errs := w.deliver(t, rDefault.Middleware(func(context.Context, event.Event) error { return nil }))
	if !errors.Is(errs[0], claimcheck.ErrBadDataRef) {
		t.Errorf("default resolver on a custom prefix: %v", errs[0])
	}
	errs = w.deliver(t, rCustom.Middleware(func(context.Context, event.Event) error { return nil }))
	if errs[0] != nil {
		t.Errorf("custom resolver: %v", errs[0])
	}
}

// fakeStore is an in-memory blob.Store with injectable errors.
type fakeStore struct {
	mu     sync.Mutex
	data   map[string][]byte
	putErr error
	getErr error
	puts   int
	gets   int
}

var _ blob.Store = (*fakeStore)(nil)

func (f *fakeStore) Put(_ context.Context, key string, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.puts++
	if f.putErr != nil {
		return f.putErr
	}
	if f.data == nil {
		f.data = map[string][]byte{}
	}
	f.data[key] = bytes.Clone(data)
	return nil
}

func (f *fakeStore) Get(_ context.Context, key string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	if f.getErr != nil {
		return nil, f.getErr
	}
	d, ok := f.data[key]
	if !ok {
		return nil, fmt.Errorf("get %q: %w", key, blob.ErrNotFound)
	}
	return d, nil
}

func (f *fakeStore) Delete(context.Context, string) error       { return errors.New("not used") }
func (f *fakeStore) DeletePrefix(context.Context, string) error { return errors.New("not used") }

func (f *fakeStore) keys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ks []string
	for k := range f.data {
		ks = append(ks, k)
	}
	return ks
}
