package decision

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/outpost-agent/outpost/upstream/tongdun"
)

// parseFast decodes the common shape of a decision request in one pass
// over the bytes: every key one of Request's own (spelt exactly), each
// once, every value of its field's type, strings without escapes, no null,
// nothing after the object but white space. It gives up (ok false) on
// anything else, and ParseRequest then decodes with encoding/json, which
// gives the answer, or the error, it always gave. So parseFast only has to
// be right about what it accepts: that it is a valid document that
// encoding/json decodes, without error, to the same Request
// (TestParseRequestSameAsBefore and FuzzRequestPaths compare them).
//
// ext and event_detail objects that are not empty are decoded by
// encoding/json itself, so their contents keep its exact semantics.
func parseFast(body []byte) (*Request, bool) {
	p := fastParser{b: body}
	r := &Request{}
	if !p.byte('{') {
		return nil, false
	}
	// All strings of the request share one copy of the body.
	p.s = string(body)
	if !p.object(func(key string) bool {
		switch key {
		case "id":
			return p.str(&r.ID)
		case "channel":
			return p.str(&r.Channel)
		case "session_id":
			return p.str(&r.SessionID)
		case "decision_event":
			return p.str(&r.DecisionEvent)
		case "event_time":
			return p.str(&r.EventTime)
		case "account_id":
			return p.str(&r.AccountID)
		case "terminal":
			t := &tongdun.Terminal{}
			r.Terminal = t
			return p.byte('{') && p.object(func(key string) bool {
				switch key {
				case "black_box":
					return p.str(&t.BlackBox)
				case "ip":
					return p.str(&t.IP)
				}
				return false
			}, 2)
		case "ext":
			return p.anyObject(&r.Ext)
		case "event_detail":
			ed := map[string]map[string]any{}
			r.EventDetail = ed
			return p.byte('{') && p.object(func(key string) bool {
				if _, dup := ed[key]; dup {
					return false
				}
				var m map[string]any
				if !p.anyObject(&m) {
					return false
				}
				ed[key] = m
				return true
			}, -1)
		case "amount":
			var f float64
			r.Amount = &f
			return p.float(&f)
		case "card":
			c := &Card{}
			r.Card = c
			return p.byte('{') && p.object(func(key string) bool {
				switch key {
				case "card_no":
					return p.str(&c.CardNo)
				case "cert_id":
					return p.str(&c.CertID)
				case "mobile":
					return p.str(&c.Mobile)
				}
				return false
			}, 3)
		case "transaction":
			t := &Transaction{}
			r.Transaction = t
			return p.byte('{') && p.object(func(key string) bool {
				switch key {
				case "date":
					return p.str(&t.Date)
				case "amount":
					return p.float(&t.Amount)
				case "location":
					return p.str(&t.Location)
				}
				return false
			}, 3)
		case "credit":
			c := &Credit{}
			r.Credit = c
			return p.byte('{') && p.object(func(key string) bool {
				switch key {
				case "mode":
					return p.str(&c.Mode)
				case "line":
					return p.float(&c.Line)
				case "outstanding":
					return p.float(&c.Outstanding)
				case "overdue_days":
					return p.int(&c.OverdueDays)
				case "apr":
					return p.float(&c.APR)
				case "valid_until":
					return p.str(&c.ValidUntil)
				}
				return false
			}, 6)
		}
		return false
	}, 13) {
		return nil, false
	}
	p.space()
	if p.i != len(p.b) {
		return nil, false
	}
	return r, true
}

type fastParser struct {
	b []byte
	s string // string(b)
	i int
}

func (p *fastParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// byte consumes c after white space.
func (p *fastParser) byte(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// object reads the members of an object whose '{' has been read, calling
// field for each key with the reader on the value. A key seen twice gives
// up; maxKeys (the number of distinct keys field accepts, -1 for any)
// bounds the duplicate check.
func (p *fastParser) object(field func(key string) bool, maxKeys int) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return true
	}
	var seen [16]string
	n := 0
	for {
		key, ok := p.raw()
		if !ok || !p.byte(':') {
			return false
		}
		if maxKeys >= 0 {
			for _, k := range seen[:n] {
				if k == key {
					return false
				}
			}
			if n == len(seen) || n == maxKeys {
				return false
			}
			seen[n] = key
			n++
		}
		if !field(key) {
			return false
		}
		p.space()
		if p.i >= len(p.b) {
			return false
		}
		c := p.b[p.i]
		p.i++
		switch c {
		case ',':
			continue
		case '}':
			return true
		}
		return false
	}
}

// raw reads a string without escapes or control characters, in valid
// UTF-8: encoding/json takes its bytes as they are.
func (p *fastParser) raw() (string, bool) {
	p.space()
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return "", false
	}
	start := p.i + 1
	ascii := true
	for j := start; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			if !ascii && !utf8.Valid(p.b[start:j]) {
				return "", false
			}
			p.i = j + 1
			return p.s[start:j], true
		case c == '\\' || c < 0x20:
			return "", false
		case c >= 0x80:
			ascii = false
		}
	}
	return "", false
}

func (p *fastParser) str(dst *string) bool {
	s, ok := p.raw()
	*dst = s
	return ok
}

// number reads a JSON number and returns its text.
func (p *fastParser) number() (string, bool) {
	p.space()
	b, start := p.b, p.i
	j := start
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && b[j] >= '1' && b[j] <= '9':
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
	default:
		return "", false
	}
	if j < len(b) && b[j] == '.' {
		j++
		k := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j == k {
			return "", false
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		k := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j == k {
			return "", false
		}
	}
	p.i = j
	return p.s[start:j], true
}

// float: as encoding/json decodes a number into a float64.
func (p *fastParser) float(dst *float64) bool {
	s, ok := p.number()
	if !ok {
		return false
	}
	f, err := strconv.ParseFloat(s, 64)
	*dst = f
	return err == nil
}

// int: as encoding/json decodes a number into an int.
func (p *fastParser) int(dst *int) bool {
	s, ok := p.number()
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || int64(int(n)) != n {
		return false
	}
	*dst = int(n)
	return true
}

// maxAnyDepth bounds the nesting of an object handed to encoding/json, so
// that its own depth limit (counted from the whole body) is never the
// difference between the two paths.
const maxAnyDepth = 64

// anyObject reads an object into a map[string]any: {} by hand, anything
// else by encoding/json on exactly the value's bytes.
func (p *fastParser) anyObject(dst *map[string]any) bool {
	p.space()
	start := p.i
	if !p.byte('{') {
		return false
	}
	p.space()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		*dst = map[string]any{}
		return true
	}
	// Find the end of the value: strings skipped, brackets counted. What
	// is not JSON, encoding/json refuses below.
	depth := 1
	j := p.i
	for depth > 0 {
		if j >= len(p.b) {
			return false
		}
		switch p.b[j] {
		case '"':
			for j++; ; j++ {
				if j >= len(p.b) {
					return false
				}
				if p.b[j] == '\\' {
					j++
				} else if p.b[j] == '"' {
					break
				}
			}
		case '{', '[':
			depth++
			if depth > maxAnyDepth {
				return false
			}
		case '}', ']':
			depth--
		}
		j++
	}
	var m map[string]any
	if json.Unmarshal(p.b[start:j], &m) != nil || m == nil {
		return false
	}
	*dst = m
	p.i = j
	return true
}
