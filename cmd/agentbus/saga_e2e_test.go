package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/model/scripted"
	"github.com/agentbus/agentbus/saga"
	"github.com/agentbus/agentbus/tools/demo/trip"
)

const (
	tripScript         = "../../examples/sagas/scripts/trip-script.json"
	tripDeclinedScript = "../../examples/sagas/scripts/trip-declined-script.json"
)

// TestSagaRunCommand runs the README demo as a user does: `agentbus run`
// with the trip saga and each script.
func TestSagaRunCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, script string
		inStdout     []string
	}{
		{"booked", tripScript, []string{
			"saga book_trip started",
			"saga book_trip completed",
			"answer: Your trip is booked: flight AB",
			"LIS → NRT",
			"3 nights at Hotel NRT Central",
			"705 EUR charged to card •••• 4242",
		}},
		{"declined", tripDeclinedScript, []string{
			"saga book_trip started",
			"saga book_trip compensated · failed at charge_card",
			"tool_error: saga book_trip failed at step charge_card: agentbus.ToolError: card declined",
			"answer: I could not book the trip.",
			"Undone (compensated, in this order): reserve_hotel, reserve_flight.",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"run", "--data-dir", dir, "--saga", bookTripFile, "--script", tt.script,
				"Book me a trip from LIS to NRT"}, strings.NewReader(""), &stdout, &stderr)
			if code != 0 {
				t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout.String(), stderr.String())
			}
			for _, s := range tt.inStdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "sagas.db")); err != nil {
				t.Errorf("the saga runner's database: %v", err)
			}
		})
	}
}

// TestSagaEmbedded follows a session's events on the embedded runtime and
// counts the demo providers' effects: the declined card compensates the
// hotel, then the flight, each exactly once, and charges nothing.
func TestSagaEmbedded(t *testing.T) {
	t.Parallel()
	bookTrip, err := loadSagaFile(bookTripFile)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, script string
		endType      string
		effects      map[string]int
		log          []string // effect kinds in order
		answer       string
	}{
		{"booked", tripScript, events.TypeSagaCompleted,
			map[string]int{trip.EffectFlightReserved: 1, trip.EffectHotelReserved: 1, trip.EffectCardCharged: 1},
			[]string{trip.EffectFlightReserved, trip.EffectHotelReserved, trip.EffectCardCharged},
			"Your trip is booked"},
		{"declined", tripDeclinedScript, events.TypeSagaCompensated,
			map[string]int{trip.EffectFlightReserved: 1, trip.EffectHotelReserved: 1, trip.EffectHotelCancelled: 1, trip.EffectFlightCancelled: 1},
			[]string{trip.EffectFlightReserved, trip.EffectHotelReserved, trip.EffectHotelCancelled, trip.EffectFlightCancelled},
			"Undone (compensated, in this order): reserve_hotel, reserve_flight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := scripted.LoadFile(tt.script)
			if err != nil {
				t.Fatal(err)
			}
			tp := trip.New()
			rt, err := startEmbedded(context.Background(), embeddedConfig{Model: scripted.New(s),
				Sagas: sagaConfig{Definitions: []saga.Definition{bookTrip}, Trip: tp}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rt.Close() })
			// The steps' tools are the saga's, not the model's.
			if _, err := rt.Tools.Lookup("charge_card"); err == nil {
				t.Error("charge_card is offered to the model")
			}
			sess := submit(t, rt, "Book me a trip from LIS to NRT", nil)
			end := sess.end(t, 30*time.Second)
			d, err := events.Decode[events.AgentCompleted](end)
			if err != nil {
				t.Fatalf("session ended with %s: %v", end.Type(), err)
			}
			if !strings.Contains(d.Answer, tt.answer) {
				t.Fatalf("answer %q lacks %q", d.Answer, tt.answer)
			}
			sess.waitFor(t, events.TypeSagaStarted, 10*time.Second)
			sess.waitFor(t, tt.endType, 10*time.Second)
			for _, typ := range []string{events.TypeSagaStarted, tt.endType} {
				if n := sess.count(typ); n != 1 {
					t.Errorf("%d distinct %s events, want 1", n, typ)
				}
			}
			got := tp.Effects()
			for _, k := range []string{trip.EffectFlightReserved, trip.EffectHotelReserved, trip.EffectCardCharged,
				trip.EffectFlightCancelled, trip.EffectHotelCancelled, trip.EffectCardRefunded} {
				if got[k] != tt.effects[k] {
					t.Errorf("%s happened %d times, want %d", k, got[k], tt.effects[k])
				}
			}
			var kinds []string
			for _, l := range tp.Log() {
				kinds = append(kinds, strings.Fields(l)[0])
			}
			if strings.Join(kinds, ",") != strings.Join(tt.log, ",") {
				t.Errorf("effects in order %v, want %v", kinds, tt.log)
			}
		})
	}
}

// TestSagaDev: `agentbus dev --stdin` offers the saga too.
func TestSagaDev(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"dev", "--stdin", "--data-dir", t.TempDir(), "--sagas-dir", filepath.Dir(bookTripFile),
		"--script", tripDeclinedScript}, strings.NewReader("Book me a trip from OPO to CDG\n"), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout.String(), stderr.String())
	}
	for _, s := range []string{"saga book_trip compensated", "answer: I could not book the trip.", "reserve_hotel, reserve_flight"} {
		if !strings.Contains(stdout.String(), s) {
			t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
		}
	}
}

func TestSagaStepToolsMustBeServed(t *testing.T) {
	t.Parallel()
	d, err := loadSagaFile(bookTripFile)
	if err != nil {
		t.Fatal(err)
	}
	d.Steps[0].Action.Tool = "reserve_rocket"
	s, _ := scripted.Default()
	_, err = startEmbedded(context.Background(), embeddedConfig{Model: scripted.New(s), Sagas: sagaConfig{Definitions: []saga.Definition{d}}})
	if err == nil || !strings.Contains(err.Error(), `tool "reserve_rocket" is not served`) {
		t.Fatalf("got %v", err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"run", "--saga", filepath.Join(t.TempDir(), "nope.json"), "hi"},
		strings.NewReader(""), &stdout, &stderr); code != 2 {
		t.Fatalf("missing saga file: exit %d (%s)", code, stderr.String())
	}
	if code := run(context.Background(), []string{"run", "--addr", "127.0.0.1:1", "--saga", bookTripFile, "hi"},
		strings.NewReader(""), &stdout, &stderr); code != 2 {
		t.Fatalf("--saga with --addr: exit %d (%s)", code, stderr.String())
	}
}
