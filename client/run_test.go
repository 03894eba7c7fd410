package client

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
)

// fakeTransport replays scripted events; it stands in for any transport
// (gRPC here, EventBridge+SQS on AWS).
type fakeTransport struct {
	evs       []event.Event
	block     bool // after evs, block until the watch's ctx ends
	mu        sync.Mutex
	submitted []Request
	cancelled []string
}

func (f *fakeTransport) Submit(_ context.Context, req Request) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.Prompt == "" {
		return "", errors.New("empty prompt")
	}
	f.submitted = append(f.submitted, req)
	return "sid-1", nil
}

func (f *fakeTransport) Watch(ctx context.Context, sid string) (Stream, error) {
	return &fakeStream{ctx: ctx, evs: f.evs, block: f.block}, nil
}

func (f *fakeTransport) Cancel(_ context.Context, sid, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancelled = append(f.cancelled, sid)
	return nil
}

type fakeStream struct {
	ctx   context.Context
	evs   []event.Event
	block bool
}

func (s *fakeStream) Next() (event.Event, error) {
	if len(s.evs) > 0 {
		ev := s.evs[0]
		s.evs = s.evs[1:]
		return ev, nil
	}
	if s.block {
		<-s.ctx.Done()
		return event.Event{}, s.ctx.Err()
	}
	return event.Event{}, io.EOF
}

func (s *fakeStream) Close() error { return nil }

var _ Transport = (*fakeTransport)(nil)

func ev(t *testing.T, p events.Payload) event.Event {
	t.Helper()
	e, err := events.NewPayload(events.SourcePlanner, "sid-1", p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestRunWithOutcomes(t *testing.T) {
	t.Parallel()
	planned := ev(t, events.StepPlanned{Step: 1, Calls: []events.ToolCall{{ID: "c", Name: "calc", Input: []byte(`{}`)}}})
	usage := events.Usage{InputTokens: 7, OutputTokens: 3}
	cases := []struct {
		name    string
		evs     []event.Event
		status  Status
		wantErr error
	}{
		{"completed", []event.Event{planned, ev(t, events.AgentCompleted{Answer: "42", Steps: 1, Usage: usage})}, StatusCompleted, nil},
		{"failed", []event.Event{ev(t, events.AgentFailed{Reason: events.AgentMaxSteps, Message: "limit", Steps: 1, Usage: usage})}, StatusFailed, ErrAgentFailed},
		{"cancelled", []event.Event{ev(t, events.AgentCancelled{Reason: "stop", Steps: 1, Usage: usage})}, StatusCancelled, ErrAgentCancelled},
		{"stream ends early", []event.Event{planned}, "", ErrStreamEnded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr := &fakeTransport{evs: tc.evs}
			var seen int
			res, err := RunWith(context.Background(), tr, "q", WithMetadata(map[string]string{"k": "v"}), OnEvent(func(event.Event) { seen++ }))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if res.Status != tc.status || res.SessionID != "sid-1" || seen != len(tc.evs) {
				t.Fatalf("result %+v, %d events seen", res, seen)
			}
			if tc.status != "" && (res.Steps != 1 || res.Usage != usage || res.Final.ID() != tc.evs[len(tc.evs)-1].ID()) {
				t.Fatalf("result %+v", res)
			}
			if tr.submitted[0].Metadata["k"] != "v" || tr.submitted[0].Prompt != "q" {
				t.Fatalf("submitted %+v", tr.submitted)
			}
		})
	}
}

func TestRunWithCancelsWhenTheCallerStops(t *testing.T) {
	t.Parallel()
	tr := &fakeTransport{block: true}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := RunWith(ctx, tr, "q")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	if len(tr.cancelled) != 1 || tr.cancelled[0] != "sid-1" {
		t.Fatalf("cancelled %v", tr.cancelled)
	}
}

func TestRunWithSubmitError(t *testing.T) {
	t.Parallel()
	if _, err := RunWith(context.Background(), &fakeTransport{}, ""); err == nil {
		t.Fatal("empty prompt accepted")
	}
}

func TestDialRefusesTokenInClearToRemoteHosts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:7421", true},
		{"localhost:7421", true},
		{"[::1]:7421", true},
		{"10.0.0.1:7421", false},
		{"example.com:7421", false},
		{"no-port", false},
	}
	for _, tc := range cases {
		c, err := Dial(context.Background(), tc.addr, WithToken("0123456789abcdef"))
		if tc.ok != (err == nil) {
			t.Errorf("%s: %v", tc.addr, err)
		}
		if err == nil {
			c.Close()
		} else if !errors.Is(err, ErrInsecureToken) {
			t.Errorf("%s: %v, want ErrInsecureToken", tc.addr, err)
		}
		// With TLS the token may go anywhere.
		if c, err := Dial(context.Background(), tc.addr, WithToken("0123456789abcdef"), WithTLS(nil)); err != nil {
			t.Errorf("%s with TLS: %v", tc.addr, err)
		} else {
			c.Close()
		}
	}
	if _, err := Dial(context.Background(), "127.0.0.1:1", WithTLSCAFile("/nonexistent.pem")); err == nil {
		t.Error("missing CA file accepted")
	}
}
