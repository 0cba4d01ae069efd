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
func JSON(doc []byte) json.RawMessage {
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return json.RawMessage(`"<unparseable payload withheld>"`)
	}
	b, err := json.Marshal(walk(v, false))
	if err != nil {
		return json.RawMessage(`"<payload withheld>"`)
	}
	return b
}

func walk(v any, mask bool) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = walk(x, mask || Sensitive(k))
		}
		return t
	case []any:
		for i, x := range t {
			t[i] = walk(x, mask)
		}
		return t
	case string:
		if mask {
			return Mask(t)
		}
		return Digits(t)
	case float64:
		if mask {
			return "***"
		}
		return t
	}
	return v
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
