package eventbridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/platform/bus"
)

func testEvent(t testing.TB, id string, dataBytes int) event.Event {
	t.Helper()
	ev := event.New()
	ev.SetID(id)
	ev.SetSource("agentbus/test")
	ev.SetType("agentbus.test.v1")
	ev.SetExtension("sessionid", "s-1")
	if err := ev.SetData(event.ApplicationJSON, map[string]string{"pad": strings.Repeat("x", dataBytes)}); err != nil {
		t.Fatal(err)
	}
	return ev
}

// fakeAPI records every PutEvents call and answers with respond.
type fakeAPI struct {
	mu      sync.Mutex
	calls   [][]types.PutEventsRequestEntry
	respond func(call int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error)
}

func (f *fakeAPI) PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, _ ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	f.mu.Lock()
	f.calls = append(f.calls, in.Entries)
	n := len(f.calls)
	f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return f.respond(n, in.Entries)
}

func ok(entries []types.PutEventsRequestEntry) *eventbridge.PutEventsOutput {
	out := &eventbridge.PutEventsOutput{}
	for i := range entries {
		out.Entries = append(out.Entries, types.PutEventsResultEntry{EventId: aws.String(fmt.Sprint("eb-", i))})
	}
	return out
}

// ceID reads the CloudEvent id back out of an entry's Detail.
func ceID(t testing.TB, e types.PutEventsRequestEntry) string {
	t.Helper()
	var d struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(aws.ToString(e.Detail)), &d); err != nil {
		t.Fatalf("detail is not JSON: %v", err)
	}
	return d.ID
}

func newTestPublisher(api PutEventsAPI, opts ...Option) *Publisher {
	p := NewFromClient(api, "test-bus", append([]Option{WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, opts...)...)
	p.sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	return p
}

func testEvents(t testing.TB, n, dataBytes int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = testEvent(t, fmt.Sprintf("e%02d", i), dataBytes)
	}
	return evs
}

func TestPublishEntryShape(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{respond: func(_ int, e []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) { return ok(e), nil }}
	p := newTestPublisher(api)
	ev := testEvent(t, "id-1", 3)
	if err := p.Publish(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if len(api.calls) != 1 || len(api.calls[0]) != 1 {
		t.Fatalf("calls = %v", api.calls)
	}
	e := api.calls[0][0]
	if aws.ToString(e.Source) != "agentbus/test" || aws.ToString(e.DetailType) != "agentbus.test.v1" || aws.ToString(e.EventBusName) != "test-bus" {
		t.Errorf("entry = source %q type %q bus %q", aws.ToString(e.Source), aws.ToString(e.DetailType), aws.ToString(e.EventBusName))
	}
	var back event.Event
	if err := json.Unmarshal([]byte(aws.ToString(e.Detail)), &back); err != nil {
		t.Fatalf("detail is not a CloudEvent: %v", err)
	}
	if back.ID() != "id-1" || back.Extensions()["sessionid"] != "s-1" {
		t.Errorf("detail round trip: id %q ext %v", back.ID(), back.Extensions())
	}
}

func TestPublishBatching(t *testing.T) {
	t.Parallel()
	one := EntrySize(mustEntry(t, testEvent(t, "e00", 1000)))
	tests := []struct {
		name      string
		n         int
		maxBytes  int
		wantSizes []int
	}{
		{"empty", 0, 0, nil},
		{"one", 1, 0, []int{1}},
		{"ten fit one call", 10, 0, []int{10}},
		{"25 by count", 25, 0, []int{10, 10, 5}},
		{"by size", 7, 3 * one, []int{3, 3, 1}},
		{"exactly at the limit", 4, 2 * one, []int{2, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api := &fakeAPI{respond: func(_ int, e []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) { return ok(e), nil }}
			p := newTestPublisher(api, WithMaxRequestBytes(tc.maxBytes))
			if err := p.Publish(context.Background(), testEvents(t, tc.n, 1000)...); err != nil {
				t.Fatal(err)
			}
			var sizes []int
			next := 0
			for _, c := range api.calls {
				sizes = append(sizes, len(c))
				total := 0
				for _, e := range c {
					total += EntrySize(e)
					if got, want := ceID(t, e), fmt.Sprintf("e%02d", next); got != want {
						t.Errorf("order: got %s, want %s", got, want)
					}
					next++
				}
				if total > p.maxRequestBytes {
					t.Errorf("call of %d bytes over the %d limit", total, p.maxRequestBytes)
				}
			}
			if fmt.Sprint(sizes) != fmt.Sprint(tc.wantSizes) {
				t.Errorf("batch sizes = %v, want %v", sizes, tc.wantSizes)
			}
		})
	}
}

func mustEntry(t testing.TB, ev event.Event) types.PutEventsRequestEntry {
	p := NewFromClient(nil, "b")
	it, err := p.toItem(0, ev)
	if err != nil {
		t.Fatal(err)
	}
	return it.entry
}

func TestPublishRejectsAloneWithoutSending(t *testing.T) {
	t.Parallel()
	invalid := event.New() // no id, source, type
	tests := []struct {
		name   string
		evs    []event.Event
		wantIs error
	}{
		{"oversize", []event.Event{testEvent(t, "small", 10), testEvent(t, "big", 300*1024)}, bus.ErrTooLarge},
		{"invalid event", []event.Event{testEvent(t, "small", 10), invalid}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api := &fakeAPI{respond: func(_ int, e []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) { return ok(e), nil }}
			err := newTestPublisher(api).Publish(context.Background(), tc.evs...)
			var pe *bus.PublishError
			if !errors.As(err, &pe) || len(pe.Failures) != 1 || pe.Failures[0].Index != 1 {
				t.Fatalf("err = %v, want a PublishError naming only index 1", err)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("err = %v, want Is %v", err, tc.wantIs)
			}
			if len(api.calls) != 1 || len(api.calls[0]) != 1 || ceID(t, api.calls[0][0]) != "small" {
				t.Errorf("calls = %v, want only the valid event sent", api.calls)
			}
		})
	}
}

func TestPublishLargerLimit(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{respond: func(_ int, e []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) { return ok(e), nil }}
	p := newTestPublisher(api, WithMaxRequestBytes(1024*1024))
	if err := p.Publish(context.Background(), testEvent(t, "big", 300*1024)); err != nil {
		t.Fatalf("300 KiB under a 1 MiB limit: %v", err)
	}
}

// failEntries answers a call with the given per-entry error codes (by CE id).
func failEntries(t testing.TB, e []types.PutEventsRequestEntry, codes map[string]string) *eventbridge.PutEventsOutput {
	out := &eventbridge.PutEventsOutput{}
	for _, en := range e {
		if code, bad := codes[ceID(t, en)]; bad {
			out.FailedEntryCount++
			out.Entries = append(out.Entries, types.PutEventsResultEntry{ErrorCode: aws.String(code), ErrorMessage: aws.String(code + " happened")})
			continue
		}
		out.Entries = append(out.Entries, types.PutEventsResultEntry{EventId: aws.String("x")})
	}
	return out
}

func TestPublishPartialFailureRetriesOnlyFailed(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{}
	api.respond = func(call int, e []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
		if call == 1 {
			return failEntries(t, e, map[string]string{"e02": "ThrottlingException", "e05": "InternalFailure"}), nil
		}
		return ok(e), nil
	}
	if err := newTestPublisher(api).Publish(context.Background(), testEvents(t, 8, 10)...); err != nil {
		t.Fatal(err)
	}
	if len(api.calls) != 2 {
		t.Fatalf("calls = %d, want 2", len(api.calls))
	}
	var retried []string
	for _, e := range api.calls[1] {
		retried = append(retried, ceID(t, e))
	}
	if fmt.Sprint(retried) != "[e02 e05]" {
		t.Errorf("retried %v, want only [e02 e05]", retried)
	}
}

func TestPublishPartialFailureFinal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		codes     map[string]string
		wantCalls int
		wantIDs   []string
	}{
		// Non-retryable codes fail at once; the retryable one keeps failing
		// until the attempts run out.
		{"permanent not retried", map[string]string{"e01": "InvalidArgument"}, 1, []string{"e01"}},
		{"retryable bounded", map[string]string{"e03": "ThrottlingException"}, 4, []string{"e03"}},
		{"mixed", map[string]string{"e00": "MalformedDetail", "e04": "InternalFailure"}, 4, []string{"e00", "e04"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api := &fakeAPI{respond: func(_ int, e []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
				return failEntries(t, e, tc.codes), nil
			}}
			err := newTestPublisher(api, WithRetry(4, 0, 0)).Publish(context.Background(), testEvents(t, 5, 10)...)
			var pe *bus.PublishError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *bus.PublishError", err)
			}
			var ids []string
			for _, f := range pe.Failures {
				ids = append(ids, f.ID)
				var ee *EntryError
				if !errors.As(f.Err, &ee) || ee.Code != tc.codes[f.ID] || ee.Message == "" {
					t.Errorf("failure %+v: want an EntryError with code %s and a message", f, tc.codes[f.ID])
				}
				if !strings.Contains(err.Error(), f.ID) || !strings.Contains(err.Error(), tc.codes[f.ID]) {
					t.Errorf("error text %q does not name %s and %s", err, f.ID, tc.codes[f.ID])
				}
			}
			if fmt.Sprint(ids) != fmt.Sprint(tc.wantIDs) {
				t.Errorf("failed = %v, want %v", ids, tc.wantIDs)
			}
			if len(api.calls) != tc.wantCalls {
				t.Errorf("calls = %d, want %d", len(api.calls), tc.wantCalls)
			}
		})
	}
}

func httpErr(status int) error {
	return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
		Err:      fmt.Errorf("status %d", status),
	}}
}

func TestPublishCallErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		errs      []error // per call; nil = success
		wantErr   bool
		wantCalls int
	}{
		{"throttled then ok", []error{&types.ThrottlingException{Message: aws.String("slow down")}, nil}, false, 2},
		{"5xx then ok", []error{httpErr(503), httpErr(500), nil}, false, 3},
		{"5xx bounded", []error{httpErr(500), httpErr(500), httpErr(500), httpErr(500)}, true, 3},
		{"4xx not retried", []error{httpErr(400)}, true, 1},
		{"resource not found not retried", []error{&types.ResourceNotFoundException{Message: aws.String("no bus")}}, true, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api := &fakeAPI{respond: func(call int, e []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
				if call <= len(tc.errs) && tc.errs[call-1] != nil {
					return nil, tc.errs[call-1]
				}
				return ok(e), nil
			}}
			err := newTestPublisher(api, WithRetry(3, 0, 0)).Publish(context.Background(), testEvents(t, 3, 10)...)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				var pe *bus.PublishError
				if !errors.As(err, &pe) || len(pe.Failures) != 3 {
					t.Fatalf("err = %v, want a PublishError naming all 3 events", err)
				}
			}
			if len(api.calls) != tc.wantCalls {
				t.Errorf("calls = %d, want %d", len(api.calls), tc.wantCalls)
			}
		})
	}
}

func TestPublishResultCountMismatchResends(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{respond: func(call int, e []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
		if call == 1 {
			return &eventbridge.PutEventsOutput{FailedEntryCount: 1}, nil
		}
		return ok(e), nil
	}}
	if err := newTestPublisher(api).Publish(context.Background(), testEvents(t, 3, 10)...); err != nil {
		t.Fatal(err)
	}
	if len(api.calls) != 2 || len(api.calls[1]) != 3 {
		t.Errorf("calls = %d, want the whole batch resent once", len(api.calls))
	}
}

func TestPublishContextCancelled(t *testing.T) {
	t.Parallel()
	t.Run("before publish", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		api := &fakeAPI{respond: func(_ int, e []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) { return ok(e), nil }}
		err := newTestPublisher(api).Publish(ctx, testEvents(t, 12, 10)...)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if len(api.calls) != 0 {
			t.Errorf("calls = %d, want 0", len(api.calls))
		}
	})
	t.Run("during backoff", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		api := &fakeAPI{respond: func(_ int, e []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
			cancel()
			return failEntries(t, e, map[string]string{"e01": "ThrottlingException"}), nil
		}}
		// Real sleeping: the backoff must end with ctx, not with its timer.
		p := NewFromClient(api, "b", WithRetry(5, time.Hour, time.Hour), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		start := time.Now()
		err := p.Publish(ctx, testEvents(t, 3, 10)...)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		var pe *bus.PublishError
		if !errors.As(err, &pe) || len(pe.Failures) != 1 || pe.Failures[0].ID != "e01" || pe.Failures[0].Index != 1 {
			t.Errorf("err = %v, want only e01 failed", err)
		}
		if time.Since(start) > 10*time.Second {
			t.Errorf("Publish waited %s after cancel", time.Since(start))
		}
	})
}

func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	p := NewFromClient(nil, "b", WithRetry(10, 100*time.Millisecond, time.Second))
	for attempt := 1; attempt <= 40; attempt++ {
		capD := min(100*time.Millisecond<<min(attempt-1, 30), time.Second)
		for range 50 {
			if d := p.backoff(attempt); d < 0 || d > capD {
				t.Fatalf("attempt %d: backoff %s outside [0, %s]", attempt, d, capD)
			}
		}
	}
}

func TestEntrySize(t *testing.T) {
	t.Parallel()
	now := time.Now()
	e := types.PutEventsRequestEntry{
		Source: aws.String("abc"), DetailType: aws.String("de"), Detail: aws.String(`{"é":1}`),
		Resources: []string{"r1", "r22"}, EventBusName: aws.String("ignored-bus-name"),
	}
	if got, want := EntrySize(e), 3+2+len(`{"é":1}`)+2+3; got != want {
		t.Errorf("EntrySize = %d, want %d", got, want)
	}
	e.Time = &now
	if got, want := EntrySize(e), 3+2+len(`{"é":1}`)+2+3+14; got != want {
		t.Errorf("EntrySize with Time = %d, want %d", got, want)
	}
}
