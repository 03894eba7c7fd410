package pattern

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// Pattern is a compiled, validated EventBridge event pattern. It is immutable
// and safe for concurrent use.
type Pattern struct {
	conjs []conj
	idx   *index // a one-rule index, so Pattern.Match and Matcher share one code path
}

// conj is one branch of the pattern after $or is expanded: every field must
// match.
type conj struct {
	fields []field
}

// field is one path of a branch and its alternatives.
type field struct {
	path     string
	ops      []*op
	absentOK bool // an {"exists": false} alternative: matches when the path has no value
}

// Limits of our own (EventBridge documents a 2,048-character pattern limit
// for some targets and a "too complex" error without publishing its measure).
const (
	// maxBranches bounds how many branches $or may expand into.
	maxBranches = 1024
	// maxWildcardStars and maxFieldStars approximate EventBridge's "rule is
	// too complex" check for wildcards, which bounds event-ruler's machine
	// complexity (the most automaton states one input can keep alive). AWS
	// rejects "*:*:*:*:*:event-bus/*" (six stars, complexity 11) and four
	// "*:stack/NAME/*" alternatives on one field (eight stars, 12); it
	// accepts three of those (six stars, 9). The exact measure is not
	// published; see docs/patterns.md.
	maxWildcardStars = 5
	maxFieldStars    = 6
)

const orKey = "$or"

// operator keywords of a match expression (case-sensitive).
const (
	kwPrefix     = "prefix"
	kwSuffix     = "suffix"
	kwAnythingBt = "anything-but"
	kwNumeric    = "numeric"
	kwExists     = "exists"
	kwCIDR       = "cidr"
	kwIgnoreCase = "equals-ignore-case"
	kwWildcard   = "wildcard"
)

var operators = []string{kwPrefix, kwSuffix, kwAnythingBt, kwNumeric, kwExists, kwCIDR, kwIgnoreCase, kwWildcard}

// Compile parses and validates an EventBridge event pattern. Every error it
// returns wraps ErrInvalidPattern and names the field path and the rule
// broken.
func Compile(pattern []byte) (*Pattern, error) {
	root, err := parseTree(pattern)
	if err != nil {
		return nil, invalid("", "not valid JSON: %v", err)
	}
	if root.kind != 'o' {
		return nil, invalid("", "the pattern must be a JSON object, not %s", root.kindName())
	}
	c := compiler{}
	branches := []*branch{{}}
	if err := c.object(root, "", &branches, false); err != nil {
		return nil, err
	}
	p := &Pattern{}
	for _, b := range branches {
		p.conjs = append(p.conjs, conj{fields: b.fields})
	}
	p.idx = buildIndex([]ruleEntry{{name: "", p: p}})
	return p, nil
}

// MustCompile is Compile for patterns known to be valid (tests, constants);
// it panics on error.
func MustCompile(pattern string) *Pattern {
	p, err := Compile([]byte(pattern))
	if err != nil {
		panic(err)
	}
	return p
}

// Match reports whether the event (any JSON object) matches the pattern. It
// returns an error wrapping ErrInvalidEvent only when the event is not a
// valid JSON object.
func (p *Pattern) Match(event []byte) (bool, error) {
	names, err := p.idx.match(event, nil)
	return len(names) > 0, err
}

// branch is an ordered path -> field map; a repeated path replaces the
// earlier one, as event-ruler's compiler (and so AWS) does.
type branch struct {
	fields []field
}

func (b *branch) put(f field) {
	for i := range b.fields {
		if b.fields[i].path == f.path {
			b.fields[i] = f
			return
		}
	}
	b.fields = append(b.fields, f)
}

func (b *branch) clone() *branch {
	return &branch{fields: append([]field(nil), b.fields...)}
}

type compiler struct{}

// Paths are built as prefix+key where prefix is "" at the top and ends in
// "." below it, so that an empty key ("") still makes a path step.

func (c *compiler) object(n *jnode, prefix string, branches *[]*branch, inOr bool) error {
	if len(n.obj) == 0 {
		return invalid(strings.TrimSuffix(prefix, "."), "empty objects are not allowed")
	}
	for _, m := range n.obj {
		if m.key == orKey {
			if err := c.or(m.val, prefix, branches, inOr); err != nil {
				return err
			}
			continue
		}
		path := prefix + m.key
		if inOr {
			for _, kw := range operators {
				if m.key == kw {
					return invalid(path, "%q is an operator name and cannot be used as a field name inside $or", m.key)
				}
			}
		}
		switch m.val.kind {
		case 'o':
			if err := c.object(m.val, path+".", branches, inOr); err != nil {
				return err
			}
		case 'a':
			f, err := c.values(m.val, path)
			if err != nil {
				return err
			}
			for _, b := range *branches {
				b.put(f)
			}
		default:
			return invalid(path, "must be an object or an array, not %s (leaf values are written in an array, e.g. [\"value\"])", m.val.kindName())
		}
	}
	return nil
}

func (c *compiler) or(n *jnode, prefix string, branches *[]*branch, inOr bool) error {
	at := prefix + orKey
	if n.kind != 'a' {
		return invalid(at, "must be an array of objects")
	}
	if len(n.arr) < 2 {
		return invalid(at, "must contain at least 2 objects")
	}
	current := *branches
	var out []*branch
	for _, alt := range n.arr {
		if alt.kind != 'o' {
			return invalid(at, "only objects are allowed in a $or array, not %s", alt.kindName())
		}
		next := make([]*branch, len(current))
		for i, b := range current {
			next[i] = b.clone()
		}
		if err := c.object(alt, prefix, &next, true); err != nil {
			return err
		}
		out = append(out, next...)
		if len(out) > maxBranches {
			return invalid(at, "expands into more than %d combinations", maxBranches)
		}
	}
	*branches = out
	return nil
}

// values compiles a field's array of alternatives.
func (c *compiler) values(n *jnode, path string) (f field, err error) {
	f = field{path: path}
	if len(n.arr) == 0 {
		return f, invalid(path, "empty arrays are not allowed")
	}
	defer func() {
		stars := 0
		for _, o := range f.ops {
			if o.wc != nil {
				stars += o.wc.stars
			}
			for _, w := range o.wcs {
				stars += w.stars
			}
		}
		if stars > maxFieldStars && err == nil {
			err = invalid(path, "rule is too complex: %d wildcard characters in one field's wildcards (at most %d)", stars, maxFieldStars)
		}
	}()
	for _, v := range n.arr {
		switch v.kind {
		case 's':
			o := &op{kind: opExactStr, s: v.text}
			// As in event-ruler, an exact string that is an IP address
			// matches the same address written another way (2001:DB8::1).
			if a, err := netip.ParseAddr(v.text); err == nil && a.Zone() == "" {
				o.ip = a
			}
			f.ops = append(f.ops, o)
		case 'n':
			o, err := exactNumber(v.text, path)
			if err != nil {
				return f, err
			}
			f.ops = append(f.ops, o)
		case 't', 'f', 'z':
			f.ops = append(f.ops, &op{kind: opExactLit, lit: v.kind})
		case 'o':
			o, absent, err := c.expr(v, path)
			if err != nil {
				return f, err
			}
			if absent {
				f.absentOK = true
			} else {
				f.ops = append(f.ops, o)
			}
		default:
			return f, invalid(path, "match values must be strings, numbers, booleans, null or objects; nested arrays are not allowed")
		}
	}
	return f, nil
}

func exactNumber(text, path string) (*op, error) {
	v, err := strconv.ParseFloat(text, 64)
	if err != nil && !isRangeErr(err) {
		return nil, invalid(path, "bad number %s", text)
	}
	return &op{kind: opExactNum, s: text, num: v, numByVal: err == nil && math.Abs(v) <= numLimit}, nil
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// expr compiles one match expression object ({"prefix": ...} etc.). absent
// reports an {"exists": false}.
func (c *compiler) expr(n *jnode, path string) (o *op, absent bool, err error) {
	if len(n.obj) != 1 {
		if len(n.obj) == 0 {
			return nil, false, invalid(path, "empty match expression; expected one operator such as {\"prefix\": \"...\"}")
		}
		return nil, false, invalid(path, "only one operator is allowed per match expression, found %d", len(n.obj))
	}
	key, v := n.obj[0].key, n.obj[0].val
	switch key {
	case kwPrefix, kwSuffix:
		return stringOrIgnoreCase(key, v, path)
	case kwIgnoreCase:
		if v.kind != 's' {
			return nil, false, invalid(path, "equals-ignore-case must be a string, not %s", v.kindName())
		}
		return &op{kind: opEqualsIC, s: lowerString(v.text)}, false, nil
	case kwAnythingBt:
		o, err := anythingBut(v, path)
		return o, false, err
	case kwNumeric:
		o, err := numeric(v, path)
		return o, false, err
	case kwExists:
		switch v.kind {
		case 't':
			return &op{kind: opExists}, false, nil
		case 'f':
			return nil, true, nil
		}
		return nil, false, invalid(path, "exists must be true or false, not %s", v.kindName())
	case kwCIDR:
		if v.kind != 's' {
			return nil, false, invalid(path, "cidr must be a string, not %s", v.kindName())
		}
		p, err := parseCIDR(v.text)
		if err != nil {
			return nil, false, invalid(path, "bad cidr %q: %v", v.text, err)
		}
		return &op{kind: opCIDR, prefix: p}, false, nil
	case kwWildcard:
		if v.kind != 's' {
			return nil, false, invalid(path, "wildcard must be a string, not %s", v.kindName())
		}
		w, err := parseWildcard(v.text)
		if err != nil {
			return nil, false, invalid(path, "bad wildcard %q: %v", v.text, err)
		}
		return &op{kind: opWildcard, wc: w}, false, nil
	}
	for _, kw := range operators {
		if strings.EqualFold(key, kw) {
			return nil, false, invalid(path, "unrecognized operator %q: operators are case-sensitive, use %q", key, kw)
		}
	}
	return nil, false, invalid(path, "unrecognized operator %q (known: %s)", key, strings.Join(operators, ", "))
}

func stringOrIgnoreCase(key string, v *jnode, path string) (*op, bool, error) {
	plain, ic := opPrefix, opPrefixIC
	if key == kwSuffix {
		plain, ic = opSuffix, opSuffixIC
	}
	switch v.kind {
	case 's':
		return &op{kind: plain, s: v.text}, false, nil
	case 'o':
		if len(v.obj) == 1 && v.obj[0].key == kwIgnoreCase {
			if v.obj[0].val.kind != 's' {
				return nil, false, invalid(path, "%s/equals-ignore-case must be a string, not %s", key, v.obj[0].val.kindName())
			}
			return &op{kind: ic, s: lowerString(v.obj[0].val.text)}, false, nil
		}
		return nil, false, invalid(path, "%s accepts only a string or {\"equals-ignore-case\": \"...\"}", key)
	}
	return nil, false, invalid(path, "%s must be a string, not %s", key, v.kindName())
}

func anythingBut(v *jnode, path string) (*op, error) {
	switch v.kind {
	case 's':
		return &op{kind: opABStr, strs: []string{v.text}}, nil
	case 'n':
		f, err := boundedNumber(v.text, path, "anything-but")
		if err != nil {
			return nil, err
		}
		return &op{kind: opABNum, nums: []float64{f}}, nil
	case 'a':
		if len(v.arr) == 0 {
			return nil, invalid(path, "anything-but list must not be empty")
		}
		var strs []string
		var nums []float64
		for _, e := range v.arr {
			switch e.kind {
			case 's':
				strs = append(strs, e.text)
			case 'n':
				f, err := boundedNumber(e.text, path, "anything-but")
				if err != nil {
					return nil, err
				}
				nums = append(nums, f)
			default:
				return nil, invalid(path, "anything-but list may hold only strings or only numbers, not %s", e.kindName())
			}
		}
		if len(strs) > 0 && len(nums) > 0 {
			return nil, invalid(path, "anything-but list must hold only strings or only numbers, not both")
		}
		if len(nums) > 0 {
			return &op{kind: opABNum, nums: nums}, nil
		}
		return &op{kind: opABStr, strs: strs}, nil
	case 'o':
		if len(v.obj) != 1 {
			return nil, invalid(path, "anything-but object must have exactly one operator (prefix, suffix, equals-ignore-case or wildcard)")
		}
		key, val := v.obj[0].key, v.obj[0].val
		var kind opKind
		switch key {
		case kwPrefix:
			kind = opABPrefix
		case kwSuffix:
			kind = opABSuffix
		case kwIgnoreCase:
			kind = opABIC
		case kwWildcard:
			kind = opABWildcard
		default:
			return nil, invalid(path, "unsupported operator %q inside anything-but (allowed: prefix, suffix, equals-ignore-case, wildcard)", key)
		}
		strs, err := stringOrStrings(val, path, "anything-but/"+key)
		if err != nil {
			return nil, err
		}
		o := &op{kind: kind}
		for _, s := range strs {
			switch kind {
			case opABPrefix, opABSuffix:
				if s == "" {
					return nil, invalid(path, "anything-but/%s must not be empty", key)
				}
				o.strs = append(o.strs, s)
			case opABIC:
				o.strs = append(o.strs, lowerString(s))
			case opABWildcard:
				w, err := parseWildcard(s)
				if err != nil {
					return nil, invalid(path, "bad wildcard %q in anything-but: %v", s, err)
				}
				o.wcs = append(o.wcs, w)
			}
		}
		return o, nil
	}
	return nil, invalid(path, "anything-but must be a string, a number, a list of strings or numbers, or an object, not %s", v.kindName())
}

func stringOrStrings(v *jnode, path, what string) ([]string, error) {
	switch v.kind {
	case 's':
		return []string{v.text}, nil
	case 'a':
		if len(v.arr) == 0 {
			return nil, invalid(path, "%s list must not be empty", what)
		}
		out := make([]string, 0, len(v.arr))
		for _, e := range v.arr {
			if e.kind != 's' {
				return nil, invalid(path, "%s list may hold only strings, not %s", what, e.kindName())
			}
			out = append(out, e.text)
		}
		return out, nil
	}
	return nil, invalid(path, "%s must be a string or a list of strings, not %s", what, v.kindName())
}

func boundedNumber(text, path, what string) (float64, error) {
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.Abs(f) > numLimit {
		return 0, invalid(path, "%s value %s is outside the supported range -5e9..5e9", what, text)
	}
	return f, nil
}

// numeric compiles ["=", x], [">"|">="|"<"|"<=", x] or
// [">"|">=", lo, "<"|"<=", hi].
func numeric(v *jnode, path string) (*op, error) {
	if v.kind != 'a' {
		return nil, invalid(path, "numeric must be an array such as [\">\", 0, \"<=\", 5], not %s", v.kindName())
	}
	a := v.arr
	operand := func(i int, opText string) (float64, error) {
		if i >= len(a) {
			return 0, invalid(path, "numeric operator %q needs a number after it", opText)
		}
		if a[i].kind != 'n' {
			return 0, invalid(path, "value of numeric operator %q must be a number, not %s", opText, a[i].kindName())
		}
		return boundedNumber(a[i].text, path, "numeric")
	}
	opAt := func(i int) (string, error) {
		if a[i].kind != 's' {
			return "", invalid(path, "numeric expects an operator string at position %d, found %s", i, a[i].kindName())
		}
		return a[i].text, nil
	}
	if len(a) == 0 {
		return nil, invalid(path, "numeric array must not be empty")
	}
	first, err := opAt(0)
	if err != nil {
		return nil, err
	}
	o := &op{kind: opNumeric, lo: math.Inf(-1), hi: math.Inf(1)}
	x, err := operand(1, first)
	if err != nil {
		return nil, err
	}
	switch first {
	case "=":
		o.lo, o.hi, o.loIncl, o.hiIncl = x, x, true, true
		if len(a) != 2 {
			return nil, invalid(path, "numeric [\"=\", x] takes no further terms")
		}
		return o, nil
	case "<", "<=":
		o.hi, o.hiIncl = x, first == "<="
		if len(a) != 2 {
			return nil, invalid(path, "numeric upper bound %q must come last (write the lower bound first)", first)
		}
		return o, nil
	case ">", ">=":
		o.lo, o.loIncl = x, first == ">="
	default:
		return nil, invalid(path, "unrecognized numeric operator %q (use =, <, <=, >, >=)", first)
	}
	if len(a) == 2 {
		return o, nil
	}
	second, err := opAt(2)
	if err != nil {
		return nil, err
	}
	if second != "<" && second != "<=" {
		return nil, invalid(path, "second numeric operator must be < or <=, not %q", second)
	}
	y, err := operand(3, second)
	if err != nil {
		return nil, err
	}
	if len(a) != 4 {
		return nil, invalid(path, "too many terms in numeric range")
	}
	if !(o.lo < y) {
		return nil, invalid(path, "numeric lower bound %v must be less than upper bound %v", o.lo, y)
	}
	o.hi, o.hiIncl = y, second == "<="
	return o, nil
}

func parseCIDR(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		return netip.Prefix{}, fmt.Errorf("missing /prefix-length")
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return p.Masked(), nil
}

// parseWildcard splits a wildcard operand at unescaped '*'. "\*" is a
// literal star and "\\" a literal backslash; any other escape, a trailing
// backslash and "**" are errors, as in EventBridge.
func parseWildcard(s string) (*wildcard, error) {
	w := &wildcard{}
	var seg []byte
	stars := 0
	prevStar := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '*':
			if prevStar {
				return nil, fmt.Errorf("consecutive wildcard characters at position %d", i)
			}
			stars++
			if i == 0 {
				w.leadingStar = true
			} else {
				w.segs = append(w.segs, string(seg))
			}
			seg = seg[:0]
			prevStar = true
			continue
		case '\\':
			if i+1 < len(s) && (s[i+1] == '*' || s[i+1] == '\\') {
				seg = append(seg, s[i+1])
				i++
				prevStar = false
				continue
			}
			return nil, fmt.Errorf("invalid escape at position %d (only \\* and \\\\ are allowed)", i)
		}
		seg = append(seg, c)
		prevStar = false
	}
	if prevStar {
		w.trailStar = true
	} else {
		w.segs = append(w.segs, string(seg))
	}
	w.stars = stars
	if stars > maxWildcardStars {
		return nil, fmt.Errorf("rule is too complex: %d wildcard characters (at most %d)", stars, maxWildcardStars)
	}
	// Drop empty segments between stars? They cannot exist ("**" is an
	// error); an empty first segment only occurs for a pattern like "" which
	// matches only the empty string.
	if len(w.segs) == 1 && w.segs[0] == "" && !w.leadingStar && !w.trailStar {
		w.segs = nil
	}
	return w, nil
}
