package fastschema

import (
	"regexp"
	"regexp/syntax"
	"strings"
)

// matcher returns a function telling whether a string matches the pattern
// p as Go's regexp package (which the general validator uses too) matches
// it. Anchored patterns made of ASCII literals and ASCII character classes
// repeated a fixed number of times, with at most the last one repeated a
// variable number of times — the form of the contract's identifier
// patterns, e.g. ^[A-Za-z0-9_-]{1,64}$ — are matched by a byte loop: in a
// running loop the regexp engine was half of this package's time. Any other
// pattern uses regexp.
func matcher(p string) (func(string) bool, error) {
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, err
	}
	if m := simplePattern(p); m != nil {
		return m, nil
	}
	return re.MatchString, nil
}

// seqItem is a literal (class nil) or a class repeated min..max times (max
// -1: unbounded).
type seqItem struct {
	lit      string
	class    *[128]bool
	min, max int
}

// simplePattern compiles p into a byte loop, or returns nil when p is not
// of the simple form matcher describes.
func simplePattern(p string) func(string) bool {
	re, err := syntax.Parse(p, syntax.Perl)
	if err != nil || re.Op != syntax.OpConcat || len(re.Sub) < 2 ||
		re.Sub[0].Op != syntax.OpBeginText || re.Sub[len(re.Sub)-1].Op != syntax.OpEndText {
		return nil
	}
	subs := re.Sub[1 : len(re.Sub)-1]
	items := make([]seqItem, 0, len(subs))
	for k, s := range subs {
		if s.Flags&syntax.FoldCase != 0 {
			return nil
		}
		var it seqItem
		switch s.Op {
		case syntax.OpLiteral:
			for _, r := range s.Rune {
				if r >= 0x80 {
					return nil
				}
			}
			it.lit = string(s.Rune)
			items = append(items, it)
			continue
		case syntax.OpRepeat:
			it.min, it.max = s.Min, s.Max
		case syntax.OpPlus:
			it.min, it.max = 1, -1
		case syntax.OpStar:
			it.min, it.max = 0, -1
		case syntax.OpQuest:
			it.min, it.max = 0, 1
		default:
			return nil
		}
		if it.class = asciiClass(s.Sub[0]); it.class == nil {
			return nil
		}
		// Only the last item may vary in length: then a left-to-right
		// scan is exact, with no backtracking to get wrong.
		if it.min != it.max && k != len(subs)-1 {
			return nil
		}
		items = append(items, it)
	}
	return func(s string) bool {
		i := 0
		for k, it := range items {
			if it.class == nil {
				if !strings.HasPrefix(s[i:], it.lit) {
					return false
				}
				i += len(it.lit)
				continue
			}
			n := it.min
			if k == len(items)-1 {
				n = len(s) - i
				if n < it.min || it.max >= 0 && n > it.max {
					return false
				}
			} else if len(s)-i < n {
				return false
			}
			// A byte >= 0x80 starts a non-ASCII rune (or is invalid
			// UTF-8, which regexp reads as U+FFFD): never in an ASCII
			// class, so counting bytes counts runes here.
			for _, c := range []byte(s[i : i+n]) {
				if c >= 0x80 || !it.class[c] {
					return false
				}
			}
			i += n
		}
		return i == len(s)
	}
}

// asciiClass is the set of bytes a one-character node matches, or nil when
// it is not a case-sensitive character class or literal within ASCII.
func asciiClass(s *syntax.Regexp) *[128]bool {
	if s.Flags&syntax.FoldCase != 0 {
		return nil
	}
	var set [128]bool
	switch {
	case s.Op == syntax.OpCharClass:
		for i := 0; i+1 < len(s.Rune); i += 2 {
			lo, hi := s.Rune[i], s.Rune[i+1]
			if hi >= 0x80 {
				return nil
			}
			for r := lo; r <= hi; r++ {
				set[r] = true
			}
		}
	case s.Op == syntax.OpLiteral && len(s.Rune) == 1 && s.Rune[0] < 0x80:
		set[s.Rune[0]] = true
	default:
		return nil
	}
	return &set
}
