package pattern

import (
	"bytes"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// opKind is one kind of value test inside a field's list of alternatives.
type opKind uint8

const (
	opExactStr   opKind = iota // "x"
	opExactNum                 // 300: by value (within ±5e9) or by text
	opExactLit                 // true, false, null
	opPrefix                   // {"prefix": "x"}
	opPrefixIC                 // {"prefix": {"equals-ignore-case": "x"}}
	opSuffix                   // {"suffix": "x"}
	opSuffixIC                 // {"suffix": {"equals-ignore-case": "x"}}
	opEqualsIC                 // {"equals-ignore-case": "x"}
	opNumeric                  // {"numeric": [...]}
	opExists                   // {"exists": true}
	opCIDR                     // {"cidr": "10.0.0.0/8"}
	opWildcard                 // {"wildcard": "a*b"}
	opABStr                    // {"anything-but": "x" | ["x", ...]}
	opABNum                    // {"anything-but": 1 | [1, ...]}
	opABPrefix                 // {"anything-but": {"prefix": ...}}
	opABSuffix                 // {"anything-but": {"suffix": ...}}
	opABIC                     // {"anything-but": {"equals-ignore-case": ...}}
	opABWildcard               // {"anything-but": {"wildcard": ...}}
)

// numLimit bounds the numbers EventBridge compares by value: "numeric
// matching ... between -5.0e9 and +5.0e9 inclusive" (content filtering docs).
const numLimit = 5e9

// op is one compiled alternative. Only the fields its kind needs are set;
// strings of the ignore-case kinds are stored lower-cased.
type op struct {
	kind     opKind
	s        string   // exact/prefix/suffix/equals-ignore-case operand
	strs     []string // anything-but lists
	num      float64  // opExactNum value
	numByVal bool     // opExactNum: compare by value (|num| <= 5e9)
	nums     []float64
	lit      byte // opExactLit: 't', 'f', 'z'
	lo, hi   float64
	loIncl   bool
	hiIncl   bool
	prefix   netip.Prefix
	ip       netip.Addr // opExactStr whose text is an IP address
	wc       *wildcard
	wcs      []*wildcard
}

// leaf is one scalar value found in an event at a path the rules care about.
type leaf struct {
	pid    int32
	kind   byte   // 's' string, 'n' number, 't' true, 'f' false, 'z' null
	val    []byte // string content (unescaped) or number text
	arrOff int32  // its array memberships: scratch.arr[arrOff : arrOff+arrLen]
	arrLen int32
	numSt  uint8 // 0 not parsed, 1 parsed, 2 not representable
	num    float64
	lower  []byte // lower-cased val, once computed
	lowSet bool
}

func bstr(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// number parses the leaf's number text once.
func (l *leaf) number() (float64, bool) {
	if l.numSt == 0 {
		f, err := strconv.ParseFloat(bstr(l.val), 64)
		if err != nil || math.IsInf(f, 0) {
			l.numSt = 2
		} else {
			l.num, l.numSt = f, 1
		}
	}
	return l.num, l.numSt == 1
}

// lowered returns the lower-cased string value, computed once per leaf.
func (l *leaf) lowered() []byte {
	if !l.lowSet {
		l.lower, l.lowSet = lowerBytes(l.val), true
	}
	return l.lower
}

// lowerBytes lower-cases ASCII in place of a copy, and other letters with
// Unicode simple case mapping (event-ruler folds case the same way).
func lowerBytes(b []byte) []byte {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c >= utf8.RuneSelf {
			return bytes.ToLower(b)
		}
		if 'A' <= c && c <= 'Z' {
			out := make([]byte, len(b))
			copy(out, b[:i])
			for j := i; j < len(b); j++ {
				c := b[j]
				if c >= utf8.RuneSelf {
					return bytes.ToLower(b)
				}
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				out[j] = c
			}
			return out
		}
	}
	return b
}

func lowerString(s string) string { return strings.ToLower(s) }

// match reports whether the op accepts the leaf. The index uses it for the
// ops it cannot look up by value and to confirm wildcard candidates.
func (o *op) match(l *leaf) bool {
	switch o.kind {
	case opExactStr:
		if l.kind != 's' {
			return false
		}
		if bstr(l.val) == o.s {
			return true
		}
		if o.ip.IsValid() && looksLikeIP(bstr(l.val)) {
			a, err := netip.ParseAddr(bstr(l.val))
			return err == nil && a == o.ip
		}
		return false
	case opExactNum:
		if l.kind != 'n' {
			return false
		}
		if bstr(l.val) == o.s {
			return true
		}
		if o.numByVal {
			f, ok := l.number()
			return ok && f == o.num
		}
		return false
	case opExactLit:
		return l.kind == o.lit
	case opPrefix:
		return l.kind == 's' && strings.HasPrefix(bstr(l.val), o.s)
	case opPrefixIC:
		return l.kind == 's' && strings.HasPrefix(bstr(l.lowered()), o.s)
	case opSuffix:
		return l.kind == 's' && strings.HasSuffix(bstr(l.val), o.s)
	case opSuffixIC:
		return l.kind == 's' && strings.HasSuffix(bstr(l.lowered()), o.s)
	case opEqualsIC:
		return l.kind == 's' && bstr(l.lowered()) == o.s
	case opNumeric:
		if l.kind != 'n' {
			return false
		}
		f, ok := l.number()
		return ok && o.inRange(f)
	case opExists:
		return true
	case opCIDR:
		if l.kind != 's' {
			return false
		}
		a, err := netip.ParseAddr(bstr(l.val))
		return err == nil && a.Zone() == "" && o.prefix.Contains(a)
	case opWildcard:
		return l.kind == 's' && o.wc.match(bstr(l.val))
	case opABStr:
		if l.kind != 's' {
			return true
		}
		v := bstr(l.val)
		for _, s := range o.strs {
			if s == v {
				return false
			}
		}
		return true
	case opABNum:
		if l.kind != 'n' {
			return true
		}
		f, ok := l.number()
		if !ok {
			return true
		}
		for _, n := range o.nums {
			if n == f {
				return false
			}
		}
		return true
	case opABPrefix:
		if l.kind != 's' {
			return true
		}
		for _, s := range o.strs {
			if strings.HasPrefix(bstr(l.val), s) {
				return false
			}
		}
		return true
	case opABSuffix:
		if l.kind != 's' {
			return true
		}
		for _, s := range o.strs {
			if strings.HasSuffix(bstr(l.val), s) {
				return false
			}
		}
		return true
	case opABIC:
		if l.kind != 's' {
			return true
		}
		v := bstr(l.lowered())
		for _, s := range o.strs {
			if s == v {
				return false
			}
		}
		return true
	case opABWildcard:
		if l.kind != 's' {
			return true
		}
		for _, w := range o.wcs {
			if w.match(bstr(l.val)) {
				return false
			}
		}
		return true
	}
	return false
}

func (o *op) inRange(f float64) bool {
	if o.loIncl {
		if f < o.lo {
			return false
		}
	} else if f <= o.lo {
		return false
	}
	if o.hiIncl {
		return f <= o.hi
	}
	return f < o.hi
}

// wildcard is a compiled {"wildcard": ...} operand: literal segments that
// were separated by unescaped '*'.
type wildcard struct {
	stars       int
	segs        []string
	leadingStar bool
	trailStar   bool
}

// match is the classic greedy glob match for '*'-only patterns: the first
// segment anchors at the start, the last at the end, the middle ones are
// found left to right (leftmost is always safe when '*' is the only
// metacharacter).
func (w *wildcard) match(s string) bool {
	segs := w.segs
	if len(segs) == 0 {
		return w.leadingStar || s == ""
	}
	if !w.leadingStar {
		if !strings.HasPrefix(s, segs[0]) {
			return false
		}
		if len(segs) == 1 && !w.trailStar {
			return len(s) == len(segs[0])
		}
		s = s[len(segs[0]):]
		segs = segs[1:]
	}
	if !w.trailStar {
		last := segs[len(segs)-1]
		if !strings.HasSuffix(s, last) {
			return false
		}
		s = s[:len(s)-len(last)]
		segs = segs[:len(segs)-1]
	}
	for _, seg := range segs {
		i := strings.Index(s, seg)
		if i < 0 {
			return false
		}
		s = s[i+len(seg):]
	}
	return true
}

// literalPrefix and literalSuffix are what the index keys wildcards by.
func (w *wildcard) literalPrefix() string {
	if w.leadingStar || len(w.segs) == 0 {
		return ""
	}
	return w.segs[0]
}

func (w *wildcard) literalSuffix() string {
	if w.trailStar || len(w.segs) == 0 {
		return ""
	}
	return w.segs[len(w.segs)-1]
}
