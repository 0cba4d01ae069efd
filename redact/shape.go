package redact

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Masking by shape. A value under an unlisted key ("bank_card", "tel",
// anything in TongDun's free-form ext) is masked by what it looks like:
//
//   - a number is a run of digits, or runs joined by single separators:
//     "+86 139 1234 5678", "158-8765-4321", "6222 0212 3456 7890 128",
//     "110105 19491231 002X" (an ID card's final X counts as its last
//     digit). Full-width digits (０-９, as Chinese input methods type them)
//     count as digits.
//   - Text masks, of each number joined by spaces or hyphens, every digit
//     but the last 4 when it has a run of 7 or more digits or 11 or more
//     digits in all (a date, 2026-11-23, has 8: dates stay readable); and
//     anything Personal finds, joined by any of " -._:". It masks the
//     local part of an e-mail address but its first character.
//   - Personal recognises, precisely, what must never be a caller's id: a
//     mainland mobile number, a resident ID-card number whose check digit
//     is right, a bank-card number that passes Luhn (see Personal).
//
// A UUID (8-4-4-4-12 hexadecimal digits) is never taken for a number:
// request and decision ids are UUIDs, and a UUID's last group can hold 12
// digits.

// The kinds of number Personal recognises, as its answer names them.
const (
	KindMobile     = "a mainland mobile number"
	KindResidentID = "a mainland ID-card number (check digit valid)"
	KindBankCard   = "a bank-card number (Luhn valid)"
)

// Personal reports whether s, a caller's identifier, holds a number that
// is personal data, and names its kind ("" when none does). A number is a
// run of digits, or runs that are words of their own (no letter or digit
// either side) joined by single ' ', '-', '.', '_' or ':', in any part of
// which (up to 19 digits) it looks for:
//
//   - a mainland mobile number: 11 digits 1[3-9]xxxxxxxxx, or 86 or 0086
//     and those 11;
//   - a resident ID-card number: 17 digits and a check digit (0-9 or X)
//     that ISO 7064 MOD 11-2 confirms, the first digit not 0 and digits
//     7-14 a date of birth from 1900 to 2099. The 15-digit form (withdrawn
//     in 2013, without a check digit) cannot be told from a serial number
//     and is not refused;
//   - a bank-card number: 13-19 digits that pass Luhn and start as an
//     issuer does (3, 4, 5, 6 or 9, or 2221-2720). No card starts with 1,
//     20 or 21, so dates and timestamps (20261204123456, Unix time in
//     seconds to nanoseconds) never match.
//
// UUIDs, and hexadecimal words of 16 or more characters with a letter
// (hashes, object ids), are not looked into: 13 digits in a row are common
// there and one in ten would pass Luhn. Runs are joined only when each is
// a word of its own for the same reason: "v3-000000000123" is a version
// and a sequence number, not a 13-digit card (so "tel139-1234-5678" is
// not refused either; where it is shown, Text's broader rules mask it).
//
// The boundary: a numeric id of 13-19 digits that starts like a card (a
// snowflake id, say) passes Luhn one time in ten and cannot then be told
// from a card; nor can an 11-digit one starting 13-19 from a mobile.
func Personal(s string) string {
	if digitCount(s) < 11 {
		return ""
	}
	var gb [16]group
	var db [64]byte
	sc := tokenize(s, gb[:0], db[:0])
	kind := ""
	sc.precise(func(k string, _, _ int, _ int) bool {
		kind = k
		return false
	})
	return kind
}

// ID returns an identifier as it may be shown: the numbers Personal finds
// in it masked (every digit but the last 4), the rest as it is. Ids are
// refused at intake when Personal finds one; this is for those stored
// before.
func ID(s string) string {
	if digitCount(s) < 11 {
		return s
	}
	var gb [16]group
	var db [64]byte
	sc := tokenize(s, gb[:0], db[:0])
	hit := false
	sc.precise(func(_ string, a, b, n int) bool {
		sc.star(a, b, n)
		hit = true
		return true
	})
	if !hit {
		return s
	}
	return sc.render(s)
}

// Text masks personal data in free text by its shape (see above):
// numbers, joined by spaces or hyphens, with a run of 7 or more digits or
// 11 or more in all, and what Personal recognises, keep only their last 4
// digits; e-mail addresses keep the first character of their local part.
// Text of a string it masks nothing in is that string.
func Text(s string) string {
	if digitCount(s) >= 7 {
		s = maskNumbers(s)
	}
	if strings.IndexByte(s, '@') >= 0 {
		// After the numbers: masking digits can end an address's domain
		// sooner, never later, so masking again finds nothing new.
		s = maskEmails(s)
	}
	return s
}

func maskNumbers(s string) string {
	var gb [16]group
	var db [64]byte
	sc := tokenize(s, gb[:0], db[:0])
	hit := sc.broad()
	if len(sc.ds) >= 11 {
		sc.precise(func(_ string, a, b, n int) bool {
			sc.star(a, b, n)
			hit = true
			return true
		})
	}
	if !hit {
		return s
	}
	return sc.render(s)
}

// Digits is Text under its first name.
//
// Deprecated: use Text, which masks e-mail addresses and numbers written
// with separators too.
func Digits(s string) string { return Text(s) }

// MasksNumber reports whether Text's rules mask a JSON number: an integer
// whose digits look like a mobile or card number (Personal's rules), or
// any integer of 16 or more digits (past float64's exact integers, a card
// number keeps only its leading digits, which must not show either).
// Money amounts the agent accepts (at most 1e10) are never masked.
func MasksNumber(f float64) bool {
	a := math.Abs(f)
	if !(a >= 1.3e10) || a != math.Trunc(a) {
		return false
	}
	if a >= 1e15 {
		return true
	}
	var buf [24]byte
	return kindOf(strconv.AppendFloat(buf[:0], a, 'f', -1, 64), false) != ""
}

// group is one run of digits in a text.
type group struct {
	start, end int  // bytes of the text
	d0, d1     int  // its digits: scan.ds[d0:d1]
	sep        byte // the one byte between it and the group before, 0 if none or more than one
	x          bool // an X or x follows at once (an ID card's check character)
	hex        bool // inside a hexadecimal word of 16 or more characters
	word       bool // a word of its own: no letter or digit either side (but an X)
	stars      int  // how many of its leading digits to mask
}

// scan holds a text's groups of digits.
type scan struct {
	gs []group
	ds []byte // the digits, ASCII
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// digitAt returns the digit s[i:] starts with, ASCII or full-width
// (U+FF10-U+FF19), and its size in bytes; size 0: not a digit.
func digitAt(s string, i int) (d byte, size int) {
	c := s[i]
	if c >= '0' && c <= '9' {
		return c, 1
	}
	if c == 0xEF && i+2 < len(s) && s[i+1] == 0xBC && s[i+2] >= 0x90 && s[i+2] <= 0x99 {
		return '0' + s[i+2] - 0x90, 3
	}
	return 0, 0
}

// digitCount counts the digits of s, ASCII and full-width.
func digitCount(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' || c == 0xEF && i+2 < len(s) && s[i+1] == 0xBC && s[i+2] >= 0x90 && s[i+2] <= 0x99 {
			n++
		}
	}
	return n
}

// uuidAt: a UUID that stands alone (no letter or digit either side)
// starts at s[i].
func uuidAt(s string, i int) bool {
	if len(s)-i < 36 {
		return false
	}
	for j := 0; j < 36; j++ {
		c := s[i+j]
		if j == 8 || j == 13 || j == 18 || j == 23 {
			if c != '-' {
				return false
			}
		} else if !isHex(c) {
			return false
		}
	}
	return i+36 == len(s) || !isAlnum(s[i+36])
}

// longHex: the word (letters and digits) that starts at s[i] is 16 or more
// hexadecimal digits with at least one letter.
func longHex(s string, i int) bool {
	letter := false
	j := i
	for ; j < len(s) && isAlnum(s[j]); j++ {
		if !isHex(s[j]) {
			return false
		}
		if s[j] > '9' {
			letter = true
		}
	}
	return letter && j-i >= 16
}

// tokenize finds the groups of digits of s, appending to gs and ds
// (which callers give room on their stack).
func tokenize(s string, gs []group, ds []byte) scan {
	hex := false
	for i := 0; i < len(s); {
		c := s[i]
		if isAlnum(c) && (i == 0 || !isAlnum(s[i-1])) { // a word starts
			if uuidAt(s, i) {
				i += 36
				continue
			}
			hex = longHex(s, i)
		} else if !isAlnum(c) {
			hex = false
		}
		if _, n := digitAt(s, i); n == 0 {
			if c < utf8.RuneSelf {
				i++
			} else {
				_, n := utf8.DecodeRuneInString(s[i:])
				i += n
			}
			continue
		}
		g := group{start: i, d0: len(ds), hex: hex}
		if k := len(gs); k > 0 {
			if p := &gs[k-1]; !p.x && p.end+1 == i {
				g.sep = s[p.end]
			}
		}
		for i < len(s) {
			d, n := digitAt(s, i)
			if n == 0 {
				break
			}
			ds = append(ds, d)
			i += n
		}
		g.end, g.d1 = i, len(ds)
		g.x = i < len(s) && (s[i] == 'X' || s[i] == 'x')
		end := i
		if g.x {
			end++
		}
		g.word = (g.start == 0 || !isAlnum(s[g.start-1])) && (end == len(s) || !isAlnum(s[end]))
		gs = append(gs, g)
	}
	return scan{gs: gs, ds: ds}
}

// broad marks, in each number joined by spaces or hyphens, every digit but
// the last 4 when it has a run of 7 or more digits or 11 or more in all.
func (sc *scan) broad() bool {
	hit := false
	for a := 0; a < len(sc.gs); {
		b, total, long := a+1, sc.gs[a].d1-sc.gs[a].d0, sc.gs[a].d1-sc.gs[a].d0 >= 7
		for ; b < len(sc.gs) && (sc.gs[b].sep == ' ' || sc.gs[b].sep == '-'); b++ {
			n := sc.gs[b].d1 - sc.gs[b].d0
			total += n
			long = long || n >= 7
		}
		if long || total >= 11 {
			if sc.gs[b-1].x && total == 17 {
				total++ // an ID card's X: kept as its last character
			}
			sc.star(a, b, total)
			hit = true
		}
		a = b
	}
	return hit
}

// precise calls fn for each part of a number Personal recognises: groups
// a to b-1, n digits (an X included). fn returns false to stop.
func (sc *scan) precise(fn func(kind string, a, b, n int) bool) {
	var buf [20]byte
	for a := 0; a < len(sc.gs); a++ {
		if sc.gs[a].hex {
			continue
		}
		d := buf[:0]
		for b := a; b < len(sc.gs); b++ {
			g := &sc.gs[b]
			if g.hex || b > a && (g.sep == 0 || strings.IndexByte(" -._:", g.sep) < 0 || !g.word || !sc.gs[a].word) {
				break
			}
			if len(d)+g.d1-g.d0 > 19 {
				break
			}
			d = append(d, sc.ds[g.d0:g.d1]...)
			if len(d) < 11 {
				continue
			}
			n := len(d)
			k := kindOf(d, false)
			if k == "" && g.x {
				if k = kindOf(d, true); k != "" {
					n++
				}
			}
			if k != "" && !fn(k, a, b+1, n) {
				return
			}
		}
	}
}

// star marks the first n-4 digits of groups a to b-1 to be masked (n
// counts an ID card's X, which is kept).
func (sc *scan) star(a, b, n int) {
	left := n - 4
	for i := a; i < b && left > 0; i++ {
		g := &sc.gs[i]
		k := min(left, g.d1-g.d0)
		g.stars = max(g.stars, k)
		left -= g.d1 - g.d0
	}
}

// render writes s with the marked digits as '*'.
func (sc *scan) render(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	at := 0
	for i := range sc.gs {
		g := &sc.gs[i]
		if g.stars == 0 {
			continue
		}
		b.WriteString(s[at:g.start])
		j := g.start
		for k := 0; k < g.stars; k++ {
			_, n := digitAt(s, j)
			b.WriteByte('*')
			j += n
		}
		at = j
	}
	b.WriteString(s[at:])
	return b.String()
}

// kindOf names what the digits d look like (Personal's rules); x: an X
// follows them.
func kindOf(d []byte, x bool) string {
	if x {
		if len(d) == 17 && residentID(d, 'X') {
			return KindResidentID
		}
		return ""
	}
	switch n := len(d); {
	case mobile(d):
		return KindMobile
	case n == 18 && residentID(d[:17], d[17]):
		return KindResidentID
	case n >= 13 && n <= 19 && card(d):
		return KindBankCard
	}
	return ""
}

func mobile(d []byte) bool {
	switch {
	case len(d) == 13 && d[0] == '8' && d[1] == '6':
		d = d[2:]
	case len(d) == 15 && string(d[:4]) == "0086":
		d = d[4:]
	}
	return len(d) == 11 && d[0] == '1' && d[1] >= '3'
}

// residentID: 17 digits d and the check character c (a digit or X).
func residentID(d []byte, c byte) bool {
	if d[0] == '0' {
		return false
	}
	year := atoi(d[6:10])
	month, day := atoi(d[10:12]), atoi(d[12:14])
	if year < 1900 || year > 2099 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) {
		return false
	}
	weights := [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	sum := 0
	for i, w := range weights {
		sum += int(d[i]-'0') * w
	}
	return "10X98765432"[sum%11] == c
}

func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// card: Luhn, and a first digit an issuer uses.
func card(d []byte) bool {
	switch d[0] {
	case '3', '4', '5', '6', '9':
	case '2':
		if p := atoi(d[:4]); p < 2221 || p > 2720 {
			return false
		}
	default:
		return false
	}
	sum := 0
	for i := range d {
		n := int(d[len(d)-1-i] - '0')
		if i%2 == 1 {
			if n *= 2; n > 9 {
				n -= 9
			}
		}
		sum += n
	}
	return sum%10 == 0
}

func atoi(d []byte) int {
	n := 0
	for _, c := range d {
		n = n*10 + int(c-'0')
	}
	return n
}

// maskEmails keeps the first character of each e-mail address's local
// part: zhang.san@example.com -> z***@example.com.
func maskEmails(s string) string {
	var b strings.Builder
	at := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '@' {
			continue
		}
		l := i
		for l > at && (isAlnum(s[l-1]) || strings.IndexByte("._%+-", s[l-1]) >= 0) {
			l--
		}
		r := i + 1
		for r < len(s) && (isAlnum(s[r]) || s[r] == '.' || s[r] == '-') {
			r++
		}
		dom := strings.TrimRight(s[i+1:r], ".-")
		dot := strings.LastIndexByte(dom, '.')
		if l == i || dot <= 0 || len(dom)-dot-1 < 2 || !letters(dom[dot+1:]) {
			continue
		}
		if b.Len() == 0 {
			b.Grow(len(s))
		}
		b.WriteString(s[at : l+1])
		b.WriteString("***")
		at = i
	}
	if at == 0 {
		return s
	}
	b.WriteString(s[at:])
	return b.String()
}

func letters(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}
