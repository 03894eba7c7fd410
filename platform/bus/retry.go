package bus

import (
	"errors"
	"fmt"
	"time"
)

// RetryAfterError asks the Worker to redeliver the message after Delay
// instead of after its usual backoff: a handler that has started work and
// must look again later (e.g. the executor checking a step's tool timeouts)
// returns it. It still counts as a receive toward the queue's max receive
// count, so the queue's maxReceiveCount must leave room for such checks.
type RetryAfterError struct {
	Delay  time.Duration
	Reason string
}

// Error says when and why the message comes back.
func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("retry after %s: %s", e.Delay, e.Reason)
}

// RetryAfter returns an error that redelivers the message after d.
func RetryAfter(d time.Duration, reason string) error {
	return &RetryAfterError{Delay: d, Reason: reason}
}

// retryDelay returns the delay a RetryAfterError in err's chain asks for.
func retryDelay(err error) (time.Duration, bool) {
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return max(ra.Delay, 0), true
	}
	return 0, false
}
