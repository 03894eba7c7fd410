package sqlite_test

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/platform/state/sqlite"
)

func benchStore(b *testing.B) *sqlite.Store {
	b.Helper()
	s, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

var payload = []byte(`{"specversion":"1.0","id":"x","source":"agentbus/bench","type":"agentbus.step.completed.v1","data":{"step":1,"results":[{"callId":"c1","ok":true,"output":42}]}}`)

// BenchmarkAppendHistory appends one event per call to one session from
// parallel goroutines (the memory service's write path).
func BenchmarkAppendHistory(b *testing.B) {
	s := benchStore(b)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := s.AppendHistory(b.Context(), "s-1", state.Entry{Source: "agentbus/bench", ID: fmt.Sprint(i), Data: payload}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkClaimComplete takes and completes one idempotency claim per call
// with one outbox event (the tool-gateway's write path).
func BenchmarkClaimComplete(b *testing.B) {
	s := benchStore(b)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			key := fmt.Sprintf("s-1/1/c%d", i)
			if _, ok, err := s.Claim(b.Context(), state.ClaimRequest{SessionID: "s-1", Key: key, Holder: "h", Lease: time.Minute, TTL: time.Hour}); err != nil || !ok {
				b.Error(ok, err)
				return
			}
			if _, err := s.CompleteClaim(b.Context(), "s-1", key, "h", payload, state.OutboxEvent{ID: key, Payload: payload}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkUpdateSession updates one session per goroutine with an outbox
// event (the planner's write path).
func BenchmarkUpdateSession(b *testing.B) {
	s := benchStore(b)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		id := fmt.Sprintf("s-%d", n.Add(1))
		sess, err := s.CreateSession(b.Context(), state.Session{ID: id, Status: state.StatusRunning, Data: payload})
		if err != nil {
			b.Error(err)
			return
		}
		for i := 0; pb.Next(); i++ {
			sess, err = s.UpdateSession(b.Context(), sess, state.OutboxEvent{ID: fmt.Sprintf("%s-%d", id, i), Payload: payload})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkReadHistory reads a page of 50 entries of a 1,000-entry history.
func BenchmarkReadHistory(b *testing.B) {
	s := benchStore(b)
	var es []state.Entry
	for i := range 1000 {
		es = append(es, state.Entry{Source: "agentbus/bench", ID: fmt.Sprint(i), Data: payload})
	}
	if _, err := s.AppendHistory(b.Context(), "s-1", es...); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if got, err := s.ReadHistory(b.Context(), "s-1", 500, 50); err != nil || len(got) != 50 {
				b.Error(len(got), err)
				return
			}
		}
	})
}
