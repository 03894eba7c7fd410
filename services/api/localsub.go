package api

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus/local"
)

// LocalSubscriber subscribes on the embedded bus as any consumer does: a
// queue of its own fed by a rule matching the session id, one per watch.
type LocalSubscriber struct {
	Bus *local.Bus
	// Resolve, when set, puts claim-checked data back into live events
	// (claimcheck.Resolver.Resolve), so they read like the history's.
	Resolve func(ctx context.Context, ev event.Event) (event.Event, error)
	// Poll is how long one Next waits for events (default 250ms).
	Poll time.Duration
}

var _ Subscriber = (*LocalSubscriber)(nil)

// Subscribe declares the watch's queue and rule.
func (l *LocalSubscriber) Subscribe(ctx context.Context, sessionID string) (Subscription, error) {
	name := "api-watch-" + strings.ReplaceAll(uuid.NewString(), "-", "")[:20]
	pattern, err := json.Marshal(map[string]any{"detail": map[string]any{events.ExtSessionID: []string{sessionID}}})
	if err != nil {
		return nil, err
	}
	if err := l.Bus.DeclareQueue(ctx, local.QueueConfig{Name: name, Visibility: 30 * time.Second}); err != nil {
		return nil, fmt.Errorf("api: declare watch queue: %w", err)
	}
	if err := l.Bus.AddRule(local.Rule{Name: name, Pattern: pattern, Queue: name}); err != nil {
		return nil, fmt.Errorf("api: add watch rule: %w", err)
	}
	poll := l.Poll
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	return &localSub{l: l, name: name, q: l.Bus.Queue(name), poll: poll}, nil
}

type localSub struct {
	l    *LocalSubscriber
	name string
	q    *local.Queue
	poll time.Duration
}

func (s *localSub) Next(ctx context.Context) ([]event.Event, error) {
	msgs, err := s.q.Receive(ctx, 100, s.poll, 30*time.Second)
	if err != nil {
		return nil, err
	}
	out := make([]event.Event, 0, len(msgs))
	receipts := make([]string, 0, len(msgs))
	for _, m := range msgs {
		receipts = append(receipts, m.Receipt)
		if m.DecodeErr != nil {
			continue // not an event: nothing a watcher could show
		}
		ev := m.Event
		if s.l.Resolve != nil {
			if r, err := s.l.Resolve(ctx, ev); err == nil {
				ev = r
			}
		}
		out = append(out, ev)
	}
	if len(receipts) > 0 {
		_ = s.q.Ack(context.WithoutCancel(ctx), receipts...)
	}
	return out, nil
}

func (s *localSub) Close(ctx context.Context) {
	s.l.Bus.RemoveRule(s.name)
	_, _ = s.l.Bus.Purge(ctx, s.name)
}
