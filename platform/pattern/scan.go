package pattern

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

// The event scanner is hand-written (not encoding/json) because matching is
// dominated by parsing: it makes one pass over the raw bytes, descends only
// into the paths some rule names, skips everything else without decoding it,
// keeps number text exact, and allocates nothing for unescaped strings.

// tnode is one step of the rules' field paths, split at '.'. Splitting
// both the pattern paths and the event keys at '.' makes {"a.b": ...} and
// {"a": {"b": ...}} the same field, as in EventBridge.
type tnode struct {
	leaf bool  // some field tests values at this path
	pid  int32 // index into index.pidx when leaf
	kids []tkid
	kmap map[string]*tnode // replaces kids when there are many
}

type tkid struct {
	key  string
	node *tnode
}

func (n *tnode) child(key string) *tnode {
	for _, k := range n.kids {
		if k.key == key {
			return k.node
		}
	}
	c := &tnode{}
	n.kids = append(n.kids, tkid{key, c})
	return c
}

// freeze switches wide nodes to maps once the trie is complete.
func (n *tnode) freeze() {
	if len(n.kids) > 8 {
		n.kmap = make(map[string]*tnode, len(n.kids))
		for _, k := range n.kids {
			n.kmap[k.key] = k.node
		}
	}
	for _, k := range n.kids {
		k.node.freeze()
	}
}

func (n *tnode) lookup(key []byte) *tnode {
	if n.kmap != nil {
		return n.kmap[string(key)]
	}
	for i := range n.kids {
		if n.kids[i].key == string(key) {
			return n.kids[i].node
		}
	}
	return nil
}

// step follows an event key, which may itself contain dots.
func (n *tnode) step(key []byte) *tnode {
	if c := n.lookup(key); c != nil {
		return c // trie keys never contain '.', so this is the whole answer
	}
	dot := -1
	for i, c := range key {
		if c == '.' {
			dot = i
			break
		}
	}
	if dot < 0 {
		return nil
	}
	for {
		if n = n.lookup(key[:dot]); n == nil {
			return nil
		}
		key = key[dot+1:]
		dot = bytes.IndexByte(key, '.')
		if dot < 0 {
			return n.lookup(key)
		}
	}
}

// arrPos is one array a leaf sits in: which array (unique per event) and
// which element.
type arrPos struct {
	id, idx int32
}

const maxNesting = 10000

type scanner struct {
	b     []byte
	i     int
	sc    *scratch
	root  *tnode
	depth int
}

func (p *scanner) errf(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrInvalidEvent, p.i, fmt.Sprintf(format, args...))
}

// ws skips whitespace; the check is inlined and the loop only runs when
// there is any (compact JSON has none).
func (p *scanner) ws() {
	if p.i < len(p.b) && p.b[p.i] <= ' ' {
		p.wsLoop()
	}
}

func (p *scanner) wsLoop() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\n', '\t', '\r':
			p.i++
		default:
			return
		}
	}
}

// scanEvent fills sc.leaves with the leaf values at the given paths.
func scanEvent(ev []byte, root *tnode, sc *scratch) error {
	p := scanner{b: ev, sc: sc, root: root}
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		if p.i >= len(p.b) {
			return fmt.Errorf("%w: empty input", ErrInvalidEvent)
		}
		return p.errf("the event must be a JSON object")
	}
	if err := p.object(root); err != nil {
		return err
	}
	p.ws()
	if p.i != len(p.b) {
		return p.errf("unexpected data after the event object")
	}
	return nil
}

func (p *scanner) object(n *tnode) error {
	p.depth++
	if p.depth > maxNesting {
		return p.errf("nested too deeply")
	}
	p.i++ // '{'
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		p.depth--
		return nil
	}
	for {
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return p.errf("expected a string key")
		}
		key, esc, err := p.str()
		if err != nil {
			return err
		}
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return p.errf("expected ':' after key")
		}
		p.i++
		p.ws()
		var next *tnode
		if esc {
			p.sc.keyBuf = appendUnescaped(p.sc.keyBuf[:0], key)
			next = n.step(p.sc.keyBuf)
		} else {
			next = n.step(key)
		}
		if next != nil {
			err = p.value(next)
		} else {
			err = p.skip()
		}
		if err != nil {
			return err
		}
		p.ws()
		if p.i >= len(p.b) {
			return p.errf("unterminated object")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
			p.ws()
		case '}':
			p.i++
			p.depth--
			return nil
		default:
			return p.errf("expected ',' or '}' in object")
		}
	}
}

// value handles a value at a path the rules name.
func (p *scanner) value(e *tnode) error {
	if p.i >= len(p.b) {
		return p.errf("unexpected end of input")
	}
	switch c := p.b[p.i]; {
	case c == '{':
		if len(e.kids) > 0 {
			return p.object(e)
		}
		return p.skip()
	case c == '[':
		return p.array(e)
	case c == '"':
		s, esc, err := p.str()
		if err != nil {
			return err
		}
		if e.leaf {
			if esc {
				s = appendUnescaped(nil, s)
			}
			p.leaf(e, 's', s)
		}
		return nil
	case c == 't' || c == 'f' || c == 'n':
		k, err := p.literal()
		if err != nil {
			return err
		}
		if e.leaf {
			p.leaf(e, k, nil)
		}
		return nil
	default:
		start := p.i
		if err := p.number(); err != nil {
			return err
		}
		if e.leaf {
			p.leaf(e, 'n', p.b[start:p.i])
		}
		return nil
	}
}

func (p *scanner) leaf(e *tnode, kind byte, val []byte) {
	sc := p.sc
	l := leaf{pid: e.pid, kind: kind, val: val}
	if n := len(sc.stack); n > 0 {
		l.arrOff = int32(len(sc.arr))
		l.arrLen = int32(n)
		sc.arr = append(sc.arr, sc.stack...)
	}
	sc.leaves = append(sc.leaves, l)
}

func (p *scanner) array(e *tnode) error {
	p.depth++
	if p.depth > maxNesting {
		return p.errf("nested too deeply")
	}
	p.i++ // '['
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		p.depth--
		return nil
	}
	sc := p.sc
	sc.nextArr++
	sc.stack = append(sc.stack, arrPos{id: sc.nextArr})
	top := len(sc.stack) - 1
	for {
		if err := p.value(e); err != nil {
			return err
		}
		p.ws()
		if p.i >= len(p.b) {
			return p.errf("unterminated array")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
			p.ws()
			sc.stack[top].idx++
		case ']':
			p.i++
			sc.stack = sc.stack[:top]
			p.depth--
			return nil
		default:
			return p.errf("expected ',' or ']' in array")
		}
	}
}

// skip validates and passes over a value no rule looks at.
func (p *scanner) skip() error {
	if p.i >= len(p.b) {
		return p.errf("unexpected end of input")
	}
	switch c := p.b[p.i]; {
	case c == '{':
		p.depth++
		if p.depth > maxNesting {
			return p.errf("nested too deeply")
		}
		p.i++
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == '}' {
			p.i++
			p.depth--
			return nil
		}
		for {
			if p.i >= len(p.b) || p.b[p.i] != '"' {
				return p.errf("expected a string key")
			}
			if _, _, err := p.str(); err != nil {
				return err
			}
			p.ws()
			if p.i >= len(p.b) || p.b[p.i] != ':' {
				return p.errf("expected ':' after key")
			}
			p.i++
			p.ws()
			if err := p.skip(); err != nil {
				return err
			}
			p.ws()
			if p.i >= len(p.b) {
				return p.errf("unterminated object")
			}
			if p.b[p.i] == ',' {
				p.i++
				p.ws()
				continue
			}
			if p.b[p.i] == '}' {
				p.i++
				p.depth--
				return nil
			}
			return p.errf("expected ',' or '}' in object")
		}
	case c == '[':
		p.depth++
		if p.depth > maxNesting {
			return p.errf("nested too deeply")
		}
		p.i++
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == ']' {
			p.i++
			p.depth--
			return nil
		}
		for {
			if err := p.skip(); err != nil {
				return err
			}
			p.ws()
			if p.i >= len(p.b) {
				return p.errf("unterminated array")
			}
			if p.b[p.i] == ',' {
				p.i++
				p.ws()
				continue
			}
			if p.b[p.i] == ']' {
				p.i++
				p.depth--
				return nil
			}
			return p.errf("expected ',' or ']' in array")
		}
	case c == '"':
		_, _, err := p.str()
		return err
	case c == 't' || c == 'f' || c == 'n':
		_, err := p.literal()
		return err
	default:
		return p.number()
	}
}

// str passes over a string starting at '"' and returns its raw content and
// whether it holds escapes. Escapes are validated here.
func (p *scanner) str() ([]byte, bool, error) {
	b := p.b
	start := p.i + 1
	j := start
	esc := false
	for {
		// Short strings (most keys and values) are scanned 8 bytes at a
		// time (SWAR); long ones go to the vectorized IndexByte.
		lim := min(j+64, len(b))
		for j+8 <= lim {
			x := binary.LittleEndian.Uint64(b[j:])
			q := x ^ (swarLSB * '"')
			e := x ^ (swarLSB * '\\')
			if m := ((q - swarLSB) &^ q) | ((e - swarLSB) &^ e); m&swarMSB != 0 {
				j += bits.TrailingZeros64(m&swarMSB) / 8
				goto found
			}
			j += 8
		}
		for j < lim && b[j] != '"' && b[j] != '\\' {
			j++
		}
		if j == lim {
			if lim == len(b) {
				p.i = j
				return nil, false, p.errf("unterminated string")
			}
			q := bytes.IndexByte(b[j:], '"')
			if q < 0 {
				p.i = len(b)
				return nil, false, p.errf("unterminated string")
			}
			if bs := bytes.IndexByte(b[j:j+q], '\\'); bs >= 0 {
				j += bs
			} else {
				j += q
			}
		}
	found:
		if b[j] == '"' {
			p.i = j + 1
			return b[start:j], esc, nil
		}
		// a backslash escape
		esc = true
		j++
		if j >= len(b) {
			p.i = j
			return nil, false, p.errf("unterminated string")
		}
		switch b[j] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			j++
		case 'u':
			if j+5 > len(b) {
				p.i = j
				return nil, false, p.errf("bad \\u escape")
			}
			for _, h := range b[j+1 : j+5] {
				if hexVal(h) < 0 {
					p.i = j
					return nil, false, p.errf("bad \\u escape")
				}
			}
			j += 5
		default:
			p.i = j
			return nil, false, p.errf("bad escape \\%c", b[j])
		}
	}
}

const (
	swarLSB = 0x0101010101010101
	swarMSB = 0x8080808080808080
)

func hexVal(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// appendUnescaped decodes the (already validated) raw content of a JSON
// string onto dst.
func appendUnescaped(dst, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		switch s[i] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := rune(hex4(s[i+1 : i+5]))
			i += 4
			if utf16.IsSurrogate(r) {
				if i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					r2 := rune(hex4(s[i+3 : i+7]))
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						dst = utf8.AppendRune(dst, d)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, s[i])
		}
	}
	return dst
}

func hex4(b []byte) int {
	return hexVal(b[0])<<12 | hexVal(b[1])<<8 | hexVal(b[2])<<4 | hexVal(b[3])
}

func (p *scanner) literal() (byte, error) {
	rest := p.b[p.i:]
	switch {
	case bytes.HasPrefix(rest, []byte("true")):
		p.i += 4
		return 't', nil
	case bytes.HasPrefix(rest, []byte("false")):
		p.i += 5
		return 'f', nil
	case bytes.HasPrefix(rest, []byte("null")):
		p.i += 4
		return 'z', nil
	}
	return 0, p.errf("invalid literal")
}

// number validates the JSON number grammar.
func (p *scanner) number() error {
	b, i := p.b, p.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return p.errf("invalid value")
	}
	switch {
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	default:
		return p.errf("invalid value")
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		if i == d {
			return p.errf("invalid number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		if i == d {
			return p.errf("invalid number")
		}
	}
	p.i = i
	return nil
}
