package main

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/agentbus/agentbus/tools"
)

func TestConvert(t *testing.T) {
	t.Parallel()
	cases := []struct {
		v        float64
		from, to string
		want     float64
	}{
		{1, "mi", "km", 1.609344},
		{100, "C", "F", 212},
		{32, "F", "C", 0},
		{0, "K", "C", -273.15},
		{1, "lb", "g", 453.59237},
		{1, "gal", "l", 3.785411784},
		{90, "min", "h", 1.5},
		{100, "km/h", "m/s", 27.77777778},
		{12, "in", "ft", 1},
		{-40, "C", "F", -40},
	}
	for _, c := range cases {
		got, err := Convert(c.v, c.from, c.to)
		if err != nil || got != c.want {
			t.Errorf("Convert(%g %s → %s) = %v, %v; want %v", c.v, c.from, c.to, got, err, c.want)
		}
	}
}

func TestConvertBadInput(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ from, to string }{{"m", "kg"}, {"parsec", "m"}, {"m", ""}, {"C", "s"}} {
		if _, err := Convert(1, c.from, c.to); !errors.Is(err, tools.ErrInvalidInput) {
			t.Errorf("Convert(1 %q → %q) = %v; want ErrInvalidInput", c.from, c.to, err)
		}
	}
}

// TestToolValidatesInput runs the tool through a registry entry, as the
// gateway does: the schema rejects unknown units before Run.
func TestToolValidatesInput(t *testing.T) {
	t.Parallel()
	reg := tools.NewRegistry()
	if err := reg.Register(Converter{}); err != nil {
		t.Fatal(err)
	}
	e, err := reg.Lookup(ToolName)
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.Run(context.Background(), tools.Call{Input: json.RawMessage(`{"value":5,"from":"km","to":"mi"}`)})
	if err != nil {
		t.Fatal(err)
	}
	var got convertOut
	if err := json.Unmarshal(out, &got); err != nil || got.Result != 3.106855961 {
		t.Errorf("5 km in mi = %s (%v); want 3.106855961", out, err)
	}
	out, err = e.Run(context.Background(), tools.Call{Input: json.RawMessage(`{"value":" 100 ","from":"C","to":"F"}`)})
	if err != nil || json.Unmarshal(out, &got) != nil || got.Result != 212 {
		t.Errorf("\" 100 \" C in F = %s, %v; want 212", out, err)
	}
	for _, in := range []string{`{"value":5,"from":"km"}`, `{"value":"five","from":"km","to":"mi"}`, `{"value":5,"from":"km","to":"lightyear"}`} {
		if _, err := e.Run(context.Background(), tools.Call{Input: json.RawMessage(in)}); !errors.Is(err, tools.ErrInvalidInput) {
			t.Errorf("input %s: %v; want ErrInvalidInput", in, err)
		}
	}
}
