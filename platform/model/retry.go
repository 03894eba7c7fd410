package model

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// RetryPolicy bounds the retries of retryable failures (ErrThrottled,
// ErrTransient): exponential backoff from BaseDelay, doubling per attempt, capped
// at MaxDelay, with full jitter (a uniformly random wait in [0, backoff]) so
// that many callers throttled together do not retry in lockstep. The zero
// value means DefaultRetryPolicy.
type RetryPolicy struct {
	// MaxAttempts counts every call, the first included. 1 disables retries.
	MaxAttempts int
	BaseDelay   time.Duration
	MaxDelay    time.Duration
}

// DefaultRetryPolicy: 4 attempts, waits drawn from [0,0.5s], [0,1s], [0,2s]
// (at most 3.5 s of waiting before the error is returned).
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 4, BaseDelay: 500 * time.Millisecond, MaxDelay: 8 * time.Second}

func (p RetryPolicy) orDefault() RetryPolicy {
	if p.MaxAttempts <= 0 {
		return DefaultRetryPolicy
	}
	return p
}

// Backoff is the upper bound of the wait before retry number n (n >= 1).
func (p RetryPolicy) Backoff(n int) time.Duration {
	p = p.orDefault()
	d := p.BaseDelay
	for i := 1; i < n && d < p.MaxDelay; i++ {
		d *= 2
	}
	if p.MaxDelay > 0 && d > p.MaxDelay {
		d = p.MaxDelay
	}
	return d
}

// Do calls fn until it succeeds, fails with a non-retryable error, the
// attempts are used up, or ctx ends. It returns fn's last error; when that is
// a *Error (unwrapped), its Attempts field is set to the number of calls made. A ctx that
// ends while waiting returns ctx's error wrapped with the last failure.
func (p RetryPolicy) Do(ctx context.Context, fn func(ctx context.Context) (Response, error)) (Response, error) {
	p = p.orDefault()
	var lastErr error
	for attempt := 1; ; attempt++ {
		resp, err := fn(ctx)
		if err == nil {
			return resp, nil
		}
		lastErr = err
		if !Retryable(err) || attempt >= p.MaxAttempts || ctx.Err() != nil {
			return Response{}, withAttempts(err, attempt)
		}
		wait := time.Duration(0)
		if b := p.Backoff(attempt); b > 0 {
			wait = rand.N(b + 1)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return Response{}, errors.Join(ctx.Err(), withAttempts(lastErr, attempt))
		case <-t.C:
		}
	}
}

func withAttempts(err error, n int) error {
	if me, ok := err.(*Error); ok {
		c := *me
		c.Attempts = n
		return &c
	}
	return err
}

// WithRetry wraps m so that retryable failures are retried per p. The bedrock
// model retries internally; wrap the scripted model (or any other) with this
// to get the same behaviour.
func WithRetry(m Model, p RetryPolicy) Model {
	return Func(func(ctx context.Context, req Request) (Response, error) {
		return p.Do(ctx, func(ctx context.Context) (Response, error) { return m.Converse(ctx, req) })
	})
}
