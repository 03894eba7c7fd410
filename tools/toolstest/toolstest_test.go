package toolstest_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/tools"
	"github.com/agentbus/agentbus/tools/toolstest"
)

func TestSideEffect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		idempotent  bool
		wantEffects int
	}{
		{"non-idempotent repeats the effect", false, 3},
		{"idempotent honours the key", true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "fx.log")
			s := &toolstest.SideEffect{Path: path, Idempotent: tt.idempotent}
			if s.Spec().Idempotent != tt.idempotent || s.Spec().Name != "side_effect" {
				t.Fatalf("spec %+v", s.Spec())
			}
			var wg sync.WaitGroup
			for range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := s.Run(context.Background(), tools.Call{IdempotencyKey: "s/1/c", Input: json.RawMessage(`{}`)}); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if _, err := s.Run(context.Background(), tools.Call{IdempotencyKey: "s/1/other"}); err != nil {
				t.Fatal(err)
			}
			runs, _ := toolstest.Count(path, toolstest.KindRun, "s/1/c")
			effects, _ := toolstest.Count(path, toolstest.KindEffect, "s/1/c")
			if runs != 3 || effects != tt.wantEffects {
				t.Fatalf("runs %d effects %d, want 3 and %d", runs, effects, tt.wantEffects)
			}
			all, err := toolstest.Counts(path, toolstest.KindEffect)
			if err != nil || all["s/1/other"] != 1 || len(all) != 2 {
				t.Fatalf("counts %v %v", all, err)
			}
		})
	}
}

func TestSideEffectErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if n, err := toolstest.Count(filepath.Join(dir, "missing"), toolstest.KindRun, "k"); n != 0 || err != nil {
		t.Fatalf("missing file: %d %v", n, err)
	}
	s := &toolstest.SideEffect{Path: filepath.Join(dir, "fx.log"), Delay: time.Minute}
	for _, key := range []string{"", "a b", "a\nb"} {
		if _, err := s.Run(context.Background(), tools.Call{IdempotencyKey: key}); err == nil {
			t.Errorf("key %q accepted", key)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Run(ctx, tools.Call{IdempotencyKey: "k"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("delay ignoring ctx: %v", err)
	}
	if n, _ := toolstest.Count(s.Path, toolstest.KindEffect, "k"); n != 0 {
		t.Fatal("effect recorded for a call cut short before its effect")
	}
	bad := &toolstest.SideEffect{Path: filepath.Join(dir, "no", "such", "dir", "fx.log")}
	if _, err := bad.Run(context.Background(), tools.Call{IdempotencyKey: "k"}); err == nil {
		t.Fatal("unwritable path accepted")
	}
}
