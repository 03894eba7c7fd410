package fastschema

import (
	"regexp"
	"testing"
)

// simplePatterns take the byte loop; the others must not.
var simplePatterns = []string{
	`^[A-Za-z0-9._:-]{1,128}$`,
	`^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`,
	`^[A-Za-z0-9_-]{1,64}$`,
	`^[a-z]+$`,
	`^ab[0-9]{2}c*$`,
	`^x?$`,
	`^a{3}b{2,}$`,
	`^$`,
	`^\d+$`, // \d is [0-9]
}

var otherPatterns = []string{
	`b`,                        // unanchored
	`^application/json(;.*)?$`, // a group
	`^[a-z]+[0-9]$`,            // a variable repeat before the end
	`(?i)^abc$`,                // case folding
	`^é+$`,                     // not ASCII
	`^[a-zé]{2}$`,              // a class beyond ASCII
	`^[^a-z]{2}$`,              // a negated class reaches beyond ASCII
	`(?m)^a$`,                  // line anchors
	`^(?:ab){2}$`,              // a repeated sequence
}

func TestSimplePatternChosen(t *testing.T) {
	t.Parallel()
	for _, p := range simplePatterns {
		if simplePattern(p) == nil {
			t.Errorf("%s: not taken by the byte loop", p)
		}
	}
	for _, p := range otherPatterns {
		if simplePattern(p) != nil {
			t.Errorf("%s: taken by the byte loop", p)
		}
	}
}

var patternInputs = []string{
	"", "a", "ab", "abc", "ab12c", "ab12", "ab1", "ab123", "ab12ccc", "x", "xx", "aaabb", "aaab", "aaabbbbb", "aabb",
	"AZaz09._:-", "has space", "tab\t", "é", "ée", "\xff", "a\n", "\na", "application/json", "application/json;x",
	"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
	"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", "ABC", "12",
	"a123456789012345678901234567890123456789012345678901234567890123456789",
}

// TestMatcherAgreesWithRegexp: matcher answers as regexp does, for patterns
// of both kinds.
func TestMatcherAgreesWithRegexp(t *testing.T) {
	t.Parallel()
	for _, p := range append(simplePatterns, otherPatterns...) {
		m, err := matcher(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		re := regexp.MustCompile(p)
		for _, s := range patternInputs {
			if got, want := m(s), re.MatchString(s); got != want {
				t.Errorf("%s on %q: %v, regexp says %v", p, s, got, want)
			}
		}
	}
	if _, err := matcher(`^[a-$`); err == nil {
		t.Error("a malformed pattern compiled")
	}
}

// FuzzSimplePattern: the byte loop agrees with regexp on any string.
func FuzzSimplePattern(f *testing.F) {
	for _, s := range patternInputs {
		f.Add(uint8(0), s)
	}
	ms := make([]func(string) bool, len(simplePatterns))
	res := make([]*regexp.Regexp, len(simplePatterns))
	for i, p := range simplePatterns {
		var err error
		if ms[i], err = matcher(p); err != nil {
			f.Fatal(err)
		}
		res[i] = regexp.MustCompile(p)
	}
	f.Fuzz(func(t *testing.T, which uint8, s string) {
		for k := range ms {
			i := (int(which) + k) % len(ms)
			if got, want := ms[i](s), res[i].MatchString(s); got != want {
				t.Fatalf("%s on %q: %v, regexp says %v", simplePatterns[i], s, got, want)
			}
		}
	})
}
