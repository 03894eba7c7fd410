package pattern

import (
	"bytes"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// The event scanner is hand-written (not encoding/json) because matching is
// dominated by parsing: it makes one pass over the raw bytes, descends only
// into the paths some rule names, skips everything else without decoding it,
// keeps number text exact, and allocates nothing for unescaped strings.

// pathEntry says what the rules need at one dotted path.
type pathEntry struct {
	pid      int32 // index into index.pidx when leaf
	leaf     bool  // some field tests values at this path
	interior bool  // some field's path continues below this one
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
	paths map[string]pathEntry
	path  []byte
	depth int
}

func (p *scanner) errf(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrInvalidEvent, p.i, fmt.Sprintf(format, args...))
}

func (p *scanner) ws() {
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
func scanEvent(ev []byte, paths map[string]pathEntry, sc *scratch) error {
	p := scanner{b: ev, sc: sc, paths: paths, path: sc.path[:0]}
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		if p.i >= len(p.b) {
			return fmt.Errorf("%w: empty input", ErrInvalidEvent)
		}
		return p.errf("the event must be a JSON object")
	}
	if err := p.object(); err != nil {
		return err
	}
	p.ws()
	if p.i != len(p.b) {
		return p.errf("unexpected data after the event object")
	}
	sc.path = p.path
	return nil
}

func (p *scanner) object() error {
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
		save := len(p.path)
		if save > 0 {
			p.path = append(p.path, '.')
		}
		if esc {
			p.path = appendUnescaped(p.path, key)
		} else {
			p.path = append(p.path, key...)
		}
		e, ok := p.paths[string(p.path)]
		if ok {
			err = p.value(e)
		} else {
			err = p.skip()
		}
		p.path = p.path[:save]
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
func (p *scanner) value(e pathEntry) error {
	if p.i >= len(p.b) {
		return p.errf("unexpected end of input")
	}
	switch c := p.b[p.i]; {
	case c == '{':
		if e.interior {
			return p.object()
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

func (p *scanner) leaf(e pathEntry, kind byte, val []byte) {
	sc := p.sc
	l := leaf{pid: e.pid, kind: kind, val: val}
	if n := len(sc.stack); n > 0 {
		l.arrOff = int32(len(sc.arr))
		l.arrLen = int32(n)
		sc.arr = append(sc.arr, sc.stack...)
	}
	sc.leaves = append(sc.leaves, l)
}

func (p *scanner) array(e pathEntry) error {
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
	p.i++ // opening quote
	start := p.i
	esc := false
	for {
		rest := p.b[p.i:]
		q := bytes.IndexByte(rest, '"')
		if q < 0 {
			return nil, false, p.errf("unterminated string")
		}
		bs := bytes.IndexByte(rest[:q], '\\')
		if bs < 0 {
			p.i += q + 1
			return p.b[start : p.i-1], esc, nil
		}
		esc = true
		p.i += bs + 1
		if p.i >= len(p.b) {
			return nil, false, p.errf("unterminated string")
		}
		switch p.b[p.i] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			p.i++
		case 'u':
			if p.i+5 > len(p.b) {
				return nil, false, p.errf("bad \\u escape")
			}
			for _, h := range p.b[p.i+1 : p.i+5] {
				if hexVal(h) < 0 {
					return nil, false, p.errf("bad \\u escape")
				}
			}
			p.i += 5
		default:
			return nil, false, p.errf("bad escape \\%c", p.b[p.i])
		}
	}
}

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
