package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentbus/agentbus/client"
	"github.com/agentbus/agentbus/platform/bus"
	pb "github.com/agentbus/agentbus/proto/agentbus/v1"
	"github.com/agentbus/agentbus/tools"
)

// DevServer returns the transport of a plug-in served by a running
// `agentbus dev` (c is a client.Dial connection to its API, with the token
// and TLS it needs): the named queue over PluginService's receive/ack
// calls, Publish, and RegisterTools, which the dev server persists in its
// data folder. It checks that the queue exists (its rule was added with
// `agentbus rules add` before dev started): ErrUnknownQueue otherwise.
func DevServer(ctx context.Context, c *client.Client, queue string) (Transport, error) {
	svc := c.PluginService()
	info, err := svc.DescribeQueue(ctx, &pb.DescribeQueueRequest{Queue: queue})
	if status.Code(err) == codes.NotFound {
		return Transport{}, fmt.Errorf("%w %q: %s", ErrUnknownQueue, queue, status.Convert(err).Message())
	}
	if err != nil {
		return Transport{}, fmt.Errorf("plugin: describe queue %q: %w", queue, err)
	}
	return Transport{
		Queue:      &devQueue{svc: svc, name: queue},
		Publisher:  devPublisher{svc: svc},
		Registrar:  devRegistrar{svc: svc},
		Visibility: time.Duration(info.GetVisibilityTimeoutSeconds()) * time.Second,
	}, nil
}

// devQueue is a bus.Queue over PluginService. It is a unary receive/ack
// pair rather than a server stream on purpose: it is exactly the SQS model
// (visibility timeout, receipts), so bus.Worker drives it unchanged, a
// plug-in that dies mid-call has its message redelivered by the timeout,
// and the server keeps no per-stream state.
type devQueue struct {
	svc  pb.PluginServiceClient
	name string
}

var _ bus.Queue = (*devQueue)(nil)

func (q *devQueue) Name() string { return q.name }

func (q *devQueue) Receive(ctx context.Context, max int, wait, visibility time.Duration) ([]bus.Message, error) {
	resp, err := q.svc.Receive(ctx, &pb.ReceiveRequest{Queue: q.name, MaxMessages: int32(min(max, 10)),
		WaitMs: int32(min(wait, 20*time.Second).Milliseconds()), VisibilityMs: visibility.Milliseconds()})
	if err != nil {
		return nil, grpcErr("receive", err)
	}
	out := make([]bus.Message, 0, len(resp.GetDeliveries()))
	for _, d := range resp.GetDeliveries() {
		m := bus.Message{ID: d.GetId(), Receipt: d.GetReceipt(), ReceiveCount: int(d.GetReceiveCount()), Body: d.GetBody()}
		switch {
		case d.GetDecodeError() != "":
			m.DecodeErr = errors.New(d.GetDecodeError())
		default:
			m.Body = []byte(d.GetCloudEvent())
			if err := json.Unmarshal(m.Body, &m.Event); err != nil {
				m.DecodeErr = fmt.Errorf("decode delivery: %w", err)
				m.Event = event.Event{}
			}
		}
		out = append(out, m)
	}
	return out, nil
}

func (q *devQueue) Ack(ctx context.Context, receipts ...string) error {
	_, err := q.svc.Ack(ctx, &pb.AckRequest{Queue: q.name, Receipts: receipts})
	return grpcErr("ack", err)
}

func (q *devQueue) Nack(ctx context.Context, receipt string, delay time.Duration) error {
	_, err := q.svc.Nack(ctx, &pb.NackRequest{Queue: q.name, Receipt: receipt, DelayMs: delay.Milliseconds()})
	return grpcErr("nack", err)
}

func (q *devQueue) Extend(ctx context.Context, receipt string, visibility time.Duration) error {
	_, err := q.svc.Extend(ctx, &pb.ExtendRequest{Queue: q.name, Receipt: receipt, VisibilityMs: visibility.Milliseconds()})
	return grpcErr("extend", err)
}

func (q *devQueue) DeadLetter(ctx context.Context, m bus.Message, reason string) error {
	_, err := q.svc.DeadLetter(ctx, &pb.DeadLetterRequest{Queue: q.name, Receipt: m.Receipt, Reason: reason})
	return grpcErr("dead-letter", err)
}

// grpcErr keeps the bus's sentinel errors visible through the API.
func grpcErr(op string, err error) error {
	if err == nil {
		return nil
	}
	switch status.Code(err) {
	case codes.FailedPrecondition:
		return fmt.Errorf("plugin: %s: %w: %s", op, bus.ErrStaleReceipt, status.Convert(err).Message())
	case codes.NotFound:
		return fmt.Errorf("plugin: %s: %w: %s", op, ErrUnknownQueue, status.Convert(err).Message())
	case codes.Canceled:
		return fmt.Errorf("plugin: %s: %w", op, context.Canceled)
	case codes.DeadlineExceeded:
		return fmt.Errorf("plugin: %s: %w", op, context.DeadlineExceeded)
	}
	return fmt.Errorf("plugin: %s: %w", op, err)
}

type devPublisher struct{ svc pb.PluginServiceClient }

func (p devPublisher) Publish(ctx context.Context, evs ...event.Event) error {
	req := &pb.PublishRequest{CloudEvents: make([]string, 0, len(evs))}
	for _, ev := range evs {
		b, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("plugin: publish: %w", err)
		}
		req.CloudEvents = append(req.CloudEvents, string(b))
	}
	_, err := p.svc.Publish(ctx, req)
	return grpcErr("publish", err)
}

type devRegistrar struct{ svc pb.PluginServiceClient }

func (r devRegistrar) RegisterTools(ctx context.Context, plugin string, specs []tools.Spec) error {
	req := &pb.RegisterToolsRequest{Plugin: plugin}
	for _, s := range specs {
		req.Tools = append(req.Tools, &pb.Tool{Name: s.Name, Description: s.Description, InputSchema: string(s.InputSchema),
			Idempotent: s.Idempotent, TimeoutMs: s.Timeout.Milliseconds()})
	}
	_, err := r.svc.RegisterTools(ctx, req)
	if status.Code(err) == codes.AlreadyExists {
		return fmt.Errorf("%w: %s", ErrToolClash, status.Convert(err).Message())
	}
	return err
}
