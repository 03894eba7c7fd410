package saga

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"testing/fstest"
)

// minimal is a valid one-step definition the table cases mutate.
const minimal = `{
  "name": "one",
  "steps": [{"name": "a", "action": {"tool": "do_a", "input": {"x": "$.input.x"}}}]
}`

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	d, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	s := d.Steps[0]
	if s.Retry != DefaultRetry {
		t.Errorf("retry = %+v, want DefaultRetry %+v", s.Retry, DefaultRetry)
	}
	if s.TimeoutSeconds != DefaultTimeoutSeconds {
		t.Errorf("timeoutSeconds = %d, want %d", s.TimeoutSeconds, DefaultTimeoutSeconds)
	}
	if string(d.InputSchema) != `{"type":"object"}` {
		t.Errorf("inputSchema = %s", d.InputSchema)
	}
	if string(d.OutputTemplate()) != `"$.steps"` {
		t.Errorf("OutputTemplate = %s", d.OutputTemplate())
	}
}

func TestParseRetryFields(t *testing.T) {
	t.Parallel()
	cases := []struct {
		retry string
		want  Retry
	}{
		{`{}`, Retry{MaxAttempts: 2, IntervalSeconds: 1, BackoffRate: 2}},
		{`{"maxAttempts": 0}`, Retry{MaxAttempts: 0, IntervalSeconds: 1, BackoffRate: 2}},
		{`{"maxAttempts": 5}`, Retry{MaxAttempts: 5, IntervalSeconds: 1, BackoffRate: 2}},
		{`{"maxAttempts": 3, "intervalSeconds": 0, "backoffRate": 1}`, Retry{MaxAttempts: 3, IntervalSeconds: 0, BackoffRate: 1}},
		{`{"backoffRate": 0}`, Retry{MaxAttempts: 2, IntervalSeconds: 1, BackoffRate: 2}},
		{`{"maxAttempts": 10, "intervalSeconds": 3600, "backoffRate": 10}`, Retry{MaxAttempts: 10, IntervalSeconds: 3600, BackoffRate: 10}},
	}
	for _, c := range cases {
		t.Run(c.retry, func(t *testing.T) {
			t.Parallel()
			src := `{"name":"r","steps":[{"name":"a","action":{"tool":"t"},"retry":` + c.retry + `}]}`
			d, err := Parse([]byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Steps[0].Retry; got != c.want {
				t.Errorf("retry = %+v, want %+v", got, c.want)
			}
			if got := d.Steps[0].EffectiveRetry(); got != c.want {
				t.Errorf("EffectiveRetry = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestEffective(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		step    Step
		retry   Retry
		timeout int
	}{
		{"zero", Step{}, DefaultRetry, DefaultTimeoutSeconds},
		{"backoff default", Step{Retry: Retry{MaxAttempts: 4, IntervalSeconds: 3}, TimeoutSeconds: 5}, Retry{4, 3, 2}, 5},
		{"no retries", Step{Retry: Retry{MaxAttempts: 0, BackoffRate: 1}}, Retry{0, 0, 1}, DefaultTimeoutSeconds},
		{"as given", Step{Retry: Retry{1, 2, 1.5}, TimeoutSeconds: 86400}, Retry{1, 2, 1.5}, 86400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if got := c.step.EffectiveRetry(); got != c.retry {
				t.Errorf("EffectiveRetry = %+v, want %+v", got, c.retry)
			}
			if got := c.step.EffectiveTimeoutSeconds(); got != c.timeout {
				t.Errorf("EffectiveTimeoutSeconds = %d, want %d", got, c.timeout)
			}
		})
	}
}

// TestParseInvalid: every validation rule, each error wraps ErrInvalid and
// names the field.
func TestParseInvalid(t *testing.T) {
	t.Parallel()
	step := func(name, extra string) string {
		return `{"name":"` + name + `","action":{"tool":"t_` + name + `"}` + extra + `}`
	}
	saga := func(fields string, steps ...string) string {
		s := `{"name":"s"` + fields + `,"steps":[` + strings.Join(steps, ",") + `]}`
		return s
	}
	cases := []struct {
		name, src, want string
	}{
		{"not JSON", `{`, "unexpected EOF"},
		{"unknown field", `{"name":"s","stepz":[]}`, `unknown field "stepz"`},
		{"unknown step field", saga("", `{"name":"a","action":{"tool":"t"},"undo":{}}`), `unknown field "undo"`},
		{"trailing data", minimal + `{}`, "trailing data"},
		{"bad name", `{"name":"has space","steps":[` + step("a", "") + `]}`, "name: "},
		{"empty name", `{"steps":[` + step("a", "") + `]}`, "name: "},
		{"long name", `{"name":"` + strings.Repeat("x", 65) + `","steps":[` + step("a", "") + `]}`, "name: "},
		{"no steps", saga(""), "steps: at least one step"},
		{"step name", saga("", step("a-b", "")), "steps[0].name: "},
		{"step name empty", saga("", `{"action":{"tool":"t"}}`), "steps[0].name: "},
		{"step name reserved", saga("", step("Done", "")), `steps[0].name: "Done" is reserved`},
		{"step name reserved prefix", saga("", step("Undo_x", "")), `steps[0].name: "Undo_x" is reserved`},
		{"step name failed prefix", saga("", step("Failed_x", "")), `steps[0].name: "Failed_x" is reserved`},
		{"duplicate step", saga("", step("a", ""), step("a", "")), `steps[1].name: "a" is already the name of steps[0]`},
		{"action tool", saga("", `{"name":"a","action":{"tool":"bad tool"}}`), "steps[0].action.tool: "},
		{"action tool missing", saga("", `{"name":"a","action":{}}`), "steps[0].action.tool: "},
		{"compensation tool", saga("", step("a", `,"compensation":{"tool":""}`)), "steps[0].compensation.tool: "},
		{"input not object", saga("", `{"name":"a","action":{"tool":"t","input":[1]}}`), "steps[0].action.input: must be a JSON object"},
		{"ref unknown root", saga("", `{"name":"a","action":{"tool":"t","input":{"x":"$.session"}}}`), "steps[0].action.input.x: reference \"$.session\" must start with"},
		{"ref own step in action", saga("", `{"name":"a","action":{"tool":"t","input":{"x":"$.steps.a.id"}}}`), `steps[0].action.input.x: reference "$.steps.a.id": "a" is not an earlier step`},
		{"ref later step in action", saga("", `{"name":"a","action":{"tool":"t","input":{"x":{"y":"$.steps.b.id"}}}}`, step("b", "")), `steps[0].action.input.x.y: reference "$.steps.b.id": "b" is not an earlier step`},
		{"ref later step in compensation", saga("", `{"name":"a","action":{"tool":"t"},"compensation":{"tool":"u","input":{"amount":"$.steps.b.id"}}}`, step("b", "")), `steps[0].compensation.input.amount: reference "$.steps.b.id": "b" is not an earlier step`},
		{"ref whole steps in action", saga("", `{"name":"a","action":{"tool":"t","input":{"x":"$.steps"}}}`), `steps[0].action.input.x: reference "$.steps": name a step`},
		{"ref bad segment", saga("", `{"name":"a","action":{"tool":"t","input":{"x":"$.input.a-b"}}}`), `steps[0].action.input.x: reference "$.input.a-b": every field`},
		{"ref empty segment", saga("", `{"name":"a","action":{"tool":"t","input":{"x":"$.input..b"}}}`), `steps[0].action.input.x: reference "$.input..b"`},
		{"ref index", saga("", `{"name":"a","action":{"tool":"t","input":{"x":"$.input.a[0]"}}}`), `steps[0].action.input.x: reference "$.input.a[0]"`},
		{"ref in array", saga("", `{"name":"a","action":{"tool":"t","input":{"x":[1,"$.input.y"]}}}`), `steps[0].action.input.x[1]: reference "$.input.y" inside an array`},
		{"path key", saga("", `{"name":"a","action":{"tool":"t","input":{"x.$":"$.input.y"}}}`), `steps[0].action.input.x.$: a key may not end in ".$"`},
		{"max attempts", saga("", step("a", `,"retry":{"maxAttempts":11}`)), "steps[0].retry.maxAttempts: 11 is not in 0..10"},
		{"negative attempts", saga("", step("a", `,"retry":{"maxAttempts":-1}`)), "steps[0].retry.maxAttempts: -1"},
		{"interval", saga("", step("a", `,"retry":{"intervalSeconds":3601}`)), "steps[0].retry.intervalSeconds: 3601 is not in 0..3600"},
		{"negative interval", saga("", step("a", `,"retry":{"intervalSeconds":-1}`)), "steps[0].retry.intervalSeconds: -1"},
		{"backoff low", saga("", step("a", `,"retry":{"backoffRate":0.5}`)), "steps[0].retry.backoffRate: 0.5 is not in 1..10"},
		{"backoff high", saga("", step("a", `,"retry":{"backoffRate":11}`)), "steps[0].retry.backoffRate: 11 is not in 1..10"},
		{"timeout high", saga("", step("a", `,"timeoutSeconds":86401`)), "steps[0].timeoutSeconds: 86401"},
		{"timeout negative", saga("", step("a", `,"timeoutSeconds":-5`)), "steps[0].timeoutSeconds: -5"},
		{"heartbeat negative", saga("", step("a", `,"heartbeatSeconds":-1`)), "steps[0].heartbeatSeconds: -1 is negative"},
		{"heartbeat not below timeout", saga("", step("a", `,"timeoutSeconds":10,"heartbeatSeconds":10`)), "steps[0].heartbeatSeconds: 10 must be less than the timeout (10 s)"},
		{"heartbeat above default timeout", saga("", step("a", `,"heartbeatSeconds":60`)), "steps[0].heartbeatSeconds: 60 must be less than the timeout (60 s)"},
		{"schema not object type", saga(`,"inputSchema":{"type":"string"}`, step("a", "")), `inputSchema: must be a JSON Schema with "type": "object"`},
		{"schema not compiling", saga(`,"inputSchema":{"type":"object","properties":{"x":{"type":"nope"}}}`, step("a", "")), "inputSchema: does not compile"},
		{"schema array", saga(`,"inputSchema":[]`, step("a", "")), `inputSchema: must be a JSON Schema`},
		{"output not object", saga(`,"output":"$.steps"`, step("a", "")), "output: must be a JSON object"},
		{"output unknown step", saga(`,"output":{"r":"$.steps.zz"}`, step("a", "")), `output.r: reference "$.steps.zz": "zz" is not a step`},
		{"output bad root", saga(`,"output":{"r":{"s":"$.failure"}}`, step("a", "")), `output.r.s: reference "$.failure" must start`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(c.src))
			if err == nil {
				t.Fatalf("Parse accepted %s", c.src)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

// TestValidateAllErrors: Validate reports every problem, not only the first.
func TestValidateAllErrors(t *testing.T) {
	t.Parallel()
	d := Definition{Name: "bad name", Steps: []Step{
		{Name: "a", Action: Call{Tool: ""}, Retry: Retry{MaxAttempts: 99}},
		{Name: "a", Action: Call{Tool: "t"}, HeartbeatSeconds: 100},
	}}
	err := d.Validate()
	for _, want := range []string{"name: ", "steps[0].action.tool", "steps[0].retry.maxAttempts", "steps[1].name", "steps[1].heartbeatSeconds"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

// TestValidateGoZeroValues: a definition built in Go with zero defaults
// (no retry, timeout or schema) is valid.
func TestValidateGoZeroValues(t *testing.T) {
	t.Parallel()
	d := Definition{Name: "z", Steps: []Step{
		{Name: "a", Action: Call{Tool: "t"}},
		{Name: "b", Action: Call{Tool: "t", Input: json.RawMessage(`{"p":"$.steps.a.id"}`)},
			Compensation: &Call{Tool: "u", Input: json.RawMessage(`{"p":"$.steps.b.id","q":"$.steps.a"}`)}},
	}}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	good := func(name string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte(`{"name":"` + name + `","steps":[{"name":"a","action":{"tool":"t"}}]}`)}
	}
	t.Run("sorted, top level only", func(t *testing.T) {
		t.Parallel()
		defs, err := Load(fstest.MapFS{
			"z.json": good("zeta"), "a.json": good("alpha"), "notes.txt": {Data: []byte("x")},
			"sub/c.json": {Data: []byte("not json")},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(defs) != 2 || defs[0].Name != "alpha" || defs[1].Name != "zeta" {
			t.Fatalf("got %+v", defs)
		}
	})
	t.Run("error names the file", func(t *testing.T) {
		t.Parallel()
		_, err := Load(fstest.MapFS{"a.json": good("alpha"), "broken.json": {Data: []byte(`{"name":"x","steps":[]}`)}})
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "broken.json") || !strings.Contains(err.Error(), "steps:") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("duplicate names", func(t *testing.T) {
		t.Parallel()
		_, err := Load(fstest.MapFS{"a.json": good("same"), "b.json": good("same")})
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "b.json") || !strings.Contains(err.Error(), "a.json") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("empty", func(t *testing.T) {
		t.Parallel()
		defs, err := Load(fstest.MapFS{})
		if err != nil || len(defs) != 0 {
			t.Fatalf("got %v, %v", defs, err)
		}
	})
}

// TestExampleSagas: the committed examples parse (the demo's tools are
// agreed through examples/sagas/book_trip.json).
func TestExampleSagas(t *testing.T) {
	t.Parallel()
	defs, err := Load(os.DirFS("../examples/sagas"))
	if err != nil {
		t.Fatal(err)
	}
	var trip *Definition
	for i := range defs {
		if defs[i].Name == "book_trip" {
			trip = &defs[i]
		}
	}
	if trip == nil {
		t.Fatal("book_trip not found in examples/sagas")
	}
	var names []string
	for _, s := range trip.Steps {
		names = append(names, s.Name+"/"+s.Action.Tool+"/"+s.Compensation.Tool)
	}
	want := "reserve_flight/reserve_flight/cancel_flight reserve_hotel/reserve_hotel/cancel_hotel charge_card/charge_card/refund_card"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("steps = %s, want %s", got, want)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	if b, err := os.ReadFile("../examples/sagas/book_trip.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"name":"n","steps":[{"name":"a","action":{"tool":"t","input":{"x":{"y":"$.input.z"}}},"compensation":{"tool":"u","input":{"r":"$.steps.a.id"}},"retry":{"maxAttempts":0}}],"output":{"o":"$.steps"}}`))
	f.Add([]byte(`{"name":"n","steps":[{"name":"a","action":{"tool":"t","input":{"x":["$.input.z"]}}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		// A parsed definition is valid, survives a round trip and generates
		// a state machine.
		if err := d.Validate(); err != nil {
			t.Fatalf("Parse returned an invalid definition: %v", err)
		}
		re, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(re); err != nil {
			t.Fatalf("re-parse of %s: %v", re, err)
		}
		asl, err := ASL(d, "https://sqs.example/q")
		if err != nil {
			t.Fatalf("ASL of a parsed definition: %v", err)
		}
		checkMachine(t, d, asl)
		// Every template resolves or fails with ErrPath against an empty
		// document — it never panics.
		doc := Document(json.RawMessage(`{}`), nil)
		for _, s := range d.Steps {
			if _, err := Resolve(s.Action.Input, doc); err != nil && !errors.Is(err, ErrPath) {
				t.Fatalf("Resolve(%s): %v", s.Action.Input, err)
			}
		}
	})
}
