package tools_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentbus/agentbus/tools"
)

// echo is a minimal local tool for registry tests.
type echo struct {
	spec tools.Spec
}

func (e echo) Spec() tools.Spec { return e.spec }
func (e echo) Run(ctx context.Context, c tools.Call) (json.RawMessage, error) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= 0 {
		return nil, ctx.Err()
	}
	return c.Input, nil
}

const echoSchema = `{"type":"object","properties":{"text":{"type":"string","minLength":1},"n":{"type":"integer","minimum":0}},"required":["text"],"additionalProperties":false}`

func newEcho(name string) echo {
	return echo{spec: tools.Spec{Name: name, Description: "echoes", InputSchema: json.RawMessage(echoSchema), Idempotent: true, Timeout: time.Second}}
}

func TestRegisterRejectsBadSpecs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec tools.Spec
	}{
		{"empty name", tools.Spec{InputSchema: json.RawMessage(`{"type":"object"}`)}},
		{"name with space", tools.Spec{Name: "a b", InputSchema: json.RawMessage(`{"type":"object"}`)}},
		{"name too long", tools.Spec{Name: strings.Repeat("a", 65), InputSchema: json.RawMessage(`{"type":"object"}`)}},
		{"no schema", tools.Spec{Name: "x"}},
		{"schema not JSON", tools.Spec{Name: "x", InputSchema: json.RawMessage(`{`)}},
		{"schema not object type", tools.Spec{Name: "x", InputSchema: json.RawMessage(`{"type":"string"}`)}},
		{"schema does not compile", tools.Spec{Name: "x", InputSchema: json.RawMessage(`{"type":"object","properties":{"a":{"type":"nosuchtype"}}}`)}},
		{"negative timeout", tools.Spec{Name: "x", InputSchema: json.RawMessage(`{"type":"object"}`), Timeout: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := tools.NewRegistry()
			if err := r.RegisterSpec(tt.spec); !errors.Is(err, tools.ErrInvalidSpec) {
				t.Fatalf("RegisterSpec: got %v, want ErrInvalidSpec", err)
			}
			if err := r.Register(echo{spec: tt.spec}); !errors.Is(err, tools.ErrInvalidSpec) {
				t.Fatalf("Register: got %v, want ErrInvalidSpec", err)
			}
		})
	}
}

func TestRegistryLocalAndPlugin(t *testing.T) {
	t.Parallel()
	r := tools.NewRegistry()
	if err := r.Register(newEcho("echo")); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(newEcho("echo")); !errors.Is(err, tools.ErrDuplicate) {
		t.Fatalf("second Register: %v, want ErrDuplicate", err)
	}
	plug := tools.Spec{Name: "weather", Description: "plug-in", InputSchema: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`)}
	if err := r.RegisterSpec(plug); err != nil {
		t.Fatal(err)
	}
	// A plug-in may update its spec.
	plug.Description = "plug-in v2"
	if err := r.RegisterSpec(plug); err != nil {
		t.Fatal(err)
	}
	// A plug-in may not shadow a local tool.
	if err := r.RegisterSpec(tools.Spec{Name: "echo", InputSchema: json.RawMessage(`{"type":"object"}`)}); !errors.Is(err, tools.ErrDuplicate) {
		t.Fatalf("RegisterSpec over local: %v, want ErrDuplicate", err)
	}

	e, err := r.Lookup("weather")
	if err != nil {
		t.Fatal(err)
	}
	if e.Local() || e.Spec().Description != "plug-in v2" {
		t.Fatalf("weather entry: local=%v desc=%q", e.Local(), e.Spec().Description)
	}
	if _, err := e.Run(context.Background(), tools.Call{Input: json.RawMessage(`{"city":"Oslo"}`)}); !errors.Is(err, tools.ErrNotLocal) {
		t.Fatalf("Run plug-in: %v, want ErrNotLocal", err)
	}
	if _, err := r.Lookup("nope"); !errors.Is(err, tools.ErrUnknownTool) {
		t.Fatalf("Lookup unknown: %v", err)
	}

	all := r.All()
	if len(all) != 2 || all[0].Name != "echo" || all[1].Name != "weather" {
		t.Fatalf("All: %+v", all)
	}
	got := r.Specs([]string{"weather", "missing", "echo", "weather"})
	if len(got) != 2 || got[0].Name != "weather" || got[1].Name != "echo" {
		t.Fatalf("Specs(allow): %+v", got)
	}
	if got := r.Specs([]string{}); len(got) != 0 {
		t.Fatalf("Specs(empty allow) = %d specs, want 0", len(got))
	}
	if m := r.Missing([]string{"zz", "echo", "aa", "zz"}); strings.Join(m, ",") != "aa,zz" {
		t.Fatalf("Missing: %v", m)
	}

	if r.Unregister("echo") {
		t.Fatal("Unregister removed a local tool")
	}
	if !r.Unregister("weather") {
		t.Fatal("Unregister did not remove the plug-in spec")
	}
	if _, err := r.Lookup("weather"); !errors.Is(err, tools.ErrUnknownTool) {
		t.Fatalf("after Unregister: %v", err)
	}
	// A local implementation may replace a plug-in spec of the same name.
	if err := r.RegisterSpec(tools.Spec{Name: "later", InputSchema: json.RawMessage(`{"type":"object"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(newEcho("later")); err != nil {
		t.Fatalf("Register over plug-in spec: %v", err)
	}
	if e, _ := r.Lookup("later"); !e.Local() {
		t.Fatal("later should be local now")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	r := tools.NewRegistry()
	if err := r.Register(newEcho("echo")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		input     string
		wantErr   bool
		wantInMsg []string
	}{
		{"valid", `{"text":"hi"}`, false, nil},
		{"valid with n", `{"text":"hi","n":3}`, false, nil},
		{"missing required", `{}`, true, []string{"text", "missing"}},
		{"empty input is {}", ``, true, []string{"text"}},
		{"wrong type names field", `{"text":5}`, true, []string{"/text"}},
		{"nested bound", `{"text":"a","n":-1}`, true, []string{"/n"}},
		{"extra property", `{"text":"a","x":1}`, true, []string{"x"}},
		{"not an object", `[1,2]`, true, []string{"object"}},
		{"null", `null`, true, nil},
		{"not JSON", `{"text":`, true, []string{"not valid JSON"}},
		{"two violations", `{"text":"","n":1.5}`, true, []string{"/text", "/n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := r.Validate("echo", json.RawMessage(tt.input))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate(%s) = %v, wantErr %v", tt.input, err, tt.wantErr)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, tools.ErrInvalidInput) {
				t.Fatalf("error %v does not wrap ErrInvalidInput", err)
			}
			var ie *tools.InputError
			if !errors.As(err, &ie) || ie.Tool != "echo" {
				t.Fatalf("error %v is not an InputError for echo", err)
			}
			for _, w := range tt.wantInMsg {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if err := r.Validate("nope", json.RawMessage(`{}`)); !errors.Is(err, tools.ErrUnknownTool) {
		t.Fatalf("Validate unknown: %v", err)
	}
}

func TestEntryRunValidatesAndTimesOut(t *testing.T) {
	t.Parallel()
	r := tools.NewRegistry()
	if err := r.Register(newEcho("echo")); err != nil {
		t.Fatal(err)
	}
	e, _ := r.Lookup("echo")
	out, err := e.Run(context.Background(), tools.Call{Input: json.RawMessage(`{"text":"x"}`)})
	if err != nil || string(out) != `{"text":"x"}` {
		t.Fatalf("Run = %s, %v", out, err)
	}
	if _, err := e.Run(context.Background(), tools.Call{Input: json.RawMessage(`{"text":1}`)}); !errors.Is(err, tools.ErrInvalidInput) {
		t.Fatalf("Run bad input: %v", err)
	}
}

func TestSpecJSONRoundTrip(t *testing.T) {
	t.Parallel()
	s := newEcho("echo").Spec()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`"name":"echo"`, `"inputSchema":{`, `"idempotent":true`, `"timeoutMs":1000`} {
		if !strings.Contains(string(b), w) {
			t.Errorf("%s missing %s", b, w)
		}
	}
	var back tools.Spec
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Name != s.Name || back.Timeout != s.Timeout || !back.Idempotent || back.Description != s.Description {
		t.Fatalf("round trip: %+v != %+v", back, s)
	}
	if (tools.Spec{}).EffectiveTimeout() != tools.DefaultTimeout {
		t.Fatal("zero timeout should mean DefaultTimeout")
	}
	if k := tools.IdempotencyKey("s1", 3, "c9"); k != "s1/3/c9" {
		t.Fatalf("IdempotencyKey = %q", k)
	}
}

func TestRegistryConcurrent(t *testing.T) {
	t.Parallel()
	r := tools.NewRegistry()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_ = r.RegisterSpec(tools.Spec{Name: "p" + string(rune('a'+i)), InputSchema: json.RawMessage(`{"type":"object"}`)})
		}()
		go func() {
			defer wg.Done()
			_ = r.All()
			_, _ = r.Lookup("pa")
		}()
	}
	wg.Wait()
	if n := len(r.All()); n != 8 {
		t.Fatalf("got %d specs, want 8", n)
	}
}
