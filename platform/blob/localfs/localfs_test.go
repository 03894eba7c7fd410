package localfs_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/platform/blob"
	"github.com/agentbus/agentbus/platform/blob/blobtest"
	"github.com/agentbus/agentbus/platform/blob/localfs"
)

func newStore(t *testing.T) *localfs.Store {
	t.Helper()
	s, err := localfs.New(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	blobtest.Run(t, func(t *testing.T) blob.Store { return newStore(t) })
}

func TestNewRejectsEmptyAndFile(t *testing.T) {
	t.Parallel()
	if _, err := localfs.New(""); err == nil {
		t.Error("New(\"\") succeeded")
	}
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := localfs.New(f); err == nil {
		t.Error("New(a regular file) succeeded")
	}
}

// TestNoEscape proves that nothing is written outside the root, even through
// a symlink planted inside it.
func TestNoEscape(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	outside := filepath.Join(parent, "outside")
	if err := os.Mkdir(outside, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := localfs.New(filepath.Join(parent, "root"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := os.Symlink(outside, filepath.Join(s.Dir(), "link.dir")); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.Put(ctx, "link/x", []byte("x")); err == nil {
		t.Error("Put through a symlink leaving the root succeeded")
	}
	for _, k := range []string{"../outside/x", "a/../../outside/x"} {
		if err := s.Put(ctx, k, []byte("x")); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
	entries, err := os.ReadDir(outside)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("files written outside the root: %v", entries)
	}
}

// TestLayout pins the on-disk layout the package doc describes, and that no
// temporary file is left behind by successful writes.
func TestLayout(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	for _, k := range []string{"a", "a/b", "a/b/c"} {
		if err := s.Put(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	err := filepath.WalkDir(s.Dir(), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.Dir(), p)
		got = append(got, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := ".,a.blob,a.dir,a.dir/b.blob,a.dir/b.dir,a.dir/b.dir/c.blob"
	if strings.Join(got, ",") != want {
		t.Errorf("layout = %s, want %s", strings.Join(got, ","), want)
	}
}

func TestStrayTempFileIgnored(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	// A temp file left by a crash is not a key, and does not block a write.
	if err := os.WriteFile(filepath.Join(s.Dir(), "k.blob.0011.tmp"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Get = %v, want ErrNotFound", err)
	}
	if err := s.Put(ctx, "k", []byte("whole")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, "k"); err != nil || string(got) != "whole" {
		t.Fatalf("Get = %q, %v", got, err)
	}
}
