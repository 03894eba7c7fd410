package bus

import (
	"context"

	"github.com/cloudevents/sdk-go/v2/event"
)

// PublisherFunc adapts a function to the Publisher interface.
type PublisherFunc func(ctx context.Context, events ...event.Event) error

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, events ...event.Event) error {
	return f(ctx, events...)
}

var _ Publisher = PublisherFunc(nil)

// PublisherMiddleware wraps a Publisher (claim check, tracing, validation).
type PublisherMiddleware func(Publisher) Publisher

// WrapPublisher applies mws to p; the first middleware is the outermost, so
// it sees each Publish call first.
func WrapPublisher(p Publisher, mws ...PublisherMiddleware) Publisher {
	for i := len(mws) - 1; i >= 0; i-- {
		p = mws[i](p)
	}
	return p
}
