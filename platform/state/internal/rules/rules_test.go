package rules

import (
	"errors"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/state"
)

var t0 = time.UnixMilli(1_700_000_000_000).UTC()

func req(holder string) state.ClaimRequest {
	return state.ClaimRequest{SessionID: "s", Key: "k", Holder: holder, Lease: time.Second, TTL: time.Minute}
}

func pending(holder string, attempt int) *state.Claim {
	return &state.Claim{SessionID: "s", Key: "k", State: state.ClaimPending, Holder: holder, Attempt: attempt,
		LeaseUntil: t0.Add(time.Second), ExpiresAt: t0.Add(time.Minute)}
}

func TestClaim(t *testing.T) {
	t.Parallel()
	done := pending("h1", 1)
	done.State, done.Result = state.ClaimDone, []byte(`"r"`)
	cases := []struct {
		name        string
		cur         *state.Claim
		holder      string
		now         time.Time
		wantAcq     bool
		wantWrite   bool
		wantHolder  string
		wantAttempt int
	}{
		{"absent", nil, "h1", t0, true, true, "h1", 1},
		{"live lease, other holder", pending("h1", 1), "h2", t0.Add(999 * time.Millisecond), false, false, "h1", 1},
		{"lease ends exactly now: expired", pending("h1", 1), "h2", t0.Add(time.Second), true, true, "h2", 2},
		{"same holder retry", pending("h1", 3), "h1", t0, true, true, "h1", 3},
		{"same holder after own lease expired", pending("h1", 1), "h1", t0.Add(5 * time.Second), true, true, "h1", 1},
		{"done", done, "h2", t0.Add(time.Hour / 2 / 60), false, false, "h1", 1},
		{"done but expired", done, "h2", t0.Add(time.Minute), true, true, "h2", 1},
		{"pending expired (TTL)", pending("h1", 4), "h2", t0.Add(2 * time.Minute), true, true, "h2", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			next, acq, write := Claim(c.cur, req(c.holder), c.now)
			if acq != c.wantAcq || write != c.wantWrite || next.Holder != c.wantHolder || next.Attempt != c.wantAttempt {
				t.Fatalf("Claim = %+v acquired=%v write=%v; want holder %s attempt %d acquired=%v write=%v",
					next, acq, write, c.wantHolder, c.wantAttempt, c.wantAcq, c.wantWrite)
			}
			if write && (!next.LeaseUntil.Equal(Millis(c.now).Add(time.Second)) || !next.ExpiresAt.Equal(Millis(c.now).Add(time.Minute)) || next.State != state.ClaimPending) {
				t.Fatalf("written claim %+v: want pending, lease and expiry from now", next)
			}
			if c.name == "done but expired" && next.Result != nil {
				t.Fatalf("a fresh claim kept the expired result %q", next.Result)
			}
		})
	}
}

func TestRenewAndComplete(t *testing.T) {
	t.Parallel()
	if _, err := Renew(pending("h1", 1), "h2", time.Second, t0); !errors.Is(err, state.ErrConflict) {
		t.Errorf("Renew(other holder) = %v, want ErrConflict", err)
	}
	if _, err := Renew(nil, "h1", time.Second, t0); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("Renew(absent) = %v, want ErrNotFound", err)
	}
	// Renewing past the expiry moves the expiry with the lease.
	r, err := Renew(pending("h1", 1), "h1", 10*time.Minute, t0)
	if err != nil || !r.LeaseUntil.Equal(t0.Add(10*time.Minute)) || r.ExpiresAt.Before(r.LeaseUntil) {
		t.Errorf("Renew = %+v, %v; want lease +10m and expiry not before it", r, err)
	}
	c, write, err := Complete(pending("h1", 2), "h1", []byte(`1`), t0.Add(time.Hour/120))
	if err != nil || !write || c.State != state.ClaimDone || c.Attempt != 2 || string(c.Result) != `1` {
		t.Errorf("Complete = %+v, %v, %v", c, write, err)
	}
	if _, write, err := Complete(&c, "h1", []byte(`2`), t0); err != nil || write {
		t.Errorf("Complete(done, same holder) = write %v, %v; want no write, no error", write, err)
	}
	if _, _, err := Complete(&c, "h2", nil, t0); !errors.Is(err, state.ErrConflict) {
		t.Errorf("Complete(done, other holder) = %v, want ErrConflict", err)
	}
	if _, _, err := Complete(pending("h1", 1), "h1", nil, t0.Add(time.Minute)); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("Complete(expired) = %v, want ErrNotFound", err)
	}
}

func TestCompleteUnclaimed(t *testing.T) {
	t.Parallel()
	done := func(holder string) *state.Claim {
		c := pending(holder, 1)
		c.State, c.Result = state.ClaimDone, []byte(`"first"`)
		return c
	}
	for _, tc := range []struct {
		name    string
		cur     *state.Claim
		write   bool
		holder  string
		attempt int
		result  string
	}{
		{"absent", nil, true, "h2", 1, `"mine"`},
		{"expired", pending("h1", 3), true, "h2", 1, `"mine"`},
		{"pending, live lease", pending("h1", 1), true, "h2", 2, `"mine"`},
		{"done", done("h1"), false, "h1", 1, `"first"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			now := t0
			if tc.name == "expired" {
				now = t0.Add(2 * time.Hour)
			}
			c, write, err := CompleteUnclaimed(tc.cur, "s-1", "k", "h2", time.Hour, []byte(`"mine"`), now)
			if err != nil || write != tc.write || c.State != state.ClaimDone || c.Holder != tc.holder ||
				c.Attempt != tc.attempt || string(c.Result) != tc.result {
				t.Fatalf("CompleteUnclaimed = %+v, write %v, %v; want write %v by %s, attempt %d, result %s",
					c, write, err, tc.write, tc.holder, tc.attempt, tc.result)
			}
			if write && (c.SessionID != "s-1" || c.Key != "k" || !c.ExpiresAt.Equal(Millis(now).Add(time.Hour))) {
				t.Errorf("stored claim %+v: want session s-1, key k, expiry now+1h", c)
			}
		})
	}
	if _, _, err := CompleteUnclaimed(nil, "s-1", "k", "h", 0, nil, t0); !errors.Is(err, state.ErrInvalid) {
		t.Errorf("CompleteUnclaimed(ttl 0) = %v, want ErrInvalid", err)
	}
	big := make([]byte, state.MaxInlineValue+1)
	if _, _, err := CompleteUnclaimed(nil, "s-1", "k", "h", time.Hour, big, t0); !errors.Is(err, state.ErrTooLarge) {
		t.Errorf("CompleteUnclaimed(too large) = %v, want ErrTooLarge", err)
	}
}
