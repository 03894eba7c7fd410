package api

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/agentbus/agentbus/proto/agentbus/v1"
)

// GetContext returns the session's recent turns within a token budget.
func (s *Server) GetContext(ctx context.Context, req *pb.GetContextRequest) (*pb.GetContextResponse, error) {
	sid := req.GetSessionId()
	if err := validSession(sid); err != nil {
		return nil, err
	}
	if req.GetTokenBudget() < 0 {
		return nil, status.Error(codes.InvalidArgument, "token_budget is negative: use 0 for no trimming")
	}
	if _, err := s.knownSession(ctx, sid); err != nil {
		return nil, err
	}
	turns, err := s.cfg.Memory.Context(ctx, sid, int(req.GetTokenBudget()))
	if err != nil {
		return nil, toStatus(err, "read context of "+sid)
	}
	return &pb.GetContextResponse{Turns: turnsProto(turns)}, nil
}

// SearchHistory returns the session's turns containing the query.
func (s *Server) SearchHistory(ctx context.Context, req *pb.SearchHistoryRequest) (*pb.SearchHistoryResponse, error) {
	sid := req.GetSessionId()
	if err := validSession(sid); err != nil {
		return nil, err
	}
	if strings.TrimSpace(req.GetQuery()) == "" {
		return nil, status.Error(codes.InvalidArgument, "query is empty: pass the text to look for")
	}
	if req.GetLimit() < 0 {
		return nil, status.Error(codes.InvalidArgument, "limit is negative: use 0 for the default (100) or up to 1000")
	}
	if _, err := s.knownSession(ctx, sid); err != nil {
		return nil, err
	}
	turns, err := s.cfg.Memory.Search(ctx, sid, req.GetQuery(), int(req.GetLimit()))
	if err != nil {
		return nil, toStatus(err, "search history of "+sid)
	}
	return &pb.SearchHistoryResponse{Turns: turnsProto(turns)}, nil
}

// ListTools returns every registered tool.
func (s *Server) ListTools(context.Context, *pb.ListToolsRequest) (*pb.ListToolsResponse, error) {
	specs := s.cfg.Tools.All()
	out := &pb.ListToolsResponse{Tools: make([]*pb.Tool, 0, len(specs))}
	for _, sp := range specs {
		local := false
		if e, err := s.cfg.Tools.Lookup(sp.Name); err == nil {
			local = e.Local()
		}
		out.Tools = append(out.Tools, &pb.Tool{Name: sp.Name, Description: sp.Description, InputSchema: string(sp.InputSchema),
			Idempotent: sp.Idempotent, TimeoutMs: sp.EffectiveTimeout().Milliseconds(), Local: local})
	}
	return out, nil
}

func turnsProto(ts []Turn) []*pb.Turn {
	out := make([]*pb.Turn, len(ts))
	for i, t := range ts {
		out[i] = &pb.Turn{Seq: t.Seq, Type: t.Type, Time: timestamppb.New(t.Time), Text: t.Text}
	}
	return out
}
