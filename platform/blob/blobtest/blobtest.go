// Package blobtest is the conformance suite every blob.Store implementation
// passes. An implementation's test calls Run with a constructor that returns
// a fresh, empty store (its own folder, its own bucket) for each subtest.
package blobtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/agentbus/agentbus/platform/blob"
)

// LargeSize is the payload size of the large-object case: the 5 MB claim-check
// payload the bus must carry.
const LargeSize = 5 << 20

// Run runs the whole suite against stores made by newStore. newStore must
// return an empty store that no other subtest uses; it may register cleanup
// with t.Cleanup. Subtests run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	t.Helper()
	cases := []struct {
		name string
		fn   func(t *testing.T, s blob.Store)
	}{
		{"PutGet", testPutGet},
		{"Overwrite", testOverwrite},
		{"Delete", testDelete},
		{"DeletePrefix", testDeletePrefix},
		{"DeletePrefixMany", testDeletePrefixMany},
		{"NotFound", testNotFound},
		{"Large", testLarge},
		{"Concurrent", testConcurrent},
		{"SlashKeys", testSlashKeys},
		{"InvalidKeys", testInvalidKeys},
		{"CanceledContext", testCanceledContext},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, newStore(t))
		})
	}
}

func mustPut(t *testing.T, s blob.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), key, data); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func wantGet(t *testing.T, s blob.Store, key string, want []byte) {
	t.Helper()
	got, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %d bytes %.40q, want %d bytes %.40q", key, len(got), got, len(want), want)
	}
}

func wantNotFound(t *testing.T, s blob.Store, key string) {
	t.Helper()
	got, err := s.Get(t.Context(), key)
	if !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Get(%q) = %d bytes, err %v; want an error wrapping blob.ErrNotFound", key, len(got), err)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func testPutGet(t *testing.T, s blob.Store) {
	tests := []struct {
		name string
		key  string
		data []byte
	}{
		{"text", "k1", []byte("hello")},
		{"json", "event.json", []byte(`{"a":1}`)},
		{"binary", "bin", []byte{0, 1, 2, 255, 0}},
		{"empty value", "empty", []byte{}},
		{"unicode key", "sessión/ünïcode ключ", []byte("u")},
		{"punctuation key", "a-b_c.d+e=f@g:h,i;j!k'l(m)n~o%p&q", []byte("p")},
	}
	for _, tt := range tests {
		mustPut(t, s, tt.key, tt.data)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantGet(t, s, tt.key, tt.data) })
	}
}

func testOverwrite(t *testing.T, s blob.Store) {
	mustPut(t, s, "k", []byte("first, longer value"))
	mustPut(t, s, "k", []byte("second"))
	wantGet(t, s, "k", []byte("second"))
	mustPut(t, s, "k", []byte{})
	wantGet(t, s, "k", []byte{})
}

func testDelete(t *testing.T, s blob.Store) {
	ctx := t.Context()
	mustPut(t, s, "a/x", []byte("1"))
	mustPut(t, s, "a/y", []byte("2"))
	if err := s.Delete(ctx, "a/x"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantNotFound(t, s, "a/x")
	wantGet(t, s, "a/y", []byte("2"))
	if err := s.Delete(ctx, "a/x"); err != nil {
		t.Fatalf("Delete of a deleted key = %v, want nil", err)
	}
	if err := s.Delete(ctx, "never/existed"); err != nil {
		t.Fatalf("Delete of a missing key = %v, want nil", err)
	}
	// A key can be written again after its delete.
	mustPut(t, s, "a/x", []byte("3"))
	wantGet(t, s, "a/x", []byte("3"))
}

func testDeletePrefix(t *testing.T, s blob.Store) {
	ctx := t.Context()
	keys := []string{
		"sess-1/a", "sess-1/b/c", "sess-1/b/d/e", "sess-10/a", "sess-2/a", "sess-1x", "other",
	}
	for _, k := range keys {
		mustPut(t, s, k, []byte(k))
	}
	// A folder-style prefix deletes only that folder.
	if err := s.DeletePrefix(ctx, "sess-1/"); err != nil {
		t.Fatalf("DeletePrefix(sess-1/): %v", err)
	}
	for _, k := range []string{"sess-1/a", "sess-1/b/c", "sess-1/b/d/e"} {
		wantNotFound(t, s, k)
	}
	for _, k := range []string{"sess-10/a", "sess-2/a", "sess-1x", "other"} {
		wantGet(t, s, k, []byte(k))
	}
	// A plain prefix matches across segment boundaries, as on S3.
	if err := s.DeletePrefix(ctx, "sess-1"); err != nil {
		t.Fatalf("DeletePrefix(sess-1): %v", err)
	}
	wantNotFound(t, s, "sess-10/a")
	wantNotFound(t, s, "sess-1x")
	wantGet(t, s, "sess-2/a", []byte("sess-2/a"))
	wantGet(t, s, "other", []byte("other"))
	// A prefix inside a segment.
	mustPut(t, s, "p/abc", []byte("1"))
	mustPut(t, s, "p/abd/x", []byte("2"))
	mustPut(t, s, "p/b", []byte("3"))
	if err := s.DeletePrefix(ctx, "p/ab"); err != nil {
		t.Fatalf("DeletePrefix(p/ab): %v", err)
	}
	wantNotFound(t, s, "p/abc")
	wantNotFound(t, s, "p/abd/x")
	wantGet(t, s, "p/b", []byte("3"))
	// Nothing matching is not an error; an empty prefix is refused.
	if err := s.DeletePrefix(ctx, "nothing/here/"); err != nil {
		t.Fatalf("DeletePrefix of no keys = %v, want nil", err)
	}
	if err := s.DeletePrefix(ctx, ""); !errors.Is(err, blob.ErrInvalidKey) {
		t.Fatalf("DeletePrefix(\"\") = %v, want an error wrapping blob.ErrInvalidKey", err)
	}
	wantGet(t, s, "other", []byte("other"))
	// Keys can be written again under a deleted prefix.
	mustPut(t, s, "sess-1/a", []byte("again"))
	wantGet(t, s, "sess-1/a", []byte("again"))
}

func testNotFound(t *testing.T, s blob.Store) {
	wantNotFound(t, s, "missing")
	wantNotFound(t, s, "missing/deeper/key")
	mustPut(t, s, "dir/file", []byte("x"))
	// A "folder" that only exists as a prefix of other keys is not a key.
	wantNotFound(t, s, "dir")
	// Nor is a key's prefix or extension.
	wantNotFound(t, s, "dir/fil")
	wantNotFound(t, s, "dir/file2")
}

func testLarge(t *testing.T, s blob.Store) {
	if testing.Short() {
		t.Skip("5 MB payload skipped in -short mode")
	}
	data := randomBytes(t, LargeSize)
	mustPut(t, s, "large/payload", data)
	wantGet(t, s, "large/payload", data)
	if err := s.Delete(t.Context(), "large/payload"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantNotFound(t, s, "large/payload")
}

func testConcurrent(t *testing.T, s blob.Store) {
	ctx := t.Context()
	const writers, perWriter = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter*3)
	// Distinct keys written and read back concurrently.
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				key := fmt.Sprintf("c/w%d/k%d", w, i)
				val := []byte(key + "=" + strings.Repeat("v", i*100))
				if err := s.Put(ctx, key, val); err != nil {
					errs <- fmt.Errorf("Put(%q): %w", key, err)
					continue
				}
				got, err := s.Get(ctx, key)
				if err != nil {
					errs <- fmt.Errorf("Get(%q): %w", key, err)
				} else if !bytes.Equal(got, val) {
					errs <- fmt.Errorf("Get(%q) returned another value", key)
				}
			}
		})
	}
	// One key overwritten by many writers while readers read it: every read
	// returns one writer's whole value (writes are atomic), never a mix.
	values := make(map[string]bool)
	for w := range writers {
		values[strings.Repeat(string(rune('a'+w)), 64<<10)] = true
	}
	mustPut(t, s, "c/shared", []byte(strings.Repeat("a", 64<<10)))
	for v := range values {
		wg.Go(func() {
			for range 3 {
				if err := s.Put(ctx, "c/shared", []byte(v)); err != nil {
					errs <- fmt.Errorf("Put(c/shared): %w", err)
				}
			}
		})
		wg.Go(func() {
			for range 3 {
				got, err := s.Get(ctx, "c/shared")
				if err != nil {
					errs <- fmt.Errorf("Get(c/shared) during overwrites: %w", err)
				} else if !values[string(got)] {
					errs <- fmt.Errorf("Get(c/shared) returned a torn value of %d bytes", len(got))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testSlashKeys(t *testing.T, s blob.Store) {
	// A key may be both a value and the prefix of other keys, as on S3.
	keys := []string{"a", "a/b", "a/b/c", "a/b/c/d", "a/bc", "x/y/z/w/v/u/t/s"}
	for _, k := range keys {
		mustPut(t, s, k, []byte("v:"+k))
	}
	for _, k := range keys {
		wantGet(t, s, k, []byte("v:"+k))
	}
	if err := s.Delete(t.Context(), "a/b"); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, s, "a/b")
	wantGet(t, s, "a/b/c", []byte("v:a/b/c"))
	wantGet(t, s, "a", []byte("v:a"))
}

func testInvalidKeys(t *testing.T, s blob.Store) {
	ctx := t.Context()
	// Keys that could escape a folder store's root, or that S3 and a folder
	// would treat differently, are refused by every method.
	bad := []string{
		"", "/abs", "trailing/", "a//b", "..", "../escape", "a/../../escape", "a/./b", ".",
		`a\b`, "nul\x00byte", "new\nline", strings.Repeat("k", blob.MaxKeyLen+1),
		strings.Repeat("s", blob.MaxSegmentLen+1),
	}
	for _, k := range bad {
		if err := s.Put(ctx, k, []byte("x")); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Put(%.40q) = %v, want an error wrapping blob.ErrInvalidKey", k, err)
		}
		if _, err := s.Get(ctx, k); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Get(%.40q) = %v, want an error wrapping blob.ErrInvalidKey", k, err)
		}
		if err := s.Delete(ctx, k); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Delete(%.40q) = %v, want an error wrapping blob.ErrInvalidKey", k, err)
		}
	}
	for _, p := range []string{"", "/", "../", "a/../", "a//"} {
		if err := s.DeletePrefix(ctx, p); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("DeletePrefix(%q) = %v, want an error wrapping blob.ErrInvalidKey", p, err)
		}
	}
	// The longest valid key works.
	long := strings.TrimSuffix(strings.Repeat(strings.Repeat("s", blob.MaxSegmentLen)+"/", blob.MaxKeyLen/(blob.MaxSegmentLen+1)), "/")
	mustPut(t, s, long, []byte("long"))
	wantGet(t, s, long, []byte("long"))
}

func testCanceledContext(t *testing.T, s blob.Store) {
	mustPut(t, s, "k", []byte("x"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	// A canceled call reports the cancellation, never success or a missing
	// key, so a caller can tell "gone" from "gave up".
	if err := s.Put(ctx, "k2", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with canceled ctx = %v, want context.Canceled", err)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with canceled ctx = %v, want context.Canceled", err)
	}
	if err := s.Delete(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete with canceled ctx = %v, want context.Canceled", err)
	}
	if err := s.DeletePrefix(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("DeletePrefix with canceled ctx = %v, want context.Canceled", err)
	}
	wantGet(t, s, "k", []byte("x"))
}

func testDeletePrefixMany(t *testing.T, s blob.Store) {
	if testing.Short() {
		t.Skip("many keys skipped in -short mode")
	}
	const n = 120
	for i := range n {
		mustPut(t, s, fmt.Sprintf("many/%03d/%d", i%7, i), []byte{byte(i)})
	}
	mustPut(t, s, "manyx", []byte("keep"))
	if err := s.DeletePrefix(t.Context(), "many/"); err != nil {
		t.Fatalf("DeletePrefix: %v", err)
	}
	for i := range n {
		wantNotFound(t, s, fmt.Sprintf("many/%03d/%d", i%7, i))
	}
	wantGet(t, s, "manyx", []byte("keep"))
}
