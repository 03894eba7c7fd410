package clock_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentbus/agentbus/tools"
	"github.com/agentbus/agentbus/tools/builtin/clock"
)

func entry(t *testing.T, now time.Time) *tools.Entry {
	t.Helper()
	r := tools.NewRegistry()
	if err := r.Register(&clock.Tool{Now: func() time.Time { return now }}); err != nil {
		t.Fatal(err)
	}
	e, err := r.Lookup(clock.Name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestClock(t *testing.T) {
	t.Parallel()
	now := time.Date(2024, 3, 10, 6, 30, 0, 0, time.UTC) // a Sunday; US DST starts that day at 2am local
	e := entry(t, now)
	if !e.Spec().Idempotent {
		t.Fatal("clock must be idempotent")
	}
	tests := []struct {
		name  string
		input string
		want  clock.Output
	}{
		{"now default UTC", `{}`, clock.Output{Time: "2024-03-10T06:30:00Z", Zone: "UTC", Abbreviation: "UTC", UTCOffset: "+00:00", Weekday: "Sunday", Unix: now.Unix(), RFC3339: "2024-03-10T06:30:00Z"}},
		{"now in Tokyo", `{"action":"now","to":"Asia/Tokyo"}`, clock.Output{Time: "2024-03-10T15:30:00+09:00", Zone: "Asia/Tokyo", Abbreviation: "JST", UTCOffset: "+09:00", Weekday: "Sunday", Unix: now.Unix(), RFC3339: "2024-03-10T15:30:00+09:00"}},
		{"now Kitchen", `{"to":"Europe/Oslo","format":"Kitchen"}`, clock.Output{Time: "7:30AM", Zone: "Europe/Oslo", Abbreviation: "CET", UTCOffset: "+01:00", Weekday: "Sunday", Unix: now.Unix(), RFC3339: "2024-03-10T07:30:00+01:00"}},
		{"convert RFC3339 to New York before DST", `{"action":"convert","time":"2024-03-10T06:30:00Z","to":"America/New_York"}`,
			clock.Output{Time: "2024-03-10T01:30:00-05:00", Zone: "America/New_York", Abbreviation: "EST", UTCOffset: "-05:00", Weekday: "Sunday", Unix: now.Unix(), RFC3339: "2024-03-10T01:30:00-05:00"}},
		{"convert wall clock across DST", `{"action":"convert","time":"2024-03-10 12:00","from":"America/New_York","to":"Asia/Kolkata","format":"DateTime"}`,
			clock.Output{Time: "2024-03-10 21:30:00", Zone: "Asia/Kolkata", Abbreviation: "IST", UTCOffset: "+05:30", Weekday: "Sunday", Unix: 1710086400, RFC3339: "2024-03-10T21:30:00+05:30"}},
		{"offset in time wins over from", `{"action":"convert","time":"2024-01-01T00:00:00+02:00","from":"Asia/Tokyo"}`,
			clock.Output{Time: "2023-12-31T22:00:00Z", Zone: "UTC", Abbreviation: "UTC", UTCOffset: "+00:00", Weekday: "Sunday", Unix: 1704060000, RFC3339: "2023-12-31T22:00:00Z"}},
		{"date only", `{"action":"convert","time":"2024-02-29","from":"UTC","format":"DateOnly"}`,
			clock.Output{Time: "2024-02-29", Zone: "UTC", Abbreviation: "UTC", UTCOffset: "+00:00", Weekday: "Thursday", Unix: 1709164800, RFC3339: "2024-02-29T00:00:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, err := e.Run(context.Background(), tools.Call{Input: json.RawMessage(tt.input)})
			if err != nil {
				t.Fatalf("Run(%s): %v", tt.input, err)
			}
			var got clock.Output
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("Run(%s)\n got %+v\nwant %+v", tt.input, got, tt.want)
			}
		})
	}
}

func TestClockBadInput(t *testing.T) {
	t.Parallel()
	e := entry(t, time.Unix(0, 0))
	tests := []struct {
		input, mention string
	}{
		{`{"to":"Mars/Olympus"}`, "unknown time zone"},
		{`{"to":"Local"}`, "IANA"},
		{`{"action":"convert"}`, "time"},
		{`{"action":"convert","time":"yesterday"}`, "cannot read"},
		{`{"action":"convert","time":"2024-13-01"}`, "cannot read"},
		{`{"action":"convert","time":"2024-01-01","from":"Nowhere/City"}`, "unknown time zone"},
		{`{"action":"sleep"}`, "/action"},
		{`{"format":"%Y"}`, "/format"},
		{`{"time":"2024-01-01"}`, "only used with"},
		{`{"zone":"UTC"}`, "zone"},
		{`{"to":5}`, "/to"},
	}
	for _, tt := range tests {
		t.Run(tt.input, func(t *testing.T) {
			t.Parallel()
			_, err := e.Run(context.Background(), tools.Call{Input: json.RawMessage(tt.input)})
			if !errors.Is(err, tools.ErrInvalidInput) {
				t.Fatalf("Run(%s) = %v, want ErrInvalidInput", tt.input, err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("Run(%s) error %q does not mention %q", tt.input, err, tt.mention)
			}
		})
	}
}

func TestClockRealTime(t *testing.T) {
	t.Parallel()
	c := &clock.Tool{} // nil Now: time.Now
	before := time.Now().Unix()
	out, err := c.Run(context.Background(), tools.Call{Input: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	var got clock.Output
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.Unix < before || got.Unix > time.Now().Unix() {
		t.Fatalf("unix %d not within the call", got.Unix)
	}
}
