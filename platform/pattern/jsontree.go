package pattern

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// jnode is a parsed pattern value. Patterns are small and compiled once, so
// they go through encoding/json's tokenizer; this tree keeps what
// map[string]any would lose: member order, repeated keys (the last one wins,
// as AWS answers) and the exact text of numbers.
type jnode struct {
	kind byte // 'o' object, 'a' array, 's' string, 'n' number, 't' true, 'f' false, 'z' null
	text string
	obj  []jmember
	arr  []*jnode
}

type jmember struct {
	key string
	val *jnode
}

func (n *jnode) kindName() string {
	switch n.kind {
	case 'o':
		return "an object"
	case 'a':
		return "an array"
	case 's':
		return "a string"
	case 'n':
		return "a number"
	case 't', 'f':
		return "a boolean"
	default:
		return "null"
	}
}

func parseTree(data []byte) (*jnode, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	n, err := parseNode(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the pattern object")
	}
	return n, nil
}

const maxDepth = 100

func parseNode(dec *json.Decoder, depth int) (*jnode, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("unexpected end of JSON")
		}
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &jnode{kind: 'o'}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, _ := kt.(string)
				v, err := parseNode(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.obj = append(n.obj, jmember{key: key, val: v})
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return n, nil
		case '[':
			n := &jnode{kind: 'a'}
			for dec.More() {
				v, err := parseNode(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.arr = append(n.arr, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return n, nil
		}
		return nil, fmt.Errorf("unexpected %q", t)
	case string:
		return &jnode{kind: 's', text: t}, nil
	case json.Number:
		return &jnode{kind: 'n', text: string(t)}, nil
	case bool:
		if t {
			return &jnode{kind: 't', text: "true"}, nil
		}
		return &jnode{kind: 'f', text: "false"}, nil
	case nil:
		return &jnode{kind: 'z', text: "null"}, nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}
