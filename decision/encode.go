package decision

import (
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/outpost-agent/outpost/redact"
)

// The decision path records every request masked: maskedInput. It used to
// be json.Marshal of the request then redact.JSON over the result, which
// checks and rewrites the document a second time. appendMasked writes the
// same bytes in one pass for the request's fixed fields; whatever it is not
// sure to write exactly as that pair would (a string that needs escaping,
// a non-finite number, a key redact would mask that it does not expect) it
// leaves to the pair: TestMaskedInputSameAsBefore and
// FuzzRequestPaths compare the two.

// stringKeys are the request's string-valued fields.
var stringKeys = []string{"id", "channel", "session_id", "decision_event", "event_time", "account_id",
	"black_box", "ip", "card_no", "cert_id", "mobile", "date", "location", "mode", "valid_until"}

// maskKey: the string-valued fields whose values redact masks whole. They
// are read from redact.Sensitive, so the list stays redact's.
var maskKey = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range stringKeys {
		m[k] = redact.Sensitive(k)
	}
	return m
}()

// maskedFast: appendMasked may be used. If redact ever masked a container
// or a numeric field of the request (whose values it would rewrite in ways
// appendMasked does not), or took a field for a name, every request takes
// the marshal-then-redact path.
var maskedFast = func() bool {
	for _, k := range []string{"terminal", "ext", "event_detail", "amount", "card", "transaction", "credit",
		"line", "outstanding", "overdue_days", "apr"} {
		if redact.Sensitive(k) || redact.NameKey(k) {
			return false
		}
	}
	for _, k := range stringKeys {
		if redact.NameKey(k) {
			return false
		}
	}
	return true
}()

// Masks of the fixed string fields, precomputed.
var (
	mkID, mkChannel, mkSession, mkEvent, mkTime, mkAccount = maskKey["id"], maskKey["channel"], maskKey["session_id"], maskKey["decision_event"], maskKey["event_time"], maskKey["account_id"]
	mkBlackBox, mkIP, mkCardNo, mkCertID, mkMobile         = maskKey["black_box"], maskKey["ip"], maskKey["card_no"], maskKey["cert_id"], maskKey["mobile"]
	mkDate, mkLocation, mkMode, mkValidUntil               = maskKey["date"], maskKey["location"], maskKey["mode"], maskKey["valid_until"]
)

// maskedInput is the request as recorded: personal fields masked. It is
// redact.JSON(json.Marshal(req)), or nil when the request cannot be
// marshalled.
func maskedInput(req *Request) json.RawMessage {
	if maskedFast {
		if b, ok := appendMasked(make([]byte, 0, 512), req); ok {
			return b
		}
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil
	}
	return redact.JSON(b)
}

// appendMasked appends the masked request; ok false: use the slow path.
func appendMasked(b []byte, r *Request) (_ []byte, ok bool) {
	b = append(b, '{')
	if r.ID != "" {
		if b, ok = appendField(b, `"id":`, r.ID, mkID); !ok {
			return b, false
		}
		b = append(b, ',')
	}
	if b, ok = appendField(b, `"channel":`, r.Channel, mkChannel); !ok {
		return b, false
	}
	if b, ok = appendField(b, `,"session_id":`, r.SessionID, mkSession); !ok {
		return b, false
	}
	if b, ok = appendField(b, `,"decision_event":`, r.DecisionEvent, mkEvent); !ok {
		return b, false
	}
	if b, ok = appendField(b, `,"event_time":`, r.EventTime, mkTime); !ok {
		return b, false
	}
	if r.AccountID != "" {
		if b, ok = appendField(b, `,"account_id":`, r.AccountID, mkAccount); !ok {
			return b, false
		}
	}
	b = append(b, `,"terminal":`...)
	if t := r.Terminal; t == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '{')
		if t.BlackBox != "" {
			if b, ok = appendField(b, `"black_box":`, t.BlackBox, mkBlackBox); !ok {
				return b, false
			}
			if t.IP != "" {
				b = append(b, ',')
			}
		}
		if t.IP != "" {
			if b, ok = appendField(b, `"ip":`, t.IP, mkIP); !ok {
				return b, false
			}
		}
		b = append(b, '}')
	}
	if len(r.Ext) > 0 {
		// Free-form: what encoding/json and redact make of it.
		x, err := json.Marshal(r.Ext)
		if err != nil {
			return b, false
		}
		b = append(b, `,"ext":`...)
		b = append(b, redact.JSON(x)...)
	}
	b = append(b, `,"event_detail":`...)
	if b, ok = appendEventDetail(b, r.EventDetail); !ok {
		return b, false
	}
	if r.Amount != nil {
		b = append(b, `,"amount":`...)
		if b, ok = appendFloat(b, *r.Amount); !ok {
			return b, false
		}
	}
	if c := r.Card; c != nil {
		if b, ok = appendField(b, `,"card":{"card_no":`, c.CardNo, mkCardNo); !ok {
			return b, false
		}
		if b, ok = appendField(b, `,"cert_id":`, c.CertID, mkCertID); !ok {
			return b, false
		}
		if b, ok = appendField(b, `,"mobile":`, c.Mobile, mkMobile); !ok {
			return b, false
		}
		b = append(b, '}')
	}
	if t := r.Transaction; t != nil {
		if b, ok = appendField(b, `,"transaction":{"date":`, t.Date, mkDate); !ok {
			return b, false
		}
		b = append(b, `,"amount":`...)
		if b, ok = appendFloat(b, t.Amount); !ok {
			return b, false
		}
		if t.Location != "" {
			if b, ok = appendField(b, `,"location":`, t.Location, mkLocation); !ok {
				return b, false
			}
		}
		b = append(b, '}')
	}
	if c := r.Credit; c != nil {
		if b, ok = appendField(b, `,"credit":{"mode":`, c.Mode, mkMode); !ok {
			return b, false
		}
		b = append(b, `,"line":`...)
		if b, ok = appendFloat(b, c.Line); !ok {
			return b, false
		}
		b = append(b, `,"outstanding":`...)
		if b, ok = appendFloat(b, c.Outstanding); !ok {
			return b, false
		}
		b = append(b, `,"overdue_days":`...)
		b = strconv.AppendInt(b, int64(c.OverdueDays), 10)
		b = append(b, `,"apr":`...)
		if b, ok = appendFloat(b, c.APR); !ok {
			return b, false
		}
		if c.ValidUntil != "" {
			if b, ok = appendField(b, `,"valid_until":`, c.ValidUntil, mkValidUntil); !ok {
				return b, false
			}
		}
		b = append(b, '}')
	}
	return append(b, '}'), true
}

// appendEventDetail: the common shapes ({"withdraw":{}}) by hand, any other
// through encoding/json and redact.
func appendEventDetail(b []byte, ed map[string]map[string]any) ([]byte, bool) {
	if ed == nil {
		return append(b, "null"...), true
	}
	if len(ed) == 1 {
		for k, v := range ed {
			if len(v) == 0 && plainString(k) {
				b = append(b, '{', '"')
				b = append(b, k...)
				b = append(b, '"', ':')
				if v == nil {
					b = append(b, "null"...)
				} else {
					b = append(b, '{', '}')
				}
				return append(b, '}'), true
			}
		}
	}
	x, err := json.Marshal(ed)
	if err != nil {
		return b, false
	}
	return append(b, redact.JSON(x)...), true
}

// appendField appends key (with its leading comma and colon) and the
// value as redact leaves it: masked whole under a sensitive key, by its
// shape otherwise.
func appendField(b []byte, key, v string, mask bool) ([]byte, bool) {
	b = append(b, key...)
	if mask {
		// encoding/json writes valid UTF-8 so that it reads back as it
		// was: the mask shows its length.
		if !utf8.ValidString(v) {
			return b, false
		}
		v = redact.Mask(v)
	} else {
		v = redact.Text(v)
	}
	if !plainString(v) {
		return b, false
	}
	b = append(b, '"')
	b = append(b, v...)
	return append(b, '"'), true
}

// plainString: encoding/json writes s as it is, between quotes (printable
// ASCII, none of " \ < > &).
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// appendFloat writes f as encoding/json does; a non-finite f (which
// encoding/json refuses), or one redact would mask (which validation
// refuses: amounts are at most MaxAmount), is left to the slow path.
func appendFloat(b []byte, f float64) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) || redact.MasksNumber(f) {
		return b, false
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, true
}
