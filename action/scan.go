package action

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// cursor walks a JSON text that json.Valid has already accepted, so it only
// has to find value boundaries, never to diagnose syntax. It still checks
// bounds everywhere so that it cannot panic.
type cursor struct {
	b []byte
	i int
}

func (c *cursor) ws() {
	for c.i < len(c.b) {
		switch c.b[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}

// value returns the raw bytes of the next value and moves past it.
func (c *cursor) value() []byte {
	c.ws()
	start := c.i
	if c.i >= len(c.b) {
		return nil
	}
	switch c.b[c.i] {
	case '"':
		c.skipString()
	case '{', '[':
		depth := 0
		for c.i < len(c.b) {
			switch c.b[c.i] {
			case '"':
				c.skipString()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					c.i++
					return c.b[start:c.i]
				}
			}
			c.i++
		}
	default:
		for c.i < len(c.b) {
			switch c.b[c.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return c.b[start:c.i]
			}
			c.i++
		}
	}
	if c.i > len(c.b) {
		c.i = len(c.b)
	}
	return c.b[start:c.i]
}

// skipString moves past the string that starts at c.i. It jumps from quote
// to quote: a quote closes the string unless an odd number of backslashes
// precedes it (an escaped quote). On a string that does not end it stops
// at the end of the text.
func (c *cursor) skipString() {
	c.i++ // opening quote
	start := c.i
	for {
		j := bytes.IndexByte(c.b[c.i:], '"')
		if j < 0 {
			c.i = len(c.b)
			return
		}
		q := c.i + j
		k := q
		for k > start && c.b[k-1] == '\\' {
			k--
		}
		c.i = q + 1
		if (q-k)%2 == 0 {
			return
		}
	}
}

// members iterates over the members of a raw JSON object.
type members struct{ c cursor }

func newMembers(obj []byte) members { return members{cursor{b: obj, i: 1}} }

// next returns the next member's decoded key and raw value.
func (m *members) next() (key, val []byte, ok bool) {
	if key, ok = m.key(); !ok {
		return nil, nil, false
	}
	return key, m.c.value(), true
}

// key reads the next member's key and the colon after it; the caller must
// then consume the value (m.skip, or m.c.value / m.c.array).
func (m *members) key() ([]byte, bool) {
	c := &m.c
	c.ws()
	if c.i < len(c.b) && c.b[c.i] == ',' {
		c.i++
		c.ws()
	}
	if c.i >= len(c.b) || c.b[c.i] != '"' {
		return nil, false
	}
	key, _ := unquote(c.value())
	c.ws()
	if c.i < len(c.b) && c.b[c.i] == ':' {
		c.i++
	}
	return key, true
}

func (m *members) skip() { m.c.value() }

// array reads the next value; if it is an array, the raw extent of each
// element is appended to elems. It walks the value only once.
func (c *cursor) array(elems [][]byte) (raw []byte, _ [][]byte) {
	c.ws()
	if c.i >= len(c.b) || c.b[c.i] != '[' {
		return c.value(), elems
	}
	start := c.i
	c.i++
	for {
		c.ws()
		if c.i < len(c.b) && c.b[c.i] == ',' {
			c.i++
			c.ws()
		}
		if c.i >= len(c.b) {
			return c.b[start:], elems
		}
		if c.b[c.i] == ']' {
			c.i++
			return c.b[start:c.i], elems
		}
		elems = append(elems, c.value())
	}
}

func trimSpace(b []byte) []byte {
	c := cursor{b: b}
	c.ws()
	b = b[c.i:]
	for len(b) > 0 {
		switch b[len(b)-1] {
		case ' ', '\t', '\n', '\r':
			b = b[:len(b)-1]
			continue
		}
		break
	}
	return b
}

// unquote returns the text a raw JSON string denotes; ok is false if raw is
// not a string. Plain strings are returned as a sub-slice of raw without
// copying; strings with escapes or invalid UTF-8 go through encoding/json so
// that the result is exactly what json.Unmarshal would give.
func unquote(raw []byte) (s []byte, ok bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, false
	}
	in := raw[1 : len(raw)-1]
	for j, ch := range in {
		if ch == '\\' || ch >= utf8.RuneSelf {
			if bytes.IndexByte(in[j:], '\\') < 0 && utf8.Valid(in[j:]) {
				return in, true
			}
			goto slow
		}
	}
	return in, true
slow:
	var str string
	if json.Unmarshal(raw, &str) != nil {
		return nil, false
	}
	return []byte(str), true
}

func isNull(raw []byte) bool { return string(raw) == "null" }

func isObject(raw []byte) bool { return len(raw) > 0 && raw[0] == '{' }
func isArray(raw []byte) bool  { return len(raw) > 0 && raw[0] == '[' }

// isInteger reports whether raw is a JSON number without fraction or exponent.
func isInteger(raw []byte) bool {
	if len(raw) == 0 {
		return false
	}
	for i, ch := range raw {
		if ch == '-' && i == 0 {
			continue
		}
		if ch < '0' || ch > '9' {
			return false
		}
	}
	return raw[len(raw)-1] != '-'
}
