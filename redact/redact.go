// Package redact masks personal data and secrets before anything is shown:
// logs, error messages, status, metrics labels and dead-letter listings all
// go through it.
package redact

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// JSON returns doc with the value of every sensitive key masked whole
// (see Sensitive), of every name key to its first character (see
// NameKey), and every other string masked by its shape (see Text), at any
// depth; a number that looks like a mobile or card number is masked too
// (see MasksNumber). A document that is not JSON is replaced by a
// placeholder: never echo what cannot be inspected. JSON of a document it
// made is that document.
//
// It rewrites the document in one pass, keys in their order and numbers as
// written (the decision path masks every request it stores: decoding into
// maps and encoding again cost three times as much).
func JSON(doc []byte) json.RawMessage {
	if !json.Valid(doc) {
		return json.RawMessage(`"<unparseable payload withheld>"`)
	}
	w := rewriter{in: doc, out: make([]byte, 0, len(doc)+len(doc)/4)}
	w.value(clear)
	return w.out
}

// mode is how the rewriter masks a value.
type mode uint8

const (
	clear mode = iota // by its shape
	whole             // under a sensitive key
	name              // under a name key
)

// rewriter copies a valid JSON document, masking as it goes.
type rewriter struct {
	in  []byte
	i   int
	out []byte
}

func (w *rewriter) space() {
	for w.i < len(w.in) {
		switch w.in[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

// value copies one value, masked as m says.
func (w *rewriter) value(m mode) {
	w.space()
	switch c := w.in[w.i]; c {
	case '{', '[':
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		w.i++
		w.out = append(w.out, c)
		w.space()
		if w.in[w.i] == end {
			w.i++
			w.out = append(w.out, end)
			return
		}
		for {
			under := m
			if c == '{' {
				w.space()
				raw := w.str()
				w.out = append(w.out, raw...)
				under = keyMode(m, raw)
				w.space()
				w.i++ // the colon
				w.out = append(w.out, ':')
			}
			w.value(under)
			w.space()
			sep := w.in[w.i]
			w.i++
			w.out = append(w.out, sep)
			if sep == end {
				return
			}
		}
	case '"':
		tok := w.str()
		if m == clear && plain(tok) && !mayMask(tok) {
			w.out = append(w.out, tok...) // nothing to mask or escape
			return
		}
		s := unquote(tok)
		switch m {
		case whole:
			s = Mask(s)
		case name:
			s = Name(s)
		default:
			s = Text(s)
		}
		w.out = appendQuoted(w.out, s)
	case 't', 'n':
		w.out = append(w.out, w.in[w.i:w.i+4]...)
		w.i += 4
	case 'f':
		w.out = append(w.out, w.in[w.i:w.i+5]...)
		w.i += 5
	default: // a number
		j := w.i
		for j < len(w.in) && strings.IndexByte("0123456789+-.eE", w.in[j]) >= 0 {
			j++
		}
		if m != clear || maskNumber(w.in[w.i:j]) {
			w.out = append(w.out, `"***"`...)
		} else {
			w.out = append(w.out, w.in[w.i:j]...)
		}
		w.i = j
	}
}

// str returns the string token at w.i, quotes included, and moves past it.
func (w *rewriter) str() []byte {
	j := w.i + 1
	for w.in[j] != '"' {
		if w.in[j] == '\\' {
			j++
		}
		j++
	}
	tok := w.in[w.i : j+1]
	w.i = j + 1
	return tok
}

// escaped: bytes that encoding/json writes other than as they are (it
// escapes HTML characters too), or that start an escape or a multi-byte
// character.
func escaped(c byte) bool {
	return c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&'
}

// plain: a string token of printable ASCII without escapes or characters
// that encoding/json would escape.
func plain(tok []byte) bool {
	for _, c := range tok[1 : len(tok)-1] {
		if escaped(c) {
			return false
		}
	}
	return true
}

// keyMode is how the value of the key token tok is masked inside a value
// masked as m: a sensitive key masks it whole, a name key to its first
// character. Plain keys are looked at without a copy.
func keyMode(m mode, tok []byte) mode {
	if m == whole {
		return whole
	}
	var whole_, name_ bool
	if plain(tok) {
		body := tok[1 : len(tok)-1]
		whole_, name_ = sensitiveKey(body), nameKey(body)
	} else {
		key := unquote(tok)
		whole_, name_ = sensitiveKey(key), nameKey(key)
	}
	switch {
	case whole_:
		return whole
	case name_:
		return name
	}
	return m
}

// mayMask: Text might change the string token tok (it masks nothing with
// fewer than 7 digits and no @).
func mayMask(tok []byte) bool {
	n := 0
	for _, c := range tok {
		if c >= '0' && c <= '9' {
			if n++; n >= 7 {
				return true
			}
		} else if c == '@' {
			return true
		}
	}
	return false
}

// maskNumber: MasksNumber of a number token. Below 1.3e10 (11 digits
// without an exponent) no number is masked, so short ones are not parsed.
func maskNumber(tok []byte) bool {
	if len(tok) < 11 && !bytes.ContainsAny(tok, "eE") {
		return false
	}
	f, _ := strconv.ParseFloat(string(tok), 64) // beyond float64: ±Inf, masked
	return MasksNumber(f)
}

// unquote decodes a string token; plain ASCII without escapes is taken as
// it is.
func unquote(tok []byte) string {
	body := tok[1 : len(tok)-1]
	for _, c := range body {
		if c == '\\' || c >= 0x80 {
			var s string
			_ = json.Unmarshal(tok, &s) // valid: the document passed json.Valid
			return s
		}
	}
	return string(body)
}

// appendQuoted encodes s as encoding/json does (HTML-safe escapes
// included).
func appendQuoted(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if escaped(s[i]) {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Mask keeps a hint of a value's shape (its length) and nothing else. A
// value it masked it leaves as it is.
func Mask(s string) string {
	if s == "" || s == "***" || masked(s) {
		return s
	}
	return "***" + "(" + strconv.Itoa(len(s)) + ")"
}

// masked: s is what Mask makes of a value, ***(n).
func masked(s string) bool {
	if len(s) < 6 || s[:4] != "***(" || s[len(s)-1] != ')' {
		return false
	}
	for _, c := range []byte(s[4 : len(s)-1]) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Name masks a person's name to its first character and "*": 张三 -> 张*,
// Zhang San -> Z*. A string of asterisks (a masked number) is left as it is.
func Name(s string) string {
	if strings.Trim(s, "*") == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError {
		return "*"
	}
	if len(s) == n+1 && s[n] == '*' {
		return s
	}
	return s[:n] + "*"
}
