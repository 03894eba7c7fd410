package builtin_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/agentbus/agentbus/tools"
	"github.com/agentbus/agentbus/tools/builtin"
	"github.com/agentbus/agentbus/tools/builtin/httpget"
	"github.com/agentbus/agentbus/tools/builtin/memorysearch"
)

func TestRegister(t *testing.T) {
	t.Parallel()
	search := memorysearch.SearchFunc(func(context.Context, string, string, int) ([]memorysearch.Hit, error) { return nil, nil })
	tests := []struct {
		name        string
		cfg         builtin.Config
		searchLocal bool
	}{
		{"with searcher", builtin.Config{Searcher: search}, true},
		{"without searcher", builtin.Config{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := tools.NewRegistry()
			if err := builtin.Register(r, tt.cfg); err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, s := range r.All() {
				names = append(names, s.Name)
				// Every built-in is read-only or safe to repeat.
				if !s.Idempotent {
					t.Errorf("%s is not idempotent", s.Name)
				}
			}
			if !slices.Equal(names, builtin.Names()) {
				t.Fatalf("registered %v, want %v", names, builtin.Names())
			}
			e, _ := r.Lookup(memorysearch.Name)
			if e.Local() != tt.searchLocal {
				t.Fatalf("memory_search local = %v", e.Local())
			}
			if err := builtin.Register(r, tt.cfg); !errors.Is(err, tools.ErrDuplicate) {
				t.Fatalf("second Register: %v", err)
			}
		})
	}
	if err := builtin.Register(tools.NewRegistry(), builtin.Config{HTTP: httpget.Config{AllowHosts: []string{"a/b"}}}); err == nil {
		t.Fatal("bad http_get config accepted")
	}
}
