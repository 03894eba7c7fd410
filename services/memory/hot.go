package memory

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/agentbus/agentbus/platform/cache"
	"github.com/agentbus/agentbus/platform/state"
)

// CacheHot adapts a platform/cache.Cache to HotContext. A cache that fails
// never fails a read: the entries are loaded from history instead and the
// failure is logged once until the cache answers again.
func CacheHot(c cache.Cache, ttl time.Duration, log *slog.Logger) HotContext {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &cacheHot{c: c, ttl: ttl, log: log}
}

type cacheHot struct {
	c    cache.Cache
	ttl  time.Duration
	log  *slog.Logger
	down atomic.Bool
}

func (h *cacheHot) failed(op string, err error) {
	if !h.down.Swap(true) {
		h.log.Warn("memory: hot-context cache unavailable; reading history instead", "op", op, "err", err)
	}
}

func (h *cacheHot) ok() {
	if h.down.Swap(false) {
		h.log.Info("memory: hot-context cache is back")
	}
}

func (h *cacheHot) Invalidate(ctx context.Context, sessionID string) error {
	if err := h.c.Invalidate(ctx, sessionID); err != nil {
		h.failed("invalidate", err)
		return nil
	}
	h.ok()
	return nil
}

func (h *cacheHot) Recent(ctx context.Context, sessionID string, load func(context.Context) ([]state.Entry, error)) ([]state.Entry, error) {
	cached, hit, v, err := h.c.Get(ctx, sessionID)
	if err != nil {
		h.failed("get", err)
		return load(ctx)
	}
	h.ok()
	if hit {
		out := make([]state.Entry, 0, len(cached))
		for _, ce := range cached {
			var e state.Entry
			if err := json.Unmarshal(ce.Data, &e); err != nil {
				// Not ours or corrupt: drop it and read history.
				_ = h.c.Invalidate(ctx, sessionID)
				return load(ctx)
			}
			out = append(out, e)
		}
		return out, nil
	}
	es, err := load(ctx)
	if err != nil {
		return nil, err
	}
	fill := make([]cache.Entry, 0, len(es))
	for _, e := range es {
		b, err := json.Marshal(e)
		if err != nil {
			return es, nil
		}
		fill = append(fill, cache.Entry{Seq: e.Seq, Data: b})
	}
	if _, err := h.c.Fill(ctx, sessionID, v, fill, h.ttl); err != nil {
		h.failed("fill", err)
	}
	return es, nil
}
