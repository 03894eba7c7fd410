package sqs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/agentbus/agentbus/platform/bus"
)

// fakeAPI embeds API (nil: any call not overridden panics, so a test
// notices an unexpected call) and overrides the calls a test needs.
type fakeAPI struct {
	API
	mu           sync.Mutex
	deleteCalls  [][]string
	deleteBatch  func(call int, receipts []string) (*sqs.DeleteMessageBatchOutput, error)
	sent         []*sqs.SendMessageInput
	sendErr      error
	deleted      []string
	deleteErr    error
	receiveErr   error
	visibilities []int32
}

func (f *fakeAPI) DeleteMessageBatch(_ context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	var rs []string
	for _, e := range in.Entries {
		rs = append(rs, aws.ToString(e.ReceiptHandle))
	}
	f.mu.Lock()
	f.deleteCalls = append(f.deleteCalls, rs)
	n := len(f.deleteCalls)
	f.mu.Unlock()
	return f.deleteBatch(n, rs)
}

func (f *fakeAPI) SendMessage(_ context.Context, in *sqs.SendMessageInput, _ ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	f.sent = append(f.sent, in)
	return &sqs.SendMessageOutput{MessageId: aws.String("dlq-1")}, f.sendErr
}

func (f *fakeAPI) DeleteMessage(_ context.Context, in *sqs.DeleteMessageInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error) {
	f.deleted = append(f.deleted, aws.ToString(in.ReceiptHandle))
	return &sqs.DeleteMessageOutput{}, f.deleteErr
}

func (f *fakeAPI) ReceiveMessage(context.Context, *sqs.ReceiveMessageInput, ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	return nil, f.receiveErr
}

func (f *fakeAPI) ChangeMessageVisibility(_ context.Context, in *sqs.ChangeMessageVisibilityInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	f.visibilities = append(f.visibilities, in.VisibilityTimeout)
	return &sqs.ChangeMessageVisibilityOutput{}, nil
}

func fakeQueue(api API) *Queue {
	q := NewFromClient(api, Info{Name: "q", URL: "http://q", DLQURL: "http://q-dlq"}, WithLogger(quietLog()))
	q.sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	return q
}

// failing answers a delete batch, failing the receipts in fail.
func failing(receipts []string, fail map[string]bool, senderFault bool) *sqs.DeleteMessageBatchOutput {
	out := &sqs.DeleteMessageBatchOutput{}
	for i, r := range receipts {
		id := aws.String(fmt.Sprint(i))
		if fail[r] {
			out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: id, Code: aws.String("InternalError"), Message: aws.String("try later"), SenderFault: senderFault})
			continue
		}
		out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: id})
	}
	return out
}

func TestAckPartialFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		senderFault bool
		failUntil   int // the failing receipts fail on calls < failUntil (per chunk)
		wantFailed  []string
		wantCalls   int
	}{
		{"service fault retried until ok", false, 2, nil, 2},
		{"service fault bounded", false, 99, []string{"r3", "r7"}, deleteAttempts},
		{"sender fault not retried", true, 99, []string{"r3", "r7"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api := &fakeAPI{}
			api.deleteBatch = func(call int, rs []string) (*sqs.DeleteMessageBatchOutput, error) {
				if call < tc.failUntil {
					return failing(rs, map[string]bool{"r3": true, "r7": true}, tc.senderFault), nil
				}
				return failing(rs, nil, false), nil
			}
			var receipts []string
			for i := range 9 {
				receipts = append(receipts, fmt.Sprint("r", i))
			}
			err := fakeQueue(api).Ack(context.Background(), receipts...)
			if tc.wantFailed == nil {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				var ae *AckError
				if !errors.As(err, &ae) || fmt.Sprint(ae.Receipts()) != fmt.Sprint(tc.wantFailed) {
					t.Fatalf("err = %v, want AckError for %v", err, tc.wantFailed)
				}
				if !strings.Contains(err.Error(), "InternalError") {
					t.Errorf("error %q does not say why", err)
				}
			}
			if len(api.deleteCalls) != tc.wantCalls {
				t.Errorf("delete calls = %d, want %d", len(api.deleteCalls), tc.wantCalls)
			}
			for _, c := range api.deleteCalls[1:] {
				if fmt.Sprint(c) != "[r3 r7]" {
					t.Errorf("retry call deleted %v, want only [r3 r7]", c)
				}
			}
		})
	}
}

func TestAckCallErrorAndChunks(t *testing.T) {
	t.Parallel()
	boom := errors.New("connection reset")
	api := &fakeAPI{deleteBatch: func(call int, rs []string) (*sqs.DeleteMessageBatchOutput, error) {
		if call == 2 {
			return nil, boom
		}
		return failing(rs, nil, false), nil
	}}
	var receipts []string
	for i := range 25 {
		receipts = append(receipts, fmt.Sprint("r", i))
	}
	err := fakeQueue(api).Ack(context.Background(), receipts...)
	var ae *AckError
	if !errors.As(err, &ae) || len(ae.Failed) != 10 || !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the 10 receipts of the failed chunk, wrapping the call error", err)
	}
	var sizes []int
	for _, c := range api.deleteCalls {
		sizes = append(sizes, len(c))
	}
	if fmt.Sprint(sizes) != "[10 10 5]" {
		t.Errorf("chunks = %v, want [10 10 5]", sizes)
	}
	if err := fakeQueue(api).Ack(context.Background()); err != nil {
		t.Errorf("Ack of nothing: %v", err)
	}
}

func TestDeadLetterAttributesAndFailures(t *testing.T) {
	t.Parallel()
	m := bus.Message{ID: "m-1", Receipt: "rh-1", Body: []byte(`{"x":1}`), ReceiveCount: 3}
	t.Run("ok", func(t *testing.T) {
		t.Parallel()
		api := &fakeAPI{}
		long := strings.Repeat("é", 2000) + "\x00"
		if err := fakeQueue(api).DeadLetter(context.Background(), m, long); err != nil {
			t.Fatal(err)
		}
		if len(api.sent) != 1 || len(api.deleted) != 1 || api.deleted[0] != "rh-1" {
			t.Fatalf("sent %d, deleted %v", len(api.sent), api.deleted)
		}
		in := api.sent[0]
		if aws.ToString(in.QueueUrl) != "http://q-dlq" || aws.ToString(in.MessageBody) != `{"x":1}` {
			t.Errorf("sent %s to %s", aws.ToString(in.MessageBody), aws.ToString(in.QueueUrl))
		}
		reason := aws.ToString(in.MessageAttributes[AttrReason].StringValue)
		if len(reason) > maxReasonBytes || !utf8.ValidString(reason) || strings.ContainsRune(reason, 0) {
			t.Errorf("reason not truncated/sanitized: %d bytes", len(reason))
		}
		if aws.ToString(in.MessageAttributes[AttrReceiveCount].StringValue) != "3" || aws.ToString(in.MessageAttributes[AttrMessageID].StringValue) != "m-1" ||
			aws.ToString(in.MessageAttributes[AttrSourceQueue].StringValue) != "q" {
			t.Errorf("attributes = %+v", in.MessageAttributes)
		}
	})
	t.Run("send fails: not deleted", func(t *testing.T) {
		t.Parallel()
		api := &fakeAPI{sendErr: errors.New("denied")}
		if err := fakeQueue(api).DeadLetter(context.Background(), m, "r"); err == nil || len(api.deleted) != 0 {
			t.Fatalf("err = %v, deleted %v; want an error and no delete", err, api.deleted)
		}
	})
	t.Run("delete fails", func(t *testing.T) {
		t.Parallel()
		api := &fakeAPI{deleteErr: errors.New("gone")}
		if err := fakeQueue(api).DeadLetter(context.Background(), m, "r"); err == nil || !strings.Contains(err.Error(), "delete") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("empty body uses the event", func(t *testing.T) {
		t.Parallel()
		api := &fakeAPI{}
		ev := cloudEvent(t, "e-body")
		if err := fakeQueue(api).DeadLetter(context.Background(), bus.Message{ID: "m", Receipt: "r", Event: ev}, ""); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(aws.ToString(api.sent[0].MessageBody), `"e-body"`) || aws.ToString(api.sent[0].MessageAttributes[AttrReason].StringValue) != "unspecified" {
			t.Errorf("sent %+v", api.sent[0])
		}
	})
}

func TestReceiveError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	if _, err := fakeQueue(&fakeAPI{receiveErr: boom}).Receive(context.Background(), 1, 0, 0); !errors.Is(err, boom) {
		t.Errorf("err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := fakeQueue(&fakeAPI{receiveErr: boom}).Receive(ctx, 1, 0, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
}

func TestNackRoundsUp(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{}
	q := fakeQueue(api)
	for _, d := range []time.Duration{0, 300 * time.Millisecond, 2 * time.Second, 48 * time.Hour} {
		if err := q.Nack(context.Background(), "r", d); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(api.visibilities) != "[0 1 2 43200]" {
		t.Errorf("visibilities = %v", api.visibilities)
	}
}

func TestHelpers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    time.Duration
		max  int32
		want int32
	}{{-1, 20, 0}, {0, 20, 0}, {time.Nanosecond, 20, 1}, {time.Second, 20, 1}, {1500 * time.Millisecond, 20, 2}, {time.Hour, 20, 20}}
	for _, tc := range tests {
		if got := seconds(tc.d, tc.max); got != tc.want {
			t.Errorf("seconds(%s, %d) = %d, want %d", tc.d, tc.max, got, tc.want)
		}
	}
	if got := truncate("aé", 2); got != "a" {
		t.Errorf("truncate split a rune: %q", got)
	}
	if got := sanitize("a\x00b\tc\uFFFF"); got != "a?b\tc?" {
		t.Errorf("sanitize = %q", got)
	}
	if got := dedupe([]string{"a", "", "b", "a"}); fmt.Sprint(got) != "[a b]" {
		t.Errorf("dedupe = %v", got)
	}
	if got := QueueName("agentbus", "planner"); got != "agentbus-planner" || DLQName(got) != "agentbus-planner-dlq" {
		t.Errorf("names %q %q", got, DLQName(got))
	}
}
