// Package clock is the built-in `clock` tool: the current time in a time zone,
// conversion of a time between zones, and formatting.
package clock

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	// The tool must answer for any IANA zone even on hosts (or scratch
	// containers) without /usr/share/zoneinfo; the embedded database costs
	// about 450 KB.
	_ "time/tzdata"

	"github.com/agentbus/agentbus/tools"
)

// Name is the tool's name.
const Name = "clock"

// Tool is the clock. Now is the time source; nil means time.Now (tests inject
// a fixed clock).
type Tool struct {
	Now func() time.Time
}

var _ tools.Tool = (*Tool)(nil)

// layouts are the named output formats; a model picks one by name rather than
// writing Go layouts.
var layouts = map[string]string{
	"RFC3339":  time.RFC3339,
	"RFC1123":  time.RFC1123,
	"DateTime": time.DateTime,
	"DateOnly": time.DateOnly,
	"TimeOnly": time.TimeOnly,
	"Kitchen":  time.Kitchen,
}

// Spec describes the clock.
func (t *Tool) Spec() tools.Spec {
	return tools.Spec{
		Name: Name,
		Description: "Current time and time-zone conversion. action \"now\": the current time in `to` (IANA zone, default UTC). " +
			"action \"convert\": the instant `time` (RFC3339, or \"YYYY-MM-DD HH:MM[:SS]\" read in `from`, default UTC) shown in `to`. " +
			"format picks the output layout: RFC3339 (default), RFC1123, DateTime, DateOnly, TimeOnly, Kitchen.",
		InputSchema: json.RawMessage(`{"type":"object","properties":{` +
			`"action":{"enum":["now","convert"],"default":"now"},` +
			`"time":{"type":"string","maxLength":64,"description":"for convert: RFC3339 or YYYY-MM-DD HH:MM[:SS]"},` +
			`"from":{"type":"string","maxLength":64,"description":"IANA zone the time is read in when it has no offset, e.g. America/New_York"},` +
			`"to":{"type":"string","maxLength":64,"description":"IANA zone of the answer, e.g. Asia/Tokyo; default UTC"},` +
			`"format":{"enum":["RFC3339","RFC1123","DateTime","DateOnly","TimeOnly","Kitchen"]}` +
			`},"additionalProperties":false,` +
			`"if":{"properties":{"action":{"const":"convert"}},"required":["action"]},"then":{"required":["time"]}}`),
		Idempotent: true,
		Timeout:    time.Second,
	}
}

type input struct {
	Action string `json:"action"`
	Time   string `json:"time"`
	From   string `json:"from"`
	To     string `json:"to"`
	Format string `json:"format"`
}

// Output is what the tool returns.
type Output struct {
	// Time is the instant formatted in Zone with the requested layout.
	Time string `json:"time"`
	// Zone is the IANA zone name; Abbreviation its short name at that instant.
	Zone         string `json:"zone"`
	Abbreviation string `json:"abbreviation"`
	// UTCOffset is like "+09:00".
	UTCOffset string `json:"utcOffset"`
	Weekday   string `json:"weekday"`
	Unix      int64  `json:"unix"`
	// RFC3339 is always present, whatever Format asked for, so that the
	// instant is unambiguous.
	RFC3339 string `json:"rfc3339"`
}

// Run answers one clock call.
func (t *Tool) Run(ctx context.Context, call tools.Call) (json.RawMessage, error) {
	var in input
	if err := json.Unmarshal(call.Input, &in); err != nil {
		return nil, fmt.Errorf("%w: %v", tools.ErrInvalidInput, err)
	}
	to, err := loadZone("to", in.To)
	if err != nil {
		return nil, err
	}
	layout := time.RFC3339
	if in.Format != "" {
		l, ok := layouts[in.Format]
		if !ok {
			return nil, fmt.Errorf("%w: format: unknown layout %q", tools.ErrInvalidInput, in.Format)
		}
		layout = l
	}
	var at time.Time
	switch in.Action {
	case "", "now":
		if in.Time != "" || in.From != "" {
			return nil, fmt.Errorf("%w: time/from are only used with action \"convert\"", tools.ErrInvalidInput)
		}
		now := time.Now
		if t.Now != nil {
			now = t.Now
		}
		at = now()
	case "convert":
		from, err := loadZone("from", in.From)
		if err != nil {
			return nil, err
		}
		at, err = parseTime(in.Time, from)
		if err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: action: unknown action %q", tools.ErrInvalidInput, in.Action)
	}
	local := at.In(to)
	abbr, _ := local.Zone()
	out := Output{
		Time:         local.Format(layout),
		Zone:         to.String(),
		Abbreviation: abbr,
		UTCOffset:    local.Format("-07:00"),
		Weekday:      local.Weekday().String(),
		Unix:         local.Unix(),
		RFC3339:      local.Format(time.RFC3339),
	}
	return json.Marshal(out)
}

func loadZone(field, name string) (*time.Location, error) {
	if name == "" || strings.EqualFold(name, "UTC") {
		return time.UTC, nil
	}
	// "Local" would leak the server's zone and differ between hosts.
	if name == "Local" {
		return nil, fmt.Errorf("%w: %s: give an IANA zone name, not Local", tools.ErrInvalidInput, field)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: unknown time zone %q", tools.ErrInvalidInput, field, name)
	}
	return loc, nil
}

// parseTime accepts RFC3339 (its offset wins over from) or a wall-clock time
// without offset, read in from.
func parseTime(s string, from *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, l := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02T15:04", time.DateOnly} {
		if t, err := time.ParseInLocation(l, s, from); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: time: cannot read %q (use RFC3339 like 2024-03-10T14:30:00Z, or YYYY-MM-DD HH:MM[:SS])", tools.ErrInvalidInput, s)
}
