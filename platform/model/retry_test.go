package model_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/model"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	p := model.RetryPolicy{MaxAttempts: 10, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond,
		4: 800 * time.Millisecond, 5: time.Second, 20: time.Second} {
		if got := p.Backoff(n); got != want {
			t.Errorf("Backoff(%d) = %v, want %v", n, got, want)
		}
	}
	if got := (model.RetryPolicy{}).Backoff(1); got != model.DefaultRetryPolicy.BaseDelay {
		t.Errorf("zero policy Backoff(1) = %v, want the default's", got)
	}
}

func TestRetryDo(t *testing.T) {
	t.Parallel()
	fast := model.RetryPolicy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond}
	failing := func(kind error, failures int, calls *int) func(context.Context) (model.Response, error) {
		return func(context.Context) (model.Response, error) {
			*calls++
			if *calls <= failures {
				return model.Response{}, &model.Error{Kind: kind, Op: "t", Attempts: 1}
			}
			return model.Response{Text: "ok"}, nil
		}
	}
	tests := []struct {
		name      string
		kind      error
		failures  int
		wantCalls int
		wantErr   error
	}{
		{"success first", model.ErrThrottled, 0, 1, nil},
		{"throttled then ok", model.ErrThrottled, 3, 4, nil},
		{"transient exhausted", model.ErrTransient, 9, 4, model.ErrTransient},
		{"permanent not retried", model.ErrInvalidRequest, 9, 1, model.ErrInvalidRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			calls := 0
			resp, err := fast.Do(context.Background(), failing(tc.kind, tc.failures, &calls))
			if calls != tc.wantCalls {
				t.Fatalf("calls = %d, want %d", calls, tc.wantCalls)
			}
			if tc.wantErr == nil {
				if err != nil || resp.Text != "ok" {
					t.Fatalf("Do = %+v, %v", resp, err)
				}
				return
			}
			var me *model.Error
			if !errors.Is(err, tc.wantErr) || !errors.As(err, &me) || me.Attempts != tc.wantCalls {
				t.Fatalf("Do err = %v, want %v after %d attempts", err, tc.wantErr, tc.wantCalls)
			}
		})
	}

	t.Run("ctx ends while waiting", func(t *testing.T) {
		t.Parallel()
		slow := model.RetryPolicy{MaxAttempts: 5, BaseDelay: time.Hour, MaxDelay: time.Hour}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		calls := 0
		start := time.Now()
		// rand.N(1h) is below 20 ms with negligible probability; the test asserts the wait is cut short.
		_, err := slow.Do(ctx, failing(model.ErrThrottled, 9, &calls))
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, model.ErrThrottled) || model.Retryable(err) || time.Since(start) > 2*time.Second {
			t.Fatalf("err %v after %v (%d calls)", err, time.Since(start), calls)
		}
	})
}
