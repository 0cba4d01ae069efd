package tongdun

import (
	"fmt"
	"net"
	"sort"
	"time"
	"unicode/utf8"
)

// Decision events TD accepts in decision_event (the seed's enum). Each one is
// also the only key allowed in event_detail for that request.
const (
	EventMarketing         = "marketing"
	EventMarketingCode     = "marketing_code"
	EventMarketingExchange = "marketing_exchange"
	EventSendGift          = "send_gift"
	EventGetCoupon         = "get_coupon"
	EventWithdraw          = "withdraw"
	EventInvite            = "invite"
	EventSMS               = "sms"
	EventBrowse            = "browse"
	EventActivate          = "activate"
	EventLike              = "like"
	EventComment           = "comment"
	EventFavorite          = "favorite"
)

// DecisionEvents lists the decision_event enum in the seed's order.
func DecisionEvents() []string {
	return []string{
		EventMarketing, EventMarketingCode, EventMarketingExchange, EventSendGift,
		EventGetCoupon, EventWithdraw, EventInvite, EventSMS, EventBrowse,
		EventActivate, EventLike, EventComment, EventFavorite,
	}
}

// IsDecisionEvent reports whether s is in the decision_event enum.
func IsDecisionEvent(s string) bool {
	switch s {
	case EventMarketing, EventMarketingCode, EventMarketingExchange, EventSendGift,
		EventGetCoupon, EventWithdraw, EventInvite, EventSMS, EventBrowse,
		EventActivate, EventLike, EventComment, EventFavorite:
		return true
	}
	return false
}

// Results TD answers in result.
const (
	ResultAccept  = "accept"
	ResultReview  = "review"
	ResultDecline = "decline"
)

// TD status codes (the seed's "API 状态码" table).
const (
	CodeOK                 = 200
	CodeNotPurchased       = 301 // 未购买此服务
	CodeTrafficDisabled    = 302 // 流量已被禁用
	CodeTrafficShort       = 303 // 流量不足
	CodeServiceExpired     = 304 // 服务已过期
	CodeDailyCap           = 305 // 日流量已封顶
	CodeFieldEmpty         = 9001
	CodeFieldInvalid       = 9002
	CodeFieldTooLong       = 9003
	CodeTerminalMissing    = 9004
	CodeSystemError        = 9200
	CodeUnknownError       = 9201
	CodeContentTypeInvalid = 9202
)

// MaxValueLen is TD's limit on any string value (9003).
const MaxValueLen = 1024

// Request is one TD risk verification request, exactly as the seed defines
// it. TD takes ONE business event per request: EventDetail holds exactly one
// key, equal to DecisionEvent.
type Request struct {
	Channel       string `json:"channel"`
	SessionID     string `json:"session_id"`
	DecisionEvent string `json:"decision_event"`
	// EventTime is ISO 8601 with milliseconds and an offset, as TD wants it:
	// 2021-10-12T14:20:50.521+07:00. Use FormatEventTime.
	EventTime string `json:"event_time"`
	// AccountID is required once the account exists; TD cannot check that,
	// so ValidateRequest does not either.
	AccountID string `json:"account_id,omitempty"`
	// Terminal is a pointer so that a missing terminal (9001) can be told
	// from one with neither black_box nor ip (9004).
	Terminal *Terminal `json:"terminal"`
	// Ext carries the extension fields agreed with TD.
	Ext map[string]any `json:"ext,omitempty"`
	// EventDetail maps the decision_event name to that event's object.
	EventDetail map[string]map[string]any `json:"event_detail"`
}

// Terminal is the device the event came from; TD wants at least one of the
// two (9004).
type Terminal struct {
	BlackBox string `json:"black_box,omitempty"`
	IP       string `json:"ip,omitempty"`
}

// Response is TD's answer.
type Response struct {
	Code       int      `json:"code"`
	Message    string   `json:"message"`
	SequenceID string   `json:"sequence_id"`
	Score      int      `json:"score"`
	Result     string   `json:"result"`
	Reasons    []Reason `json:"reasons"`
}

// Reason is one decision reason.
type Reason struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// FieldProblem is one violation of TD's own request rules. Code is the TD
// code TD would answer for it (9001-9004), so the agent can report the same
// code TD would and the simulator can answer it.
type FieldProblem struct {
	Field  string `json:"field"`
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

func (p FieldProblem) String() string { return fmt.Sprintf("%s: %s (%d)", p.Field, p.Reason, p.Code) }

// TDMessage renders the problem the way TD words it in message.
func (p FieldProblem) TDMessage() string {
	switch p.Code {
	case CodeFieldEmpty:
		return p.Field + "为空"
	case CodeFieldInvalid:
		return p.Field + "参数校验错误"
	case CodeFieldTooLong:
		return p.Field + "参数长度或者大小超过1024"
	case CodeTerminalMissing:
		return "black_box或ip至少存在一个"
	}
	return p.Field + " " + p.Reason
}

// EventTimeLayout formats a time the way TD wants event_time.
const EventTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// FormatEventTime formats t for event_time.
func FormatEventTime(t time.Time) string { return t.Format(EventTimeLayout) }

// ValidateRequest applies TD's own request rules (codes 9001-9004) so that the
// agent can reject a request locally, with the code TD would give, before
// spending TD traffic on it. Problems come in a stable order: the first one is
// what TD would answer.
//
// 9001 required field empty: channel, session_id, decision_event, event_time,
// terminal, event_detail (account_id and ext are conditional, TD cannot check
// them). 9002 format: decision_event enum, event_time ISO 8601, terminal.ip an
// IP address, event_detail holding exactly the key named by decision_event
// (one event per request). 9003: any string value, anywhere, longer than 1024
// characters. 9004: black_box and ip both empty.
func ValidateRequest(r *Request) []FieldProblem {
	if r == nil {
		return []FieldProblem{{Field: "request", Code: CodeFieldEmpty, Reason: "empty request"}}
	}
	var ps []FieldProblem
	empty := func(field, v string) {
		if v == "" {
			ps = append(ps, FieldProblem{Field: field, Code: CodeFieldEmpty, Reason: "required field is empty"})
		}
	}
	empty("channel", r.Channel)
	empty("session_id", r.SessionID)
	empty("decision_event", r.DecisionEvent)
	empty("event_time", r.EventTime)
	if r.Terminal == nil {
		ps = append(ps, FieldProblem{Field: "terminal", Code: CodeFieldEmpty, Reason: "required field is empty"})
	}
	if len(r.EventDetail) == 0 {
		ps = append(ps, FieldProblem{Field: "event_detail", Code: CodeFieldEmpty, Reason: "required field is empty"})
	}

	if r.Terminal != nil && r.Terminal.BlackBox == "" && r.Terminal.IP == "" {
		ps = append(ps, FieldProblem{Field: "terminal", Code: CodeTerminalMissing, Reason: "black_box or ip must be present"})
	}

	if r.DecisionEvent != "" && !IsDecisionEvent(r.DecisionEvent) {
		ps = append(ps, FieldProblem{Field: "decision_event", Code: CodeFieldInvalid, Reason: "not one of the decision_event values"})
	}
	if r.EventTime != "" && !validEventTime(r.EventTime) {
		ps = append(ps, FieldProblem{Field: "event_time", Code: CodeFieldInvalid, Reason: "not ISO 8601 YYYY-MM-DDTHH:mm:ss.sss with offset"})
	}
	if r.Terminal != nil && r.Terminal.IP != "" && net.ParseIP(r.Terminal.IP) == nil {
		ps = append(ps, FieldProblem{Field: "terminal.ip", Code: CodeFieldInvalid, Reason: "not an IP address"})
	}
	if len(r.EventDetail) > 0 && IsDecisionEvent(r.DecisionEvent) {
		if _, ok := r.EventDetail[r.DecisionEvent]; !ok || len(r.EventDetail) != 1 {
			ps = append(ps, FieldProblem{Field: "event_detail", Code: CodeFieldInvalid,
				Reason: fmt.Sprintf("must hold exactly one object, named %q like decision_event", r.DecisionEvent)})
		} else if r.EventDetail[r.DecisionEvent] == nil {
			ps = append(ps, FieldProblem{Field: "event_detail." + r.DecisionEvent, Code: CodeFieldEmpty, Reason: "required field is empty"})
		}
	}

	long := func(field, v string) {
		if utf8.RuneCountInString(v) > MaxValueLen {
			ps = append(ps, FieldProblem{Field: field, Code: CodeFieldTooLong, Reason: "longer than 1024 characters"})
		}
	}
	long("channel", r.Channel)
	long("session_id", r.SessionID)
	long("decision_event", r.DecisionEvent)
	long("event_time", r.EventTime)
	long("account_id", r.AccountID)
	if r.Terminal != nil {
		long("terminal.black_box", r.Terminal.BlackBox)
		long("terminal.ip", r.Terminal.IP)
	}
	walkStrings("ext", r.Ext, long)
	for _, k := range sortedKeys(r.EventDetail) {
		walkStrings("event_detail."+k, r.EventDetail[k], long)
	}
	return ps
}

// validEventTime checks the seed's YYYY-MM-DDTHH:mm:ss.sssZ shape (Z being
// "Z" or an offset) by hand: time.Parse alone would also accept other
// fraction lengths, which TD's format does not allow.
func validEventTime(s string) bool {
	const shape = "dddd-dd-ddTdd:dd:dd.ddd"
	if len(s) != len(shape)+1 && len(s) != len(shape)+6 {
		return false
	}
	for i := 0; i < len(shape); i++ {
		if shape[i] == 'd' {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		} else if s[i] != shape[i] {
			return false
		}
	}
	zone := s[len(shape):]
	if zone != "Z" {
		if len(zone) != 6 || (zone[0] != '+' && zone[0] != '-') || zone[3] != ':' {
			return false
		}
	}
	// The shape is right; Parse checks the ranges (month 13, hour 25...).
	_, err := time.Parse(time.RFC3339Nano, s)
	return err == nil
}

// walkStrings calls fn on every string value under v, in a
// stable order, so nested ext/event_detail values get TD's 1024 limit too.
func walkStrings(path string, v any, fn func(field, v string)) {
	switch x := v.(type) {
	case string:
		fn(path, x)
	case map[string]any:
		for _, k := range sortedKeys(x) {
			walkStrings(path+"."+k, x[k], fn)
		}
	case []any:
		for i, e := range x {
			walkStrings(fmt.Sprintf("%s[%d]", path, i), e, fn)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
