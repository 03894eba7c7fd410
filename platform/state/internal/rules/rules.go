// Package rules holds the claim decisions both state stores make, so that
// SQLite (inside a transaction) and DynamoDB (read, decide, conditional write
// on the observed revision, retry) cannot drift apart on the semantics
// documented on state.Claims.
package rules

import (
	"fmt"
	"time"

	"github.com/agentbus/agentbus/platform/state"
)

// Millis truncates t to the stores' millisecond precision, in UTC.
func Millis(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }

// Live reports whether cur exists and has not expired at now.
func Live(cur *state.Claim, now time.Time) bool {
	return cur != nil && now.Before(cur.ExpiresAt)
}

// Claim decides a state.Claims.Claim call: the claim to store (when write is
// true) or to report (when false), and whether the caller acquired it.
// cur is the stored claim or nil.
func Claim(cur *state.Claim, req state.ClaimRequest, now time.Time) (next state.Claim, acquired, write bool) {
	now = Millis(now)
	if !Live(cur, now) {
		return state.Claim{
			SessionID:  req.SessionID,
			Key:        req.Key,
			State:      state.ClaimPending,
			Holder:     req.Holder,
			Attempt:    1,
			LeaseUntil: now.Add(req.Lease),
			ExpiresAt:  now.Add(req.TTL),
		}, true, true
	}
	next = *cur
	switch {
	case cur.State == state.ClaimDone:
		return next, false, false
	case cur.Holder == req.Holder:
		// A retry of the same attempt's Claim (its first answer was lost).
	case now.Before(cur.LeaseUntil):
		return next, false, false
	default:
		next.Holder = req.Holder
		next.Attempt = cur.Attempt + 1
	}
	next.LeaseUntil = now.Add(req.Lease)
	next.ExpiresAt = now.Add(req.TTL)
	return next, true, true
}

// Renew decides a state.Claims.RenewClaim call.
func Renew(cur *state.Claim, holder string, lease time.Duration, now time.Time) (state.Claim, error) {
	now = Millis(now)
	if lease <= 0 {
		return state.Claim{}, fmt.Errorf("%w: lease %v must be positive", state.ErrInvalid, lease)
	}
	if !Live(cur, now) {
		return state.Claim{}, fmt.Errorf("renew claim: %w", state.ErrNotFound)
	}
	if cur.State != state.ClaimPending || cur.Holder != holder {
		return *cur, fmt.Errorf("renew claim held by %q (%s) as %q: %w", cur.Holder, cur.State, holder, state.ErrConflict)
	}
	next := *cur
	next.LeaseUntil = now.Add(lease)
	if next.ExpiresAt.Before(next.LeaseUntil) {
		next.ExpiresAt = next.LeaseUntil
	}
	return next, nil
}

// Complete decides a state.Claims.CompleteClaim call: the claim to store
// when write is true, else the stored one to return.
func Complete(cur *state.Claim, holder string, result []byte, now time.Time) (next state.Claim, write bool, err error) {
	now = Millis(now)
	if len(result) > state.MaxInlineValue {
		return state.Claim{}, false, fmt.Errorf("claim result of %d bytes, max %d: %w", len(result), state.MaxInlineValue, state.ErrTooLarge)
	}
	if !Live(cur, now) {
		return state.Claim{}, false, fmt.Errorf("complete claim: %w", state.ErrNotFound)
	}
	if cur.Holder != holder {
		return *cur, false, fmt.Errorf("complete claim held by %q (%s) as %q: %w", cur.Holder, cur.State, holder, state.ErrConflict)
	}
	if cur.State == state.ClaimDone {
		return *cur, false, nil
	}
	next = *cur
	next.State = state.ClaimDone
	next.Result = append([]byte(nil), result...)
	return next, true, nil
}

// CompleteUnclaimed decides a state.Claims.CompleteUnclaimed call: the claim
// to store when write is true, else the stored (done) one to return.
func CompleteUnclaimed(cur *state.Claim, sessionID, key, holder string, ttl time.Duration, result []byte, now time.Time) (next state.Claim, write bool, err error) {
	now = Millis(now)
	if ttl <= 0 {
		return state.Claim{}, false, fmt.Errorf("%w: ttl %v must be positive", state.ErrInvalid, ttl)
	}
	if len(result) > state.MaxInlineValue {
		return state.Claim{}, false, fmt.Errorf("claim result of %d bytes, max %d: %w", len(result), state.MaxInlineValue, state.ErrTooLarge)
	}
	attempt := 1
	if Live(cur, now) {
		if cur.State == state.ClaimDone {
			return *cur, false, nil
		}
		attempt = cur.Attempt + 1
	}
	return state.Claim{
		SessionID:  sessionID,
		Key:        key,
		State:      state.ClaimDone,
		Holder:     holder,
		Attempt:    attempt,
		LeaseUntil: now,
		ExpiresAt:  now.Add(ttl),
		Result:     append([]byte(nil), result...),
	}, true, nil
}
