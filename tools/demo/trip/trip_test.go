package trip_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/tools"
	"github.com/agentbus/agentbus/tools/demo/trip"
)

func call(t *testing.T, reg *tools.Registry, name, key, input string) (map[string]any, error) {
	t.Helper()
	e, err := reg.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Validate(json.RawMessage(input)); err != nil {
		return nil, err
	}
	out, err := e.Tool().Run(context.Background(), tools.Call{Input: json.RawMessage(input), IdempotencyKey: key, SessionID: "s"})
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m, nil
}

func TestTripOnceOnlyEffects(t *testing.T) {
	t.Parallel()
	p := trip.New()
	reg := tools.NewRegistry()
	if err := p.Register(reg); err != nil {
		t.Fatal(err)
	}
	for _, n := range trip.Names() {
		if e, err := reg.Lookup(n); err != nil || e.Spec().Idempotent || !e.Local() {
			t.Fatalf("%s: registered %v, idempotent %v", n, err, e != nil && e.Spec().Idempotent)
		}
	}
	f1, err := call(t, reg, trip.ReserveFlight, "k1", `{"from":"Paris","to":"Lisbon","date":"2026-12-01"}`)
	if err != nil {
		t.Fatal(err)
	}
	again, err := call(t, reg, trip.ReserveFlight, "k1", `{"from":"Paris","to":"Lisbon","date":"2026-12-01"}`)
	if err != nil || again["reservation"] != f1["reservation"] {
		t.Fatalf("repeated key answered %v (%v), want the first answer %v", again, err, f1)
	}
	h, err := call(t, reg, trip.ReserveHotel, "k2", `{"city":"Lisbon","nights":3}`)
	if err != nil || h["price"] != float64(285) {
		t.Fatalf("hotel %v %v", h, err)
	}
	c, err := call(t, reg, trip.ChargeCard, "k3", `{"card":"4242 4242 4242 4242","flight":{"price":420},"hotel":{"price":285}}`)
	if err != nil || c["card"] != "•••• 4242" || c["amount"] != float64(705) {
		t.Fatalf("charge %v %v", c, err)
	}
	for i, key := range []string{"u1", "u1", "u2"} { // a redelivery, then another undo of the same thing
		if _, err := call(t, reg, trip.RefundCard, key, `{"charge":"`+c["charge"].(string)+`"}`); err != nil {
			t.Fatalf("refund %d: %v", i, err)
		}
		if _, err := call(t, reg, trip.CancelFlight, key, `{"reservation":"`+f1["reservation"].(string)+`"}`); err != nil {
			t.Fatalf("cancel %d: %v", i, err)
		}
	}
	want := map[string]int{trip.EffectFlightReserved: 1, trip.EffectHotelReserved: 1, trip.EffectCardCharged: 1,
		trip.EffectCardRefunded: 1, trip.EffectFlightCancelled: 1}
	got := p.Effects()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d, want %d (all %v)", k, got[k], v, got)
		}
	}
	if got[trip.EffectHotelCancelled] != 0 || len(p.Log()) != 5 {
		t.Errorf("log %v", p.Log())
	}
}

func TestTripFailures(t *testing.T) {
	t.Parallel()
	p := trip.New()
	reg := tools.NewRegistry()
	if err := p.Register(reg, trip.ChargeCard, trip.CancelHotel, trip.RefundCard); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, tool, input string
		is                error
		mention           string
	}{
		{"declined card", trip.ChargeCard, `{"card":"4000 0000 0000 0002","amount":10}`, trip.ErrDeclined, "ending 0002"},
		{"no amount", trip.ChargeCard, `{"card":"4242424242424242"}`, tools.ErrInvalidInput, "amount"},
		{"flight without price", trip.ChargeCard, `{"card":"4242424242424242","flight":{}}`, tools.ErrInvalidInput, "price"},
		{"negative amount", trip.ChargeCard, `{"card":"4242424242424242","amount":-1}`, tools.ErrInvalidInput, "amount"},
		{"unknown field", trip.CancelHotel, `{"reservation":"HT-1","why":"x"}`, tools.ErrInvalidInput, "why"},
		{"unknown reservation", trip.CancelHotel, `{"reservation":"HT-NOPE"}`, nil, "no hotel HT-NOPE"},
		{"wrong kind of id", trip.RefundCard, `{"charge":"FL-1"}`, tools.ErrInvalidInput, "charge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := call(t, reg, tt.tool, "k-"+tt.name, tt.input)
			if err == nil || !strings.Contains(err.Error(), tt.mention) || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Fatalf("got %v, want an error (%v) mentioning %q", err, tt.is, tt.mention)
			}
		})
	}
	if n := len(p.Log()); n != 0 {
		t.Fatalf("failures had effects: %v", p.Log())
	}
	if err := p.Register(tools.NewRegistry(), "book_spaceship"); !errors.Is(err, tools.ErrUnknownTool) {
		t.Fatalf("unknown name: %v", err)
	}
}
