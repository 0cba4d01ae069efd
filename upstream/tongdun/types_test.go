package tongdun

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func okRequest() *Request {
	return &Request{
		Channel:       "test",
		SessionID:     "abc0123456789",
		DecisionEvent: EventMarketing,
		EventTime:     "2021-10-12T14:20:50.521+07:00",
		AccountID:     "123456789",
		Terminal:      &Terminal{BlackBox: "aGPH1658920283672ropYaFxT7", IP: "210.20.10.33"},
		Ext:           map[string]any{"ext_book_id": "LFOUHOFHOHFNOUH", "ext_book_num": 10},
		EventDetail: map[string]map[string]any{EventMarketing: {
			"marketing_id": "X08938", "open_id": "o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "open_id_type": "wechat",
			"begin_time": 1596358039000, "expire_time": 1616358039000,
		}},
	}
}

func TestValidateRequest(t *testing.T) {
	long := strings.Repeat("x", MaxValueLen+1)
	exact := strings.Repeat("字", MaxValueLen) // 1024 characters, 3072 bytes: fine
	tests := []struct {
		name  string
		mod   func(r *Request)
		field string
		code  int // 0: valid
	}{
		{"seed example", func(r *Request) {}, "", 0},
		{"no account_id (account not created yet)", func(r *Request) { r.AccountID = "" }, "", 0},
		{"no ext", func(r *Request) { r.Ext = nil }, "", 0},
		{"only black_box", func(r *Request) { r.Terminal.IP = "" }, "", 0},
		{"only ip (v6)", func(r *Request) { r.Terminal = &Terminal{IP: "2001:db8::1"} }, "", 0},
		{"UTC Z time", func(r *Request) { r.EventTime = "2021-10-12T07:20:50.521Z" }, "", 0},
		{"1024 characters is allowed", func(r *Request) { r.SessionID = exact }, "", 0},
		{"every event of the enum", func(r *Request) {
			r.DecisionEvent = EventFavorite
			r.EventDetail = map[string]map[string]any{EventFavorite: {"item": "1"}}
		}, "", 0},

		{"9001 channel", func(r *Request) { r.Channel = "" }, "channel", CodeFieldEmpty},
		{"9001 session_id", func(r *Request) { r.SessionID = "" }, "session_id", CodeFieldEmpty},
		{"9001 decision_event", func(r *Request) { r.DecisionEvent = "" }, "decision_event", CodeFieldEmpty},
		{"9001 event_time", func(r *Request) { r.EventTime = "" }, "event_time", CodeFieldEmpty},
		{"9001 terminal", func(r *Request) { r.Terminal = nil }, "terminal", CodeFieldEmpty},
		{"9001 event_detail", func(r *Request) { r.EventDetail = nil }, "event_detail", CodeFieldEmpty},
		{"9001 event_detail null object", func(r *Request) {
			r.EventDetail = map[string]map[string]any{EventMarketing: nil}
		}, "event_detail.marketing", CodeFieldEmpty},

		{"9002 decision_event not in enum", func(r *Request) { r.DecisionEvent = "lottery" }, "decision_event", CodeFieldInvalid},
		{"9002 decision_event wrong case", func(r *Request) { r.DecisionEvent = "Marketing" }, "decision_event", CodeFieldInvalid},
		{"9002 event_time without offset", func(r *Request) { r.EventTime = "2021-10-12T14:20:50.521" }, "event_time", CodeFieldInvalid},
		{"9002 event_time without millis", func(r *Request) { r.EventTime = "2021-10-12T14:20:50+07:00" }, "event_time", CodeFieldInvalid},
		{"9002 event_time epoch", func(r *Request) { r.EventTime = "1634023250521" }, "event_time", CodeFieldInvalid},
		{"9002 event_time month 13", func(r *Request) { r.EventTime = "2021-13-12T14:20:50.521+07:00" }, "event_time", CodeFieldInvalid},
		{"9002 event_time space", func(r *Request) { r.EventTime = "2021-10-12 14:20:50.521+07:00" }, "event_time", CodeFieldInvalid},
		{"9002 ip not an address", func(r *Request) { r.Terminal.IP = "210.20.10" }, "terminal.ip", CodeFieldInvalid},
		{"9002 event_detail for another event", func(r *Request) {
			r.EventDetail = map[string]map[string]any{EventWithdraw: {"amount": 1}}
		}, "event_detail", CodeFieldInvalid},
		{"9002 event_detail with two events", func(r *Request) {
			r.EventDetail[EventWithdraw] = map[string]any{"amount": 1}
		}, "event_detail", CodeFieldInvalid},

		{"9003 top-level value", func(r *Request) { r.AccountID = long }, "account_id", CodeFieldTooLong},
		{"9003 black_box", func(r *Request) { r.Terminal.BlackBox = long }, "terminal.black_box", CodeFieldTooLong},
		{"9003 ext value", func(r *Request) { r.Ext["ext_note"] = long }, "ext.ext_note", CodeFieldTooLong},
		{"9003 nested event_detail value", func(r *Request) {
			r.EventDetail[EventMarketing]["items"] = []any{"ok", map[string]any{"name": long}}
		}, "event_detail.marketing.items[1].name", CodeFieldTooLong},

		{"9004 neither black_box nor ip", func(r *Request) { r.Terminal = &Terminal{} }, "terminal", CodeTerminalMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := okRequest()
			tt.mod(r)
			ps := ValidateRequest(r, V2)
			// v3 is v2 and more: what v2 refuses of a v2 request, v3
			// refuses too, with the same code on the same field.
			if ps3 := ValidateRequest(r, V3); !reflect.DeepEqual(codes(ps), codes(ps3)) {
				t.Errorf("v2 and v3 differ: %v / %v", ps, ps3)
			}
			if tt.code == 0 {
				if len(ps) != 0 {
					t.Fatalf("want valid, got %v", ps)
				}
				return
			}
			if len(ps) == 0 {
				t.Fatalf("want %d on %s, got valid", tt.code, tt.field)
			}
			if ps[0].Code != tt.code || ps[0].Field != tt.field {
				t.Fatalf("first problem = %v, want %d on %s (all: %v)", ps[0], tt.code, tt.field, ps)
			}
		})
	}
}

// codes is each problem's field and code.
func codes(ps []FieldProblem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%s:%d", p.Field, p.Code))
	}
	return out
}

// v3Request is a v3 request: the lookup event with an account object.
func v3Request() *Request {
	r := okRequest()
	r.DecisionEvent = EventLookup
	r.EventDetail = map[string]map[string]any{
		EventLookup: {"lookup_id": "L1"},
		DetailAccount: {
			"account_id": "123456789", "register_time": "2021-10-12T14:20:50.521+07:00",
			"phone": map[string]any{"country_code": float64(86), "phone_number": "18700001111"},
			"email": "user@example.com",
		},
	}
	return r
}

// TestValidateRequestV3: lookup and the account object are v3's; v2 refuses
// them with 9002 and says v3 would take them (Since).
func TestValidateRequestV3(t *testing.T) {
	long := strings.Repeat("x", MaxValueLen+1)
	type want struct {
		field string
		code  int // 0: valid
		since APIVersion
	}
	tests := []struct {
		name   string
		mod    func(r *Request)
		v2, v3 want
	}{
		{"lookup with an account", func(r *Request) {}, want{"decision_event", CodeFieldInvalid, V3}, want{}},
		{"lookup alone", func(r *Request) { delete(r.EventDetail, DetailAccount) }, want{"decision_event", CodeFieldInvalid, V3}, want{}},
		{"lookup with an empty object", func(r *Request) { r.EventDetail = map[string]map[string]any{EventLookup: {}} }, want{"decision_event", CodeFieldInvalid, V3}, want{}},
		{"withdraw with an account", func(r *Request) {
			r.DecisionEvent = EventWithdraw
			r.EventDetail[EventWithdraw] = map[string]any{}
			delete(r.EventDetail, EventLookup)
		}, want{"event_detail.account", CodeFieldInvalid, V3}, want{}},
		{"account with account_id only", func(r *Request) {
			r.EventDetail[DetailAccount] = map[string]any{"account_id": "a-1"}
		}, want{"decision_event", CodeFieldInvalid, V3}, want{}},
		{"account with nulls for the optional fields", func(r *Request) {
			r.EventDetail[DetailAccount] = map[string]any{"account_id": "a-1", "phone": nil, "email": nil, "register_time": nil}
		}, want{"decision_event", CodeFieldInvalid, V3}, want{}},
		{"phone as json.Number (a UseNumber decoder)", func(r *Request) {
			r.EventDetail[DetailAccount]["phone"] = map[string]any{"country_code": json.Number("86"), "phone_number": "18700001111"}
		}, want{"decision_event", CodeFieldInvalid, V3}, want{}},

		{"lookup without its object", func(r *Request) { delete(r.EventDetail, EventLookup) },
			want{"decision_event", CodeFieldInvalid, V3}, want{"event_detail", CodeFieldInvalid, ""}},
		{"withdraw with an account and a lookup", func(r *Request) {
			r.DecisionEvent = EventWithdraw
			r.EventDetail[EventWithdraw] = map[string]any{}
		}, want{"event_detail", CodeFieldInvalid, ""}, want{"event_detail", CodeFieldInvalid, ""}},
		{"an account alone", func(r *Request) {
			r.DecisionEvent = EventWithdraw
			delete(r.EventDetail, EventLookup)
		}, want{"event_detail", CodeFieldInvalid, ""}, want{"event_detail", CodeFieldInvalid, ""}},
		{"account null", func(r *Request) { r.EventDetail[DetailAccount] = nil },
			want{"decision_event", CodeFieldInvalid, V3}, want{"event_detail.account", CodeFieldEmpty, ""}},
		{"account without account_id", func(r *Request) { delete(r.EventDetail[DetailAccount], "account_id") },
			want{"decision_event", CodeFieldInvalid, V3}, want{"event_detail.account.account_id", CodeFieldEmpty, ""}},
		{"account_id empty", func(r *Request) { r.EventDetail[DetailAccount]["account_id"] = "" },
			want{"decision_event", CodeFieldInvalid, V3}, want{"event_detail.account.account_id", CodeFieldEmpty, ""}},
		{"account_id a number", func(r *Request) { r.EventDetail[DetailAccount]["account_id"] = float64(123456789) },
			want{"decision_event", CodeFieldInvalid, V3}, want{"event_detail.account.account_id", CodeFieldInvalid, ""}},
		{"register_time without millis", func(r *Request) { r.EventDetail[DetailAccount]["register_time"] = "2021-10-12T14:20:50+07:00" },
			want{"decision_event", CodeFieldInvalid, V3}, want{"event_detail.account.register_time", CodeFieldInvalid, ""}},
		{"register_time epoch millis", func(r *Request) { r.EventDetail[DetailAccount]["register_time"] = float64(1634023250521) },
			want{"decision_event", CodeFieldInvalid, V3}, want{"event_detail.account.register_time", CodeFieldInvalid, ""}},
		{"phone a string", func(r *Request) { r.EventDetail[DetailAccount]["phone"] = "18700001111" },
			want{"decision_event", CodeFieldInvalid, V3}, want{"event_detail.account.phone", CodeFieldInvalid, ""}},
		{"country_code with +", func(r *Request) {
			r.EventDetail[DetailAccount]["phone"] = map[string]any{"country_code": "+86", "phone_number": "18700001111"}
		}, want{"decision_event", CodeFieldInvalid, V3}, want{"event_detail.account.phone.country_code", CodeFieldInvalid, ""}},
		{"country_code a fraction", func(r *Request) {
			r.EventDetail[DetailAccount]["phone"] = map[string]any{"country_code": 8.6}
		}, want{"decision_event", CodeFieldInvalid, V3}, want{"event_detail.account.phone.country_code", CodeFieldInvalid, ""}},
		{"phone_number with +86", func(r *Request) {
			r.EventDetail[DetailAccount]["phone"] = map[string]any{"country_code": float64(86), "phone_number": "+8618700001111"}
		}, want{"decision_event", CodeFieldInvalid, V3}, want{"event_detail.account.phone.phone_number", CodeFieldInvalid, ""}},
		{"phone with another field", func(r *Request) {
			r.EventDetail[DetailAccount]["phone"] = map[string]any{"country_code": float64(86), "verified": true}
		}, want{"decision_event", CodeFieldInvalid, V3}, want{"event_detail.account.phone.verified", CodeFieldInvalid, ""}},
		{"email a list", func(r *Request) { r.EventDetail[DetailAccount]["email"] = []any{"a@b.c"} },
			want{"decision_event", CodeFieldInvalid, V3}, want{"event_detail.account.email", CodeFieldInvalid, ""}},
		{"an account field TD does not document", func(r *Request) { r.EventDetail[DetailAccount]["account_level"] = "gold" },
			want{"decision_event", CodeFieldInvalid, V3}, want{"event_detail.account.account_level", CodeFieldInvalid, ""}},
		{"1025 characters in the account", func(r *Request) { r.EventDetail[DetailAccount]["email"] = long },
			want{"decision_event", CodeFieldInvalid, V3}, want{"event_detail.account.email", CodeFieldTooLong, ""}},
		{"an event v3 does not know either", func(r *Request) { r.DecisionEvent = "search" },
			want{"decision_event", CodeFieldInvalid, ""}, want{"decision_event", CodeFieldInvalid, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				v    APIVersion
				want want
			}{{V2, tt.v2}, {V3, tt.v3}, {"", tt.v2}} {
				r := v3Request()
				tt.mod(r)
				ps := ValidateRequest(r, c.v)
				if c.want.code == 0 {
					if len(ps) != 0 {
						t.Errorf("%s: want valid, got %v", c.v, ps)
					}
					continue
				}
				if len(ps) == 0 {
					t.Errorf("%s: want %d on %s, got valid", c.v, c.want.code, c.want.field)
					continue
				}
				if p := ps[0]; p.Code != c.want.code || p.Field != c.want.field || p.Since != c.want.since {
					t.Errorf("%s: first problem = %v (since %q), want %d on %s (since %q); all: %v",
						c.v, p, p.Since, c.want.code, c.want.field, c.want.since, ps)
				}
			}
		})
	}
}

func TestAPIVersion(t *testing.T) {
	for in, want := range map[string]APIVersion{"": V2, "v2": V2, "v3": V3} {
		if v, err := ParseAPIVersion(in); err != nil || v != want {
			t.Errorf("ParseAPIVersion(%q) = %q, %v; want %q", in, v, err, want)
		}
	}
	for _, in := range []string{"V3", "3", "v4", "v2 "} {
		if _, err := ParseAPIVersion(in); err == nil {
			t.Errorf("ParseAPIVersion(%q) accepted", in)
		}
	}
	v2, v3 := V2.DecisionEvents(), V3.DecisionEvents()
	if len(v2) != 13 || slices.Contains(v2, EventLookup) || !slices.Equal(DecisionEvents(), v2) {
		t.Errorf("v2 events: %v", v2)
	}
	// TD's v3 enum: v2's, with lookup between activate and like.
	i := slices.Index(v2, EventActivate) + 1
	if want := slices.Insert(slices.Clone(v2), i, EventLookup); !slices.Equal(v3, want) {
		t.Errorf("v3 events: %v, want %v", v3, want)
	}
	for _, e := range v3 {
		if !V3.IsDecisionEvent(e) || V2.IsDecisionEvent(e) != (e != EventLookup) || IsDecisionEvent(e) != V2.IsDecisionEvent(e) {
			t.Errorf("IsDecisionEvent(%q) is wrong", e)
		}
	}
}

func TestValidateRequestNil(t *testing.T) {
	if ps := ValidateRequest(nil, V2); len(ps) != 1 || ps[0].Code != CodeFieldEmpty {
		t.Fatalf("nil request: %v", ps)
	}
}

func TestFormatEventTimeValidates(t *testing.T) {
	at := time.Date(2026, 11, 23, 15, 4, 5, 0, time.FixedZone("", 7*3600))
	s := FormatEventTime(at)
	if s != "2026-11-23T15:04:05.000+07:00" {
		t.Fatalf("FormatEventTime = %q", s)
	}
	if !validEventTime(s) || !validEventTime(FormatEventTime(at.UTC())) {
		t.Fatalf("formatted times must validate")
	}
}

func TestNextShanghaiDay(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	tests := []struct {
		now, want time.Time
	}{
		{time.Date(2026, 11, 23, 15, 0, 0, 0, cst), time.Date(2026, 11, 24, 0, 0, 0, 0, cst)},
		{time.Date(2026, 11, 23, 23, 59, 59, 0, cst), time.Date(2026, 11, 24, 0, 0, 0, 0, cst)},
		{time.Date(2026, 11, 23, 0, 0, 0, 0, cst), time.Date(2026, 11, 24, 0, 0, 0, 0, cst)},
		// Just after midnight UTC is 08:00 in Shanghai, same day.
		{time.Date(2026, 11, 23, 0, 0, 1, 0, time.UTC), time.Date(2026, 11, 24, 0, 0, 0, 0, cst)},
		// 16:00 UTC is already the next day in Shanghai.
		{time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC), time.Date(2026, 11, 25, 0, 0, 0, 0, cst)},
		{time.Date(2026, 12, 31, 20, 0, 0, 0, cst), time.Date(2027, 1, 1, 0, 0, 0, 0, cst)},
	}
	for _, tt := range tests {
		if got := NextShanghaiDay(tt.now); !got.Equal(tt.want) {
			t.Errorf("NextShanghaiDay(%s) = %s, want %s", tt.now, got, tt.want)
		}
	}
}
