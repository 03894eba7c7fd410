package calculator_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/tools"
	"github.com/agentbus/agentbus/tools/builtin/calculator"
)

func TestEval(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr string
		want float64
	}{
		{"1 + 2", 3},
		{"2 + 3 * 4", 14},
		{"(2 + 3) * 4", 20},
		{"10 - 4 - 3", 3},
		{"100 / 10 / 5", 2},
		{"7 % 3", 1},
		{"-7 % 3", -1},
		{"5.5 % 2", 1.5},
		{"2 ^ 10", 1024},
		{"2 ^ 3 ^ 2", 512},
		{"-2 ^ 2", -4},
		{"(-2) ^ 2", 4},
		{"2 ^ -1", 0.5},
		{"-3", -3},
		{"--3", 3},
		{"+4", 4},
		{"3 * -2", -6},
		{"0.1 + 0.2", 0.3},
		{".5 * 4", 2},
		{"1.5e3 + 1E-1", 1500.1},
		{"sqrt(16) + abs(-3)", 7},
		{"min(4, 2, 8)", 2},
		{"max(4, 2, 8)", 8},
		{"round(2.5)", 3},
		{"round(3.14159, 2)", 3.14},
		{"round(1234, -2)", 1200},
		{"floor(-1.5) + ceil(1.2)", 0},
		{"ln(e)", 1},
		{"log10(1000)", 3},
		{"exp(0)", 1},
		{"sin(0) + cos(0)", 1},
		{"tan(0)", 0},
		{"2 * pi", 2 * math.Pi},
		{"PI", math.Pi},
		{"  ( ( 1 ) )  ", 1},
		{"sqrt(max(9, 4) * 4)", 6},
		{"-0", 0},
		{"1 - 1", 0},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			t.Parallel()
			got, err := calculator.Eval(tt.expr)
			if err != nil {
				t.Fatalf("Eval(%q): %v", tt.expr, err)
			}
			if math.Abs(got-tt.want) > 1e-12 || math.Signbit(got) != math.Signbit(tt.want) && tt.want == 0 {
				t.Fatalf("Eval(%q) = %v, want %v", tt.expr, got, tt.want)
			}
		})
	}
}

func TestEvalErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr    string
		kind    error
		mention string
	}{
		{"", tools.ErrInvalidInput, "end of expression"},
		{"1 +", tools.ErrInvalidInput, "end of expression"},
		{"(1 + 2", tools.ErrInvalidInput, "missing ')'"},
		{"1 + 2)", tools.ErrInvalidInput, `")" at position 6`},
		{"2 3", tools.ErrInvalidInput, `"3" at position 3`},
		{"2(3)", tools.ErrInvalidInput, `"("`},
		{"1 $ 2", tools.ErrInvalidInput, "unexpected character"},
		{"2 + 3 #", tools.ErrInvalidInput, "unexpected character"},
		{"1.2.3", tools.ErrInvalidInput, "malformed number"},
		{"foo(1)", tools.ErrInvalidInput, "unknown name"},
		{"x + 1", tools.ErrInvalidInput, "unknown name"},
		{"sqrt 4", tools.ErrInvalidInput, "needs arguments"},
		{"sqrt()", tools.ErrInvalidInput, "takes 1 argument"},
		{"sqrt(1, 2)", tools.ErrInvalidInput, "takes 1 argument"},
		{"min()", tools.ErrInvalidInput, "at least 1"},
		{"round(1,2,3)", tools.ErrInvalidInput, "1 to 2"},
		{"max(1,", tools.ErrInvalidInput, "end of expression"},
		{"import os", tools.ErrInvalidInput, "unknown name"},
		{"*2", tools.ErrInvalidInput, `"*"`},
		{strings.Repeat("(", 100) + "1" + strings.Repeat(")", 100), tools.ErrInvalidInput, "nested deeper"},
		{strings.Repeat("-", 100) + "1", tools.ErrInvalidInput, "nested deeper"},
		{strings.Repeat("1+", 600) + "1", tools.ErrInvalidInput, "longer than"},
		{"1 / 0", calculator.ErrMath, "division by zero at position 3"},
		{"1 / (2 - 2)", calculator.ErrMath, "division by zero"},
		{"5 % 0", calculator.ErrMath, "modulo by zero"},
		{"sqrt(-1)", calculator.ErrMath, "negative"},
		{"ln(0)", calculator.ErrMath, "logarithm"},
		{"(-8) ^ 0.5", calculator.ErrMath, "not a real number"},
		{"10 ^ 400", calculator.ErrMath, "overflows"},
		{"0 ^ -1", calculator.ErrMath, "overflows or divides by zero"},
		{"1e308 * 10", calculator.ErrMath, "not a finite number"},
		{"round(1, 0.5)", calculator.ErrMath, "whole number"},
	}
	for _, tt := range tests {
		name := tt.expr
		if len(name) > 30 {
			name = name[:30]
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			v, err := calculator.Eval(tt.expr)
			if err == nil {
				t.Fatalf("Eval(%q) = %v, want error", tt.expr, v)
			}
			if !errors.Is(err, tt.kind) {
				t.Fatalf("Eval(%q) error %v, want %v", tt.expr, err, tt.kind)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("Eval(%q) error %q does not mention %q", tt.expr, err, tt.mention)
			}
		})
	}
}

func TestRunThroughRegistry(t *testing.T) {
	t.Parallel()
	r := tools.NewRegistry()
	if err := r.Register(calculator.Tool{}); err != nil {
		t.Fatal(err)
	}
	e, err := r.Lookup(calculator.Name)
	if err != nil {
		t.Fatal(err)
	}
	if !e.Spec().Idempotent {
		t.Fatal("calculator must be idempotent")
	}
	out, err := e.Run(context.Background(), tools.Call{Input: json.RawMessage(`{"expression":"(1+2)*3"}`)})
	if err != nil {
		t.Fatal(err)
	}
	var o calculator.Output
	if err := json.Unmarshal(out, &o); err != nil || o.Result != 9 || o.Expression != "(1+2)*3" {
		t.Fatalf("output %s (%v)", out, err)
	}
	for _, bad := range []string{`{}`, `{"expression":""}`, `{"expression":5}`, `{"expression":"1","x":1}`, `{"expression":"1+"}`} {
		if _, err := e.Run(context.Background(), tools.Call{Input: json.RawMessage(bad)}); !errors.Is(err, tools.ErrInvalidInput) {
			t.Errorf("input %s: %v, want ErrInvalidInput", bad, err)
		}
	}
	if _, err := e.Run(context.Background(), tools.Call{Input: json.RawMessage(`{"expression":"1/0"}`)}); !errors.Is(err, calculator.ErrMath) {
		t.Errorf("1/0: %v, want ErrMath", err)
	}
}

func FuzzEval(f *testing.F) {
	for _, s := range []string{"1+2", "(3*4)^2", "sqrt(2)", "-(-1)", "max(1,2,3)", "1e5%7", "((("} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := calculator.Eval(s)
		if err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
			t.Fatalf("Eval(%q) = %v without error", s, v)
		}
		if err != nil && !errors.Is(err, tools.ErrInvalidInput) && !errors.Is(err, calculator.ErrMath) {
			t.Fatalf("Eval(%q): unclassified error %v", s, err)
		}
	})
}

func BenchmarkEval(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		if _, err := calculator.Eval("round(sqrt(2^10 + max(3, 4.5) * -2) / (1 + 2 % 3), 4)"); err != nil {
			b.Fatal(err)
		}
	}
}
