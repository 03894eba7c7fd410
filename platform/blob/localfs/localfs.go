// Package localfs is the embedded blob.Store: one file per key under a folder.
//
// Layout: a key "a/b/c" is stored as the file "a.dir/b.dir/c.blob" below the
// root folder. The two suffixes keep a key and the "folder" of longer keys
// apart, so "a/b" and "a/b/c" can both exist, as on S3. Writes go to a
// temporary file in the same folder, are synced, and are renamed over the
// target, so a reader sees the old or the new value, never a partial one, and
// a crash leaves at most a stray "*.tmp" file. All file access goes through
// os.Root, so no key (nor a symlink planted in the folder) can reach outside
// the root; keys are also validated with blob.ValidateKey.
//
// Intended for Linux and macOS file systems (names are the key's segments
// verbatim plus a suffix; blob.MaxSegmentLen keeps them under 255 bytes).
package localfs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/agentbus/agentbus/platform/blob"
)

const (
	fileSuffix = ".blob"
	dirSuffix  = ".dir"
	tmpSuffix  = ".tmp"

	dirPerm  = 0o750
	filePerm = 0o640

	// putAttempts bounds retries of a Put whose folder a concurrent
	// DeletePrefix removed between MkdirAll and the write.
	putAttempts = 5
)

// Store is a blob.Store in a local folder. Safe for concurrent use, also by
// several processes sharing the folder.
type Store struct {
	root *os.Root
}

var _ blob.Store = (*Store)(nil)

// New opens (creating it if needed) the folder dir as a blob store.
func New(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("localfs: empty folder name")
	}
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return nil, fmt.Errorf("localfs: create %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("localfs: open %s: %w", dir, err)
	}
	return &Store{root: root}, nil
}

// Close releases the folder handle.
func (s *Store) Close() error { return s.root.Close() }

// Dir returns the root folder's name.
func (s *Store) Dir() string { return s.root.Name() }

// dirPath maps key segments to the folder path of their "directories".
func dirPath(segs []string) string {
	parts := make([]string, len(segs))
	for i, seg := range segs {
		parts[i] = seg + dirSuffix
	}
	return path.Join(parts...)
}

// locate returns the folder and file path of a valid key.
func locate(key string) (dir, file string) {
	segs := strings.Split(key, "/")
	dir = dirPath(segs[:len(segs)-1])
	return dir, path.Join(dir, segs[len(segs)-1]+fileSuffix)
}

// Put stores data under key atomically (temp file, fsync, rename).
func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	if err := blob.ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("localfs: put %q: %w", key, err)
	}
	dir, file := locate(key)
	var err error
	for range putAttempts {
		if err = s.put(dir, file, data); !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("localfs: put %q: %w", key, err)
	}
	return nil
}

func (s *Store) put(dir, file string, data []byte) (err error) {
	if dir != "" {
		if err := s.root.MkdirAll(dir, dirPerm); err != nil {
			return err
		}
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand.Read never fails (Go 1.24+)
	tmp := file + "." + hex.EncodeToString(rnd[:]) + tmpSuffix
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = s.root.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	// Sync before rename: otherwise a crash can leave the new name pointing at
	// an empty file on some file systems.
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return s.root.Rename(tmp, file)
}

// Get returns the value under key, or an error wrapping blob.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := blob.ValidateKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("localfs: get %q: %w", key, err)
	}
	_, file := locate(key)
	data, err := s.root.ReadFile(file)
	if err != nil {
		if isNotExist(err) {
			return nil, fmt.Errorf("localfs: get %q: %w", key, blob.ErrNotFound)
		}
		return nil, fmt.Errorf("localfs: get %q: %w", key, err)
	}
	return data, nil
}

// Delete removes key; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := blob.ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("localfs: delete %q: %w", key, err)
	}
	_, file := locate(key)
	if err := s.root.Remove(file); err != nil && !isNotExist(err) {
		return fmt.Errorf("localfs: delete %q: %w", key, err)
	}
	return nil
}

// DeletePrefix removes every key starting with prefix. Only the folder that
// holds the prefix's last, partial segment is listed: whole sub-folders whose
// name matches are removed at once.
func (s *Store) DeletePrefix(ctx context.Context, prefix string) error {
	if err := blob.ValidatePrefix(prefix); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("localfs: delete prefix %q: %w", prefix, err)
	}
	segs := strings.Split(prefix, "/")
	dir, partial := dirPath(segs[:len(segs)-1]), segs[len(segs)-1]
	if partial == "" { // "a/b/": exactly the folder a/b
		if err := s.root.RemoveAll(dir); err != nil {
			return fmt.Errorf("localfs: delete prefix %q: %w", prefix, err)
		}
		return nil
	}
	listDir := dir
	if listDir == "" {
		listDir = "."
	}
	entries, err := fs.ReadDir(s.root.FS(), listDir)
	if err != nil {
		if isNotExist(err) {
			return nil
		}
		return fmt.Errorf("localfs: delete prefix %q: %w", prefix, err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("localfs: delete prefix %q: %w", prefix, err)
		}
		name := e.Name()
		var err error
		switch {
		case strings.HasSuffix(name, fileSuffix) && strings.HasPrefix(strings.TrimSuffix(name, fileSuffix), partial):
			err = s.root.Remove(path.Join(dir, name))
		case strings.HasSuffix(name, dirSuffix) && strings.HasPrefix(strings.TrimSuffix(name, dirSuffix), partial):
			err = s.root.RemoveAll(path.Join(dir, name))
		default:
			continue // another key, or an in-flight temp file
		}
		if err != nil && !isNotExist(err) {
			return fmt.Errorf("localfs: delete prefix %q: %w", prefix, err)
		}
	}
	return nil
}

// isNotExist also treats ENOTDIR as absence: a path component that is a
// file (not possible with this layout, but cheap to tolerate).
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}
