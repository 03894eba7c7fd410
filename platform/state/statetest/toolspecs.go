package statetest

import (
	"context"
	"errors"
	"testing"

	"github.com/agentbus/agentbus/platform/state"
)

// testToolSpecs: put, replace, list sorted by name, delete (idempotent),
// and invalid specs rejected with nothing written.
func testToolSpecs(t *testing.T, s state.Store) {
	ts, ok := s.(state.ToolSpecs)
	if !ok {
		t.Fatalf("%T does not implement state.ToolSpecs", s)
	}
	ctx := context.Background()
	if got, err := ts.ListToolSpecs(ctx); err != nil || len(got) != 0 {
		t.Fatalf("empty store: ListToolSpecs = %v, %v; want none", got, err)
	}
	a := state.ToolSpec{Name: "zeta_tool", Plugin: "p1", Spec: []byte(`{"name":"zeta_tool"}`)}
	b := state.ToolSpec{Name: "alpha-tool", Plugin: "p1", Spec: []byte(`{"name":"alpha-tool","v":1}`)}
	if err := ts.PutToolSpecs(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	b.Plugin, b.Spec = "p2", []byte(`{"name":"alpha-tool","v":2}`)
	if err := ts.PutToolSpecs(ctx, b); err != nil {
		t.Fatal(err)
	}
	got, err := ts.ListToolSpecs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "alpha-tool" || got[1].Name != "zeta_tool" {
		t.Fatalf("ListToolSpecs = %+v; want alpha-tool, zeta_tool", got)
	}
	if got[0].Plugin != "p2" || string(got[0].Spec) != `{"name":"alpha-tool","v":2}` || got[0].UpdatedAt.IsZero() {
		t.Errorf("replaced spec = %+v; want plugin p2, v 2, an update time", got[0])
	}

	bad := []state.ToolSpec{
		{Name: "", Spec: []byte(`{}`)},
		{Name: "has space", Spec: []byte(`{}`)},
		{Name: "not_json", Spec: []byte(`nope`)},
		{Name: "array", Spec: []byte(`[1]`)},
		{Name: "huge", Spec: append(append([]byte(`{"x":"`), make([]byte, state.MaxToolSpecSize)...), `"}`...)},
	}
	for _, sp := range bad {
		// A valid spec first: nothing of the call may be written.
		err := ts.PutToolSpecs(ctx, state.ToolSpec{Name: "written_anyway", Spec: []byte(`{}`)}, sp)
		if !errors.Is(err, state.ErrInvalid) {
			t.Errorf("PutToolSpecs(%q) = %v; want ErrInvalid", sp.Name, err)
		}
	}
	if err := ts.DeleteToolSpec(ctx, "zeta_tool"); err != nil {
		t.Fatal(err)
	}
	if err := ts.DeleteToolSpec(ctx, "never_there"); err != nil {
		t.Errorf("DeleteToolSpec(missing) = %v; want nil", err)
	}
	got, err = ts.ListToolSpecs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "alpha-tool" {
		t.Fatalf("after delete: %+v; want only alpha-tool (and nothing of the invalid calls)", got)
	}
}
