package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentbus/agentbus/platform/bus"
	pb "github.com/agentbus/agentbus/proto/agentbus/v1"
	"github.com/agentbus/agentbus/tools"
)

// PluginHost is what the PluginService needs of the runtime: a place to
// register plug-in tool specs and the plug-in queues.
type PluginHost interface {
	// RegisterTools adds or updates specs of tools a plug-in serves
	// elsewhere, and persists them. An error wrapping tools.ErrInvalidSpec
	// is INVALID_ARGUMENT, one wrapping tools.ErrDuplicate (a built-in's
	// name) ALREADY_EXISTS.
	RegisterTools(ctx context.Context, plugin string, specs []tools.Spec) error
	// PluginQueue returns the named plug-in queue: one a plug-in rule
	// targets. Any other name is an error wrapping ErrUnknownQueue.
	PluginQueue(name string) (PluginQueue, error)
}

// PluginQueue is a plug-in queue and its settings.
type PluginQueue struct {
	Queue                    bus.Queue
	VisibilityTimeoutSeconds int
	MaxReceiveCount          int
	// Rules are the names of the rules that feed the queue.
	Rules []string
}

// ErrUnknownQueue is returned by PluginHost.PluginQueue for a name that no
// plug-in rule targets (the catalog's service queues included).
var ErrUnknownQueue = errors.New("not a plug-in queue")

// PluginSourcePrefix starts the CloudEvents source of events a plug-in
// publishes; the runtime's own sources (agentbus/planner, ...) are refused
// so that a plug-in cannot pass for a service (source+id is the dedupe key).
const PluginSourcePrefix = "agentbus/plugin/"

// Plug-in queue call bounds, SQS's.
const (
	maxReceiveBatch = 10
	maxReceiveWait  = 20 * time.Second
	maxVisibility   = 12 * time.Hour
)

var _ pb.PluginServiceServer = (*Server)(nil)

func (s *Server) plugins() (PluginHost, error) {
	if s.cfg.Plugins == nil {
		return nil, status.Error(codes.Unimplemented, "this server hosts no plug-ins")
	}
	return s.cfg.Plugins, nil
}

// RegisterTools implements pb.PluginServiceServer.
func (s *Server) RegisterTools(ctx context.Context, req *pb.RegisterToolsRequest) (*pb.RegisterToolsResponse, error) {
	host, err := s.plugins()
	if err != nil {
		return nil, err
	}
	if len(req.GetTools()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "no tools: RegisterToolsRequest.tools is empty")
	}
	specs := make([]tools.Spec, 0, len(req.GetTools()))
	for _, t := range req.GetTools() {
		if t.GetTimeoutMs() < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "tool %q: negative timeout_ms", t.GetName())
		}
		specs = append(specs, tools.Spec{
			Name: t.GetName(), Description: t.GetDescription(), InputSchema: json.RawMessage(t.GetInputSchema()),
			Idempotent: t.GetIdempotent(), Timeout: time.Duration(t.GetTimeoutMs()) * time.Millisecond,
		})
	}
	switch err := host.RegisterTools(ctx, req.GetPlugin(), specs); {
	case err == nil:
		s.log.Info("api: plug-in tools registered", "plugin", req.GetPlugin(), "tools", len(specs))
		return &pb.RegisterToolsResponse{}, nil
	case errors.Is(err, tools.ErrDuplicate):
		return nil, status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, tools.ErrInvalidSpec):
		return nil, status.Error(codes.InvalidArgument, err.Error())
	default:
		return nil, status.Errorf(codes.Internal, "register tools: %v", err)
	}
}

func (s *Server) pluginQueue(name string) (PluginQueue, error) {
	host, err := s.plugins()
	if err != nil {
		return PluginQueue{}, err
	}
	q, err := host.PluginQueue(name)
	if errors.Is(err, ErrUnknownQueue) {
		return PluginQueue{}, status.Errorf(codes.NotFound, "queue %q: %v (add the plug-in's rule with `agentbus rules add` and restart agentbus dev)", name, err)
	}
	if err != nil {
		return PluginQueue{}, status.Errorf(codes.Internal, "queue %q: %v", name, err)
	}
	return q, nil
}

func (s *Server) queue(name string) (bus.Queue, error) {
	q, err := s.pluginQueue(name)
	return q.Queue, err
}

// DescribeQueue implements pb.PluginServiceServer.
func (s *Server) DescribeQueue(_ context.Context, req *pb.DescribeQueueRequest) (*pb.QueueInfo, error) {
	q, err := s.pluginQueue(req.GetQueue())
	if err != nil {
		return nil, err
	}
	return &pb.QueueInfo{Queue: req.GetQueue(), VisibilityTimeoutSeconds: int32(q.VisibilityTimeoutSeconds),
		MaxReceiveCount: int32(q.MaxReceiveCount), Rules: q.Rules}, nil
}

// queueErr maps a queue error: a stale receipt is the caller's.
func queueErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, bus.ErrStaleReceipt) {
		return status.Errorf(codes.FailedPrecondition, "%s: %v", op, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Errorf(codes.Internal, "%s: %v", op, err)
}

// Receive implements pb.PluginServiceServer.
func (s *Server) Receive(ctx context.Context, req *pb.ReceiveRequest) (*pb.ReceiveResponse, error) {
	q, err := s.queue(req.GetQueue())
	if err != nil {
		return nil, err
	}
	n := int(req.GetMaxMessages())
	if n < 0 || n > maxReceiveBatch {
		return nil, status.Errorf(codes.InvalidArgument, "max_messages %d is outside 0..%d", n, maxReceiveBatch)
	}
	n = max(n, 1)
	wait := time.Duration(req.GetWaitMs()) * time.Millisecond
	if wait < 0 || wait > maxReceiveWait {
		return nil, status.Errorf(codes.InvalidArgument, "wait_ms %d is outside 0..%d", req.GetWaitMs(), maxReceiveWait.Milliseconds())
	}
	vis := time.Duration(req.GetVisibilityMs()) * time.Millisecond
	if vis < 0 || vis > maxVisibility {
		return nil, status.Errorf(codes.InvalidArgument, "visibility_ms %d is outside 0..%d", req.GetVisibilityMs(), maxVisibility.Milliseconds())
	}
	msgs, err := q.Receive(ctx, n, wait, vis)
	if err != nil {
		return nil, queueErr("receive", err)
	}
	out := &pb.ReceiveResponse{Deliveries: make([]*pb.Delivery, 0, len(msgs))}
	for _, m := range msgs {
		d := &pb.Delivery{Id: m.ID, Receipt: m.Receipt, ReceiveCount: int32(m.ReceiveCount), Body: m.Body}
		if m.DecodeErr != nil {
			d.DecodeError = m.DecodeErr.Error()
		} else {
			b, err := json.Marshal(m.Event)
			if err != nil {
				d.DecodeError = fmt.Sprintf("encode event: %v", err)
			} else {
				d.CloudEvent = string(b)
				d.Body = nil // the event says it all; keep the message small
			}
		}
		out.Deliveries = append(out.Deliveries, d)
	}
	return out, nil
}

// Ack implements pb.PluginServiceServer.
func (s *Server) Ack(ctx context.Context, req *pb.AckRequest) (*pb.AckResponse, error) {
	q, err := s.queue(req.GetQueue())
	if err != nil {
		return nil, err
	}
	if err := q.Ack(ctx, req.GetReceipts()...); err != nil {
		return nil, queueErr("ack", err)
	}
	return &pb.AckResponse{}, nil
}

// Nack implements pb.PluginServiceServer.
func (s *Server) Nack(ctx context.Context, req *pb.NackRequest) (*pb.NackResponse, error) {
	q, err := s.queue(req.GetQueue())
	if err != nil {
		return nil, err
	}
	d := time.Duration(req.GetDelayMs()) * time.Millisecond
	if d < 0 || d > maxVisibility {
		return nil, status.Errorf(codes.InvalidArgument, "delay_ms %d is outside 0..%d", req.GetDelayMs(), maxVisibility.Milliseconds())
	}
	if err := q.Nack(ctx, req.GetReceipt(), d); err != nil {
		return nil, queueErr("nack", err)
	}
	return &pb.NackResponse{}, nil
}

// Extend implements pb.PluginServiceServer.
func (s *Server) Extend(ctx context.Context, req *pb.ExtendRequest) (*pb.ExtendResponse, error) {
	q, err := s.queue(req.GetQueue())
	if err != nil {
		return nil, err
	}
	d := time.Duration(req.GetVisibilityMs()) * time.Millisecond
	if d <= 0 || d > maxVisibility {
		return nil, status.Errorf(codes.InvalidArgument, "visibility_ms %d is outside 1..%d", req.GetVisibilityMs(), maxVisibility.Milliseconds())
	}
	if err := q.Extend(ctx, req.GetReceipt(), d); err != nil {
		return nil, queueErr("extend", err)
	}
	return &pb.ExtendResponse{}, nil
}

// DeadLetter implements pb.PluginServiceServer.
func (s *Server) DeadLetter(ctx context.Context, req *pb.DeadLetterRequest) (*pb.DeadLetterResponse, error) {
	q, err := s.queue(req.GetQueue())
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(req.GetReason()) == "" {
		return nil, status.Error(codes.InvalidArgument, "reason is empty: say why the message can never succeed")
	}
	if err := q.DeadLetter(ctx, bus.Message{Receipt: req.GetReceipt()}, req.GetReason()); err != nil {
		return nil, queueErr("dead-letter", err)
	}
	return &pb.DeadLetterResponse{}, nil
}

// Publish implements pb.PluginServiceServer.
func (s *Server) Publish(ctx context.Context, req *pb.PublishRequest) (*pb.PublishResponse, error) {
	if _, err := s.plugins(); err != nil {
		return nil, err
	}
	if len(req.GetCloudEvents()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "no events: PublishRequest.cloud_events is empty")
	}
	evs := make([]event.Event, 0, len(req.GetCloudEvents()))
	for i, raw := range req.GetCloudEvents() {
		var ev event.Event
		if err := json.Unmarshal([]byte(raw), &ev); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "cloud_events[%d]: not a structured CloudEvent: %v", i, err)
		}
		if !strings.HasPrefix(ev.Source(), PluginSourcePrefix) || len(ev.Source()) == len(PluginSourcePrefix) {
			return nil, status.Errorf(codes.InvalidArgument, "cloud_events[%d]: source %q: a plug-in publishes as %s<plugin name>", i, ev.Source(), PluginSourcePrefix)
		}
		if s.cfg.Validator != nil {
			if err := s.cfg.Validator.Validate(ev); err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "cloud_events[%d]: %v", i, err)
			}
		}
		evs = append(evs, ev)
	}
	if err := s.cfg.Publisher.Publish(ctx, evs...); err != nil {
		return nil, status.Errorf(codes.Internal, "publish: %v", err)
	}
	return &pb.PublishResponse{}, nil
}
