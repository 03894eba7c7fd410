package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentbus/agentbus/tools"
)

// ToolName is the plug-in's one tool.
const ToolName = "convert_units"

// unit is a linear map to its dimension's base unit: base = v*factor + offset.
type unit struct {
	dim    string
	factor float64
	offset float64
}

// units is written out by hand rather than taken from a units library: the
// tool needs a few dozen exact, well-known factors (NIST SP 811) and a
// deterministic answer, and the table is easier to audit than a dependency.
var units = map[string]unit{
	// length, base metre
	"m": {"length", 1, 0}, "km": {"length", 1000, 0}, "cm": {"length", 0.01, 0}, "mm": {"length", 0.001, 0},
	"mi": {"length", 1609.344, 0}, "yd": {"length", 0.9144, 0}, "ft": {"length", 0.3048, 0}, "in": {"length", 0.0254, 0},
	"nmi": {"length", 1852, 0},
	// mass, base kilogram
	"kg": {"mass", 1, 0}, "g": {"mass", 0.001, 0}, "mg": {"mass", 1e-6, 0}, "t": {"mass", 1000, 0},
	"lb": {"mass", 0.45359237, 0}, "oz": {"mass", 0.028349523125, 0},
	// volume, base litre (US customary units)
	"l": {"volume", 1, 0}, "ml": {"volume", 0.001, 0}, "m3": {"volume", 1000, 0},
	"gal": {"volume", 3.785411784, 0}, "qt": {"volume", 0.946352946, 0}, "cup": {"volume", 0.2365882365, 0},
	"floz": {"volume", 0.0295735295625, 0},
	// time, base second
	"s": {"time", 1, 0}, "min": {"time", 60, 0}, "h": {"time", 3600, 0}, "d": {"time", 86400, 0},
	// speed, base metre per second
	"m/s": {"speed", 1, 0}, "km/h": {"speed", 1 / 3.6, 0}, "mph": {"speed", 0.44704, 0}, "kn": {"speed", 1852.0 / 3600, 0},
	// temperature, base kelvin
	"K": {"temperature", 1, 0}, "C": {"temperature", 1, 273.15}, "F": {"temperature", 5.0 / 9, 273.15 - 32*5.0/9},
}

// unitNames lists the units for the spec, sorted.
func unitNames() []string {
	out := make([]string, 0, len(units))
	for n := range units {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Converter is the convert_units tool. It is pure: idempotent and safe to
// run again with the same key.
type Converter struct{}

var _ tools.Tool = Converter{}

// Spec describes the tool to the model.
func (Converter) Spec() tools.Spec {
	names, _ := json.Marshal(unitNames())
	return tools.Spec{
		Name: ToolName,
		Description: "Converts a value between units of one dimension (length, mass, volume, time, speed, temperature). " +
			"Units: " + strings.Join(unitNames(), ", ") + ". Returns the converted value to 10 significant digits (and at most 10 decimal places).",
		InputSchema: json.RawMessage(`{"type":"object","properties":{` +
			`"value":{"description":"a number (or a string holding one)","oneOf":[{"type":"number"},{"type":"string","pattern":"^\\s*-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?\\s*$"}]},` +
			`"from":{"type":"string","enum":` + string(names) + `},` +
			`"to":{"type":"string","enum":` + string(names) + `}},` +
			`"required":["value","from","to"],"additionalProperties":false}`),
		Idempotent: true,
		Timeout:    2 * time.Second,
	}
}

type convertIn struct {
	Value flexNumber `json:"value"`
	From  string     `json:"from"`
	To    string     `json:"to"`
}

// flexNumber accepts 5 and "5": models (and the scripted model's templates)
// often send numbers as strings.
type flexNumber float64

func (n *flexNumber) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		b = []byte(strings.TrimSpace(s))
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("value %s is not a number", b)
	}
	*n = flexNumber(v)
	return nil
}

type convertOut struct {
	Value  float64 `json:"value"`
	From   string  `json:"from"`
	To     string  `json:"to"`
	Result float64 `json:"result"`
}

// Run converts; units of different dimensions are invalid input.
func (Converter) Run(_ context.Context, call tools.Call) (json.RawMessage, error) {
	var in convertIn
	if err := json.Unmarshal(call.Input, &in); err != nil {
		return nil, fmt.Errorf("%w: %v", tools.ErrInvalidInput, err)
	}
	res, err := Convert(float64(in.Value), in.From, in.To)
	if err != nil {
		return nil, err
	}
	return json.Marshal(convertOut{Value: float64(in.Value), From: in.From, To: in.To, Result: res})
}

// Convert converts v from one unit to another, rounded to 10 decimal places
// and 10 significant digits (so 1 mi is 1.609344 km, not 1.6093440000000001).
func Convert(v float64, from, to string) (float64, error) {
	f, ok := units[from]
	if !ok {
		return 0, fmt.Errorf("%w: unknown unit %q", tools.ErrInvalidInput, from)
	}
	t, ok := units[to]
	if !ok {
		return 0, fmt.Errorf("%w: unknown unit %q", tools.ErrInvalidInput, to)
	}
	if f.dim != t.dim {
		return 0, fmt.Errorf("%w: cannot convert %s (%s) to %s (%s)", tools.ErrInvalidInput, from, f.dim, to, t.dim)
	}
	r := ((v*f.factor + f.offset) - t.offset) / t.factor
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return 0, fmt.Errorf("%w: %g %s has no finite value in %s", tools.ErrInvalidInput, v, from, to)
	}
	// Offsets leave float noise around zero (32 F is 5.7e-14 C unrounded):
	// cut at 10 decimal places, then at 10 significant digits.
	r = math.Round(r*1e10) / 1e10
	r, _ = strconv.ParseFloat(strconv.FormatFloat(r, 'g', 10, 64), 64)
	return r + 0, nil // + 0 turns -0 into 0
}
