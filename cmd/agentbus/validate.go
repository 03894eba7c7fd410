package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus"
)

// validating rejects, before the handler runs, an event that breaks its
// type's schema: such a message can never succeed, so it goes to the DLQ
// with the validation error as its reason.
func validating(v *events.Validator) bus.Middleware {
	return func(next bus.Handler) bus.Handler {
		return func(ctx context.Context, ev event.Event) error {
			if err := v.Validate(ev); err != nil {
				return fmt.Errorf("%w: %v", bus.ErrPermanent, err)
			}
			return next(ctx, ev)
		}
	}
}

// validatingPublisher validates every event before it reaches the bus.
func validatingPublisher(v *events.Validator, next bus.Publisher) bus.Publisher {
	return bus.PublisherFunc(func(ctx context.Context, evs ...event.Event) error {
		var errs []string
		for _, ev := range evs {
			if err := v.Validate(ev); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("publish: %s", strings.Join(errs, "; "))
		}
		return next.Publish(ctx, evs...)
	})
}
