package action

// validJSON reports whether b is one JSON text that encoding/json's Valid
// accepts (RFC 8259: a single value between optional whitespace; strings
// may hold any byte but controls and are not checked for UTF-8). It is a
// plain loop, several times faster than json.Valid's byte-by-byte state
// machine, which was a fifth of the cost of a one-action request.
//
// It may also return false for a valid text it does not handle, nesting
// deeper than maxFastDepth: a false answer must be confirmed with
// json.Valid. A true answer never needs to be.
func validJSON(b []byte) bool {
	const (
		sValue = iota // a value must come next
		sAfter        // a value has ended
		sKey          // an object member's key must come next
	)
	var stack [maxFastDepth]bool // per open container: is it an object?
	depth, i, st := 0, 0, sValue
	for {
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		switch st {
		case sValue:
			if i >= len(b) {
				return false
			}
			switch c := b[i]; {
			case c == '{' || c == '[':
				if depth == len(stack) {
					return false // deep nesting: leave it to json.Valid
				}
				i++
				for i < len(b) && isSpace(b[i]) {
					i++
				}
				if i < len(b) && b[i] == c+2 { // '}' or ']': empty
					i++
					st = sAfter
					continue
				}
				stack[depth] = c == '{'
				depth++
				if c == '{' {
					st = sKey
				}
				continue
			case c == '"':
				if i = skipString(b, i); i < 0 {
					return false
				}
			case c == 't':
				if len(b)-i < 4 || string(b[i:i+4]) != "true" {
					return false
				}
				i += 4
			case c == 'f':
				if len(b)-i < 5 || string(b[i:i+5]) != "false" {
					return false
				}
				i += 5
			case c == 'n':
				if len(b)-i < 4 || string(b[i:i+4]) != "null" {
					return false
				}
				i += 4
			case c == '-' || isDigit(c):
				if i = skipNumber(b, i); i < 0 {
					return false
				}
			default:
				return false
			}
			st = sAfter
		case sAfter:
			if depth == 0 {
				return i == len(b)
			}
			if i >= len(b) {
				return false
			}
			obj := stack[depth-1]
			switch b[i] {
			case ',':
				if obj {
					st = sKey
				} else {
					st = sValue
				}
			case '}':
				if !obj {
					return false
				}
				depth--
			case ']':
				if obj {
					return false
				}
				depth--
			default:
				return false
			}
			i++
		default: // sKey
			if i >= len(b) || b[i] != '"' {
				return false
			}
			if i = skipString(b, i); i < 0 {
				return false
			}
			for i < len(b) && isSpace(b[i]) {
				i++
			}
			if i >= len(b) || b[i] != ':' {
				return false
			}
			i++
			st = sValue
		}
	}
}

// maxFastDepth bounds the nesting validJSON handles itself (a request
// nests 4 deep).
const maxFastDepth = 64

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// strPlain marks the bytes a JSON string may hold as they are: all but
// controls, the quote and the backslash.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// skipString checks the string starting at b[i] (a quote) and returns the
// index after its closing quote, or -1 if it is not a valid JSON string.
func skipString(b []byte, i int) int {
	i++
	for i < len(b) {
		c := b[i]
		if strPlain[c] {
			i++
			continue
		}
		switch c {
		case '"':
			return i + 1
		case '\\':
			i++
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if len(b)-i < 5 || !isHexDigit(b[i+1]) || !isHexDigit(b[i+2]) || !isHexDigit(b[i+3]) || !isHexDigit(b[i+4]) {
					return -1
				}
				i += 5
			default:
				return -1
			}
		default: // a control character
			return -1
		}
	}
	return -1
}

// skipNumber checks the number starting at b[i] and returns the index after
// it, or -1: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func skipNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i+1)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return -1
		}
		i = skipDigits(b, i+1)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return -1
		}
		i = skipDigits(b, i+1)
	}
	return i
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return i
}
