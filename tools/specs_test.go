package tools_test

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/agentbus/agentbus/tools"
)

func TestLoadSpecs(t *testing.T) {
	t.Parallel()
	good := fstest.MapFS{
		"weather.json": {Data: []byte(`{"name":"weather","description":"forecast","inputSchema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]},"timeoutMs":5000}`)},
		"crm.json": {Data: []byte(`[
			{"name":"crm_lookup","description":"read","inputSchema":{"type":"object"},"idempotent":true},
			{"name":"crm_update","description":"write","inputSchema":{"type":"object"}}
		]`)},
		"README.md": {Data: []byte("not a spec")},
	}
	specs, err := tools.LoadSpecs(good)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "crm_lookup,crm_update,weather" {
		t.Fatalf("names %v", names)
	}
	if specs[0].Idempotent != true || specs[1].Idempotent || specs[2].Timeout != 5*time.Second {
		t.Fatalf("specs %+v", specs)
	}
	r := tools.NewRegistry()
	if err := r.RegisterSpecs(specs); err != nil {
		t.Fatal(err)
	}
	if e, err := r.Lookup("weather"); err != nil || e.Local() {
		t.Fatalf("weather: %v", err)
	}

	tests := []struct {
		name    string
		fsys    fstest.MapFS
		mention string
	}{
		{"not JSON", fstest.MapFS{"a.json": {Data: []byte(`{`)}}, "a.json"},
		{"unknown field", fstest.MapFS{"a.json": {Data: []byte(`{"name":"a","inputSchema":{"type":"object"},"idempotant":true}`)}}, "idempotant"},
		{"bad schema", fstest.MapFS{"a.json": {Data: []byte(`{"name":"a","inputSchema":{"type":"array"}}`)}}, "object"},
		{"bad name", fstest.MapFS{"a.json": {Data: []byte(`{"name":"a b","inputSchema":{"type":"object"}}`)}}, "name"},
		{"negative timeout", fstest.MapFS{"a.json": {Data: []byte(`{"name":"a","inputSchema":{"type":"object"},"timeoutMs":-1}`)}}, "negative"},
		{"duplicate across files", fstest.MapFS{
			"a.json": {Data: []byte(`{"name":"x","inputSchema":{"type":"object"}}`)},
			"b.json": {Data: []byte(`[{"name":"x","inputSchema":{"type":"object"}}]`)},
		}, "also in a.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := tools.LoadSpecs(tt.fsys)
			if err == nil || !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.mention)
			}
			if !errors.Is(err, tools.ErrInvalidSpec) && !errors.Is(err, tools.ErrDuplicate) {
				t.Fatalf("error %v wraps neither ErrInvalidSpec nor ErrDuplicate", err)
			}
		})
	}
}
