package tongdun

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"
)

// APIVersion is the version of TD's marketing anti-fraud risk verification
// API the agent speaks: the one TD assigned with the URL (…/fraud/promo/v2
// or …/fraud/promo/v3).
//
// v2 is the seed (tongdun-risk-verification-api). v3 is v2 and two things
// more, from TD's public v3 page of the same API:
//   - decision_event may be "lookup" (查询), between activate and like in
//     the enum; its event_detail object is named "lookup", by the same
//     rule as every other event (the object named by decision_event). TD
//     documents no fields of its own for it here: it is as free-form as
//     the other thirteen.
//   - event_detail may carry TD's Account data object, under "account",
//     beside the event's own object ("在业务必要的情况下,event_detail 允许
//     传入 Account 数据对象"). Its fields are TD's Account type: account_id
//     (String, required), register_time (String, ISO 8601 like
//     event_time), phone (Phone: country_code Integer, phone_number
//     String of digits, no "+" or prefix) and email (String); see
//     ValidateRequest.
//
// Everything valid in v2 is valid in v3 and means the same.
type APIVersion string

// The API versions.
const (
	V2 APIVersion = "v2"
	V3 APIVersion = "v3"
)

// ErrAPIVersion: a version other than v2 or v3.
var ErrAPIVersion = errors.New("not a TD API version: v2 or v3")

// ParseAPIVersion reads "v2" or "v3"; "" is v2, the default.
func ParseAPIVersion(s string) (APIVersion, error) {
	switch APIVersion(s) {
	case "", V2:
		return V2, nil
	case V3:
		return V3, nil
	}
	return "", fmt.Errorf("%q: %w", s, ErrAPIVersion)
}

func (v APIVersion) v3() bool { return v == V3 }

// Decision events TD accepts in decision_event (the seed's enum). Each one is
// also the name of its object in event_detail.
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
	// EventLookup (查询) is v3's only: v2 answers it 9002.
	EventLookup = "lookup"
)

// DetailAccount is the key of the Account object v3 allows in event_detail
// beside the event's own object.
const DetailAccount = "account"

// DecisionEvents lists v2's decision_event enum in the seed's order.
func DecisionEvents() []string { return V2.DecisionEvents() }

// DecisionEvents lists the decision_event enum of version v in TD's order
// (v3 puts lookup after activate).
func (v APIVersion) DecisionEvents() []string {
	evs := []string{
		EventMarketing, EventMarketingCode, EventMarketingExchange, EventSendGift,
		EventGetCoupon, EventWithdraw, EventInvite, EventSMS, EventBrowse, EventActivate,
	}
	if v.v3() {
		evs = append(evs, EventLookup)
	}
	return append(evs, EventLike, EventComment, EventFavorite)
}

// IsDecisionEvent reports whether s is in v2's decision_event enum.
func IsDecisionEvent(s string) bool { return V2.IsDecisionEvent(s) }

// IsDecisionEvent reports whether s is in version v's decision_event enum.
func (v APIVersion) IsDecisionEvent(s string) bool {
	switch s {
	case EventMarketing, EventMarketingCode, EventMarketingExchange, EventSendGift,
		EventGetCoupon, EventWithdraw, EventInvite, EventSMS, EventBrowse,
		EventActivate, EventLike, EventComment, EventFavorite:
		return true
	case EventLookup:
		return v.v3()
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
	// Since is set when the request is valid in that later version of the
	// API and only the version checked against refuses it (v3's lookup
	// event or account object checked as v2): the caller can say which
	// setting would take it.
	Since APIVersion `json:"-"`
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

// ValidateRequest applies TD's own request rules of API version v (codes
// 9001-9004) so that the agent can reject a request locally, with the code
// TD would give, before spending TD traffic on it. Problems come in a
// stable order: the first one is what TD would answer. The zero version is
// v2.
//
// 9001 required field empty: channel, session_id, decision_event, event_time,
// terminal, event_detail (account_id and ext are conditional, TD cannot check
// them). 9002 format: decision_event enum, event_time ISO 8601, terminal.ip an
// IP address, event_detail holding exactly the key named by decision_event
// (one event per request). 9003: any string value, anywhere, longer than 1024
// characters. 9004: black_box and ip both empty.
//
// v3 (see APIVersion) adds lookup to the enum and allows an "account" object
// in event_detail beside the event's own, checked as TD's Account type:
// account_id a non-empty string (9001 when empty or missing), register_time
// ISO 8601 like event_time, phone an object of country_code (an integer
// 1-999, E.164 without "+") and phone_number (a string of digits), email a
// string; null is as good as absent (but for account_id), any other field,
// or a value of another type, is 9002. Checked as v2, lookup and an account
// object are 9002 with Since set to v3.
func ValidateRequest(r *Request, v APIVersion) []FieldProblem {
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

	switch {
	case r.DecisionEvent == "" || v.IsDecisionEvent(r.DecisionEvent):
	case V3.IsDecisionEvent(r.DecisionEvent):
		ps = append(ps, FieldProblem{Field: "decision_event", Code: CodeFieldInvalid, Since: V3,
			Reason: fmt.Sprintf("%q is a decision_event of TD's v3 API only", r.DecisionEvent)})
	default:
		ps = append(ps, FieldProblem{Field: "decision_event", Code: CodeFieldInvalid, Reason: "not one of the decision_event values"})
	}
	if r.EventTime != "" && !validEventTime(r.EventTime) {
		ps = append(ps, FieldProblem{Field: "event_time", Code: CodeFieldInvalid, Reason: "not ISO 8601 YYYY-MM-DDTHH:mm:ss.sss with offset"})
	}
	if r.Terminal != nil && r.Terminal.IP != "" && net.ParseIP(r.Terminal.IP) == nil {
		ps = append(ps, FieldProblem{Field: "terminal.ip", Code: CodeFieldInvalid, Reason: "not an IP address"})
	}
	if len(r.EventDetail) > 0 && v.IsDecisionEvent(r.DecisionEvent) {
		ps = append(ps, eventDetailProblems(r.DecisionEvent, r.EventDetail, v)...)
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

// eventDetailProblems checks event_detail for decision_event ev, one of
// v's events: the object named ev, and in v3 at most an account object
// beside it.
func eventDetailProblems(ev string, ed map[string]map[string]any, v APIVersion) []FieldProblem {
	obj, ok := ed[ev]
	acct, hasAccount := ed[DetailAccount]
	others := len(ed)
	if ok {
		others--
	}
	if hasAccount {
		others--
	}
	if ok && others == 0 && hasAccount && !v.v3() {
		return []FieldProblem{{Field: "event_detail." + DetailAccount, Code: CodeFieldInvalid, Since: V3,
			Reason: "an account object in event_detail is TD's v3 API only"}}
	}
	if !ok || others > 0 || hasAccount && !v.v3() {
		reason := fmt.Sprintf("must hold exactly one object, named %q like decision_event", ev)
		if v.v3() {
			reason = fmt.Sprintf("must hold the object named %q like decision_event, and at most an %q object beside it", ev, DetailAccount)
		}
		return []FieldProblem{{Field: "event_detail", Code: CodeFieldInvalid, Reason: reason}}
	}
	var ps []FieldProblem
	if obj == nil {
		ps = append(ps, FieldProblem{Field: "event_detail." + ev, Code: CodeFieldEmpty, Reason: "required field is empty"})
	}
	if hasAccount {
		ps = append(ps, accountProblems("event_detail."+DetailAccount, acct)...)
	}
	return ps
}

// accountProblems checks TD's Account object (v3's event_detail.account).
func accountProblems(path string, a map[string]any) []FieldProblem {
	if a == nil {
		return []FieldProblem{{Field: path, Code: CodeFieldEmpty, Reason: "required field is empty"}}
	}
	var ps []FieldProblem
	bad := func(field, why string) {
		ps = append(ps, FieldProblem{Field: path + "." + field, Code: CodeFieldInvalid, Reason: why})
	}
	if id, isStr := a["account_id"].(string); a["account_id"] == nil || isStr && id == "" {
		ps = append(ps, FieldProblem{Field: path + ".account_id", Code: CodeFieldEmpty, Reason: "required field is empty"})
	} else if !isStr {
		bad("account_id", "must be a string")
	}
	for _, k := range sortedKeys(a) {
		val := a[k]
		switch k {
		case "account_id":
		case "register_time":
			if s, isStr := val.(string); val != nil && (!isStr || !validEventTime(s)) {
				bad(k, "not ISO 8601 YYYY-MM-DDTHH:mm:ss.sss with offset")
			}
		case "email":
			if _, isStr := val.(string); val != nil && !isStr {
				bad(k, "must be a string")
			}
		case "phone":
			if val == nil {
				continue
			}
			ph, isObj := val.(map[string]any)
			if !isObj {
				bad(k, "must be an object of country_code and phone_number")
				continue
			}
			for _, pk := range sortedKeys(ph) {
				pv := ph[pk]
				switch pk {
				case "country_code":
					if n, isInt := integer(pv); pv != nil && (!isInt || n < 1 || n > 999) {
						bad("phone.country_code", "must be an integer 1-999 (E.164, without + or a leading 0)")
					}
				case "phone_number":
					if s, isStr := pv.(string); pv != nil && (!isStr || !allDigits(s)) {
						bad("phone.phone_number", "must be a string of digits, without + or a prefix")
					}
				default:
					bad("phone."+pk, "not a field of TD's Phone object (country_code, phone_number)")
				}
			}
		default:
			bad(k, "not a field of TD's Account object (account_id, register_time, phone, email)")
		}
	}
	return ps
}

// integer reads a JSON number as encoding/json leaves it in an any (a
// float64, or a json.Number with UseNumber), or a Go integer.
func integer(v any) (int64, bool) {
	switch n := v.(type) {
	case float64:
		if n != math.Trunc(n) || math.Abs(n) > 1<<53 {
			return 0, false
		}
		return int64(n), true
	case json.Number:
		i, err := strconv.ParseInt(string(n), 10, 64)
		return i, err == nil
	case int:
		return int64(n), true
	case int64:
		return n, true
	}
	return 0, false
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
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
