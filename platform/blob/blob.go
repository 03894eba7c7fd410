// Package blob declares the store that holds payloads too large to travel
// inline (claim-check bodies, oversized history items). Implementations live
// in sub-packages: localfs (a folder, embedded mode) and s3 (AWS). Every
// implementation passes the blobtest suite.
package blob

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Store is a flat key/value store for opaque byte payloads.
//
// Keys are slash-separated paths of non-empty segments (e.g.
// "claimcheck/sess-1/agentbus%2Fplanner/ev-1"); see ValidateKey. Every method
// is safe for concurrent use. Put overwrites an existing key; readers see
// either the old or the new value, never a partial one.
type Store interface {
	// Put stores data under key, replacing any previous value.
	Put(ctx context.Context, key string, data []byte) error
	// Get returns the value stored under key, or an error wrapping
	// ErrNotFound when there is none.
	Get(ctx context.Context, key string) ([]byte, error)
	// Delete removes key. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// DeletePrefix removes every key that starts with prefix (a plain string
	// prefix, not only whole segments). An empty prefix is rejected so that a
	// bug cannot wipe a whole store.
	DeletePrefix(ctx context.Context, prefix string) error
}

// ErrNotFound is returned (wrapped) by Get when the key holds no value.
var ErrNotFound = errors.New("blob not found")

// ErrInvalidKey is returned (wrapped) for a key (or prefix) that ValidateKey
// rejects.
var ErrInvalidKey = errors.New("invalid blob key")

// MaxKeyLen is the longest key accepted: S3's limit on object keys (1024 bytes).
const MaxKeyLen = 1024

// MaxSegmentLen is the longest slash-separated segment accepted. A folder
// store maps segments to file names (at most 255 bytes on common file
// systems, and it adds a short suffix), so the limit holds for every store to
// keep them interchangeable.
const MaxSegmentLen = 200

// ValidateKey reports whether key is acceptable to every implementation: not
// empty, at most MaxKeyLen bytes, no leading or trailing slash, no empty, "."
// or ".." segment, no segment over MaxSegmentLen bytes, no backslash and no
// control character. These rules keep a
// key from escaping a folder store's root and keep S3 and the folder store
// agreeing on which keys exist.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes, max %d", ErrInvalidKey, len(key), MaxKeyLen)
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Errorf("%w: %q contains a control character or backslash", ErrInvalidKey, key)
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "":
			return fmt.Errorf("%w: %q has an empty segment (leading, trailing or double slash)", ErrInvalidKey, key)
		case ".", "..":
			return fmt.Errorf("%w: %q has a %q segment", ErrInvalidKey, key, seg)
		}
		if len(seg) > MaxSegmentLen {
			return fmt.Errorf("%w: a segment of %d bytes, max %d", ErrInvalidKey, len(seg), MaxSegmentLen)
		}
	}
	return nil
}

// ValidatePrefix reports whether prefix is acceptable to DeletePrefix: not
// empty, and every complete segment valid as in ValidateKey. A trailing slash
// is allowed (it restricts the prefix to a "folder").
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return fmt.Errorf("%w: empty prefix", ErrInvalidKey)
	}
	return ValidateKey(strings.TrimSuffix(prefix, "/"))
}
