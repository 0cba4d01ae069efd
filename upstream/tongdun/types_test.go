package tongdun

import (
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
			ps := ValidateRequest(r)
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

func TestValidateRequestNil(t *testing.T) {
	if ps := ValidateRequest(nil); len(ps) != 1 || ps[0].Code != CodeFieldEmpty {
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
