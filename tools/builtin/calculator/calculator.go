// Package calculator is the built-in `calculator` tool: it evaluates an
// arithmetic expression with a small hand-written recursive-descent parser.
// Nothing is ever evaluated as code.
//
// Why hand-written: the Go expression libraries that exist (expr-lang/expr,
// govaluate) are general-purpose languages with variables, strings, member
// access and calls into Go; a tool the model drives should accept arithmetic
// and nothing else, and the grammar below is about 200 lines that are easy to
// audit and to bound (length and nesting limits).
package calculator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/agentbus/agentbus/tools"
)

// Name is the tool's name.
const Name = "calculator"

// Limits that keep one evaluation cheap whatever the model sends.
const (
	MaxExprLen = 1024
	MaxDepth   = 64
)

// ErrMath marks an expression that parses but has no finite real value
// (division by zero, sqrt of a negative number, overflow). It is reported as
// a tool error, not invalid input.
var ErrMath = errors.New("math error")

// Tool is the calculator. The zero value is ready to use.
type Tool struct{}

var _ tools.Tool = Tool{}

// Spec describes the calculator.
func (Tool) Spec() tools.Spec {
	return tools.Spec{
		Name: Name,
		Description: "Evaluates an arithmetic expression and returns the number. Operators: + - * / % ^ (power), " +
			"parentheses, unary minus, decimals and exponents (1.5e3). Functions: sqrt, abs, round(x[, digits]), " +
			"floor, ceil, min(a, b, ...), max(a, b, ...), exp, ln, log10, sin, cos, tan (radians). Constants: pi, e.",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"expression":{"type":"string","minLength":1,"maxLength":1024,"description":"e.g. (2 + 3) * 4 ^ 2 / sqrt(16)"}},"required":["expression"],"additionalProperties":false}`),
		Idempotent:  true,
		Timeout:     2 * time.Second,
	}
}

type input struct {
	Expression string `json:"expression"`
}

// Output is what the tool returns.
type Output struct {
	Expression string  `json:"expression"`
	Result     float64 `json:"result"`
}

// Run evaluates the expression in call.Input.
func (Tool) Run(ctx context.Context, call tools.Call) (json.RawMessage, error) {
	var in input
	if err := json.Unmarshal(call.Input, &in); err != nil {
		return nil, fmt.Errorf("%w: %v", tools.ErrInvalidInput, err)
	}
	v, err := Eval(in.Expression)
	if err != nil {
		return nil, err
	}
	return json.Marshal(Output{Expression: in.Expression, Result: v})
}

// Eval evaluates an arithmetic expression. Syntax errors wrap
// tools.ErrInvalidInput and name the position; math errors wrap ErrMath. The
// result is rounded to 15 significant digits so that 0.1+0.2 reads 0.3.
func Eval(expr string) (float64, error) {
	if len(expr) > MaxExprLen {
		return 0, fmt.Errorf("%w: expression longer than %d characters", tools.ErrInvalidInput, MaxExprLen)
	}
	p := &parser{src: expr}
	p.next()
	v, err := p.expr(0)
	if err != nil {
		return 0, err
	}
	if p.err != nil {
		return 0, p.err
	}
	if p.tok.kind != tEOF {
		return 0, p.errf("unexpected %s", p.tok)
	}
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("%w: result is not a finite number", ErrMath)
	}
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 15, 64), 64)
	if r == 0 {
		r = 0 // no negative zero in the output
	}
	return r, nil
}

type tokKind int

const (
	tEOF tokKind = iota
	tNum
	tIdent
	tOp // one of + - * / % ^ ( ) ,
)

type token struct {
	kind tokKind
	pos  int // 1-based column of the token's first byte
	text string
	num  float64
}

func (t token) String() string {
	switch t.kind {
	case tEOF:
		return "end of expression"
	default:
		return fmt.Sprintf("%q at position %d", t.text, t.pos)
	}
}

type parser struct {
	src string
	off int
	tok token
	err error // first lexing error
}

func (p *parser) errf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", tools.ErrInvalidInput, fmt.Sprintf(format, args...))
}

// next advances to the next token; a lexing error becomes p.err and an EOF.
func (p *parser) next() {
	for p.off < len(p.src) && strings.ContainsRune(" \t\r\n", rune(p.src[p.off])) {
		p.off++
	}
	start := p.off
	if p.off >= len(p.src) {
		p.tok = token{kind: tEOF, pos: start + 1}
		return
	}
	c := p.src[p.off]
	switch {
	case c >= '0' && c <= '9' || c == '.':
		end := p.off
		for end < len(p.src) && (isDigit(p.src[end]) || p.src[end] == '.') {
			end++
		}
		// exponent: e/E, optional sign, digits
		if end < len(p.src) && (p.src[end] == 'e' || p.src[end] == 'E') {
			j := end + 1
			if j < len(p.src) && (p.src[j] == '+' || p.src[j] == '-') {
				j++
			}
			if j < len(p.src) && isDigit(p.src[j]) {
				for j < len(p.src) && isDigit(p.src[j]) {
					j++
				}
				end = j
			}
		}
		text := p.src[p.off:end]
		p.off = end
		v, err := strconv.ParseFloat(text, 64)
		if err != nil {
			p.err = p.errf("malformed number %q at position %d", text, start+1)
			p.tok = token{kind: tEOF, pos: start + 1}
			return
		}
		p.tok = token{kind: tNum, pos: start + 1, text: text, num: v}
	case isLetter(c):
		end := p.off
		for end < len(p.src) && (isLetter(p.src[end]) || isDigit(p.src[end])) {
			end++
		}
		p.tok = token{kind: tIdent, pos: start + 1, text: strings.ToLower(p.src[p.off:end])}
		p.off = end
	case strings.IndexByte("+-*/%^(),", c) >= 0:
		p.tok = token{kind: tOp, pos: start + 1, text: string(c)}
		p.off++
	default:
		p.err = p.errf("unexpected character %q at position %d", p.src[p.off:p.off+1], start+1)
		p.tok = token{kind: tEOF, pos: start + 1}
	}
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }

func (p *parser) isOp(s string) bool { return p.tok.kind == tOp && p.tok.text == s }

// expr := term (('+' | '-') term)*
func (p *parser) expr(depth int) (float64, error) {
	if depth > MaxDepth {
		return 0, p.errf("expression nested deeper than %d", MaxDepth)
	}
	v, err := p.term(depth)
	if err != nil {
		return 0, err
	}
	for p.isOp("+") || p.isOp("-") {
		op := p.tok.text
		p.next()
		r, err := p.term(depth)
		if err != nil {
			return 0, err
		}
		if op == "+" {
			v += r
		} else {
			v -= r
		}
	}
	return v, nil
}

// term := unary (('*' | '/' | '%') unary)*
func (p *parser) term(depth int) (float64, error) {
	v, err := p.unary(depth)
	if err != nil {
		return 0, err
	}
	for p.isOp("*") || p.isOp("/") || p.isOp("%") {
		op := p.tok
		p.next()
		r, err := p.unary(depth)
		if err != nil {
			return 0, err
		}
		switch op.text {
		case "*":
			v *= r
		case "/":
			if r == 0 {
				return 0, fmt.Errorf("%w: division by zero at position %d", ErrMath, op.pos)
			}
			v /= r
		case "%":
			if r == 0 {
				return 0, fmt.Errorf("%w: modulo by zero at position %d", ErrMath, op.pos)
			}
			v = math.Mod(v, r)
		}
	}
	return v, nil
}

// unary := ('-' | '+') unary | power. Unary minus binds looser than '^', so
// -2^2 is -4 as in mathematics.
func (p *parser) unary(depth int) (float64, error) {
	if depth > MaxDepth {
		return 0, p.errf("expression nested deeper than %d", MaxDepth)
	}
	if p.isOp("-") || p.isOp("+") {
		neg := p.tok.text == "-"
		p.next()
		v, err := p.unary(depth + 1)
		if neg {
			v = -v
		}
		return v, err
	}
	return p.power(depth)
}

// power := primary ('^' unary)?   (right-associative: 2^3^2 = 2^9)
func (p *parser) power(depth int) (float64, error) {
	base, err := p.primary(depth)
	if err != nil {
		return 0, err
	}
	if !p.isOp("^") {
		return base, nil
	}
	op := p.tok
	p.next()
	exp, err := p.unary(depth + 1)
	if err != nil {
		return 0, err
	}
	v := math.Pow(base, exp)
	if math.IsNaN(v) {
		return 0, fmt.Errorf("%w: %g ^ %g is not a real number (position %d)", ErrMath, base, exp, op.pos)
	}
	if math.IsInf(v, 0) {
		return 0, fmt.Errorf("%w: %g ^ %g overflows or divides by zero (position %d)", ErrMath, base, exp, op.pos)
	}
	return v, nil
}

// primary := number | constant | func '(' expr (',' expr)* ')' | '(' expr ')'
func (p *parser) primary(depth int) (float64, error) {
	if p.err != nil {
		return 0, p.err
	}
	t := p.tok
	switch {
	case t.kind == tNum:
		p.next()
		return t.num, nil
	case t.kind == tOp && t.text == "(":
		p.next()
		v, err := p.expr(depth + 1)
		if err != nil {
			return 0, err
		}
		if !p.isOp(")") {
			return 0, p.closeErr(t)
		}
		p.next()
		return v, nil
	case t.kind == tIdent:
		p.next()
		if c, ok := constants[t.text]; ok {
			return c, nil
		}
		f, ok := functions[t.text]
		if !ok {
			return 0, p.errf("unknown name %q at position %d", t.text, t.pos)
		}
		if !p.isOp("(") {
			return 0, p.errf("function %s at position %d needs arguments in parentheses", t.text, t.pos)
		}
		open := p.tok
		p.next()
		var args []float64
		if !p.isOp(")") {
			for {
				v, err := p.expr(depth + 1)
				if err != nil {
					return 0, err
				}
				args = append(args, v)
				if !p.isOp(",") {
					break
				}
				p.next()
			}
		}
		if !p.isOp(")") {
			return 0, p.closeErr(open)
		}
		p.next()
		if len(args) < f.min || (f.max >= 0 && len(args) > f.max) {
			return 0, p.errf("%s at position %d takes %s, got %d", t.text, t.pos, f.arity(), len(args))
		}
		v, err := f.fn(args)
		if err != nil {
			return 0, fmt.Errorf("%w: %s at position %d: %s", ErrMath, t.text, t.pos, err.Error())
		}
		return v, nil
	case t.kind == tEOF:
		return 0, p.errf("unexpected end of expression, expected a number")
	default:
		return 0, p.errf("unexpected %s, expected a number", t)
	}
}

func (p *parser) closeErr(open token) error {
	if p.err != nil {
		return p.err
	}
	return p.errf("missing ')' for '(' at position %d, found %s", open.pos, p.tok)
}

type function struct {
	min, max int // max < 0: variadic
	fn       func(args []float64) (float64, error)
}

func (f function) arity() string {
	switch {
	case f.max < 0:
		return fmt.Sprintf("at least %d arguments", f.min)
	case f.min == f.max && f.min == 1:
		return "1 argument"
	case f.min == f.max:
		return fmt.Sprintf("%d arguments", f.min)
	default:
		return fmt.Sprintf("%d to %d arguments", f.min, f.max)
	}
}

var errDomain = errors.New("argument out of domain")

func unaryFn(f func(float64) float64) function {
	return function{min: 1, max: 1, fn: func(a []float64) (float64, error) { return f(a[0]), nil }}
}

var constants = map[string]float64{"pi": math.Pi, "e": math.E}

var functions = map[string]function{
	"sqrt": {min: 1, max: 1, fn: func(a []float64) (float64, error) {
		if a[0] < 0 {
			return 0, fmt.Errorf("square root of negative number %g", a[0])
		}
		return math.Sqrt(a[0]), nil
	}},
	"ln": {min: 1, max: 1, fn: func(a []float64) (float64, error) {
		if a[0] <= 0 {
			return 0, fmt.Errorf("%w: logarithm of %g", errDomain, a[0])
		}
		return math.Log(a[0]), nil
	}},
	"log10": {min: 1, max: 1, fn: func(a []float64) (float64, error) {
		if a[0] <= 0 {
			return 0, fmt.Errorf("%w: logarithm of %g", errDomain, a[0])
		}
		return math.Log10(a[0]), nil
	}},
	"abs":   unaryFn(math.Abs),
	"floor": unaryFn(math.Floor),
	"ceil":  unaryFn(math.Ceil),
	"exp":   unaryFn(math.Exp),
	"sin":   unaryFn(math.Sin),
	"cos":   unaryFn(math.Cos),
	"tan":   unaryFn(math.Tan),
	"round": {min: 1, max: 2, fn: func(a []float64) (float64, error) {
		if len(a) == 1 {
			return math.Round(a[0]), nil
		}
		d := a[1]
		if d != math.Trunc(d) || d < -15 || d > 15 {
			return 0, fmt.Errorf("%w: digits must be a whole number in [-15, 15], got %g", errDomain, d)
		}
		s := math.Pow(10, d)
		return math.Round(a[0]*s) / s, nil
	}},
	"min": {min: 1, max: -1, fn: func(a []float64) (float64, error) {
		m := a[0]
		for _, v := range a[1:] {
			m = math.Min(m, v)
		}
		return m, nil
	}},
	"max": {min: 1, max: -1, fn: func(a []float64) (float64, error) {
		m := a[0]
		for _, v := range a[1:] {
			m = math.Max(m, v)
		}
		return m, nil
	}},
}
