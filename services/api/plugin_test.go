package api

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentbus/agentbus/platform/bus/local"
	pb "github.com/agentbus/agentbus/proto/agentbus/v1"
	"github.com/agentbus/agentbus/tools"
)

// fakeHost serves one plug-in queue of a local bus and records specs.
type fakeHost struct {
	bus *local.Bus
	err error
}

func (h *fakeHost) RegisterTools(context.Context, string, []tools.Spec) error { return h.err }

func (h *fakeHost) PluginQueue(name string) (PluginQueue, error) {
	if name != "plugin-x" {
		return PluginQueue{}, fmt.Errorf("%w: %s", ErrUnknownQueue, name)
	}
	return PluginQueue{Queue: h.bus.Queue(name), VisibilityTimeoutSeconds: 30, MaxReceiveCount: 5, Rules: []string{"r"}}, nil
}

func pluginServer(t *testing.T, host PluginHost) *Server {
	t.Helper()
	s, err := New(Config{Publisher: nopPublisher{}, Sessions: newFakeStore(), Subscriber: &fakeSub{}, Memory: noMemory{},
		Tools: tools.NewRegistry(), Plugins: host})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPluginServiceArguments(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := local.Open(ctx, local.Options{Queues: []local.QueueConfig{{Name: "plugin-x"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	host := &fakeHost{bus: b}
	s := pluginServer(t, host)
	none := pluginServer(t, nil)
	cases := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"no host", func() error { _, err := none.Receive(ctx, &pb.ReceiveRequest{Queue: "plugin-x"}); return err }, codes.Unimplemented},
		{"no host publish", func() error { _, err := none.Publish(ctx, &pb.PublishRequest{}); return err }, codes.Unimplemented},
		{"batch too big", func() error {
			_, err := s.Receive(ctx, &pb.ReceiveRequest{Queue: "plugin-x", MaxMessages: 11})
			return err
		}, codes.InvalidArgument},
		{"wait too long", func() error {
			_, err := s.Receive(ctx, &pb.ReceiveRequest{Queue: "plugin-x", WaitMs: 20001})
			return err
		}, codes.InvalidArgument},
		{"negative visibility", func() error {
			_, err := s.Receive(ctx, &pb.ReceiveRequest{Queue: "plugin-x", VisibilityMs: -1})
			return err
		}, codes.InvalidArgument},
		{"negative delay", func() error {
			_, err := s.Nack(ctx, &pb.NackRequest{Queue: "plugin-x", Receipt: "r", DelayMs: -1})
			return err
		}, codes.InvalidArgument},
		{"zero extend", func() error {
			_, err := s.Extend(ctx, &pb.ExtendRequest{Queue: "plugin-x", Receipt: "r"})
			return err
		}, codes.InvalidArgument},
		{"dead-letter without reason", func() error {
			_, err := s.DeadLetter(ctx, &pb.DeadLetterRequest{Queue: "plugin-x", Receipt: "r"})
			return err
		}, codes.InvalidArgument},
		{"unknown queue", func() error { _, err := s.Ack(ctx, &pb.AckRequest{Queue: "nope", Receipts: []string{"r"}}); return err }, codes.NotFound},
		{"negative timeout", func() error {
			_, err := s.RegisterTools(ctx, &pb.RegisterToolsRequest{Tools: []*pb.Tool{{Name: "t", TimeoutMs: -1}}})
			return err
		}, codes.InvalidArgument},
		{"empty publish", func() error { _, err := s.Publish(ctx, &pb.PublishRequest{}); return err }, codes.InvalidArgument},
	}
	for _, tc := range cases {
		if got := status.Code(tc.call()); got != tc.want {
			t.Errorf("%s: %v; want %v", tc.name, got, tc.want)
		}
	}
	host.err = errors.New("disk full")
	if _, err := s.RegisterTools(ctx, &pb.RegisterToolsRequest{Tools: []*pb.Tool{{Name: "t"}}}); status.Code(err) != codes.Internal {
		t.Errorf("host failure: %v; want INTERNAL", err)
	}
}

// TestPluginQueueRoundTrip: receive, extend, nack, receive again, ack; a
// receipt used after its ack is FAILED_PRECONDITION (stale).
func TestPluginQueueRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := local.Open(ctx, local.Options{Queues: []local.QueueConfig{{Name: "plugin-x"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s := pluginServer(t, &fakeHost{bus: b})
	if err := b.SendRaw(ctx, "plugin-x", []byte("not an event")); err != nil {
		t.Fatal(err)
	}
	recv := func() *pb.Delivery {
		t.Helper()
		r, err := s.Receive(ctx, &pb.ReceiveRequest{Queue: "plugin-x", MaxMessages: 10, WaitMs: 2000, VisibilityMs: 5000})
		if err != nil || len(r.GetDeliveries()) != 1 {
			t.Fatalf("receive: %v, %v", r, err)
		}
		return r.GetDeliveries()[0]
	}
	d := recv()
	if d.GetDecodeError() == "" || string(d.GetBody()) != "not an event" || d.GetReceiveCount() != 1 {
		t.Errorf("delivery %+v; want the raw body with its decode error", d)
	}
	if _, err := s.Extend(ctx, &pb.ExtendRequest{Queue: "plugin-x", Receipt: d.GetReceipt(), VisibilityMs: 10000}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Nack(ctx, &pb.NackRequest{Queue: "plugin-x", Receipt: d.GetReceipt()}); err != nil {
		t.Fatal(err)
	}
	d = recv()
	if d.GetReceiveCount() != 2 {
		t.Errorf("receive count after nack = %d; want 2", d.GetReceiveCount())
	}
	if _, err := s.Ack(ctx, &pb.AckRequest{Queue: "plugin-x", Receipts: []string{d.GetReceipt()}}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Extend(ctx, &pb.ExtendRequest{Queue: "plugin-x", Receipt: d.GetReceipt(), VisibilityMs: 1000})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("extend after ack: %v; want FAILED_PRECONDITION", err)
	}
	info, err := s.DescribeQueue(ctx, &pb.DescribeQueueRequest{Queue: "plugin-x"})
	if err != nil || info.GetVisibilityTimeoutSeconds() != 30 || info.GetMaxReceiveCount() != 5 {
		t.Errorf("describe: %+v, %v", info, err)
	}
	r, err := s.Receive(ctx, &pb.ReceiveRequest{Queue: "plugin-x", WaitMs: 50})
	if err != nil || len(r.GetDeliveries()) != 0 {
		t.Errorf("queue after ack: %v, %v; want empty", r, err)
	}
}
