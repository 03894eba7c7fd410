// Package statetest is the conformance suite every state.Store passes. An
// implementation's test calls Run with a constructor that returns a fresh,
// empty store (its own database, its own table) for each subtest.
//
// Lease and TTL cases use real time with wide margins (leases of a few
// hundred milliseconds, waits of twice that), so that they hold against a
// remote backend too.
package statetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentbus/agentbus/platform/state"
)

// LargeEntrySize is the size of the history entry that a DynamoDB store must
// offload to its blob store (over the 400 KB item limit).
const LargeEntrySize = 1 << 20

// Racers is how many goroutines the concurrency cases start.
const Racers = 8

// Run runs the whole suite against stores made by newStore. newStore must
// return an empty store that no other subtest uses; it registers its own
// cleanup (closing the store) with t.Cleanup. Subtests run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) state.Store) {
	t.Helper()
	cases := []struct {
		name string
		fn   func(t *testing.T, s state.Store)
	}{
		{"SessionCreateGet", testSessionCreateGet},
		{"SessionCreateConflict", testSessionCreateConflict},
		{"SessionUpdateVersion", testSessionUpdateVersion},
		{"SessionUpdateRace", testSessionUpdateRace},
		{"SessionList", testSessionList},
		{"SessionInvalid", testSessionInvalid},
		{"DeleteSession", testDeleteSession},
		{"HistoryAppendRead", testHistoryAppendRead},
		{"HistoryDedupe", testHistoryDedupe},
		{"HistoryPaging", testHistoryPaging},
		{"HistoryConcurrentAppend", testHistoryConcurrentAppend},
		{"HistorySearch", testHistorySearch},
		{"HistoryLargeEntry", testHistoryLargeEntry},
		{"HistoryInvalid", testHistoryInvalid},
		{"ClaimOnce", testClaimOnce},
		{"ClaimComplete", testClaimComplete},
		{"ClaimRace", testClaimRace},
		{"ClaimCompleteUnclaimed", testCompleteUnclaimed},
		{"ClaimCompleteUnclaimedRace", testCompleteUnclaimedRace},
		{"ClaimLeaseTakeover", testClaimLeaseTakeover},
		{"ClaimTakeoverRace", testClaimTakeoverRace},
		{"ClaimRenew", testClaimRenew},
		{"ClaimTTLExpiry", testClaimTTLExpiry},
		{"ClaimInvalid", testClaimInvalid},
		{"FanInOpenOnce", testFanInOpenOnce},
		{"FanInRecordIdempotent", testFanInRecordIdempotent},
		{"FanInRace", testFanInRace},
		{"FanInRecordAndComplete", testFanInRecordAndComplete},
		{"FanInRecordAndCompleteRace", testFanInRecordAndCompleteRace},
		{"FanInInvalid", testFanInInvalid},
		{"OutboxAtomicity", testOutboxAtomicity},
		{"OutboxPendingMarkSent", testOutboxPendingMarkSent},
		{"OutboxLargePayload", testOutboxLargePayload},
		{"CanceledContext", testCanceledContext},
		{"LongIDs", testLongIDs},
		{"ToolSpecs", testToolSpecs},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, newStore(t))
		})
	}
}

func ob(id string) state.OutboxEvent {
	return state.OutboxEvent{ID: id, Payload: []byte(fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"statetest","type":"t"}`, id))}
}

// pending returns every pending outbox event by id.
func pending(t *testing.T, s state.Store) map[string][]byte {
	t.Helper()
	evs, err := s.PendingOutbox(t.Context(), state.MaxPageSize)
	if err != nil {
		t.Fatalf("PendingOutbox: %v", err)
	}
	out := make(map[string][]byte, len(evs))
	for _, e := range evs {
		if _, dup := out[e.ID]; dup {
			t.Fatalf("PendingOutbox returned %q twice", e.ID)
		}
		out[e.ID] = e.Payload
	}
	return out
}

func wantPending(t *testing.T, s state.Store, ids ...string) {
	t.Helper()
	got := pending(t, s)
	var gotIDs []string
	for id := range got {
		gotIDs = append(gotIDs, id)
	}
	sort.Strings(gotIDs)
	want := slices.Clone(ids)
	sort.Strings(want)
	if !slices.Equal(gotIDs, want) {
		t.Fatalf("pending outbox = %q, want %q", gotIDs, want)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want one wrapping %v", what, err, target)
	}
}

func mustCreate(t *testing.T, s state.Store, id string, out ...state.OutboxEvent) state.Session {
	t.Helper()
	sess, err := s.CreateSession(t.Context(), state.Session{ID: id, Status: state.StatusRunning, AgentName: "agent", Data: []byte(`{"n":0}`)}, out...)
	if err != nil {
		t.Fatalf("CreateSession(%q): %v", id, err)
	}
	return sess
}

func testSessionCreateGet(t *testing.T, s state.Store) {
	ctx := t.Context()
	before := time.Now().Add(-time.Second)
	in := state.Session{ID: "s-1", Version: 42, Status: state.StatusRunning, AgentName: "researcher", Data: []byte(`{"messages":[1,2,3]}`)}
	created, err := s.CreateSession(ctx, in)
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	if created.Version != 1 {
		t.Errorf("created version = %d, want 1 (input version ignored)", created.Version)
	}
	if created.CreatedAt.Before(before) || !created.UpdatedAt.Equal(created.CreatedAt) {
		t.Errorf("created timestamps = %v / %v, want now and equal", created.CreatedAt, created.UpdatedAt)
	}
	got, err := s.GetSession(ctx, "s-1")
	if err != nil {
		t.Fatalf("GetSession: %v", err)
	}
	if got.ID != "s-1" || got.Version != 1 || got.Status != state.StatusRunning || got.AgentName != "researcher" ||
		!bytes.Equal(got.Data, in.Data) || !got.CreatedAt.Equal(created.CreatedAt) || !got.UpdatedAt.Equal(created.UpdatedAt) {
		t.Errorf("GetSession = %+v, want %+v", got, created)
	}
	_, err = s.GetSession(ctx, "nope")
	wantErr(t, "GetSession(missing)", err, state.ErrNotFound)
}

func testSessionCreateConflict(t *testing.T, s state.Store) {
	ctx := t.Context()
	mustCreate(t, s, "s-1", ob("first"))
	_, err := s.CreateSession(ctx, state.Session{ID: "s-1", Status: state.StatusFailed, Data: []byte(`{"other":true}`)}, ob("second"))
	wantErr(t, "second CreateSession", err, state.ErrConflict)
	got, err := s.GetSession(ctx, "s-1")
	if err != nil {
		t.Fatalf("GetSession: %v", err)
	}
	if got.Status != state.StatusRunning || string(got.Data) != `{"n":0}` {
		t.Errorf("session changed by a conflicting create: %+v", got)
	}
	wantPending(t, s, "first")
}

func testSessionUpdateVersion(t *testing.T, s state.Store) {
	ctx := t.Context()
	v1 := mustCreate(t, s, "s-1")
	time.Sleep(5 * time.Millisecond)
	upd := v1
	upd.Status = state.StatusCompleted
	upd.Data = []byte(`{"n":1}`)
	v2, err := s.UpdateSession(ctx, upd)
	if err != nil {
		t.Fatalf("UpdateSession: %v", err)
	}
	if v2.Version != 2 || !v2.CreatedAt.Equal(v1.CreatedAt) || !v2.UpdatedAt.After(v1.UpdatedAt) {
		t.Errorf("updated = version %d created %v updated %v; want 2, %v, after %v", v2.Version, v2.CreatedAt, v2.UpdatedAt, v1.CreatedAt, v1.UpdatedAt)
	}
	got, err := s.GetSession(ctx, "s-1")
	if err != nil {
		t.Fatalf("GetSession: %v", err)
	}
	if got.Version != 2 || got.Status != state.StatusCompleted || string(got.Data) != `{"n":1}` || !got.CreatedAt.Equal(v1.CreatedAt) {
		t.Errorf("GetSession after update = %+v", got)
	}
	// A stale version loses and changes nothing.
	stale := v1
	stale.Data = []byte(`{"n":"stale"}`)
	_, err = s.UpdateSession(ctx, stale)
	wantErr(t, "UpdateSession(stale)", err, state.ErrConflict)
	// A version from the future loses too.
	future := v2
	future.Version = 7
	_, err = s.UpdateSession(ctx, future)
	wantErr(t, "UpdateSession(future)", err, state.ErrConflict)
	if got, _ := s.GetSession(ctx, "s-1"); got.Version != 2 || string(got.Data) != `{"n":1}` {
		t.Errorf("session changed by a conflicting update: %+v", got)
	}
	_, err = s.UpdateSession(ctx, state.Session{ID: "missing", Version: 1, Status: state.StatusRunning})
	wantErr(t, "UpdateSession(missing)", err, state.ErrNotFound)
}

func testSessionUpdateRace(t *testing.T, s state.Store) {
	ctx := t.Context()
	cur := mustCreate(t, s, "s-1")
	for round := range 3 {
		var (
			wins  atomic.Int32
			wg    sync.WaitGroup
			mu    sync.Mutex
			after state.Session
		)
		for i := range Racers {
			wg.Go(func() {
				upd := cur
				upd.Data = []byte(fmt.Sprintf(`{"round":%d,"racer":%d}`, round, i))
				got, err := s.UpdateSession(ctx, upd)
				switch {
				case err == nil:
					wins.Add(1)
					mu.Lock()
					after = got
					mu.Unlock()
				case errors.Is(err, state.ErrConflict):
				default:
					t.Errorf("racer %d: UpdateSession: %v", i, err)
				}
			})
		}
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d updates won at version %d, want exactly 1", round, n, cur.Version)
		}
		if after.Version != cur.Version+1 {
			t.Fatalf("round %d: winner's version %d, want %d", round, after.Version, cur.Version+1)
		}
		stored, err := s.GetSession(ctx, "s-1")
		if err != nil || stored.Version != after.Version || !bytes.Equal(stored.Data, after.Data) {
			t.Fatalf("round %d: stored %+v (%v), want the winner's %+v", round, stored, err, after)
		}
		cur = after
	}
}

func testSessionList(t *testing.T, s state.Store) {
	ctx := t.Context()
	page, err := s.ListSessions(ctx, "", 10)
	if err != nil || len(page.Sessions) != 0 || page.Next != "" {
		t.Fatalf("ListSessions(empty store) = %+v, %v", page, err)
	}
	var created []state.Session
	for i := range 7 {
		created = append(created, mustCreate(t, s, fmt.Sprintf("s-%02d", i)))
		if i%3 == 0 {
			time.Sleep(3 * time.Millisecond) // some ties in the millisecond, some not
		}
	}
	sort.Slice(created, func(i, j int) bool {
		a, b := created[i], created[j]
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.After(b.CreatedAt)
		}
		return a.ID > b.ID
	})
	var want, got []string
	for _, c := range created {
		want = append(want, c.ID)
	}
	cursor, pages := "", 0
	for {
		page, err := s.ListSessions(ctx, cursor, 3)
		if err != nil {
			t.Fatalf("ListSessions(%q): %v", cursor, err)
		}
		pages++
		if len(page.Sessions) > 3 {
			t.Fatalf("page of %d sessions, limit 3", len(page.Sessions))
		}
		for _, sess := range page.Sessions {
			got = append(got, sess.ID)
			if sess.Version != 1 || sess.Status != state.StatusRunning || string(sess.Data) != `{"n":0}` {
				t.Errorf("listed session %+v incomplete", sess)
			}
		}
		if page.Next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("ListSessions does not terminate")
		}
		cursor = page.Next
	}
	if !slices.Equal(got, want) {
		t.Errorf("listed %q, want %q (newest first, ties by id descending)", got, want)
	}
	if pages != 3 {
		t.Errorf("7 sessions in pages of 3 took %d pages, want 3", pages)
	}
	_, err = s.ListSessions(ctx, "%%%not-a-cursor", 3)
	wantErr(t, "ListSessions(bad cursor)", err, state.ErrInvalid)
}

func testSessionInvalid(t *testing.T, s state.Store) {
	ctx := t.Context()
	cases := []struct {
		name string
		sess state.Session
		want error
	}{
		{"empty id", state.Session{Status: state.StatusRunning}, state.ErrInvalid},
		{"slash in id", state.Session{ID: "a/b", Status: state.StatusRunning}, state.ErrInvalid},
		{"empty status", state.Session{ID: "s"}, state.ErrInvalid},
		{"data too large", state.Session{ID: "s", Status: state.StatusRunning, Data: bytes.Repeat([]byte("x"), state.MaxInlineValue+1)}, state.ErrTooLarge},
	}
	for _, c := range cases {
		_, err := s.CreateSession(ctx, c.sess)
		wantErr(t, "CreateSession "+c.name, err, c.want)
	}
	_, err := s.CreateSession(ctx, state.Session{ID: "s", Status: state.StatusRunning}, ob("a"), ob("a"))
	wantErr(t, "CreateSession with duplicate outbox ids", err, state.ErrInvalid)
	_, err = s.GetSession(ctx, "")
	wantErr(t, "GetSession(empty)", err, state.ErrInvalid)
	if _, err := s.GetSession(ctx, "s"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("an invalid create stored the session: GetSession = %v", err)
	}
	wantPending(t, s)
}

func testDeleteSession(t *testing.T, s state.Store) {
	ctx := t.Context()
	for _, id := range []string{"gone", "kept"} {
		mustCreate(t, s, id)
		if _, err := s.AppendHistory(ctx, id, entry(1), entry(2)); err != nil {
			t.Fatalf("AppendHistory: %v", err)
		}
		if _, _, err := s.Claim(ctx, claimReq(id, "k", "h", time.Minute)); err != nil {
			t.Fatalf("Claim: %v", err)
		}
		if _, _, err := s.OpenStep(ctx, state.StepKey{SessionID: id, Step: 1}, []string{"c1"}); err != nil {
			t.Fatalf("OpenStep: %v", err)
		}
		if _, err := s.RecordResult(ctx, state.StepKey{SessionID: id, Step: 1}, "c1", []byte(`1`)); err != nil {
			t.Fatalf("RecordResult: %v", err)
		}
		if _, err := s.CompleteStep(ctx, state.StepKey{SessionID: id, Step: 1}); err != nil {
			t.Fatalf("CompleteStep: %v", err)
		}
	}
	if err := s.DeleteSession(ctx, "gone"); err != nil {
		t.Fatalf("DeleteSession: %v", err)
	}
	if err := s.DeleteSession(ctx, "gone"); err != nil {
		t.Fatalf("DeleteSession again: %v (want idempotent)", err)
	}
	if err := s.DeleteSession(ctx, "never-existed"); err != nil {
		t.Fatalf("DeleteSession(missing): %v (want idempotent)", err)
	}
	_, err := s.GetSession(ctx, "gone")
	wantErr(t, "GetSession after delete", err, state.ErrNotFound)
	if h, err := s.ReadHistory(ctx, "gone", 0, 10); err != nil || len(h) != 0 {
		t.Errorf("history after delete = %d entries, %v", len(h), err)
	}
	_, err = s.GetClaim(ctx, "gone", "k")
	wantErr(t, "GetClaim after delete", err, state.ErrNotFound)
	st, err := s.RecordResult(ctx, state.StepKey{SessionID: "gone", Step: 1}, "c2", []byte(`2`))
	if err != nil || st.Done || st.Expected != nil || len(st.Results) != 1 {
		t.Errorf("fan-in after delete = %+v, %v; want a fresh step", st, err)
	}
	// The other session is untouched.
	if _, err := s.GetSession(ctx, "kept"); err != nil {
		t.Errorf("GetSession(kept): %v", err)
	}
	if h, err := s.ReadHistory(ctx, "kept", 0, 10); err != nil || len(h) != 2 {
		t.Errorf("history of kept = %d entries, %v; want 2", len(h), err)
	}
	if _, err := s.GetClaim(ctx, "kept", "k"); err != nil {
		t.Errorf("GetClaim(kept): %v", err)
	}
	if first, err := s.CompleteStep(ctx, state.StepKey{SessionID: "kept", Step: 1}); err != nil || first {
		t.Errorf("CompleteStep(kept) = %v, %v; want false (already done)", first, err)
	}
	if page, err := s.ListSessions(ctx, "", 10); err != nil || len(page.Sessions) != 1 || page.Sessions[0].ID != "kept" {
		t.Errorf("ListSessions after delete = %+v, %v", page, err)
	}
}

func entry(i int) state.Entry {
	return state.Entry{
		Source: "agentbus/test",
		ID:     fmt.Sprintf("ev-%d", i),
		Type:   "agentbus.test.v1",
		Time:   time.UnixMilli(1_700_000_000_000 + int64(i)).UTC(),
		Data:   []byte(fmt.Sprintf(`{"id":"ev-%d","data":{"n":%d}}`, i, i)),
	}
}

func readAll(t *testing.T, s state.Store, sessionID string, pageSize int) []state.Entry {
	t.Helper()
	var all []state.Entry
	after := int64(0)
	for range 10000 {
		page, err := s.ReadHistory(t.Context(), sessionID, after, pageSize)
		if err != nil {
			t.Fatalf("ReadHistory(after %d): %v", after, err)
		}
		if len(page) > pageSize {
			t.Fatalf("ReadHistory returned %d entries, limit %d", len(page), pageSize)
		}
		all = append(all, page...)
		if len(page) < pageSize {
			return all
		}
		after = page[len(page)-1].Seq
	}
	t.Fatal("ReadHistory does not terminate")
	return nil
}

func checkSeqs(t *testing.T, entries []state.Entry) {
	t.Helper()
	for i, e := range entries {
		if e.Seq != int64(i+1) {
			t.Fatalf("entry %d has seq %d, want %d (contiguous from 1)", i, e.Seq, i+1)
		}
	}
}

func testHistoryAppendRead(t *testing.T, s state.Store) {
	ctx := t.Context()
	n, err := s.AppendHistory(ctx, "s-1", entry(1), entry(2), entry(3))
	if err != nil || n != 3 {
		t.Fatalf("AppendHistory = %d, %v; want 3", n, err)
	}
	if n, err := s.AppendHistory(ctx, "s-1", entry(4)); err != nil || n != 1 {
		t.Fatalf("AppendHistory = %d, %v; want 1", n, err)
	}
	if n, err := s.AppendHistory(ctx, "s-1"); err != nil || n != 0 {
		t.Fatalf("AppendHistory() = %d, %v; want 0", n, err)
	}
	if _, err := s.AppendHistory(ctx, "s-2", entry(9)); err != nil {
		t.Fatalf("AppendHistory(s-2): %v", err)
	}
	got := readAll(t, s, "s-1", 100)
	if len(got) != 4 {
		t.Fatalf("read %d entries, want 4", len(got))
	}
	checkSeqs(t, got)
	for i, e := range got {
		w := entry(i + 1)
		if e.Source != w.Source || e.ID != w.ID || e.Type != w.Type || !e.Time.Equal(w.Time) || !bytes.Equal(e.Data, w.Data) {
			t.Errorf("entry %d = %+v, want %+v", i, e, w)
		}
	}
	if got, err := s.ReadHistory(ctx, "s-1", 2, 100); err != nil || len(got) != 2 || got[0].Seq != 3 {
		t.Errorf("ReadHistory(after 2) = %v, %v; want seqs 3, 4", got, err)
	}
	if got, err := s.ReadHistory(ctx, "s-1", 4, 100); err != nil || len(got) != 0 {
		t.Errorf("ReadHistory(after last) = %v, %v; want none", got, err)
	}
	if got, err := s.ReadHistory(ctx, "nobody", 0, 100); err != nil || len(got) != 0 {
		t.Errorf("ReadHistory(unknown session) = %v, %v; want none", got, err)
	}
	// An entry without type and time round-trips with zero values.
	bare := state.Entry{Source: "x", ID: "bare", Data: []byte(`{}`)}
	if _, err := s.AppendHistory(ctx, "s-3", bare); err != nil {
		t.Fatalf("AppendHistory(bare): %v", err)
	}
	if got, err := s.ReadHistory(ctx, "s-3", 0, 1); err != nil || len(got) != 1 || got[0].Type != "" || !got[0].Time.IsZero() {
		t.Errorf("bare entry read back as %+v, %v", got, err)
	}
}

func testHistoryDedupe(t *testing.T, s state.Store) {
	ctx := t.Context()
	if n, err := s.AppendHistory(ctx, "s-1", entry(1), entry(2)); err != nil || n != 2 {
		t.Fatalf("AppendHistory = %d, %v", n, err)
	}
	dup := entry(1)
	dup.Data = []byte(`{"changed":true}`)
	if n, err := s.AppendHistory(ctx, "s-1", dup, entry(2)); err != nil || n != 0 {
		t.Fatalf("AppendHistory(duplicates) = %d, %v; want 0", n, err)
	}
	// Same id, other source: a different event.
	other := entry(1)
	other.Source = "agentbus/other"
	if n, err := s.AppendHistory(ctx, "s-1", entry(3), other, entry(3), entry(2)); err != nil || n != 2 {
		t.Fatalf("AppendHistory(mixed) = %d, %v; want 2", n, err)
	}
	// The same event in another session is that session's own.
	if n, err := s.AppendHistory(ctx, "s-2", entry(1)); err != nil || n != 1 {
		t.Fatalf("AppendHistory(s-2) = %d, %v; want 1", n, err)
	}
	got := readAll(t, s, "s-1", 100)
	checkSeqs(t, got)
	var ids []string
	for _, e := range got {
		ids = append(ids, e.Source+" "+e.ID)
	}
	want := []string{"agentbus/test ev-1", "agentbus/test ev-2", "agentbus/test ev-3", "agentbus/other ev-1"}
	if !slices.Equal(ids, want) {
		t.Fatalf("history = %q, want %q", ids, want)
	}
	if !bytes.Equal(got[0].Data, entry(1).Data) {
		t.Errorf("a duplicate replaced the first entry's data: %s", got[0].Data)
	}
}

func testHistoryPaging(t *testing.T, s state.Store) {
	ctx := t.Context()
	var all []state.Entry
	for i := range 25 {
		all = append(all, entry(i))
	}
	if n, err := s.AppendHistory(ctx, "s-1", all...); err != nil || n != 25 {
		t.Fatalf("AppendHistory = %d, %v", n, err)
	}
	for _, size := range []int{1, 7, 10, 25, 100} {
		got := readAll(t, s, "s-1", size)
		if len(got) != 25 {
			t.Fatalf("page size %d: read %d entries, want 25", size, len(got))
		}
		checkSeqs(t, got)
		for i, e := range got {
			if e.ID != all[i].ID {
				t.Fatalf("page size %d: entry %d is %q, want %q", size, i, e.ID, all[i].ID)
			}
		}
	}
	if got, err := s.ReadHistory(ctx, "s-1", 0, 0); err != nil || len(got) != 25 {
		t.Errorf("ReadHistory(limit 0) = %d entries, %v; want the default page (all 25)", len(got), err)
	}
}

func testHistoryConcurrentAppend(t *testing.T, s state.Store) {
	ctx := t.Context()
	const perRacer = 5
	var (
		wg    sync.WaitGroup
		added atomic.Int64
	)
	for r := range Racers {
		wg.Go(func() {
			for i := range perRacer {
				// Every event is delivered twice, by two racers.
				for _, owner := range []int{r, (r + 1) % Racers} {
					e := entry(owner*100 + i)
					n, err := s.AppendHistory(ctx, "s-1", e)
					if err != nil {
						t.Errorf("racer %d: AppendHistory(%s): %v", r, e.ID, err)
						return
					}
					added.Add(int64(n))
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	want := Racers * perRacer
	if n := added.Load(); n != int64(want) {
		t.Errorf("AppendHistory reported %d added, want %d", n, want)
	}
	got := readAll(t, s, "s-1", 1000)
	if len(got) != want {
		t.Fatalf("history has %d entries, want %d (each event once)", len(got), want)
	}
	checkSeqs(t, got)
	seen := map[string]bool{}
	for _, e := range got {
		if seen[e.ID] {
			t.Fatalf("event %s appended twice", e.ID)
		}
		seen[e.ID] = true
	}
}

func testHistorySearch(t *testing.T, s state.Store) {
	ctx := t.Context()
	mk := func(id, text string) state.Entry {
		return state.Entry{Source: "src", ID: id, Data: []byte(fmt.Sprintf(`{"id":%q,"data":{"text":%q}}`, id, text))}
	}
	if _, err := s.AppendHistory(ctx, "s-1",
		mk("1", "The Weather in Paris"), mk("2", "stock prices"), mk("3", "PARIS hotels"), mk("4", "Ünïcode CAFÉ"), mk("5", "paris again")); err != nil {
		t.Fatalf("AppendHistory: %v", err)
	}
	if _, err := s.AppendHistory(ctx, "s-2", mk("9", "paris elsewhere")); err != nil {
		t.Fatalf("AppendHistory: %v", err)
	}
	ids := func(es []state.Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	cases := []struct {
		query string
		limit int
		want  []string
	}{
		{"paris", 10, []string{"5", "3", "1"}},
		{"PaRiS", 2, []string{"5", "3"}},
		{"café", 10, []string{"4"}},
		{"nothing like it", 10, nil},
		{`"text"`, 0, []string{"5", "4", "3", "2", "1"}},
	}
	for _, c := range cases {
		got, err := s.SearchHistory(ctx, "s-1", c.query, c.limit)
		if err != nil {
			t.Fatalf("SearchHistory(%q): %v", c.query, err)
		}
		if !slices.Equal(ids(got), c.want) {
			t.Errorf("SearchHistory(%q, %d) = %q, want %q (newest first)", c.query, c.limit, ids(got), c.want)
		}
		for _, e := range got {
			if len(e.Data) == 0 || e.Seq == 0 {
				t.Errorf("search result %+v incomplete", e)
			}
		}
	}
	_, err := s.SearchHistory(ctx, "s-1", "", 10)
	wantErr(t, "SearchHistory(empty query)", err, state.ErrInvalid)
}

func testHistoryLargeEntry(t *testing.T, s state.Store) {
	ctx := t.Context()
	big := make([]byte, LargeEntrySize)
	for i := range big {
		big[i] = 'a' + byte(i%26)
	}
	copy(big[LargeEntrySize/2:], "NEEDLE")
	data := []byte(`{"blob":"` + string(big) + `"}`)
	entries := []state.Entry{entry(1), {Source: "s", ID: "big", Type: "t", Data: data}, entry(2)}
	if n, err := s.AppendHistory(ctx, "s-1", entries...); err != nil || n != 3 {
		t.Fatalf("AppendHistory(large) = %d, %v", n, err)
	}
	if n, err := s.AppendHistory(ctx, "s-1", entries[1]); err != nil || n != 0 {
		t.Fatalf("AppendHistory(large again) = %d, %v; want 0", n, err)
	}
	got := readAll(t, s, "s-1", 2)
	if len(got) != 3 {
		t.Fatalf("read %d entries, want 3", len(got))
	}
	checkSeqs(t, got)
	if got[1].ID != "big" || !bytes.Equal(got[1].Data, data) {
		t.Fatalf("large entry read back as %d bytes (id %q), want %d bytes", len(got[1].Data), got[1].ID, len(data))
	}
	found, err := s.SearchHistory(ctx, "s-1", "needle", 10)
	if err != nil || len(found) != 1 || !bytes.Equal(found[0].Data, data) {
		t.Fatalf("SearchHistory in a large entry = %d results, %v", len(found), err)
	}
}

func testHistoryInvalid(t *testing.T, s state.Store) {
	ctx := t.Context()
	_, err := s.AppendHistory(ctx, "", entry(1))
	wantErr(t, "AppendHistory(no session)", err, state.ErrInvalid)
	_, err = s.AppendHistory(ctx, "s-1", entry(1), state.Entry{Source: "x", Data: []byte(`{}`)})
	wantErr(t, "AppendHistory(no id)", err, state.ErrInvalid)
	_, err = s.AppendHistory(ctx, "s-1", state.Entry{ID: "x", Data: []byte(`{}`)})
	wantErr(t, "AppendHistory(no source)", err, state.ErrInvalid)
	if got, _ := s.ReadHistory(ctx, "s-1", 0, 10); len(got) != 0 {
		t.Errorf("an invalid append stored %d entries", len(got))
	}
	_, err = s.ReadHistory(ctx, "a/b", 0, 10)
	wantErr(t, "ReadHistory(bad session)", err, state.ErrInvalid)
}

func claimReq(sessionID, key, holder string, lease time.Duration) state.ClaimRequest {
	return state.ClaimRequest{SessionID: sessionID, Key: key, Holder: holder, Lease: lease, TTL: time.Hour}
}

func testClaimOnce(t *testing.T, s state.Store) {
	ctx := t.Context()
	before := time.Now().Add(-time.Second)
	c1, ok, err := s.Claim(ctx, claimReq("s-1", "s-1/1/c1", "h1", time.Minute))
	if err != nil || !ok {
		t.Fatalf("first Claim = %v, %v; want acquired", ok, err)
	}
	if c1.State != state.ClaimPending || c1.Holder != "h1" || c1.Attempt != 1 || c1.SessionID != "s-1" || c1.Key != "s-1/1/c1" ||
		c1.LeaseUntil.Before(before.Add(time.Minute)) || c1.ExpiresAt.Before(before.Add(time.Hour)) {
		t.Errorf("first claim = %+v", c1)
	}
	c2, ok, err := s.Claim(ctx, claimReq("s-1", "s-1/1/c1", "h2", time.Minute))
	if err != nil || ok {
		t.Fatalf("second Claim = %v, %v; want not acquired", ok, err)
	}
	if c2.Holder != "h1" || c2.State != state.ClaimPending || c2.Attempt != 1 || !c2.LeaseUntil.Equal(c1.LeaseUntil) {
		t.Errorf("second claimant sees %+v, want the first's claim %+v", c2, c1)
	}
	// The holder retrying its own Claim (a lost answer) still holds it.
	c3, ok, err := s.Claim(ctx, claimReq("s-1", "s-1/1/c1", "h1", time.Minute))
	if err != nil || !ok || c3.Attempt != 1 || c3.Holder != "h1" {
		t.Fatalf("holder's retry = %+v, %v, %v; want acquired, attempt 1", c3, ok, err)
	}
	// Other keys and sessions are independent.
	if _, ok, err := s.Claim(ctx, claimReq("s-1", "s-1/1/c2", "h2", time.Minute)); err != nil || !ok {
		t.Fatalf("Claim(other key) = %v, %v", ok, err)
	}
	if _, ok, err := s.Claim(ctx, claimReq("s-2", "s-1/1/c1", "h2", time.Minute)); err != nil || !ok {
		t.Fatalf("Claim(same key, other session) = %v, %v", ok, err)
	}
	got, err := s.GetClaim(ctx, "s-1", "s-1/1/c1")
	if err != nil || got.Holder != "h1" || got.State != state.ClaimPending {
		t.Errorf("GetClaim = %+v, %v", got, err)
	}
	_, err = s.GetClaim(ctx, "s-1", "unclaimed")
	wantErr(t, "GetClaim(unclaimed)", err, state.ErrNotFound)
}

func testClaimComplete(t *testing.T, s state.Store) {
	ctx := t.Context()
	key := "s-1/1/c1"
	if _, ok, err := s.Claim(ctx, claimReq("s-1", key, "h1", time.Minute)); err != nil || !ok {
		t.Fatalf("Claim = %v, %v", ok, err)
	}
	// Not the holder: nothing written, no outbox event.
	_, err := s.CompleteClaim(ctx, "s-1", key, "h2", []byte(`"wrong"`), ob("wrong"))
	wantErr(t, "CompleteClaim(not holder)", err, state.ErrConflict)
	wantPending(t, s)
	done, err := s.CompleteClaim(ctx, "s-1", key, "h1", []byte(`{"output":42}`), ob("completed"))
	if err != nil {
		t.Fatalf("CompleteClaim: %v", err)
	}
	if done.State != state.ClaimDone || string(done.Result) != `{"output":42}` || done.Holder != "h1" || done.Attempt != 1 {
		t.Errorf("completed claim = %+v", done)
	}
	wantPending(t, s, "completed")
	// A redelivery sees the stored result and does not acquire.
	seen, ok, err := s.Claim(ctx, claimReq("s-1", key, "h3", time.Minute))
	if err != nil || ok || seen.State != state.ClaimDone || string(seen.Result) != `{"output":42}` {
		t.Fatalf("Claim after done = %+v, %v, %v; want the stored result, not acquired", seen, ok, err)
	}
	// Even the former holder does not re-acquire a done claim.
	if _, ok, err := s.Claim(ctx, claimReq("s-1", key, "h1", time.Minute)); err != nil || ok {
		t.Fatalf("holder's Claim after done = %v, %v; want not acquired", ok, err)
	}
	// Completing again as the holder is idempotent and writes no outbox event.
	if err := s.MarkSent(ctx, "completed"); err != nil {
		t.Fatalf("MarkSent: %v", err)
	}
	again, err := s.CompleteClaim(ctx, "s-1", key, "h1", []byte(`"other"`), ob("completed-again"))
	if err != nil || string(again.Result) != `{"output":42}` {
		t.Fatalf("CompleteClaim again = %+v, %v; want the stored result", again, err)
	}
	wantPending(t, s)
	_, err = s.CompleteClaim(ctx, "s-1", key, "h2", []byte(`"x"`))
	wantErr(t, "CompleteClaim(done, other holder)", err, state.ErrConflict)
	_, err = s.CompleteClaim(ctx, "s-1", "never-claimed", "h1", []byte(`"x"`))
	wantErr(t, "CompleteClaim(unclaimed)", err, state.ErrNotFound)
	got, err := s.GetClaim(ctx, "s-1", key)
	if err != nil || got.State != state.ClaimDone || string(got.Result) != `{"output":42}` {
		t.Errorf("GetClaim = %+v, %v", got, err)
	}
	if _, _, err := s.Claim(ctx, claimReq("s-1", "big", "h1", time.Minute)); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	_, err = s.CompleteClaim(ctx, "s-1", "big", "h1", bytes.Repeat([]byte("x"), state.MaxInlineValue+1))
	wantErr(t, "CompleteClaim(result too large)", err, state.ErrTooLarge)
}

func testClaimRace(t *testing.T, s state.Store) {
	winner, seen := race(t, func(holder string) (state.Claim, bool, error) {
		return s.Claim(t.Context(), claimReq("s-1", "k", holder, time.Minute))
	})
	for _, c := range seen {
		if c.Holder != winner || c.Attempt != 1 {
			t.Errorf("a claimant saw %+v, want holder %s attempt 1", c, winner)
		}
	}
}

// race runs do for Racers holders at once and returns the one holder for
// which it reported true (it fails the test unless exactly one did) and
// every claim returned.
func race(t *testing.T, do func(holder string) (state.Claim, bool, error)) (string, []state.Claim) {
	t.Helper()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []string
		seen    []state.Claim
	)
	for i := range Racers {
		wg.Go(func() {
			holder := fmt.Sprintf("h%d", i)
			c, won, err := do(holder)
			if err != nil {
				t.Errorf("%s: %v", holder, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, c)
			if won {
				winners = append(winners, holder)
			}
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d of %d racers won (%q), want exactly 1", len(winners), Racers, winners)
	}
	return winners[0], seen
}

func testCompleteUnclaimed(t *testing.T, s state.Store) {
	ctx := t.Context()
	key := "s-1/1/c1"
	c, stored, err := s.CompleteUnclaimed(ctx, "s-1", key, "h1", time.Hour, []byte(`{"output":1}`), ob("first"))
	if err != nil || !stored || c.State != state.ClaimDone || c.Holder != "h1" || c.Attempt != 1 ||
		string(c.Result) != `{"output":1}` || c.SessionID != "s-1" || c.Key != key {
		t.Fatalf("CompleteUnclaimed(absent) = %+v, %v, %v; want stored, done by h1, attempt 1", c, stored, err)
	}
	wantPending(t, s, "first")
	if err := s.MarkSent(ctx, "first"); err != nil {
		t.Fatalf("MarkSent: %v", err)
	}
	// A duplicate (another delivery that ran the work too) keeps the first
	// outcome and writes no event.
	c, stored, err = s.CompleteUnclaimed(ctx, "s-1", key, "h2", time.Hour, []byte(`{"output":2}`), ob("second"))
	if err != nil || stored || c.Holder != "h1" || string(c.Result) != `{"output":1}` {
		t.Fatalf("CompleteUnclaimed(done) = %+v, %v, %v; want the first outcome, not stored", c, stored, err)
	}
	wantPending(t, s)
	// A claimant sees the stored outcome.
	if seen, ok, err := s.Claim(ctx, claimReq("s-1", key, "h3", time.Minute)); err != nil || ok || string(seen.Result) != `{"output":1}` {
		t.Fatalf("Claim after CompleteUnclaimed = %+v, %v, %v; want the stored result, not acquired", seen, ok, err)
	}
	if got, err := s.GetClaim(ctx, "s-1", key); err != nil || got.State != state.ClaimDone || string(got.Result) != `{"output":1}` {
		t.Errorf("GetClaim = %+v, %v", got, err)
	}
	// Over a pending claim (live lease): stored as the next attempt, and the
	// pending holder can no longer complete.
	if _, ok, err := s.Claim(ctx, claimReq("s-1", "k2", "h1", time.Minute)); err != nil || !ok {
		t.Fatalf("Claim(k2) = %v, %v", ok, err)
	}
	c, stored, err = s.CompleteUnclaimed(ctx, "s-1", "k2", "h2", time.Hour, []byte(`"h2's"`), ob("k2-done"))
	if err != nil || !stored || c.Holder != "h2" || c.Attempt != 2 {
		t.Fatalf("CompleteUnclaimed(pending) = %+v, %v, %v; want stored by h2, attempt 2", c, stored, err)
	}
	_, err = s.CompleteClaim(ctx, "s-1", "k2", "h1", []byte(`"h1's"`), ob("k2-late"))
	wantErr(t, "CompleteClaim after CompleteUnclaimed", err, state.ErrConflict)
	wantPending(t, s, "k2-done")

	_, _, err = s.CompleteUnclaimed(ctx, "s-1", "k3", "h1", 0, []byte(`1`))
	wantErr(t, "CompleteUnclaimed(ttl 0)", err, state.ErrInvalid)
	_, _, err = s.CompleteUnclaimed(ctx, "", "k3", "h1", time.Hour, []byte(`1`))
	wantErr(t, "CompleteUnclaimed(no session)", err, state.ErrInvalid)
	_, _, err = s.CompleteUnclaimed(ctx, "s-1", "k3", "h1", time.Hour, bytes.Repeat([]byte("x"), state.MaxInlineValue+1), ob("big"))
	wantErr(t, "CompleteUnclaimed(result too large)", err, state.ErrTooLarge)
	wantPending(t, s, "k2-done")
	_, err = s.GetClaim(ctx, "s-1", "k3")
	wantErr(t, "GetClaim after refused CompleteUnclaimed", err, state.ErrNotFound)
}

// testCompleteUnclaimedRace: of many duplicates completing one key at once,
// exactly one outcome (and its event) is stored, and every caller sees it.
func testCompleteUnclaimedRace(t *testing.T, s state.Store) {
	winner, seen := race(t, func(holder string) (state.Claim, bool, error) {
		return s.CompleteUnclaimed(t.Context(), "s-1", "k", holder, time.Hour, []byte(strconv.Quote(holder)), ob("ev-"+holder))
	})
	for _, c := range seen {
		if c.Holder != winner || string(c.Result) != strconv.Quote(winner) {
			t.Errorf("a caller saw %+v, want %s's outcome", c, winner)
		}
	}
	wantPending(t, s, "ev-"+winner)
}

func testClaimLeaseTakeover(t *testing.T, s state.Store) {
	ctx := t.Context()
	const lease = 300 * time.Millisecond
	if _, ok, err := s.Claim(ctx, claimReq("s-1", "k", "h1", lease)); err != nil || !ok {
		t.Fatalf("Claim = %v, %v", ok, err)
	}
	time.Sleep(2 * lease)
	// The expired lease is still visible to readers (the claim lives on).
	if c, err := s.GetClaim(ctx, "s-1", "k"); err != nil || c.Holder != "h1" || c.State != state.ClaimPending {
		t.Fatalf("GetClaim after lease expiry = %+v, %v", c, err)
	}
	c, ok, err := s.Claim(ctx, claimReq("s-1", "k", "h2", time.Minute))
	if err != nil || !ok {
		t.Fatalf("Claim after lease expiry = %v, %v; want acquired", ok, err)
	}
	if c.Attempt != 2 || c.Holder != "h2" || c.State != state.ClaimPending {
		t.Fatalf("takeover claim = %+v; want attempt 2 by h2 (the previous attempt started)", c)
	}
	// The old holder lost it: it can neither renew nor complete.
	_, err = s.RenewClaim(ctx, "s-1", "k", "h1", time.Minute)
	wantErr(t, "RenewClaim(old holder)", err, state.ErrConflict)
	_, err = s.CompleteClaim(ctx, "s-1", "k", "h1", []byte(`"late"`), ob("late"))
	wantErr(t, "CompleteClaim(old holder)", err, state.ErrConflict)
	wantPending(t, s)
	if done, err := s.CompleteClaim(ctx, "s-1", "k", "h2", []byte(`"outcome_unknown"`)); err != nil || done.Attempt != 2 {
		t.Fatalf("CompleteClaim(new holder) = %+v, %v", done, err)
	}
	// A holder whose lease expired but who was not taken over may still complete.
	if _, ok, err := s.Claim(ctx, claimReq("s-1", "k2", "h1", lease)); err != nil || !ok {
		t.Fatalf("Claim(k2) = %v, %v", ok, err)
	}
	time.Sleep(2 * lease)
	if done, err := s.CompleteClaim(ctx, "s-1", "k2", "h1", []byte(`"ok"`)); err != nil || done.State != state.ClaimDone {
		t.Fatalf("CompleteClaim after own lease expiry = %+v, %v; want done", done, err)
	}
}

func testClaimTakeoverRace(t *testing.T, s state.Store) {
	ctx := t.Context()
	const lease = 300 * time.Millisecond
	if _, ok, err := s.Claim(ctx, claimReq("s-1", "k", "h0", lease)); err != nil || !ok {
		t.Fatalf("Claim = %v, %v", ok, err)
	}
	time.Sleep(2 * lease)
	var (
		wg      sync.WaitGroup
		winners atomic.Int32
		mu      sync.Mutex
		attempt []int
	)
	for i := range Racers {
		wg.Go(func() {
			c, ok, err := s.Claim(ctx, claimReq("s-1", "k", fmt.Sprintf("h%d", i+1), time.Minute))
			if err != nil {
				t.Errorf("Claim: %v", err)
				return
			}
			if ok {
				winners.Add(1)
			}
			mu.Lock()
			attempt = append(attempt, c.Attempt)
			mu.Unlock()
		})
	}
	wg.Wait()
	if n := winners.Load(); n != 1 {
		t.Fatalf("%d racers took over an expired lease, want exactly 1", n)
	}
	for _, a := range attempt {
		if a != 2 {
			t.Errorf("a racer saw attempt %d, want 2", a)
		}
	}
}

func testClaimRenew(t *testing.T, s state.Store) {
	ctx := t.Context()
	const lease = 300 * time.Millisecond
	c, ok, err := s.Claim(ctx, claimReq("s-1", "k", "h1", lease))
	if err != nil || !ok {
		t.Fatalf("Claim = %v, %v", ok, err)
	}
	r, err := s.RenewClaim(ctx, "s-1", "k", "h1", time.Minute)
	if err != nil || !r.LeaseUntil.After(c.LeaseUntil) || r.Attempt != 1 {
		t.Fatalf("RenewClaim = %+v, %v; want a later lease", r, err)
	}
	time.Sleep(2 * lease)
	if got, ok, err := s.Claim(ctx, claimReq("s-1", "k", "h2", time.Minute)); err != nil || ok || got.Holder != "h1" {
		t.Fatalf("Claim after renewal = %+v, %v, %v; want the renewed lease to hold", got, ok, err)
	}
	_, err = s.RenewClaim(ctx, "s-1", "k", "h2", time.Minute)
	wantErr(t, "RenewClaim(not holder)", err, state.ErrConflict)
	_, err = s.RenewClaim(ctx, "s-1", "missing", "h1", time.Minute)
	wantErr(t, "RenewClaim(unclaimed)", err, state.ErrNotFound)
	_, err = s.RenewClaim(ctx, "s-1", "k", "h1", 0)
	wantErr(t, "RenewClaim(zero lease)", err, state.ErrInvalid)
	if _, err := s.CompleteClaim(ctx, "s-1", "k", "h1", []byte(`1`)); err != nil {
		t.Fatalf("CompleteClaim: %v", err)
	}
	_, err = s.RenewClaim(ctx, "s-1", "k", "h1", time.Minute)
	wantErr(t, "RenewClaim(done)", err, state.ErrConflict)
}

func testClaimTTLExpiry(t *testing.T, s state.Store) {
	ctx := t.Context()
	const ttl = 300 * time.Millisecond
	req := state.ClaimRequest{SessionID: "s-1", Key: "k", Holder: "h1", Lease: ttl, TTL: ttl}
	if _, ok, err := s.Claim(ctx, req); err != nil || !ok {
		t.Fatalf("Claim = %v, %v", ok, err)
	}
	if _, err := s.CompleteClaim(ctx, "s-1", "k", "h1", []byte(`"r"`)); err != nil {
		t.Fatalf("CompleteClaim: %v", err)
	}
	pendingReq := req
	pendingReq.Key = "k-pending"
	if _, ok, err := s.Claim(ctx, pendingReq); err != nil || !ok {
		t.Fatalf("Claim(k-pending) = %v, %v", ok, err)
	}
	time.Sleep(2 * ttl)
	// The store itself treats expired claims as gone (DynamoDB TTL lags).
	_, err := s.GetClaim(ctx, "s-1", "k")
	wantErr(t, "GetClaim(expired)", err, state.ErrNotFound)
	_, err = s.CompleteClaim(ctx, "s-1", "k-pending", "h1", []byte(`"late"`))
	wantErr(t, "CompleteClaim(expired)", err, state.ErrNotFound)
	_, err = s.RenewClaim(ctx, "s-1", "k-pending", "h1", time.Minute)
	wantErr(t, "RenewClaim(expired)", err, state.ErrNotFound)
	c, ok, err := s.Claim(ctx, claimReq("s-1", "k", "h2", time.Minute))
	if err != nil || !ok || c.Attempt != 1 || c.Holder != "h2" || c.State != state.ClaimPending || c.Result != nil {
		t.Fatalf("Claim after TTL expiry = %+v, %v, %v; want a fresh attempt 1", c, ok, err)
	}
}

func testClaimInvalid(t *testing.T, s state.Store) {
	ctx := t.Context()
	good := claimReq("s-1", "k", "h", time.Minute)
	cases := map[string]func(r *state.ClaimRequest){
		"no session":  func(r *state.ClaimRequest) { r.SessionID = "" },
		"no key":      func(r *state.ClaimRequest) { r.Key = "" },
		"no holder":   func(r *state.ClaimRequest) { r.Holder = "" },
		"zero lease":  func(r *state.ClaimRequest) { r.Lease = 0 },
		"ttl < lease": func(r *state.ClaimRequest) { r.TTL = time.Second },
	}
	for name, mod := range cases {
		r := good
		mod(&r)
		_, _, err := s.Claim(ctx, r)
		wantErr(t, "Claim "+name, err, state.ErrInvalid)
	}
	_, err := s.GetClaim(ctx, "s-1", "k")
	wantErr(t, "GetClaim after invalid claims", err, state.ErrNotFound)
	_, err = s.CompleteClaim(ctx, "s-1", "", "h", nil)
	wantErr(t, "CompleteClaim(no key)", err, state.ErrInvalid)
}

func testFanInOpenOnce(t *testing.T, s state.Store) {
	ctx := t.Context()
	key := state.StepKey{SessionID: "s-1", Step: 3}
	st, opened, err := s.OpenStep(ctx, key, []string{"c2", "c1"}, ob("req-c1"), ob("req-c2"))
	if err != nil || !opened {
		t.Fatalf("OpenStep = %v, %v; want opened", opened, err)
	}
	if !slices.Equal(st.Expected, []string{"c1", "c2"}) || st.Done || len(st.Results) != 0 || st.Key != key {
		t.Errorf("opened step = %+v", st)
	}
	wantPending(t, s, "req-c1", "req-c2")
	if err := s.MarkSent(ctx, "req-c1", "req-c2"); err != nil {
		t.Fatalf("MarkSent: %v", err)
	}
	st, opened, err = s.OpenStep(ctx, key, []string{"c9"}, ob("req-c9"))
	if err != nil || opened || !slices.Equal(st.Expected, []string{"c1", "c2"}) {
		t.Fatalf("second OpenStep = %+v, %v, %v; want not opened, first ids kept", st, opened, err)
	}
	wantPending(t, s)
	// Other steps are independent.
	if _, opened, err := s.OpenStep(ctx, state.StepKey{SessionID: "s-1", Step: 4}, []string{"c1"}); err != nil || !opened {
		t.Fatalf("OpenStep(step 4) = %v, %v", opened, err)
	}
	st, err = s.RecordResult(ctx, key, "c1", []byte(`1`))
	if err != nil || st.AllIn() || st.Done {
		t.Fatalf("after 1 of 2 results: %+v, %v", st, err)
	}
	st, err = s.RecordResult(ctx, key, "c2", []byte(`2`))
	if err != nil || !st.AllIn() {
		t.Fatalf("after 2 of 2 results: %+v, %v", st, err)
	}
	first, err := s.CompleteStep(ctx, key, ob("step-3-completed"))
	if err != nil || !first {
		t.Fatalf("CompleteStep = %v, %v; want first", first, err)
	}
	first, err = s.CompleteStep(ctx, key, ob("step-3-completed-again"))
	if err != nil || first {
		t.Fatalf("CompleteStep again = %v, %v; want not first", first, err)
	}
	wantPending(t, s, "step-3-completed")
	st, err = s.RecordResult(ctx, key, "c3", []byte(`3`))
	if err != nil || !st.Done || len(st.Results) != 3 {
		t.Fatalf("RecordResult on a done step = %+v, %v", st, err)
	}
	// CompleteStep on a step never opened works once too.
	k5 := state.StepKey{SessionID: "s-1", Step: 5}
	if first, err := s.CompleteStep(ctx, k5); err != nil || !first {
		t.Fatalf("CompleteStep(unopened) = %v, %v", first, err)
	}
	if first, err := s.CompleteStep(ctx, k5); err != nil || first {
		t.Fatalf("CompleteStep(unopened) again = %v, %v", first, err)
	}
}

func testFanInRecordIdempotent(t *testing.T, s state.Store) {
	ctx := t.Context()
	key := state.StepKey{SessionID: "s-1", Step: 1}
	st, err := s.RecordResult(ctx, key, "c1", []byte(`{"first":true}`))
	if err != nil || st.Expected != nil || len(st.Results) != 1 {
		t.Fatalf("RecordResult on an unopened step = %+v, %v", st, err)
	}
	st, err = s.RecordResult(ctx, key, "c1", []byte(`{"second":true}`))
	if err != nil || len(st.Results) != 1 || string(st.Results[0].Result) != `{"first":true}` {
		t.Fatalf("RecordResult repeat = %+v, %v; want the first result kept", st, err)
	}
	st, err = s.RecordResult(ctx, key, "c0", []byte(`0`))
	if err != nil || len(st.Results) != 2 || st.Results[0].CallID != "c0" || st.Results[1].CallID != "c1" {
		t.Fatalf("results = %+v, %v; want sorted by call id", st.Results, err)
	}
	// Other steps and sessions see none of them.
	for _, k := range []state.StepKey{{SessionID: "s-1", Step: 2}, {SessionID: "s-2", Step: 1}, {SessionID: "s-1", Step: 10}} {
		st, err := s.RecordResult(ctx, k, "x", []byte(`x`))
		if err != nil || len(st.Results) != 1 || st.Results[0].CallID != "x" {
			t.Errorf("step %+v sees %+v, %v", k, st.Results, err)
		}
	}
	_, err = s.RecordResult(ctx, key, "c9", bytes.Repeat([]byte("x"), state.MaxInlineValue+1))
	wantErr(t, "RecordResult(too large)", err, state.ErrTooLarge)
}

func testFanInRace(t *testing.T, s state.Store) {
	fanInRace(t, s, func(ctx context.Context, key state.StepKey, call string, out state.OutboxEvent) (bool, error) {
		st, err := s.RecordResult(ctx, key, call, []byte(`"`+call+`"`))
		if err != nil || !st.AllIn() {
			return false, err
		}
		return s.CompleteStep(ctx, key, out)
	})
}

// fanInRace delivers each of a step's three results to several executors
// at once, which record it with record; exactly one must complete the step.
func fanInRace(t *testing.T, s state.Store, record func(ctx context.Context, key state.StepKey, call string, out state.OutboxEvent) (completed bool, err error)) {
	ctx := t.Context()
	for step := 1; step <= 3; step++ {
		key := state.StepKey{SessionID: "s-1", Step: step}
		calls := []string{"a", "b", "c"}
		if _, _, err := s.OpenStep(ctx, key, calls); err != nil {
			t.Fatalf("OpenStep: %v", err)
		}
		var (
			wg        sync.WaitGroup
			completed atomic.Int32
		)
		for i := range Racers {
			wg.Go(func() {
				call := calls[i%len(calls)]
				done, err := record(ctx, key, call, ob(fmt.Sprintf("step-%d-completed", step)))
				if err != nil {
					t.Errorf("recording %s: %v", call, err)
					return
				}
				if done {
					completed.Add(1)
				}
			})
		}
		wg.Wait()
		if n := completed.Load(); n != 1 {
			t.Fatalf("step %d completed %d times, want exactly once", step, n)
		}
	}
	wantPending(t, s, "step-1-completed", "step-2-completed", "step-3-completed")
}

func testFanInRecordAndComplete(t *testing.T, s state.Store) {
	ctx := t.Context()
	key := state.StepKey{SessionID: "s-1", Step: 2}
	if _, _, err := s.OpenStep(ctx, key, []string{"c1", "c2"}); err != nil {
		t.Fatalf("OpenStep: %v", err)
	}
	var calls []state.StepState
	complete := func(st state.StepState) ([]state.OutboxEvent, error) {
		calls = append(calls, st)
		return []state.OutboxEvent{ob("step-2-completed")}, nil
	}
	st, completed, err := s.RecordAndComplete(ctx, key, "c1", []byte(`1`), complete)
	if err != nil || completed || st.Done || len(st.Results) != 1 || len(calls) != 0 {
		t.Fatalf("first of two results = %+v, %v, %v (complete called %d times); want recorded, not completed", st, completed, err, len(calls))
	}
	wantPending(t, s)
	st, completed, err = s.RecordAndComplete(ctx, key, "c2", []byte(`2`), complete)
	if err != nil || !completed || !st.Done || len(st.Results) != 2 {
		t.Fatalf("last result = %+v, %v, %v; want completed and done", st, completed, err)
	}
	if len(calls) == 0 || len(calls[len(calls)-1].Results) != 2 || calls[len(calls)-1].Done {
		t.Fatalf("complete saw %+v; want the open step with both results", calls)
	}
	wantPending(t, s, "step-2-completed")
	if err := s.MarkSent(ctx, "step-2-completed"); err != nil {
		t.Fatal(err)
	}
	// A redelivered result changes nothing and writes no event.
	calls = nil
	st, completed, err = s.RecordAndComplete(ctx, key, "c2", []byte(`2`), complete)
	if err != nil || completed || !st.Done || len(calls) != 0 {
		t.Fatalf("repeat = %+v, %v, %v (complete called %d times); want done, not completed again", st, completed, err, len(calls))
	}
	if first, err := s.CompleteStep(ctx, key, ob("again")); err != nil || first {
		t.Fatalf("CompleteStep after RecordAndComplete = %v, %v; want not first", first, err)
	}
	wantPending(t, s)

	// complete failing completes nothing; the step completes later.
	k3 := state.StepKey{SessionID: "s-1", Step: 3}
	if _, _, err := s.OpenStep(ctx, k3, []string{"c1"}); err != nil {
		t.Fatalf("OpenStep: %v", err)
	}
	boom := errors.New("boom")
	_, completed, err = s.RecordAndComplete(ctx, k3, "c1", []byte(`1`), func(state.StepState) ([]state.OutboxEvent, error) { return nil, boom })
	if !errors.Is(err, boom) || completed {
		t.Fatalf("RecordAndComplete with a failing complete = %v, %v; want boom", completed, err)
	}
	wantPending(t, s)
	st, completed, err = s.RecordAndComplete(ctx, k3, "c1", []byte(`1`), func(state.StepState) ([]state.OutboxEvent, error) {
		return []state.OutboxEvent{ob("step-3-completed")}, nil
	})
	if err != nil || !completed || !st.Done {
		t.Fatalf("retry = %+v, %v, %v; want completed", st, completed, err)
	}
	wantPending(t, s, "step-3-completed")

	// A step never opened has no expected calls: it never completes here.
	st, completed, err = s.RecordAndComplete(ctx, state.StepKey{SessionID: "s-1", Step: 9}, "c1", []byte(`1`), complete)
	if err != nil || completed || st.Done {
		t.Fatalf("unopened step = %+v, %v, %v; want recorded only", st, completed, err)
	}
	_, _, err = s.RecordAndComplete(ctx, key, "", []byte(`1`), complete)
	wantErr(t, "RecordAndComplete(no call id)", err, state.ErrInvalid)
	_, _, err = s.RecordAndComplete(ctx, key, "c9", bytes.Repeat([]byte("x"), state.MaxInlineValue+1), complete)
	wantErr(t, "RecordAndComplete(too large)", err, state.ErrTooLarge)
}

func testFanInRecordAndCompleteRace(t *testing.T, s state.Store) {
	fanInRace(t, s, func(ctx context.Context, key state.StepKey, call string, out state.OutboxEvent) (bool, error) {
		_, done, err := s.RecordAndComplete(ctx, key, call, []byte(`"`+call+`"`), func(state.StepState) ([]state.OutboxEvent, error) {
			return []state.OutboxEvent{out}, nil
		})
		return done, err
	})
}

func testFanInInvalid(t *testing.T, s state.Store) {
	ctx := t.Context()
	key := state.StepKey{SessionID: "s-1", Step: 1}
	_, _, err := s.OpenStep(ctx, key, nil)
	wantErr(t, "OpenStep(no calls)", err, state.ErrInvalid)
	_, _, err = s.OpenStep(ctx, key, []string{"a", ""})
	wantErr(t, "OpenStep(empty call id)", err, state.ErrInvalid)
	_, _, err = s.OpenStep(ctx, state.StepKey{Step: 1}, []string{"a"})
	wantErr(t, "OpenStep(no session)", err, state.ErrInvalid)
	_, _, err = s.OpenStep(ctx, state.StepKey{SessionID: "s-1", Step: -1}, []string{"a"})
	wantErr(t, "OpenStep(negative step)", err, state.ErrInvalid)
	_, err = s.RecordResult(ctx, key, "", []byte(`1`))
	wantErr(t, "RecordResult(no call id)", err, state.ErrInvalid)
	_, err = s.CompleteStep(ctx, state.StepKey{Step: 1})
	wantErr(t, "CompleteStep(no session)", err, state.ErrInvalid)
	st, opened, err := s.OpenStep(ctx, key, []string{"b", "a", "b"})
	if err != nil || !opened || !slices.Equal(st.Expected, []string{"a", "b"}) {
		t.Fatalf("OpenStep after invalid calls = %+v, %v, %v; want a fresh step with ids a, b", st, opened, err)
	}
}

func testOutboxAtomicity(t *testing.T, s state.Store) {
	ctx := t.Context()
	v1 := mustCreate(t, s, "s-1", ob("created"))
	wantPending(t, s, "created")
	upd := v1
	upd.Status = state.StatusCompleted
	v2, err := s.UpdateSession(ctx, upd, ob("completed"), ob("usage"))
	if err != nil {
		t.Fatalf("UpdateSession: %v", err)
	}
	wantPending(t, s, "created", "completed", "usage")
	// A conflicting update writes no outbox row.
	_, err = s.UpdateSession(ctx, upd, ob("stale-write"))
	wantErr(t, "UpdateSession(stale)", err, state.ErrConflict)
	_, err = s.UpdateSession(ctx, state.Session{ID: "missing", Version: 1, Status: state.StatusRunning}, ob("missing-write"))
	wantErr(t, "UpdateSession(missing)", err, state.ErrNotFound)
	wantPending(t, s, "created", "completed", "usage")
	// Payloads round-trip.
	got := pending(t, s)
	if !bytes.Equal(got["usage"], ob("usage").Payload) {
		t.Errorf("payload = %s, want %s", got["usage"], ob("usage").Payload)
	}
	// Too many outbox events for one transaction: rejected, nothing written.
	many := make([]state.OutboxEvent, state.MaxOutboxPerWrite+1)
	for i := range many {
		many[i] = ob(fmt.Sprintf("many-%d", i))
	}
	_, err = s.UpdateSession(ctx, v2, many...)
	wantErr(t, "UpdateSession(too many outbox events)", err, state.ErrInvalid)
	if cur, _ := s.GetSession(ctx, "s-1"); cur.Version != 2 {
		t.Errorf("rejected update changed the version to %d", cur.Version)
	}
	// The most a write may carry works.
	_, err = s.UpdateSession(ctx, v2, many[:state.MaxOutboxPerWrite]...)
	if err != nil {
		t.Fatalf("UpdateSession(%d outbox events): %v", state.MaxOutboxPerWrite, err)
	}
	if n := len(pending(t, s)); n != 3+state.MaxOutboxPerWrite {
		t.Errorf("%d pending, want %d", n, 3+state.MaxOutboxPerWrite)
	}
}

func testOutboxPendingMarkSent(t *testing.T, s state.Store) {
	ctx := t.Context()
	if evs, err := s.PendingOutbox(ctx, 10); err != nil || len(evs) != 0 {
		t.Fatalf("PendingOutbox(empty) = %v, %v", evs, err)
	}
	var ids []string
	for i := range 12 {
		id := fmt.Sprintf("agentbus/planner ev-%02d", i)
		ids = append(ids, id)
		mustCreate(t, s, fmt.Sprintf("s-%d", i), ob(id))
	}
	evs, err := s.PendingOutbox(ctx, 5)
	if err != nil || len(evs) != 5 {
		t.Fatalf("PendingOutbox(5) = %d, %v", len(evs), err)
	}
	if err := s.MarkSent(ctx, evs[0].ID, evs[1].ID, "unknown-id"); err != nil {
		t.Fatalf("MarkSent: %v", err)
	}
	if err := s.MarkSent(ctx); err != nil {
		t.Fatalf("MarkSent(): %v", err)
	}
	left := pending(t, s)
	if len(left) != 10 {
		t.Fatalf("%d pending after marking 2 of 12 sent, want 10", len(left))
	}
	if _, ok := left[evs[0].ID]; ok {
		t.Fatalf("%q still pending after MarkSent", evs[0].ID)
	}
	// Drain like a relay does.
	for range 10 {
		page, err := s.PendingOutbox(ctx, 3)
		if err != nil {
			t.Fatalf("PendingOutbox: %v", err)
		}
		if len(page) == 0 {
			break
		}
		var pids []string
		for _, e := range page {
			pids = append(pids, e.ID)
		}
		if err := s.MarkSent(ctx, pids...); err != nil {
			t.Fatalf("MarkSent: %v", err)
		}
	}
	wantPending(t, s)
	// Writing a sent id again makes it pending again (re-published, deduped by consumers).
	v, err := s.GetSession(ctx, "s-0")
	if err != nil {
		t.Fatalf("GetSession: %v", err)
	}
	if _, err := s.UpdateSession(ctx, v, ob(ids[0])); err != nil {
		t.Fatalf("UpdateSession: %v", err)
	}
	wantPending(t, s, ids[0])
}

func testOutboxLargePayload(t *testing.T, s state.Store) {
	ctx := t.Context()
	payload := []byte(`{"specversion":"1.0","id":"big","source":"s","type":"t","data":"` + strings.Repeat("z", 600<<10) + `"}`)
	if _, err := s.CreateSession(ctx, state.Session{ID: "s-1", Status: state.StatusRunning}, state.OutboxEvent{ID: "big", Payload: payload}); err != nil {
		t.Fatalf("CreateSession with a large outbox event: %v", err)
	}
	got := pending(t, s)
	if !bytes.Equal(got["big"], payload) {
		t.Fatalf("large outbox payload read back as %d bytes, want %d", len(got["big"]), len(payload))
	}
}

func testCanceledContext(t *testing.T, s state.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.CreateSession(ctx, state.Session{ID: "s-1", Status: state.StatusRunning}, ob("x")); err == nil {
		t.Fatal("CreateSession with a canceled context succeeded")
	}
	if _, err := s.AppendHistory(ctx, "s-1", entry(1)); err == nil {
		t.Fatal("AppendHistory with a canceled context succeeded")
	}
	if _, _, err := s.Claim(ctx, claimReq("s-1", "k", "h", time.Minute)); err == nil {
		t.Fatal("Claim with a canceled context succeeded")
	}
	if _, err := s.GetSession(t.Context(), "s-1"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("a canceled create stored the session: %v", err)
	}
	if _, err := s.GetClaim(t.Context(), "s-1", "k"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("a canceled claim was stored: %v", err)
	}
	wantPending(t, s)
}

// testLongIDs uses identifiers at MaxIDLen, full of key separators, which a
// store must keep distinct and within its key limits.
func testLongIDs(t *testing.T, s state.Store) {
	ctx := t.Context()
	long := func(c string) string { return strings.Repeat(c, state.MaxIDLen) }
	a := state.Entry{Source: long("#"), ID: long("/"), Data: []byte(`{"a":1}`)}
	b := state.Entry{Source: long("#"), ID: long("%"), Data: []byte(`{"b":1}`)}
	c := state.Entry{Source: "x#y", ID: "z", Data: []byte(`{"c":1}`)}
	d := state.Entry{Source: "x", ID: "y#z", Data: []byte(`{"d":1}`)}
	if n, err := s.AppendHistory(ctx, "s-1", a, b, c, d, a, c); err != nil || n != 4 {
		t.Fatalf("AppendHistory(long and separator-laden ids) = %d, %v; want 4", n, err)
	}
	got := readAll(t, s, "s-1", 10)
	if len(got) != 4 || got[0].Source != a.Source || got[0].ID != a.ID || got[1].ID != b.ID {
		t.Fatalf("read back %d entries", len(got))
	}
	key := long("k")
	if _, ok, err := s.Claim(ctx, claimReq("s-1", key, long("h"), time.Minute)); err != nil || !ok {
		t.Fatalf("Claim(long key) = %v, %v", ok, err)
	}
	if _, err := s.RecordResult(ctx, state.StepKey{SessionID: "s-1", Step: 1}, long("c"), []byte(`1`)); err != nil {
		t.Fatalf("RecordResult(long call id): %v", err)
	}
	if _, err := s.CreateSession(ctx, state.Session{ID: strings.Repeat("s", 200), Status: state.StatusRunning}, ob(long("o"))); err != nil {
		t.Fatalf("CreateSession(longest id, long outbox id): %v", err)
	}
	wantPending(t, s, long("o"))
	_, err := s.AppendHistory(ctx, "s-1", state.Entry{Source: "x", ID: long("i") + "i"})
	wantErr(t, "AppendHistory(id over MaxIDLen)", err, state.ErrInvalid)
}
