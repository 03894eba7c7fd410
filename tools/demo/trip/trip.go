// Package trip holds the demo travel tools of the book_trip saga
// (examples/sagas/book_trip.json): reserve_flight / cancel_flight,
// reserve_hotel / cancel_hotel and charge_card / refund_card, backed by
// in-memory fake providers.
//
// The providers behave like real ones that honour an idempotency key (as
// payment APIs do with an Idempotency-Key header): a request repeated with
// the same key returns the first answer and has no second effect, so the
// demo shows each reservation, charge, cancellation and refund happening
// once. The tools are nevertheless declared non-idempotent (they have side
// effects a generic caller must not repeat), so the tool-gateway never
// re-runs one whose outcome it lost.
//
// charge_card declines every card number ending in DeclinedCardSuffix
// ("card declined"), which makes the saga compensate: the hotel and the
// flight are cancelled, in that order.
package trip

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentbus/agentbus/tools"
)

// DeclinedCardSuffix makes charge_card decline a card: the test card
// 4000 0000 0000 0002 (as in the payment providers' test numbers).
const DeclinedCardSuffix = "0002"

// Tool names.
const (
	ReserveFlight = "reserve_flight"
	CancelFlight  = "cancel_flight"
	ReserveHotel  = "reserve_hotel"
	CancelHotel   = "cancel_hotel"
	ChargeCard    = "charge_card"
	RefundCard    = "refund_card"
)

// Names lists the demo tools.
func Names() []string {
	return []string{ReserveFlight, CancelFlight, ReserveHotel, CancelHotel, ChargeCard, RefundCard}
}

// Effect kinds Providers.Effects counts.
const (
	EffectFlightReserved  = "flight_reserved"
	EffectFlightCancelled = "flight_cancelled"
	EffectHotelReserved   = "hotel_reserved"
	EffectHotelCancelled  = "hotel_cancelled"
	EffectCardCharged     = "card_charged"
	EffectCardRefunded    = "card_refunded"
)

// ErrDeclined is the error of a declined card.
var ErrDeclined = errors.New("card declined")

// Providers is the fake airline, hotel and payment provider. It is safe
// for concurrent use.
type Providers struct {
	mu      sync.Mutex
	answers map[string]json.RawMessage // by tool + idempotency key: the first answer
	records map[string]*record         // by reservation / charge id
	effects map[string]int
	log     []string
}

type record struct {
	kind   string // flight, hotel, charge
	undone bool
}

// New returns empty providers.
func New() *Providers {
	return &Providers{answers: map[string]json.RawMessage{}, records: map[string]*record{}, effects: map[string]int{}}
}

// Effects returns how many times each kind of effect happened.
func (p *Providers) Effects() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.effects))
	for k, v := range p.effects {
		out[k] = v
	}
	return out
}

// Log returns the effects in the order they happened ("<kind> <id>").
func (p *Providers) Log() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.log)
}

// Tools returns the six tools, backed by p.
func (p *Providers) Tools() []tools.Tool {
	out := make([]tools.Tool, 0, 6)
	for _, name := range Names() {
		out = append(out, &tool{p: p, spec: specs[name]})
	}
	return out
}

// Register adds the named demo tools to reg (all of them when names is
// empty); a name that is not a demo tool is an error.
func (p *Providers) Register(reg *tools.Registry, names ...string) error {
	if len(names) == 0 {
		names = Names()
	}
	for _, n := range names {
		sp, ok := specs[n]
		if !ok {
			return fmt.Errorf("trip: %w: %q is not a demo tool", tools.ErrUnknownTool, n)
		}
		if err := reg.Register(&tool{p: p, spec: sp}); err != nil {
			return err
		}
	}
	return nil
}

const timeout = 10 * time.Second

func schema(s string) json.RawMessage { return json.RawMessage(s) }

var specs = map[string]tools.Spec{
	ReserveFlight: {Name: ReserveFlight, Timeout: timeout,
		Description: "Reserve a seat on a flight (demo airline). Returns the reservation id to cancel it.",
		InputSchema: schema(`{"type":"object","properties":{` +
			`"from":{"type":"string","minLength":1,"maxLength":64,"description":"departure city or airport"},` +
			`"to":{"type":"string","minLength":1,"maxLength":64,"description":"arrival city or airport"},` +
			`"date":{"type":"string","maxLength":32,"description":"departure date, YYYY-MM-DD"}},` +
			`"required":["from","to"],"additionalProperties":false}`)},
	CancelFlight: {Name: CancelFlight, Timeout: timeout,
		Description: "Cancel a flight reservation (demo airline).",
		InputSchema: schema(`{"type":"object","properties":{"reservation":{"type":"string","pattern":"^FL-"}},` +
			`"required":["reservation"],"additionalProperties":false}`)},
	ReserveHotel: {Name: ReserveHotel, Timeout: timeout,
		Description: "Reserve a hotel room (demo hotel chain). Returns the reservation id to cancel it.",
		InputSchema: schema(`{"type":"object","properties":{` +
			`"city":{"type":"string","minLength":1,"maxLength":64},` +
			`"checkIn":{"type":"string","maxLength":32,"description":"YYYY-MM-DD"},` +
			`"nights":{"type":"integer","minimum":1,"maximum":60}},` +
			`"required":["city"],"additionalProperties":false}`)},
	CancelHotel: {Name: CancelHotel, Timeout: timeout,
		Description: "Cancel a hotel reservation (demo hotel chain).",
		InputSchema: schema(`{"type":"object","properties":{"reservation":{"type":"string","pattern":"^HT-"}},` +
			`"required":["reservation"],"additionalProperties":false}`)},
	ChargeCard: {Name: ChargeCard, Timeout: timeout,
		Description: "Charge a payment card (demo payment provider): amount, or else the sum of the flight's and the hotel's price " +
			"(the reserve_flight and reserve_hotel outputs). Cards ending in " + DeclinedCardSuffix + " are declined.",
		InputSchema: schema(`{"type":"object","properties":{` +
			`"card":{"type":"string","pattern":"^[0-9 ]{12,23}$","description":"card number"},` +
			`"amount":{"type":"number","exclusiveMinimum":0,"maximum":100000},` +
			`"currency":{"type":"string","pattern":"^[A-Z]{3}$","default":"EUR"},` +
			`"flight":{"type":"object","properties":{"price":{"type":"number","minimum":0}},"required":["price"]},` +
			`"hotel":{"type":"object","properties":{"price":{"type":"number","minimum":0}},"required":["price"]}},` +
			`"required":["card"],"anyOf":[{"required":["amount"]},{"required":["flight"]},{"required":["hotel"]}],` +
			`"additionalProperties":false}`)},
	RefundCard: {Name: RefundCard, Timeout: timeout,
		Description: "Refund a card charge in full (demo payment provider).",
		InputSchema: schema(`{"type":"object","properties":{"charge":{"type":"string","pattern":"^CH-"}},` +
			`"required":["charge"],"additionalProperties":false}`)},
}

type tool struct {
	p    *Providers
	spec tools.Spec
}

func (t *tool) Spec() tools.Spec { return t.spec }

// Run answers a repeated key with the first answer (no second effect).
func (t *tool) Run(ctx context.Context, c tools.Call) (json.RawMessage, error) {
	if c.IdempotencyKey == "" {
		return nil, fmt.Errorf("%s: no idempotency key", t.spec.Name)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var in map[string]any
	if err := json.Unmarshal(c.Input, &in); err != nil {
		return nil, fmt.Errorf("%w: %v", tools.ErrInvalidInput, err)
	}
	p := t.p
	p.mu.Lock()
	defer p.mu.Unlock()
	ak := t.spec.Name + " " + c.IdempotencyKey
	if a, ok := p.answers[ak]; ok {
		return a, nil
	}
	out, err := t.do(in, c.IdempotencyKey)
	if err != nil {
		// A refusal has no effect and is not remembered: a retry (a new
		// key) asks again.
		return nil, err
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	p.answers[ak] = b
	return b, nil
}

// id is a reservation or charge id derived from the key: stable, so a
// replayed answer and the log agree.
func id(prefix, key string) string {
	sum := sha256.Sum256([]byte(key))
	return prefix + strings.ToUpper(hex.EncodeToString(sum[:4]))
}

func str(in map[string]any, k string) string { s, _ := in[k].(string); return s }

// do performs the effect; p.mu is held.
func (t *tool) do(in map[string]any, key string) (map[string]any, error) {
	p := t.p
	switch t.spec.Name {
	case ReserveFlight:
		r := id("FL-", key)
		p.effect(EffectFlightReserved, r, "flight")
		out := map[string]any{"reservation": r, "flight": fmt.Sprintf("AB%03d", int(r[3])*7%1000), "from": str(in, "from"), "to": str(in, "to"), "price": 420}
		if d := str(in, "date"); d != "" {
			out["date"] = d
		}
		return out, nil
	case ReserveHotel:
		r := id("HT-", key)
		p.effect(EffectHotelReserved, r, "hotel")
		nights := 1
		if n, ok := in["nights"].(float64); ok {
			nights = int(n)
		}
		return map[string]any{"reservation": r, "hotel": "Hotel " + str(in, "city") + " Central", "city": str(in, "city"),
			"nights": nights, "price": 95 * nights}, nil
	case ChargeCard:
		card := strings.ReplaceAll(str(in, "card"), " ", "")
		if strings.HasSuffix(card, DeclinedCardSuffix) {
			return nil, fmt.Errorf("%w: card ending %s was declined by the issuer", ErrDeclined, last4(card))
		}
		r := id("CH-", key)
		p.effect(EffectCardCharged, r, "charge")
		cur := str(in, "currency")
		if cur == "" {
			cur = "EUR"
		}
		return map[string]any{"charge": r, "amount": amount(in), "currency": cur, "card": "•••• " + last4(card)}, nil
	case CancelFlight:
		return p.undo(str(in, "reservation"), "flight", EffectFlightCancelled, "cancelled")
	case CancelHotel:
		return p.undo(str(in, "reservation"), "hotel", EffectHotelCancelled, "cancelled")
	case RefundCard:
		return p.undo(str(in, "charge"), "charge", EffectCardRefunded, "refunded")
	}
	return nil, fmt.Errorf("trip: unknown tool %s", t.spec.Name)
}

func (p *Providers) effect(kind, id, recKind string) {
	p.records[id] = &record{kind: recKind}
	p.effects[kind]++
	p.log = append(p.log, kind+" "+id)
}

// undo cancels or refunds id once; undoing it again is a no-op success,
// as providers answer a repeated cancellation.
func (p *Providers) undo(id, kind, effect, field string) (map[string]any, error) {
	r, ok := p.records[id]
	if !ok || r.kind != kind {
		return nil, fmt.Errorf("no %s %s", kind, id)
	}
	if r.undone {
		return map[string]any{field: id, "already": true}, nil
	}
	r.undone = true
	p.effects[effect]++
	p.log = append(p.log, effect+" "+id)
	return map[string]any{field: id}, nil
}

// amount is the input's amount, else the flight's plus the hotel's price.
func amount(in map[string]any) float64 {
	if a, ok := in["amount"].(float64); ok {
		return a
	}
	var sum float64
	for _, k := range []string{"flight", "hotel"} {
		if o, ok := in[k].(map[string]any); ok {
			p, _ := o["price"].(float64)
			sum += p
		}
	}
	return sum
}

func last4(card string) string {
	if len(card) <= 4 {
		return card
	}
	return card[len(card)-4:]
}
