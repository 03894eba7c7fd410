package model

import "testing"

func TestIsJSONObject(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]bool{
		`{}`:                       true,
		" \n{\"type\":\"object\"}": true,
		`{"a":{"b":[1,2]}}`:        true,
		``:                         false,
		`null`:                     false,
		`[]`:                       false,
		`"{}"`:                     false,
		`1`:                        false,
		`{`:                        false,
		`{"a":}`:                   false,
		`{} {}`:                    false,
	} {
		if got := isJSONObject([]byte(raw)); got != want {
			t.Errorf("isJSONObject(%q) = %v, want %v", raw, got, want)
		}
	}
}
