// Package toolstest holds tools for tests of the tool-gateway's exactly-once
// protocol: SideEffect records every execution in a file, so that a crash
// test running in several processes (killed and restarted) can count how
// often a call really ran.
package toolstest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/agentbus/agentbus/tools"
)

// Record kinds written to a SideEffect's file, one "<kind> <key>" line each.
const (
	// KindRun is written at every execution of the tool.
	KindRun = "run"
	// KindEffect is written when the execution performs its effect: always
	// for a non-idempotent tool, only for a key not seen before for an
	// idempotent one (that is what makes it idempotent).
	KindEffect = "effect"
)

// SideEffect is a tool whose effect is a line appended (and fsynced) to a
// file. It is safe for concurrent use within a process; across processes it
// relies on O_APPEND writes of one short line being atomic.
type SideEffect struct {
	// ToolName defaults to "side_effect".
	ToolName string
	// Path is the file the tool appends to. Required.
	Path string
	// Idempotent declares the tool idempotent (and makes it honour the key).
	Idempotent bool
	// Delay is how long each execution takes (honouring ctx) before its
	// effect; for timeout and in-progress tests.
	Delay time.Duration
	// Timeout is the spec's timeout; zero means 5s.
	Timeout time.Duration

	mu sync.Mutex
}

var _ tools.Tool = (*SideEffect)(nil)

// Spec describes the tool.
func (s *SideEffect) Spec() tools.Spec {
	name := s.ToolName
	if name == "" {
		name = "side_effect"
	}
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	return tools.Spec{
		Name:        name,
		Description: "Test tool: records one effect per call in a file.",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"note":{"type":"string","maxLength":100}},"additionalProperties":false}`),
		Idempotent:  s.Idempotent,
		Timeout:     timeout,
	}
}

// Run records the execution and the effect.
func (s *SideEffect) Run(ctx context.Context, call tools.Call) (json.RawMessage, error) {
	if call.IdempotencyKey == "" || strings.ContainsAny(call.IdempotencyKey, " \n") {
		return nil, fmt.Errorf("side_effect: bad idempotency key %q", call.IdempotencyKey)
	}
	if err := s.append(KindRun, call.IdempotencyKey); err != nil {
		return nil, err
	}
	if s.Delay > 0 {
		select {
		case <-time.After(s.Delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Idempotent {
		n, err := Count(s.Path, KindEffect, call.IdempotencyKey)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			return json.Marshal(map[string]any{"key": call.IdempotencyKey, "repeated": true})
		}
	}
	if err := s.appendLocked(KindEffect, call.IdempotencyKey); err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{"key": call.IdempotencyKey, "repeated": false})
}

func (s *SideEffect) append(kind, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appendLocked(kind, key)
}

func (s *SideEffect) appendLocked(kind, key string) error {
	f, err := os.OpenFile(s.Path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("side_effect: %w", err)
	}
	_, werr := f.WriteString(kind + " " + key + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("side_effect: %w", err)
	}
	return nil
}

// Count returns how many records of kind for key the file holds; a missing
// file counts zero.
func Count(path, kind, key string) (int, error) {
	counts, err := Counts(path, kind)
	return counts[key], err
}

// Counts returns, for kind, the number of records per key.
func Counts(path, kind string) (map[string]int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]int{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("side_effect: %w", err)
	}
	out := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, key, ok := strings.Cut(sc.Text(), " ")
		if ok && k == kind {
			out[key]++
		}
	}
	return out, sc.Err()
}
