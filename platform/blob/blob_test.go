package blob_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/platform/blob"
)

func TestValidateKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"a/b/c", true},
		{"claimcheck/s-1/agentbus%2Fplanner/ev-1", true},
		{"a..b/c.", true},
		{"...", true},
		{strings.Repeat("s", blob.MaxSegmentLen), true},
		{"", false},
		{"/a", false},
		{"a/", false},
		{"a//b", false},
		{".", false},
		{"..", false},
		{"a/../b", false},
		{"a/./b", false},
		{`a\b`, false},
		{"a\x00b", false},
		{"a\tb", false},
		{"a\x7fb", false},
		{strings.Repeat("s", blob.MaxSegmentLen+1), false},
		{strings.Repeat("a/", blob.MaxKeyLen/2) + "a", false},
	}
	for _, tt := range tests {
		err := blob.ValidateKey(tt.key)
		if tt.ok && err != nil {
			t.Errorf("ValidateKey(%.40q) = %v, want nil", tt.key, err)
		}
		if !tt.ok && !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("ValidateKey(%.40q) = %v, want ErrInvalidKey", tt.key, err)
		}
	}
}

func TestValidatePrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prefix string
		ok     bool
	}{
		{"a", true},
		{"a/", true},
		{"a/b", true},
		{"", false},
		{"/", false},
		{"a//", false},
		{"../", false},
	}
	for _, tt := range tests {
		err := blob.ValidatePrefix(tt.prefix)
		if tt.ok != (err == nil) {
			t.Errorf("ValidatePrefix(%q) = %v, want ok=%v", tt.prefix, err, tt.ok)
		}
		if err != nil && !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("ValidatePrefix(%q) = %v, not ErrInvalidKey", tt.prefix, err)
		}
	}
}
