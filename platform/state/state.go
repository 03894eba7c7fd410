// Package state declares the durable state the agentbus services share: the
// session record (optimistic concurrency), each session's append-only event
// history, idempotency claims with a lease and a TTL, per-step fan-in, and a
// transactional outbox. Implementations live in sub-packages: sqlite (the
// embedded default) and dynamodb (AWS, single-table design). Both pass the
// statetest suite; the relay that publishes the outbox is in state/outbox.
//
// Why an outbox: a state write and a bus publish cannot be atomic. Every
// mutating method that may have to announce its change takes outbox events
// that are written in the SAME transaction as the change: if the change
// commits they are pending until the relay publishes them, if it does not
// (ErrConflict, crash) none is written. Events carry deterministic ids chosen
// by the writer, so a relay that publishes one twice is harmless (consumers
// dedupe on source+id).
//
// Times are stored with millisecond precision. Every method is safe for
// concurrent use by many goroutines and many processes sharing one backend.
package state

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Errors returned (wrapped) by every implementation. Check with errors.Is.
var (
	// ErrNotFound: the session (or claim) does not exist, or has expired.
	ErrNotFound = errors.New("state: not found")
	// ErrConflict: a conditional write lost: the session already exists
	// (CreateSession), its version moved on (UpdateSession), or the caller
	// no longer holds a claim (RenewClaim, CompleteClaim). Nothing was
	// written, no outbox event either. Re-read and decide.
	ErrConflict = errors.New("state: conflict")
	// ErrInvalid: an argument is malformed (empty id, bad lease, ...).
	ErrInvalid = errors.New("state: invalid argument")
	// ErrTooLarge: a value exceeds what the backend can hold and cannot be
	// offloaded (see MaxInlineValue).
	ErrTooLarge = errors.New("state: value too large")
)

// Page sizes for the paged reads: a limit <= 0 means DefaultPageSize; a
// limit above MaxPageSize is cut to MaxPageSize.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// MaxInlineValue is the largest session data, claim result or fan-in result
// a store accepts (bytes); larger ones fail with ErrTooLarge. It keeps every
// DynamoDB item under its 400 KB limit. History entries and outbox payloads
// have no such limit: a store that cannot hold them inline offloads them to
// a blob store and keeps a reference.
const MaxInlineValue = 300 * 1024

// MaxOutboxPerWrite is the most outbox events one mutating call may carry:
// DynamoDB's TransactWriteItems takes at most 100 items, a few of which the
// state change itself uses.
const MaxOutboxPerWrite = 90

// Store is everything the services need. Implementations also satisfy the
// small interfaces below, which consumers should declare or use instead of
// Store when they need only a part.
type Store interface {
	Sessions
	History
	Claims
	FanIn
	Outbox
	// Close releases the store's resources (a borrowed client is not closed).
	Close() error
}

// Status is a session's lifecycle state. The planner owns its meaning; the
// store stores any non-empty value. The constants are the ones agentbus uses.
type Status string

// Session statuses used by the planner.
const (
	StatusRunning   Status = "running"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// Session is one agent run's record.
type Session struct {
	// ID names the session (the CloudEvents `sessionid`); see ValidateID.
	ID string
	// Version is 1 after CreateSession and grows by one with every
	// successful UpdateSession. It is the optimistic-concurrency token.
	Version int64
	Status  Status
	// AgentName is the agent definition the run uses (informational).
	AgentName string
	// Data is opaque JSON owned by the planner (at most MaxInlineValue).
	Data []byte
	// CreatedAt and UpdatedAt are set by the store.
	CreatedAt time.Time
	UpdatedAt time.Time
}

// SessionPage is one page of ListSessions.
type SessionPage struct {
	Sessions []Session
	// Next is the cursor of the following page; "" when this page is the last.
	Next string
}

// Sessions stores session records.
type Sessions interface {
	// CreateSession stores s as version 1 (s.Version, CreatedAt and
	// UpdatedAt are ignored and set by the store) together with out, and
	// returns the stored record. It fails with ErrConflict if a session with
	// that id exists.
	CreateSession(ctx context.Context, s Session, out ...OutboxEvent) (Session, error)
	// GetSession returns the session or ErrNotFound.
	GetSession(ctx context.Context, id string) (Session, error)
	// UpdateSession replaces Status, AgentName and Data of the session s.ID
	// if its stored version is still s.Version (the version the caller
	// read), writing out in the same transaction. It returns the stored
	// record (Version = s.Version+1, CreatedAt kept, UpdatedAt now). A
	// version mismatch fails with ErrConflict and writes nothing; a missing
	// session fails with ErrNotFound.
	UpdateSession(ctx context.Context, s Session, out ...OutboxEvent) (Session, error)
	// ListSessions returns up to limit sessions, newest created first (ties
	// by id, descending), starting at cursor ("" for the first page).
	ListSessions(ctx context.Context, cursor string, limit int) (SessionPage, error)
	// DeleteSession removes the session record and everything the store
	// keeps under it: history, claims, fan-in rows. It is idempotent (a
	// missing session is not an error) but not atomic on DynamoDB: a crash
	// mid-way leaves a partly deleted session that a retry finishes.
	// Blobs holding offloaded values (under BlobPrefix(id)) are the caller's
	// to delete: the store only needs Put and Get on its blob store.
	DeleteSession(ctx context.Context, id string) error
}

// Entry is one event in a session's history.
type Entry struct {
	// Seq is assigned by AppendHistory: 1, 2, 3, ... per session, in append
	// order, without gaps. Ignored on input.
	Seq int64
	// Source and ID identify the event (CloudEvents uniqueness); an entry
	// whose (Source, ID) is already in the session's history is not
	// appended again.
	Source string
	ID     string
	// Type and Time are the event's type and time, kept for listings
	// without decoding Data. Both optional.
	Type string
	Time time.Time
	// Data is the whole event (CloudEvent JSON). Any size: a store that
	// cannot hold it inline (DynamoDB, over MaxInlineValue) keeps it in a
	// blob under BlobPrefix(sessionID) and resolves it on read.
	Data []byte
}

// History is each session's append-only event log.
type History interface {
	// AppendHistory appends entries in order, skipping any whose
	// (Source, ID) the session's history already holds (also a repeat
	// within entries), and reports how many were appended. The session
	// record need not exist. On error some entries may have been appended;
	// calling again with the same entries is safe.
	AppendHistory(ctx context.Context, sessionID string, entries ...Entry) (int, error)
	// ReadHistory returns up to limit entries with Seq > afterSeq in Seq
	// order. Fewer than limit entries means the end of the history: page by
	// passing the last entry's Seq as afterSeq.
	ReadHistory(ctx context.Context, sessionID string, afterSeq int64, limit int) ([]Entry, error)
	// SearchHistory returns up to limit entries whose Data contains query,
	// compared case-insensitively (both lower-cased with strings.ToLower),
	// newest first.
	// It is a plain substring scan over the session's history, not a
	// full-text index: cost grows with the history's size. An empty query
	// is ErrInvalid.
	SearchHistory(ctx context.Context, sessionID, query string, limit int) ([]Entry, error)
}

// ClaimState is the state of an idempotency claim.
type ClaimState string

// Claim states.
const (
	// ClaimPending: a holder has claimed the key and may be running the
	// work; its lease says until when the claim is its own.
	ClaimPending ClaimState = "pending"
	// ClaimDone: the work finished; Result holds its stored outcome.
	ClaimDone ClaimState = "done"
)

// Claim is the stored state of one idempotency key.
type Claim struct {
	SessionID string
	Key       string
	State     ClaimState
	// Holder is who holds (pending) or completed (done) the claim.
	Holder string
	// Attempt is 1 for the first claimant and grows by one with every
	// takeover after an expired lease. Attempt > 1 on an acquired claim
	// means an earlier attempt started and never completed: its side
	// effects may or may not have happened.
	Attempt int
	// LeaseUntil is when a pending claim's lease ends.
	LeaseUntil time.Time
	// ExpiresAt is when the claim is forgotten (TTL): after it, the store
	// behaves as if the key had never been claimed.
	ExpiresAt time.Time
	// Result is the stored outcome of a done claim (opaque, at most
	// MaxInlineValue).
	Result []byte
}

// ClaimRequest asks for an idempotency claim.
type ClaimRequest struct {
	// SessionID scopes the claim: DeleteSession removes it.
	SessionID string
	// Key is the idempotency key, e.g. "<sessionid>/<step>/<callId>".
	Key string
	// Holder identifies this attempt; it must be unique per attempt (e.g.
	// instance id + a random id), because a Claim by the current holder is
	// treated as a retry of the same attempt.
	Holder string
	// Lease is how long the claim is the holder's without renewal (> 0).
	Lease time.Duration
	// TTL is how long the claim is remembered from now (>= Lease).
	TTL time.Duration
}

// Claims implements idempotency claims (exactly-once effects on an
// at-least-once bus). Expiry is checked on every read by the store itself:
// DynamoDB's TTL deletion lags by up to days and is only a clean-up.
type Claims interface {
	// Claim takes the key for req.Holder. Outcomes (acquired reports whether
	// the caller now holds the claim; the returned Claim is the stored one
	// after the call):
	//   - no claim, or an expired one: a new pending claim, Attempt 1,
	//     acquired = true.
	//   - pending, lease live, other holder: acquired = false; the caller
	//     sees the holder, its attempt and lease (and must not run the work).
	//   - pending, held by req.Holder: acquired = true, same attempt (a retry
	//     of the same Claim call); the lease is extended.
	//   - pending, lease expired: taken over: Holder = req.Holder, Attempt+1,
	//     new lease, acquired = true. Exactly one of many racing claimants
	//     wins a takeover.
	//   - done: acquired = false; the caller sees the stored Result.
	// ExpiresAt is set to now+TTL on every write.
	Claim(ctx context.Context, req ClaimRequest) (c Claim, acquired bool, err error)
	// RenewClaim extends the caller's lease to now+lease (heartbeat for
	// long work). It fails with ErrConflict if holder does not hold a
	// pending claim on the key any more (lease lost to a takeover, or done),
	// and ErrNotFound if there is no live claim.
	RenewClaim(ctx context.Context, sessionID, key, holder string, lease time.Duration) (Claim, error)
	// CompleteClaim stores result and marks the claim done, if holder
	// still holds it (pending, even with an expired lease that nobody took
	// over), writing out in the same transaction. Completing again with the
	// same holder after success returns the stored claim and writes
	// nothing. Otherwise ErrConflict (another holder took over, or another
	// holder completed it) or ErrNotFound (no live claim).
	CompleteClaim(ctx context.Context, sessionID, key, holder string, result []byte, out ...OutboxEvent) (Claim, error)
	// CompleteUnclaimed stores result as the key's outcome without a prior
	// Claim: one write instead of two, for work that may safely run more
	// than once (an idempotent tool), since no lease keeps a duplicate from
	// running it meanwhile. If the key is done (and live) it writes nothing
	// and returns the stored claim with stored = false. Otherwise (no live
	// claim, or a pending one under any holder) it stores a done claim by
	// holder — Attempt one more than a pending claim's, else 1; LeaseUntil
	// and ExpiresAt now and now+ttl — and writes out in the same
	// transaction; the pending holder's CompleteClaim then fails with
	// ErrConflict. The first outcome stored is the one kept.
	CompleteUnclaimed(ctx context.Context, sessionID, key, holder string, ttl time.Duration, result []byte, out ...OutboxEvent) (c Claim, stored bool, err error)
	// GetClaim returns the live claim or ErrNotFound (absent or expired).
	GetClaim(ctx context.Context, sessionID, key string) (Claim, error)
}

// StepKey names one step of one session.
type StepKey struct {
	SessionID string
	Step      int
}

// CallResult is one tool call's result recorded for a step's fan-in.
type CallResult struct {
	CallID string
	// Result is opaque (at most MaxInlineValue).
	Result []byte
}

// StepState is what the store knows about one step's fan-in.
type StepState struct {
	Key StepKey
	// Expected is the call ids given to OpenStep, sorted; nil if the step
	// was never opened.
	Expected []string
	// Results holds every recorded call result, sorted by CallID.
	Results []CallResult
	// Done is true once CompleteStep succeeded for the step.
	Done bool
}

// AllIn reports whether the step was opened and every expected call has a
// result.
func (s StepState) AllIn() bool {
	if len(s.Expected) == 0 {
		return false
	}
	have := make(map[string]bool, len(s.Results))
	for _, r := range s.Results {
		have[r.CallID] = true
	}
	for _, id := range s.Expected {
		if !have[id] {
			return false
		}
	}
	return true
}

// FanIn joins the N results of one step's parallel tool calls, so that many
// executor instances receiving results concurrently (and again, on
// redelivery) still make the step transition once.
type FanIn interface {
	// OpenStep records the call ids a step waits for, with out (e.g. the
	// ToolInvocationRequested events), once: opened is true for the call
	// that recorded them; later calls write nothing (the first call's ids
	// are kept) and return the stored state with opened = false.
	OpenStep(ctx context.Context, key StepKey, callIDs []string, out ...OutboxEvent) (st StepState, opened bool, err error)
	// RecordResult records callID's result, once: a repeat for the same
	// callID keeps the first result. It returns the step's state after the
	// write, including every result recorded so far (read consistently, so
	// of several concurrent recorders at least the last sees all results).
	// The step need not be open; recording on a done step is allowed and
	// changes nothing that matters (Done stays true).
	RecordResult(ctx context.Context, key StepKey, callID string, result []byte) (StepState, error)
	// CompleteStep marks the step done, once, writing out in the same
	// transaction: of all callers (concurrent or later) exactly one gets
	// first = true and has its outbox events written; the others get
	// first = false, nil error, and write nothing.
	CompleteStep(ctx context.Context, key StepKey, out ...OutboxEvent) (first bool, err error)
	// RecordAndComplete is RecordResult followed, when the step it returns
	// is not done and has every expected result (AllIn), by CompleteStep
	// with the events complete builds from that state. The SQLite store
	// does both in one transaction (a fan-in's last result costs one
	// write, not two); the DynamoDB store does the two writes, each as safe
	// to repeat as on its own. completed is true for the one call that
	// marked the step done, and st is then Done. complete runs only for a
	// step about to complete, possibly more than once (a retried
	// transaction); an error from it completes nothing (the result may be
	// recorded).
	RecordAndComplete(ctx context.Context, key StepKey, callID string, result []byte, complete func(StepState) ([]OutboxEvent, error)) (st StepState, completed bool, err error)
}

// OutboxEvent is an event to publish once the state change it was written
// with has committed.
type OutboxEvent struct {
	// ID identifies the outbox row; use a deterministic, unique value such
	// as the event's source + " " + id (see outbox.FromEvent). Writing an ID
	// that is still pending (or was sent and removed) stores it again as
	// pending: it is published again, which consumers dedupe.
	ID string
	// Payload is what the relay publishes: a structured CloudEvent JSON.
	// Any size (offloaded like history entries when needed).
	Payload []byte
	// Event, when set, is Payload already decoded: the writer's own event,
	// in this process (outbox.FromEvents sets it). Stores neither keep nor
	// return it; a relay publishing a write's events right after its
	// commit uses it instead of decoding Payload again.
	Event *event.Event
}

// Outbox is the read side of the transactional outbox, used by the relay.
type Outbox interface {
	// PendingOutbox returns up to limit unsent events, in no specified
	// order. Several relays may see the same events.
	PendingOutbox(ctx context.Context, limit int) ([]OutboxEvent, error)
	// MarkSent removes the events with these ids from the pending set.
	// Unknown ids are ignored.
	MarkSent(ctx context.Context, ids ...string) error
}

// MaxIDLen bounds session ids, claim keys, call ids, holders and outbox ids.
const MaxIDLen = 512

// ValidateID checks an identifier used in keys: non-empty, valid UTF-8, at
// most MaxIDLen bytes, no control characters. A session id must also be
// usable as one blob key segment: no '/', at most 200 bytes, not "." or "..".
func ValidateID(kind, id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalid, kind)
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("%w: %s of %d bytes, max %d", ErrInvalid, kind, len(id), MaxIDLen)
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, kind)
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %s %q contains a control character", ErrInvalid, kind, id)
		}
	}
	return nil
}

// ValidateSessionID is ValidateID for session ids plus the blob-segment rules.
func ValidateSessionID(id string) error {
	if err := ValidateID("session id", id); err != nil {
		return err
	}
	if strings.ContainsAny(id, "/\\") || id == "." || id == ".." || len(id) > 200 {
		return fmt.Errorf("%w: session id %q must be a single path segment (no slash, not . or .., at most 200 bytes)", ErrInvalid, id)
	}
	return nil
}

// BlobPrefix is the blob-key prefix under which a store offloads a
// session's large values; DeleteSession's caller deletes it from the blob
// store (blob.Store.DeletePrefix).
func BlobPrefix(sessionID string) string { return "state/" + sessionID + "/" }

// OutboxBlobPrefix is the blob-key prefix of offloaded outbox payloads. They
// are not deleted by MarkSent (the store only Puts and Gets); expire them with
// a bucket lifecycle rule (AWS) or prune the folder.
const OutboxBlobPrefix = "state/_outbox/"

// ValidateClaimKey checks the identifiers of a claim operation (RenewClaim,
// CompleteClaim, CompleteUnclaimed) as every implementation does.
func ValidateClaimKey(sessionID, key, holder string) error {
	if err := ValidateSessionID(sessionID); err != nil {
		return err
	}
	if err := ValidateID("claim key", key); err != nil {
		return err
	}
	return ValidateID("holder", holder)
}

// ValidateClaimRequest checks req as every implementation does.
func ValidateClaimRequest(req ClaimRequest) error {
	if err := ValidateSessionID(req.SessionID); err != nil {
		return err
	}
	if err := ValidateID("claim key", req.Key); err != nil {
		return err
	}
	if err := ValidateID("holder", req.Holder); err != nil {
		return err
	}
	if req.Lease <= 0 {
		return fmt.Errorf("%w: lease %v must be positive", ErrInvalid, req.Lease)
	}
	if req.TTL < req.Lease {
		return fmt.Errorf("%w: ttl %v shorter than lease %v", ErrInvalid, req.TTL, req.Lease)
	}
	return nil
}

// ValidateOutbox checks out as every implementation does.
func ValidateOutbox(out []OutboxEvent) error {
	if len(out) > MaxOutboxPerWrite {
		return fmt.Errorf("%w: %d outbox events in one write, max %d", ErrInvalid, len(out), MaxOutboxPerWrite)
	}
	seen := make(map[string]bool, len(out))
	for _, e := range out {
		if err := ValidateID("outbox id", e.ID); err != nil {
			return err
		}
		if seen[e.ID] {
			return fmt.Errorf("%w: outbox id %q twice in one write", ErrInvalid, e.ID)
		}
		seen[e.ID] = true
		if len(e.Payload) == 0 {
			return fmt.Errorf("%w: outbox event %q has an empty payload", ErrInvalid, e.ID)
		}
	}
	return nil
}

// PageSize applies DefaultPageSize and MaxPageSize to limit.
func PageSize(limit int) int {
	switch {
	case limit <= 0:
		return DefaultPageSize
	case limit > MaxPageSize:
		return MaxPageSize
	}
	return limit
}

// Search is a checked SearchHistory request. Both stores match with it, so
// a search finds the same entries whichever store holds the history.
type Search struct {
	// Limit is the page size (PageSize applied).
	Limit int
	query string // lowercased
}

// NewSearch checks a SearchHistory request as every implementation does.
func NewSearch(sessionID, query string, limit int) (Search, error) {
	if err := ValidateSessionID(sessionID); err != nil {
		return Search{}, err
	}
	if query == "" {
		return Search{}, fmt.Errorf("%w: empty search query", ErrInvalid)
	}
	return Search{Limit: PageSize(limit), query: strings.ToLower(query)}, nil
}

// Match reports whether e's data contains the query, case-insensitively.
func (s Search) Match(e Entry) bool {
	return strings.Contains(strings.ToLower(string(e.Data)), s.query)
}

// NormaliseCallIDs checks a step's call ids (OpenStep) as every
// implementation does, and returns them sorted without repeats.
func NormaliseCallIDs(callIDs []string) ([]string, error) {
	if len(callIDs) == 0 {
		return nil, fmt.Errorf("%w: a step needs at least one call id", ErrInvalid)
	}
	ids := slices.Clone(callIDs)
	for _, id := range ids {
		if err := ValidateID("call id", id); err != nil {
			return nil, err
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}
