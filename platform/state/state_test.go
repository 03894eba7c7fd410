package state_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/state"
)

func TestAllIn(t *testing.T) {
	t.Parallel()
	res := func(ids ...string) []state.CallResult {
		var out []state.CallResult
		for _, id := range ids {
			out = append(out, state.CallResult{CallID: id, Result: []byte(`{}`)})
		}
		return out
	}
	cases := []struct {
		name string
		st   state.StepState
		want bool
	}{
		{"not opened", state.StepState{Results: res("a")}, false},
		{"none in", state.StepState{Expected: []string{"a", "b"}}, false},
		{"some in", state.StepState{Expected: []string{"a", "b"}, Results: res("a")}, false},
		{"other ids", state.StepState{Expected: []string{"a", "b"}, Results: res("a", "c")}, false},
		{"all in", state.StepState{Expected: []string{"a", "b"}, Results: res("b", "a")}, true},
		{"extra", state.StepState{Expected: []string{"a"}, Results: res("a", "z")}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if got := c.st.AllIn(); got != c.want {
				t.Fatalf("AllIn() = %v, want %v", got, c.want)
			}
		})
	}
}

func TestValidateSessionID(t *testing.T) {
	t.Parallel()
	cases := []struct {
		id string
		ok bool
	}{
		{"s-1", true},
		{"01J0ABCDEF", true},
		{"", false},
		{"a/b", false},
		{"..", false},
		{".", false},
		{"a\nb", false},
		{strings.Repeat("x", 201), false},
		{string([]byte{0xff, 0xfe}), false},
	}
	for _, c := range cases {
		err := state.ValidateSessionID(c.id)
		if (err == nil) != c.ok {
			t.Errorf("ValidateSessionID(%q) = %v, want ok=%v", c.id, err, c.ok)
		}
		if err != nil && !errors.Is(err, state.ErrInvalid) {
			t.Errorf("ValidateSessionID(%q) error %v does not wrap ErrInvalid", c.id, err)
		}
	}
}

func TestValidateClaimRequest(t *testing.T) {
	t.Parallel()
	good := state.ClaimRequest{SessionID: "s", Key: "s/1/c", Holder: "h", Lease: time.Second, TTL: time.Hour}
	cases := []struct {
		name string
		mod  func(r *state.ClaimRequest)
		ok   bool
	}{
		{"good", func(*state.ClaimRequest) {}, true},
		{"no session", func(r *state.ClaimRequest) { r.SessionID = "" }, false},
		{"no key", func(r *state.ClaimRequest) { r.Key = "" }, false},
		{"no holder", func(r *state.ClaimRequest) { r.Holder = "" }, false},
		{"zero lease", func(r *state.ClaimRequest) { r.Lease = 0 }, false},
		{"ttl < lease", func(r *state.ClaimRequest) { r.TTL = time.Millisecond }, false},
	}
	for _, c := range cases {
		r := good
		c.mod(&r)
		err := state.ValidateClaimRequest(r)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, state.ErrInvalid)) {
			t.Errorf("%s: ValidateClaimRequest = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

func TestValidateOutbox(t *testing.T) {
	t.Parallel()
	ev := func(id string) state.OutboxEvent { return state.OutboxEvent{ID: id, Payload: []byte(`{}`)} }
	many := make([]state.OutboxEvent, state.MaxOutboxPerWrite+1)
	for i := range many {
		many[i] = ev(strings.Repeat("x", i+1))
	}
	cases := []struct {
		name string
		out  []state.OutboxEvent
		ok   bool
	}{
		{"none", nil, true},
		{"two", []state.OutboxEvent{ev("a"), ev("b")}, true},
		{"duplicate id", []state.OutboxEvent{ev("a"), ev("a")}, false},
		{"empty id", []state.OutboxEvent{ev("")}, false},
		{"empty payload", []state.OutboxEvent{{ID: "a"}}, false},
		{"too many", many, false},
	}
	for _, c := range cases {
		err := state.ValidateOutbox(c.out)
		if (err == nil) != c.ok {
			t.Errorf("%s: ValidateOutbox = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

func TestPageSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[int]int{-1: state.DefaultPageSize, 0: state.DefaultPageSize, 7: 7, state.MaxPageSize + 1: state.MaxPageSize} {
		if got := state.PageSize(in); got != want {
			t.Errorf("PageSize(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestNewSearch(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, session, query string
		limit, wantLimit     int
		wantErr              bool
	}{
		{"default page", "s-1", "x", 0, state.DefaultPageSize, false},
		{"capped page", "s-1", "x", state.MaxPageSize + 1, state.MaxPageSize, false},
		{"empty query", "s-1", "", 5, 0, true},
		{"bad session", "", "x", 5, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, err := state.NewSearch(c.session, c.query, c.limit)
			if c.wantErr {
				if !errors.Is(err, state.ErrInvalid) {
					t.Fatalf("NewSearch = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil || s.Limit != c.wantLimit {
				t.Fatalf("NewSearch = %+v, %v; want limit %d", s, err, c.wantLimit)
			}
		})
	}
	s, _ := state.NewSearch("s-1", "ÉTÉ", 1)
	if !s.Match(state.Entry{Data: []byte(`{"text":"un été chaud"}`)}) || s.Match(state.Entry{Data: []byte(`{"text":"hiver"}`)}) {
		t.Error("Match must find the query case-insensitively (Unicode) and only there")
	}
}
