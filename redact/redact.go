// Package redact masks personal data and secrets before anything is shown:
// logs, error messages, status, metrics labels and dead-letter listings all
// go through it.
package redact

import (
	"encoding/json"
	"strings"
)

// sensitive keys are masked wherever they appear in a JSON document, at any
// depth. Hashes of personal data are masked too: an MD5 of an 11-digit phone
// number is reversed by brute force in minutes.
var sensitive = map[string]bool{
	"phone": true, "hash_phone": true, "sha256_phone": true, "mobile": true,
	"card_no": true, "cardno": true, "cert_id": true, "certid": true, "id_no": true,
	"wechat_openid": true, "wechat_unionid": true, "open_id": true,
	"hash_imei": true, "hash_idfa": true, "hash_oaid": true,
	"black_box": true, "ip": true, "account_id": true,
	"partner_key": true, "appkey": true, "access_token": true, "token": true, "password": true,
}

// Sensitive reports whether a JSON key names personal data or a secret.
func Sensitive(key string) bool { return sensitive[strings.ToLower(key)] }

// JSON returns doc with the value of every sensitive key masked, and long
// digit runs in other strings masked too. A document that is not JSON is
// replaced by a placeholder: never echo what cannot be inspected.
//
// It rewrites the document in one pass, keys in their order and numbers as
// written (the decision path masks every request it stores: decoding into
// maps and encoding again cost three times as much).
func JSON(doc []byte) json.RawMessage {
	if !json.Valid(doc) {
		return json.RawMessage(`"<unparseable payload withheld>"`)
	}
	w := rewriter{in: doc, out: make([]byte, 0, len(doc)+len(doc)/4)}
	w.value(false)
	return w.out
}

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

// value copies one value; mask: it sits under a sensitive key.
func (w *rewriter) value(mask bool) {
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
			under := mask
			if c == '{' {
				w.space()
				raw := w.str()
				w.out = append(w.out, raw...)
				under = mask || sensitiveKey(raw)
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
		if !mask && plain(tok) && !hasLongDigitRun(tok) {
			w.out = append(w.out, tok...) // nothing to mask or escape
			return
		}
		s := unquote(tok)
		if mask {
			s = Mask(s)
		} else {
			s = Digits(s)
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
		if mask {
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

// sensitiveKey is Sensitive for a key token, without copying a plain one.
func sensitiveKey(tok []byte) bool {
	if plain(tok) {
		body := tok[1 : len(tok)-1]
		for _, c := range body {
			if c >= 'A' && c <= 'Z' {
				return Sensitive(string(body))
			}
		}
		return sensitive[string(body)]
	}
	return Sensitive(unquote(tok))
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

// Mask keeps a hint of a value's shape (its length) and nothing else.
func Mask(s string) string {
	if s == "" {
		return ""
	}
	return "***" + "(" + itoa(len(s)) + ")"
}

// Digits masks every run of 7 or more digits in free text (card, ID and
// phone numbers) except its last 4, so messages stay useful for
// correlation without showing the number.
func Digits(s string) string {
	if !hasLongDigitRun(s) {
		return s
	}
	var b strings.Builder
	run := 0
	flush := func(end int) {
		if run >= 7 {
			b.WriteString(strings.Repeat("*", run-4))
			b.WriteString(s[end-4 : end])
		} else {
			b.WriteString(s[end-run : end])
		}
		run = 0
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' || (run > 0 && (c == 'X' || c == 'x') && run == 17) {
			run++
			continue
		}
		if run > 0 {
			flush(i)
		}
		b.WriteByte(c)
	}
	if run > 0 {
		flush(len(s))
	}
	return b.String()
}

func hasLongDigitRun[T string | []byte](s T) bool {
	run := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= '0' && c <= '9' {
			if run++; run >= 7 {
				return true
			}
		} else {
			run = 0
		}
	}
	return false
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for n > 0 {
		d = append([]byte{byte('0' + n%10)}, d...)
		n /= 10
	}
	return string(d)
}
