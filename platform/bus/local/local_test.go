package local_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/bus/bustest"
	"github.com/agentbus/agentbus/platform/bus/local"
)

func toOptions(path string, rules []bustest.Rule) local.Options {
	opts := local.Options{Path: path}
	for _, r := range rules {
		opts.Rules = append(opts.Rules, local.Rule{Name: r.Name, Pattern: []byte(r.Pattern), Queue: r.Queue})
		opts.Queues = append(opts.Queues, local.QueueConfig{Name: r.Queue, MaxReceiveCount: r.MaxReceiveCount, Visibility: r.Visibility})
	}
	return opts
}

func backend(t *testing.T, opts local.Options) bustest.Backend {
	t.Helper()
	b, err := local.Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			b.Close()
		}
	})
	be := bustest.Backend{
		Publisher: b,
		Queue:     func(name string) bus.Queue { return b.Queue(name) },
		DLQ:       func(name string) bus.DLQ { return b.DLQ(name) },
		SendRaw:   b.SendRaw,
	}
	if opts.Path != "" {
		be.Restart = func(t *testing.T) bustest.Backend {
			closed = true
			if err := b.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			return backend(t, opts)
		}
	}
	return be
}

func TestConformanceMemory(t *testing.T) {
	t.Parallel()
	bustest.Run(t, bustest.Features{
		ExactlyOnceWithinVisibility: true, DLQReason: true, MaxBatch: local.MaxReceiveBatch,
		Visibility: time.Second, NackDelay: time.Second,
	}, func(t *testing.T, rules []bustest.Rule) bustest.Backend {
		return backend(t, toOptions("", rules))
	})
}

func TestConformanceFile(t *testing.T) {
	t.Parallel()
	bustest.Run(t, bustest.Features{
		Persistent: true, ExactlyOnceWithinVisibility: true, DLQReason: true, MaxBatch: local.MaxReceiveBatch,
		Visibility: time.Second, NackDelay: time.Second,
	}, func(t *testing.T, rules []bustest.Rule) bustest.Backend {
		return backend(t, toOptions(filepath.Join(t.TempDir(), "bus.db"), rules))
	})
}
