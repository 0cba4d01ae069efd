package action_test

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/action"
)

// now is the reference clock of every test: 2026-11-23T10:20:00+08:00.
var now = time.Date(2026, 11, 23, 2, 20, 0, 0, time.UTC)

// The seed's section 2, written out independently of rules.go.
var wantTracks = map[string][]string{
	"enterprise_loan":          {"FOLLOW", "REGISTER", "RESERVATION", "APPLY", "CONFIRM_EFFECTIVE_LEADS", "CREDIT"},
	"individual_business_loan": {"RESERVATION", "COMPLETE_ORDER", "CONFIRM_EFFECTIVE_LEADS", "CREDIT"},
	"credit_card_short":        {"REGISTER", "RESERVATION"},
	"credit_card_long":         {"APPLY", "CONFIRM_EFFECTIVE_LEADS", "CREDIT"},
	"personal_loan":            {"REGISTER", "RESERVATION", "APPLY", "CREDIT", "WITHDRAW_DEPOSITS"},
	"wealth_management":        {"FOLLOW", "SCANCODE", "REGISTER", "DOWNLOAD_APP", "RESERVATION", "COMPLETE_ORDER"},
	"payment":                  {"VIEW_CONTENT", "REGISTER", "RESERVATION", "CONFIRM_EFFECTIVE_LEADS"},
}

var trackOrder = []string{"enterprise_loan", "individual_business_loan", "credit_card_short", "credit_card_long", "personal_loan", "wealth_management", "payment"}

var allTypes = []string{"FOLLOW", "REGISTER", "RESERVATION", "APPLY", "CONFIRM_EFFECTIVE_LEADS", "CREDIT", "COMPLETE_ORDER", "WITHDRAW_DEPOSITS", "SCANCODE", "DOWNLOAD_APP", "VIEW_CONTENT"}

// The seed's section 3: parameter -> max value and the (track, action) pairs.
type paramSpec struct {
	name  string
	max   int
	where [][2]string
}

var wantParams = []paramSpec{
	{"credit_level", 3, [][2]string{{"enterprise_loan", "CONFIRM_EFFECTIVE_LEADS"}, {"enterprise_loan", "CREDIT"}, {"personal_loan", "CREDIT"}}},
	{"withdraw_deposits_level", 3, [][2]string{{"personal_loan", "WITHDRAW_DEPOSITS"}}},
	{"risk_overdue", 5, [][2]string{{"personal_loan", "WITHDRAW_DEPOSITS"}}},
	{"complete_order_level", 3, [][2]string{{"wealth_management", "COMPLETE_ORDER"}}},
}

const testPhone = "13800138000"

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

var phoneHash = md5hex(testPhone)

// act renders one action: the base action overridden by key/raw-value
// pairs; a raw value of "-" removes the key. Keys not in the base are
// appended in the order given.
func act(kv ...string) string {
	keys := []string{"id", "track", "action_type", "action_time", "user_id"}
	vals := map[string]string{
		"id":          `"a1"`,
		"track":       `"personal_loan"`,
		"action_type": `"REGISTER"`,
		"action_time": strconv.FormatInt(now.Unix(), 10),
		"user_id":     `{"hash_phone":"` + phoneHash + `"}`,
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if _, ok := vals[kv[i]]; !ok && !slices.Contains(keys, kv[i]) {
			keys = append(keys, kv[i])
		}
		vals[kv[i]] = kv[i+1]
	}
	var sb strings.Builder
	sb.WriteByte('{')
	first := true
	for _, k := range keys {
		if vals[k] == "-" {
			continue
		}
		if !first {
			sb.WriteByte(',')
		}
		first = false
		sb.WriteString(strconv.Quote(k) + ":" + vals[k])
	}
	sb.WriteByte('}')
	return sb.String()
}

func body(actions ...string) []byte {
	return []byte(`{"actions":[` + strings.Join(actions, ",") + `]}`)
}

func q(s string) string { return strconv.Quote(s) }

// problems decodes b and returns its problems; it fails t unless the result
// is (nil, *ValidationError).
func problems(t *testing.T, b []byte) []action.FieldError {
	t.Helper()
	got, err := action.Decode(b, now)
	if got != nil {
		t.Fatalf("Decode returned %d actions with error %v; want none", len(got), err)
	}
	var ve *action.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Decode error = %T %v; want *ValidationError", err, err)
	}
	if len(ve.Problems) == 0 {
		t.Fatal("ValidationError with no problems")
	}
	return ve.Problems
}

// accept decodes b and fails t on any error.
func accept(t *testing.T, b []byte) []action.Action {
	t.Helper()
	got, err := action.Decode(b, now)
	if err != nil {
		t.Fatalf("Decode(%s) error: %v", b, err)
	}
	return got
}

// wantProblem checks that the only problem of b is on field, and that its
// reason contains reason.
func wantProblem(t *testing.T, b []byte, field, reason string) {
	t.Helper()
	ps := problems(t, b)
	if len(ps) != 1 || ps[0].Field != field || !strings.Contains(ps[0].Reason, reason) {
		t.Fatalf("problems = %+v; want one on %q containing %q", ps, field, reason)
	}
}

func TestTablesMatchSeed(t *testing.T) {
	if got := action.Tracks(); !reflect.DeepEqual(got, wantTracks) {
		t.Errorf("Tracks() = %v; want %v", got, wantTracks)
	}
	if got := action.TrackNames(); !slices.Equal(got, trackOrder) {
		t.Errorf("TrackNames() = %v; want %v", got, trackOrder)
	}
	if got := action.ActionTypes(); !slices.Equal(got, allTypes) {
		t.Errorf("ActionTypes() = %v; want %v", got, allTypes)
	}
	ps := action.Params()
	if len(ps) != len(wantParams) {
		t.Fatalf("Params() has %d rules; want %d", len(ps), len(wantParams))
	}
	for i, w := range wantParams {
		var where [][2]string
		for _, ta := range ps[i].Applies {
			where = append(where, [2]string{ta.Track, ta.ActionType})
		}
		if ps[i].Name != w.name || ps[i].Min != 1 || ps[i].Max != w.max || !reflect.DeepEqual(where, w.where) {
			t.Errorf("Params()[%d] = %+v; want %+v", i, ps[i], w)
		}
	}
	// The accessors hand out copies.
	action.Tracks()["payment"][0] = "X"
	action.Params()[0].Applies[0].Track = "X"
	if action.Tracks()["payment"][0] != "VIEW_CONTENT" || action.Params()[0].Applies[0].Track != "enterprise_loan" {
		t.Error("mutating a returned table changed the rules")
	}
}

func TestTrackActionMatrix(t *testing.T) {
	for _, track := range trackOrder {
		for _, typ := range allTypes {
			allowed := slices.Contains(wantTracks[track], typ)
			t.Run(track+"/"+typ, func(t *testing.T) {
				b := body(act("track", q(track), "action_type", q(typ)))
				if allowed {
					got := accept(t, b)
					if len(got) != 1 || got[0].Track != track || got[0].ActionType != typ {
						t.Fatalf("got %+v; want track %s action %s", got, track, typ)
					}
					return
				}
				wantProblem(t, b, "actions[0].action_type", typ+" is not allowed on track "+track)
			})
		}
	}
}

func TestTrackAndTypeErrors(t *testing.T) {
	cases := []struct {
		name, track, typ string
		field, reason    string
	}{
		{"unknown track", `"mortgage"`, `"REGISTER"`, "actions[0].track", `unknown track "mortgage"`},
		{"track wrong case", `"Personal_Loan"`, `"REGISTER"`, "actions[0].track", "unknown track"},
		{"track not string", `7`, `"REGISTER"`, "actions[0].track", "must be a string"},
		{"track missing", `-`, `"REGISTER"`, "actions[0].track", "is required"},
		{"track null", `null`, `"REGISTER"`, "actions[0].track", "is required"},
		{"unknown type", `"personal_loan"`, `"PURCHASE"`, "actions[0].action_type", `unknown action_type "PURCHASE"`},
		{"type lower case", `"personal_loan"`, `"register"`, "actions[0].action_type", "unknown action_type"},
		{"type not string", `"personal_loan"`, `["REGISTER"]`, "actions[0].action_type", "must be a string"},
		{"type missing", `"personal_loan"`, `-`, "actions[0].action_type", "is required"},
		{"long track truncated", q(strings.Repeat("x", 200)), `"REGISTER"`, "actions[0].track", `unknown track "` + strings.Repeat("x", 64) + `"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantProblem(t, body(act("track", c.track, "action_type", c.typ)), c.field, c.reason)
		})
	}
	t.Run("unknown type on unknown track", func(t *testing.T) {
		ps := problems(t, body(act("track", `"x"`, "action_type", `"REGISTER"`)))
		if len(ps) != 1 || ps[0].Field != "actions[0].track" {
			t.Fatalf("problems = %+v; want only the track (a known type is not blamed)", ps)
		}
	})
}

func TestParams(t *testing.T) {
	type pcase struct {
		name, track, typ, params string
		want                     map[string]int // nil with field set: refused
		field, reason            string
	}
	var cases []pcase
	applies := func(p paramSpec, track, typ string) bool {
		return slices.Contains(p.where, [2]string{track, typ})
	}
	for _, p := range wantParams {
		field := "actions[0].action_param." + p.name
		rangeReason := "must be 1, 2 or 3"
		if p.max == 5 {
			rangeReason = "must be 1, 2, 3, 4 or 5"
		}
		// Every (track, allowed action) pair: accepted where the seed says so.
		for _, track := range trackOrder {
			for _, typ := range wantTracks[track] {
				if !applies(p, track, typ) {
					reason := "does not apply to " + typ
					cases = append(cases, pcase{fmt.Sprintf("%s/not on %s/%s", p.name, track, typ), track, typ,
						fmt.Sprintf(`{%q:1}`, p.name), nil, field, reason})
					continue
				}
				for v := 1; v <= p.max; v++ {
					cases = append(cases, pcase{fmt.Sprintf("%s/%s/%s=%d", p.name, track, typ, v), track, typ,
						fmt.Sprintf(`{%q:%d}`, p.name, v), map[string]int{p.name: v}, "", ""})
				}
				for _, bad := range []string{"0", strconv.Itoa(p.max + 1), "-1", "99999999999999999999"} {
					cases = append(cases, pcase{fmt.Sprintf("%s/%s/%s=%s", p.name, track, typ, bad), track, typ,
						fmt.Sprintf(`{%q:%s}`, p.name, bad), nil, field, rangeReason})
				}
				for _, bad := range []string{"1.5", "1.0", "1e0", `"1"`, "true", "[1]", "{}"} {
					cases = append(cases, pcase{fmt.Sprintf("%s/%s/%s=%s", p.name, track, typ, bad), track, typ,
						fmt.Sprintf(`{%q:%s}`, p.name, bad), nil, field, "must be an integer"})
				}
				cases = append(cases, pcase{fmt.Sprintf("%s/%s/%s=null", p.name, track, typ), track, typ,
					fmt.Sprintf(`{%q:null}`, p.name), nil, "", ""})
			}
		}
	}
	// Named wrong-track and wrong-action cases with their exact reasons.
	cases = append(cases,
		pcase{"credit_level on CREDIT of credit_card_long", "credit_card_long", "CREDIT", `{"credit_level":1}`, nil,
			"actions[0].action_param.credit_level", "does not apply to CREDIT on track credit_card_long (only on enterprise_loan, personal_loan)"},
		pcase{"credit_level on CONFIRM_EFFECTIVE_LEADS of payment", "payment", "CONFIRM_EFFECTIVE_LEADS", `{"credit_level":2}`, nil,
			"actions[0].action_param.credit_level", "does not apply to CONFIRM_EFFECTIVE_LEADS on track payment (only on enterprise_loan)"},
		pcase{"credit_level on APPLY", "personal_loan", "APPLY", `{"credit_level":1}`, nil,
			"actions[0].action_param.credit_level", "does not apply to APPLY (only to CONFIRM_EFFECTIVE_LEADS, CREDIT)"},
		pcase{"complete_order_level on individual_business_loan", "individual_business_loan", "COMPLETE_ORDER", `{"complete_order_level":1}`, nil,
			"actions[0].action_param.complete_order_level", "does not apply to COMPLETE_ORDER on track individual_business_loan (only on wealth_management)"},
		pcase{"risk_overdue on CREDIT", "personal_loan", "CREDIT", `{"risk_overdue":1}`, nil,
			"actions[0].action_param.risk_overdue", "does not apply to CREDIT (only to WITHDRAW_DEPOSITS)"},
		pcase{"unknown key", "personal_loan", "WITHDRAW_DEPOSITS", `{"amount_level":1}`, nil,
			"actions[0].action_param.amount_level", "unknown parameter"},
		pcase{"key wrong case", "personal_loan", "CREDIT", `{"Credit_Level":1}`, nil,
			"actions[0].action_param.Credit_Level", "unknown parameter"},
		pcase{"odd key", "personal_loan", "CREDIT", `{"a b":1}`, nil,
			`actions[0].action_param["a b"]`, "unknown parameter"},
		pcase{"duplicate key", "personal_loan", "CREDIT", `{"credit_level":1,"credit_level":2}`, nil,
			"actions[0].action_param.credit_level", "duplicate key"},
		pcase{"not an object", "personal_loan", "CREDIT", `[1]`, nil,
			"actions[0].action_param", "must be an object"},
		pcase{"both withdraw params", "personal_loan", "WITHDRAW_DEPOSITS", `{"withdraw_deposits_level":3,"risk_overdue":5}`,
			map[string]int{"withdraw_deposits_level": 3, "risk_overdue": 5}, "", ""},
		pcase{"empty object", "personal_loan", "WITHDRAW_DEPOSITS", `{}`, nil, "", ""},
		pcase{"null", "personal_loan", "WITHDRAW_DEPOSITS", `null`, nil, "", ""},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := body(act("track", q(c.track), "action_type", q(c.typ), "action_param", c.params))
			if c.field != "" {
				wantProblem(t, b, c.field, c.reason)
				return
			}
			got := accept(t, b)
			if !reflect.DeepEqual(got[0].ActionParam, c.want) {
				t.Fatalf("ActionParam = %v; want %v", got[0].ActionParam, c.want)
			}
		})
	}
}

func TestPhone(t *testing.T) {
	cases := []struct {
		name, phone string
		digits      string // "" means refused
	}{
		{"plain", "13800138000", "13800138000"},
		{"+86", "+8613800138000", "13800138000"},
		{"86", "8613800138000", "13800138000"},
		{"spaces", "138 0013 8000", "13800138000"},
		{"dashes", "138-0013-8000", "13800138000"},
		{"+86 spaced and dashed", "+86 138-0013-8000", "13800138000"},
		{"surrounding spaces", "  19912345678 ", "19912345678"},
		{"86 prefix looks like 11 digits", "8613912345", ""},
		{"11 digits starting 86", "86123456789", ""},
		{"10 digits", "1380013800", ""},
		{"12 digits", "138001380001", ""},
		{"+86 then 10 digits", "+861380013800", ""},
		{"+86 then 12 digits", "+86138001380001", ""},
		{"not starting with 1", "23800138000", ""},
		{"0086 prefix", "008613800138000", ""},
		{"+ without 86", "+13800138000", ""},
		{"letter", "1380013800a", ""},
		{"dot separator", "138.0013.8000", ""},
		{"full-width digits", "１３８００１３８０００", ""},
		{"empty", "", ""},
		{"only dashes", "---", ""},
		{"very long", strings.Repeat("1", 40), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := body(act("user_id", `{"phone":`+q(c.phone)+`}`))
			if c.digits == "" {
				wantProblem(t, b, "actions[0].user_id.phone", "must be an 11-digit mainland China mobile number")
				return
			}
			got := accept(t, b)
			want := md5hex(c.digits)
			if got[0].UserID == nil || *got[0].UserID != (action.UserID{HashPhone: want}) {
				t.Fatalf("UserID = %+v; want hash_phone %s", got[0].UserID, want)
			}
			stored, _ := json.Marshal(got[0])
			if strings.Contains(string(stored), c.digits) || strings.Contains(string(stored), `"phone"`) {
				t.Fatalf("stored form %s keeps the raw phone", stored)
			}
		})
	}
	t.Run("escaped digits", func(t *testing.T) {
		got := accept(t, body(act("user_id", `{"phone":"\u0031\u00338001380\u00300"}`)))
		if got[0].UserID.HashPhone != phoneHash {
			t.Fatalf("HashPhone = %s; want %s", got[0].UserID.HashPhone, phoneHash)
		}
	})
	t.Run("not a string", func(t *testing.T) {
		wantProblem(t, body(act("user_id", `{"phone":13800138000}`)), "actions[0].user_id.phone", "must be a string")
	})
	t.Run("with hash_phone", func(t *testing.T) {
		wantProblem(t, body(act("user_id", `{"phone":"13800138000","hash_phone":"`+phoneHash+`"}`)),
			"actions[0].user_id", "phone and hash_phone must not both be given")
	})
}

func TestUserIDAndTrace(t *testing.T) {
	hex32 := "0123456789ABCDEFabcdef0123456789"
	hex64 := strings.Repeat("ABCDEF0123456789", 4)
	cases := []struct {
		name, userID, trace string
		want                *action.UserID
		wantTrace           *action.Trace
		field, reason       string
	}{
		{"hash_phone upper to lower", `{"hash_phone":"` + strings.ToUpper(phoneHash) + `"}`, "-", &action.UserID{HashPhone: phoneHash}, nil, "", ""},
		{"hash_imei", `{"hash_imei":"` + hex32 + `"}`, "-", &action.UserID{HashIMEI: strings.ToLower(hex32)}, nil, "", ""},
		{"hash_idfa", `{"hash_idfa":"` + hex32 + `"}`, "-", &action.UserID{HashIDFA: strings.ToLower(hex32)}, nil, "", ""},
		{"hash_oaid", `{"hash_oaid":"` + hex32 + `"}`, "-", &action.UserID{HashOAID: strings.ToLower(hex32)}, nil, "", ""},
		{"sha256_phone", `{"sha256_phone":"` + hex64 + `"}`, "-", &action.UserID{SHA256Phone: strings.ToLower(hex64)}, nil, "", ""},
		{"openid with app id", `{"wechat_openid":"oAbC-12_x","wechat_app_id":"wx1234"}`, "-", &action.UserID{WechatOpenID: "oAbC-12_x", WechatAppID: "wx1234"}, nil, "", ""},
		{"openid 64", `{"wechat_openid":"` + strings.Repeat("o", 64) + `","wechat_app_id":"wx1"}`, "-", &action.UserID{WechatOpenID: strings.Repeat("o", 64), WechatAppID: "wx1"}, nil, "", ""},
		{"unionid", `{"wechat_unionid":"u1"}`, "-", &action.UserID{WechatUnionID: "u1"}, nil, "", ""},
		{"unionid with app id", `{"wechat_unionid":"u1","wechat_app_id":"wx1"}`, "-", &action.UserID{WechatUnionID: "u1", WechatAppID: "wx1"}, nil, "", ""},
		{"unionid 64", `{"wechat_unionid":"` + strings.Repeat("u", 64) + `"}`, "-", &action.UserID{WechatUnionID: strings.Repeat("u", 64)}, nil, "", ""},
		{"several ids", `{"phone":"13800138000","hash_imei":"` + hex32 + `"}`, "-", &action.UserID{HashPhone: phoneHash, HashIMEI: strings.ToLower(hex32)}, nil, "", ""},
		{"click_id only", "-", `{"click_id":"wx0abc"}`, nil, &action.Trace{ClickID: "wx0abc"}, "", ""},
		{"empty user_id with click_id", `{}`, `{"click_id":"c"}`, nil, &action.Trace{ClickID: "c"}, "", ""},
		{"null user_id with click_id", `null`, `{"click_id":"c"}`, nil, &action.Trace{ClickID: "c"}, "", ""},
		{"click_id 64 bytes", "-", `{"click_id":"` + strings.Repeat("c", 64) + `"}`, nil, &action.Trace{ClickID: strings.Repeat("c", 64)}, "", ""},
		{"click_id 21 runes of 3 bytes", "-", `{"click_id":"` + strings.Repeat("点", 21) + `"}`, nil, &action.Trace{ClickID: strings.Repeat("点", 21)}, "", ""},
		{"null trace", `{"hash_imei":"` + hex32 + `"}`, `null`, &action.UserID{HashIMEI: strings.ToLower(hex32)}, nil, "", ""},

		{"neither", "-", "-", nil, nil, "actions[0].user_id", "user_id or trace.click_id is required"},
		{"empty user_id and trace", `{}`, `{}`, nil, nil, "actions[0].user_id", "user_id or trace.click_id is required"},
		{"hash_phone 31 chars", `{"hash_phone":"` + phoneHash[:31] + `"}`, "-", nil, nil, "actions[0].user_id.hash_phone", "must be 32 hex characters"},
		{"hash_imei non-hex", `{"hash_imei":"` + strings.Repeat("g", 32) + `"}`, "-", nil, nil, "actions[0].user_id.hash_imei", "must be 32 hex characters"},
		{"hash_idfa empty", `{"hash_idfa":""}`, "-", nil, nil, "actions[0].user_id.hash_idfa", "must be 32 hex characters"},
		{"hash_oaid 64", `{"hash_oaid":"` + hex64 + `"}`, "-", nil, nil, "actions[0].user_id.hash_oaid", "must be 32 hex characters"},
		{"sha256 32", `{"sha256_phone":"` + hex32 + `"}`, "-", nil, nil, "actions[0].user_id.sha256_phone", "must be 64 hex characters"},
		{"app id alone", `{"wechat_app_id":"wx1"}`, "-", nil, nil, "actions[0].user_id.wechat_app_id", "is only allowed with wechat_openid or wechat_unionid"},
		{"openid without app id", `{"wechat_openid":"o1"}`, "-", nil, nil, "actions[0].user_id.wechat_app_id", "is required with wechat_openid"},
		{"openid and unionid without app id", `{"wechat_openid":"o1","wechat_unionid":"u1"}`, "-", nil, nil, "actions[0].user_id.wechat_app_id", "is required with wechat_openid"},
		{"openid 65", `{"wechat_openid":"` + strings.Repeat("o", 65) + `","wechat_app_id":"wx1"}`, "-", nil, nil, "actions[0].user_id.wechat_openid", "must be 1-64 printable ASCII characters"},
		{"unionid 65", `{"wechat_unionid":"` + strings.Repeat("u", 65) + `"}`, "-", nil, nil, "actions[0].user_id.wechat_unionid", "must be 1-64 printable ASCII characters"},
		{"unionid with space", `{"wechat_unionid":"a b"}`, "-", nil, nil, "actions[0].user_id.wechat_unionid", "must be 1-64 printable ASCII characters"},
		{"unknown user key", `{"imei":"x","hash_imei":"` + hex32 + `"}`, "-", nil, nil, "actions[0].user_id.imei", "unknown field"},
		{"user_id not object", `"13800138000"`, "-", nil, nil, "actions[0].user_id", "must be an object"},
		{"id not string", `{"hash_imei":1}`, "-", nil, nil, "actions[0].user_id.hash_imei", "must be a string"},
		{"duplicate user key", `{"hash_imei":"` + hex32 + `","hash_imei":"` + hex32 + `"}`, "-", nil, nil, "actions[0].user_id.hash_imei", "duplicate key"},
		{"click_id empty", "-", `{"click_id":""}`, nil, nil, "actions[0].trace.click_id", "must be 1-64 bytes"},
		{"click_id 65", "-", `{"click_id":"` + strings.Repeat("c", 65) + `"}`, nil, nil, "actions[0].trace.click_id", "must be 1-64 bytes"},
		{"click_id 22 runes of 3 bytes", "-", `{"click_id":"` + strings.Repeat("点", 22) + `"}`, nil, nil, "actions[0].trace.click_id", "must be 1-64 bytes"},
		{"click_id number", "-", `{"click_id":5}`, nil, nil, "actions[0].trace.click_id", "must be a string"},
		{"unknown trace key", `{"hash_imei":"` + hex32 + `"}`, `{"callback":"x"}`, nil, nil, "actions[0].trace.callback", "unknown field"},
		{"trace not object", `{"hash_imei":"` + hex32 + `"}`, `[]`, nil, nil, "actions[0].trace", "must be an object"},
		{"trace not object, no user_id", "-", `"wx0abc"`, nil, nil, "actions[0].trace", "must be an object"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := body(act("user_id", c.userID, "trace", c.trace))
			if c.field != "" {
				wantProblem(t, b, c.field, c.reason)
				return
			}
			got := accept(t, b)
			if !reflect.DeepEqual(got[0].UserID, c.want) || !reflect.DeepEqual(got[0].Trace, c.wantTrace) {
				t.Fatalf("UserID, Trace = %+v, %+v; want %+v, %+v", got[0].UserID, got[0].Trace, c.want, c.wantTrace)
			}
		})
	}
}

func TestActionTime(t *testing.T) {
	rfc := func(tm time.Time) string { return q(tm.In(time.FixedZone("", 8*3600)).Format(time.RFC3339)) }
	unix := func(tm time.Time) string { return strconv.FormatInt(tm.Unix(), 10) }
	future, past := now.Add(5*time.Minute), now.Add(-30*24*time.Hour)
	cases := []struct {
		name, raw string
		want      int64 // 0: refused
		reason    string
	}{
		{"now int", unix(now), now.Unix(), ""},
		{"now+5m int", unix(future), future.Unix(), ""},
		{"now+5m+1s int", unix(future.Add(time.Second)), 0, "is more than 5 minutes after now"},
		{"now-30d int", unix(past), past.Unix(), ""},
		{"now-30d-1s int", unix(past.Add(-time.Second)), 0, "is more than 30 days before now"},
		{"now+5m string", rfc(future), future.Unix(), ""},
		{"now+5m+1s string", rfc(future.Add(time.Second)), 0, "is more than 5 minutes after now"},
		{"now-30d string", rfc(past), past.Unix(), ""},
		{"now-30d-1s string", rfc(past.Add(-time.Second)), 0, "is more than 30 days before now"},
		{"Z offset", q("2026-11-23T02:15:00Z"), now.Add(-5 * time.Minute).Unix(), ""},
		{"+08:00 offset", q("2026-11-23T10:15:00+08:00"), now.Add(-5 * time.Minute).Unix(), ""},
		{"-05:00 offset", q("2026-11-22T21:15:00-05:00"), now.Add(-5 * time.Minute).Unix(), ""},
		{"fractional seconds", q("2026-11-23T10:15:00.999+08:00"), now.Add(-5 * time.Minute).Unix(), ""},
		{"zero", "0", 0, "is more than 30 days before now"},
		{"negative", "-1", 0, "is more than 30 days before now"},
		{"int64 overflow", "99999999999999999999", 0, "is more than 5 minutes after now"},
		{"negative overflow", "-99999999999999999999", 0, "is more than 30 days before now"},
		{"milliseconds", strconv.FormatInt(now.UnixMilli(), 10), 0, "is more than 5 minutes after now"},
		{"no offset", q("2026-11-23T10:15:00"), 0, "must be an RFC 3339 time"},
		{"space separator", q("2026-11-23 10:15:00+08:00"), 0, "must be an RFC 3339 time"},
		{"seconds as string", q(unix(now)), 0, "must be an RFC 3339 time"},
		{"float", unix(now) + ".0", 0, "must be an RFC 3339 time string or integer Unix seconds"},
		{"exponent", "1.7e9", 0, "must be an RFC 3339 time string or integer Unix seconds"},
		{"bool", "true", 0, "must be an RFC 3339 time string or integer Unix seconds"},
		{"missing", "-", 0, "is required"},
		{"null", "null", 0, "is required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := body(act("action_time", c.raw))
			if c.reason != "" {
				wantProblem(t, b, "actions[0].action_time", c.reason)
				return
			}
			if got := accept(t, b)[0].ActionTime; got != c.want {
				t.Fatalf("ActionTime = %d; want %d", got, c.want)
			}
		})
	}
}

func TestID(t *testing.T) {
	cases := []struct {
		name, raw string
		want      string // "" refused
		reason    string
	}{
		{"example", `"loan-app-000123"`, "loan-app-000123", ""},
		{"all classes", `"Az09._:-"`, "Az09._:-", ""},
		{"128", q(strings.Repeat("a", 128)), strings.Repeat("a", 128), ""},
		{"escaped", `"\u0061bc"`, "abc", ""},
		{"129", q(strings.Repeat("a", 129)), "", "must be 1-128 characters of [A-Za-z0-9._:-]"},
		{"empty", `""`, "", "must be 1-128 characters"},
		{"space", `"a b"`, "", "must be 1-128 characters"},
		{"slash", `"a/b"`, "", "must be 1-128 characters"},
		{"unicode", `"订单1"`, "", "must be 1-128 characters"},
		{"number", `123`, "", "must be a string"},
		{"missing", `-`, "", "is required"},
		// ids that look like personal data are refused, naming the rule
		{"mobile", `"13912345678"`, "", "looks like a mainland mobile number; use an opaque id"},
		{"mobile in id", `"user-139-1234-5678"`, "", "looks like a mainland mobile number"},
		{"resident ID", `"11010519491231002X"`, "", "looks like a mainland ID-card number (check digit valid)"},
		{"bank card", `"6222021234567890128"`, "", "looks like a bank-card number (Luhn valid)"},
		{"card with separators", `"card:6222-0212-3456-7890-128"`, "", "looks like a bank-card number (Luhn valid)"},
		// and ordinary ids are not
		{"uuid", `"550e8400-e29b-41d4-a716-446655440000"`, "550e8400-e29b-41d4-a716-446655440000", ""},
		{"timestamp", `"20261204123453"`, "20261204123453", ""},
		{"unix ms", `"evt-1764825600000"`, "evt-1764825600000", ""},
		{"12 digits", `"139123456789"`, "139123456789", ""},
		{"ID check digit wrong", `"110105194912310021"`, "110105194912310021", ""},
		{"not Luhn", `"6222021234567890127"`, "6222021234567890127", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := body(act("id", c.raw))
			if c.want == "" {
				wantProblem(t, b, "actions[0].id", c.reason)
				return
			}
			if got := accept(t, b)[0].ID; got != c.want {
				t.Fatalf("ID = %q; want %q", got, c.want)
			}
		})
	}
	t.Run("duplicate ids", func(t *testing.T) {
		ps := problems(t, body(act("id", `"x"`), act("id", `"y"`), act("id", `"x"`), act("id", `"x"`)))
		want := []action.FieldError{
			{Field: "actions[2].id", Reason: "duplicates actions[0].id"},
			{Field: "actions[3].id", Reason: "duplicates actions[0].id"},
		}
		if !reflect.DeepEqual(ps, want) {
			t.Fatalf("problems = %+v; want %+v", ps, want)
		}
	})
}

func TestBodyShape(t *testing.T) {
	many := func(n int) []byte {
		as := make([]string, n)
		for i := range as {
			as[i] = act("id", q("a"+strconv.Itoa(i)))
		}
		return body(as...)
	}
	cases := []struct {
		name string
		body []byte
		want []action.FieldError
	}{
		{"array body", []byte(`[]`), []action.FieldError{{"", "request body must be a JSON object"}}},
		{"null body", []byte(` null `), []action.FieldError{{"", "request body must be a JSON object"}}},
		{"string body", []byte(`"x"`), []action.FieldError{{"", "request body must be a JSON object"}}},
		{"no actions", []byte(`{}`), []action.FieldError{{"actions", "is required"}}},
		{"actions null", []byte(`{"actions":null}`), []action.FieldError{{"actions", "is required"}}},
		{"actions object", []byte(`{"actions":{}}`), []action.FieldError{{"actions", "must be an array"}}},
		{"actions string", []byte(`{"actions":"[]"}`), []action.FieldError{{"actions", "must be an array"}}},
		{"empty actions", []byte(`{"actions":[]}`), []action.FieldError{{"actions", "must hold 1 to 1000 actions, got 0"}}},
		{"1001 actions", many(1001), []action.FieldError{{"actions", "must hold 1 to 1000 actions, got 1001"}}},
		{"unknown top-level key", []byte(`{"actions":[` + act() + `],"Actions":[]}`), []action.FieldError{{"Actions", "unknown field"}}},
		{"duplicate actions key", []byte(`{"actions":[` + act() + `],"actions":[]}`), []action.FieldError{{"actions", "duplicate key"}}},
		{"action not object", body(act(), `"x"`, `[]`), []action.FieldError{{"actions[1]", "must be an object"}, {"actions[2]", "must be an object"}}},
		{"unknown action key", body(act("ext_info", `{}`)), []action.FieldError{{"actions[0].ext_info", "unknown field"}}},
		{"unknown field with tricky content", body(act("x", `[ "]}\\\"" , {"a" : "}{[" }, [[]], -1.5e3, null ]`)), []action.FieldError{{"actions[0].x", "unknown field"}}},
		{"key differing in case", body(act("id", `"a"`, "ID", `"b"`)), []action.FieldError{{"actions[0].ID", "unknown field"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := problems(t, c.body); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("problems = %+v; want %+v", got, c.want)
			}
		})
	}
	t.Run("1000 actions", func(t *testing.T) {
		if got := accept(t, many(1000)); len(got) != 1000 || got[999].ID != "a999" {
			t.Fatalf("got %d actions", len(got))
		}
	})
	t.Run("repeated id key", func(t *testing.T) {
		b := []byte(`{"actions":[{"id":"a","id":"b","track":"payment","action_type":"REGISTER","action_time":` +
			strconv.FormatInt(now.Unix(), 10) + `,"trace":{"click_id":"c"}}]}`)
		want := []action.FieldError{{"actions[0].id", "duplicate key"}}
		if got := problems(t, b); !reflect.DeepEqual(got, want) {
			t.Fatalf("problems = %+v; want %+v", got, want)
		}
	})
	t.Run("escaped key", func(t *testing.T) {
		b := []byte(`{"\u0061ctions":[{"\u0069d":"a","track":"payment","action_type":"REGISTER","action_time":` +
			strconv.FormatInt(now.Unix(), 10) + `,"trace":{"click_id":"c"}}]}`)
		if got := accept(t, b); got[0].ID != "a" {
			t.Fatalf("got %+v", got)
		}
	})
}

func TestSyntaxError(t *testing.T) {
	cases := []struct {
		name   string
		body   string
		offset int64
	}{
		{"empty", ``, 0},
		{"whitespace", `  `, 2},
		{"truncated", `{"actions":[`, 12},
		{"bad value", `{"actions":[}`, 13},
		{"trailing garbage", `{"actions":[]} x`, 16},
		{"two objects", `{"actions":[]}{}`, 15},
		{"single quotes", `{'actions':[]}`, 2},
		{"trailing comma", `{"actions":[{},]}`, 16},
		{"control char in string", "{\"actions\":[\"a\x01\"]}", 15},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := action.Decode([]byte(c.body), now)
			var se *action.SyntaxError
			if got != nil || !errors.As(err, &se) {
				t.Fatalf("Decode = %v, %T %v; want nil, *SyntaxError", got, err, err)
			}
			if se.Offset != c.offset {
				t.Fatalf("Offset = %d; want %d (%s)", se.Offset, c.offset, se.Msg)
			}
			if want := "malformed JSON at byte " + strconv.FormatInt(c.offset, 10) + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("Error() = %q; want prefix %q", err.Error(), want)
			}
		})
	}
}

func TestAllOrNothing(t *testing.T) {
	good := func(id string) string { return act("id", q(id)) }
	bad := act("id", `"bad"`, "track", `"payment"`, "action_type", `"CREDIT"`)
	got, err := action.Decode(body(good("g1"), bad, good("g2")), now)
	if got != nil || err == nil {
		t.Fatalf("Decode = %v, %v; want nil and an error", got, err)
	}
	want := []action.FieldError{{"actions[1].action_type", "CREDIT is not allowed on track payment (allowed: VIEW_CONTENT, REGISTER, RESERVATION, CONFIRM_EFFECTIVE_LEADS)"}}
	if ps := problems(t, body(good("g1"), bad, good("g2"))); !reflect.DeepEqual(ps, want) {
		t.Fatalf("problems = %+v; want %+v", ps, want)
	}
	if got := accept(t, body(good("g1"), good("g2"))); len(got) != 2 {
		t.Fatalf("got %d actions; want 2", len(got))
	}
}

func TestMultipleProblems(t *testing.T) {
	b := []byte(`{"extra":1,"actions":[` +
		act("id", `"ok-0"`) + `,` +
		`{"id":"a b","track":"payment","action_type":"CREDIT","action_time":"yesterday","user_id":{"phone":"12","wechat_app_id":"wx"},"action_param":{"credit_level":9,"foo":1},"bar":true},` +
		act("id", `"ok-2"`, "action_param", `{"risk_overdue":6}`, "action_type", `"WITHDRAW_DEPOSITS"`) +
		`]}`)
	want := []action.FieldError{
		{"extra", "unknown field"},
		// CREDIT is refused on payment, so the parameter is only range-checked.
		{"actions[1].action_param.credit_level", "must be 1, 2 or 3"},
		{"actions[1].action_param.foo", "unknown parameter"},
		{"actions[1].action_time", "must be an RFC 3339 time such as 2026-11-23T10:15:00+08:00"},
		{"actions[1].action_type", "CREDIT is not allowed on track payment (allowed: VIEW_CONTENT, REGISTER, RESERVATION, CONFIRM_EFFECTIVE_LEADS)"},
		{"actions[1].bar", "unknown field"},
		{"actions[1].id", "must be 1-128 characters of [A-Za-z0-9._:-]"},
		{"actions[1].user_id.phone", "must be an 11-digit mainland China mobile number (optionally +86, spaces, dashes)"},
		{"actions[1].user_id.wechat_app_id", "is only allowed with wechat_openid or wechat_unionid"},
		{"actions[2].action_param.risk_overdue", "must be 1, 2, 3, 4 or 5"},
	}
	ps := problems(t, b)
	if !reflect.DeepEqual(ps, want) {
		t.Fatalf("problems =\n%+v\nwant\n%+v", ps, want)
	}
	_, err := action.Decode(b, now)
	if msg := err.Error(); !strings.HasPrefix(msg, "invalid actions request: extra: unknown field; actions[1].action_param.credit_level: ") {
		t.Fatalf("Error() = %q", msg)
	}
}

func TestProblemCap(t *testing.T) {
	as := make([]string, 1000)
	for i := range as {
		as[i] = act("id", `"x y"`, "track", `"nope"`) // two problems each
	}
	ps := problems(t, body(as...))
	if len(ps) != 101 {
		t.Fatalf("got %d problems; want 100 + summary", len(ps))
	}
	if got, want := ps[100], (action.FieldError{Field: "", Reason: "... 1900 more problems"}); got != want {
		t.Fatalf("last = %+v; want %+v", got, want)
	}
	if ps[98].Field != "actions[49].id" || ps[99].Field != "actions[49].track" {
		t.Fatalf("problems 98, 99 = %+v, %+v", ps[98], ps[99])
	}
}

func TestProblemCapManyKeys(t *testing.T) {
	var sb strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&sb, `"k%04d":1,`, 4999-i)
	}
	// 2 top-level + 5000 action keys + 4 missing fields = 5006 problems.
	b := []byte(`{"z":1,"actions":[{` + sb.String() + `"id":"a"}],"y":2}`)
	ps := problems(t, b)
	if len(ps) != 101 || ps[100].Reason != "... 4906 more problems" {
		t.Fatalf("got %d problems, last %+v", len(ps), ps[len(ps)-1])
	}
	want := []action.FieldError{{"y", "unknown field"}, {"z", "unknown field"},
		{"actions[0].action_time", "is required"}, {"actions[0].action_type", "is required"}, {"actions[0].k0000", "unknown field"}}
	if !reflect.DeepEqual(ps[:5], want) || ps[99].Field != "actions[0].k0095" {
		t.Fatalf("first problems %+v, 100th %+v", ps[:5], ps[99])
	}
}

func TestNoPersonalDataInErrors(t *testing.T) {
	hash := md5hex(testPhone)
	bodies := map[string][]byte{
		"bad phone":                      body(act("user_id", `{"phone":"+86 13800138000 0"}`)),
		"phone with hash":                body(act("user_id", `{"phone":"13800138000","hash_phone":"`+hash+`"}`)),
		"phone with bad action":          body(act("track", `"payment"`, "action_type", `"CREDIT"`, "user_id", `{"phone":"138-0013-8000"}`)),
		"phone as track":                 body(act("track", `"13800138000"`, "user_id", `{"phone":"13800138000"}`)),
		"phone in action_type":           body(act("action_type", `"X13800138000X"`, "user_id", `{"phone":"13800138000"}`)),
		"hash as track":                  body(act("track", q(hash), "user_id", `{"phone":"13800138000"}`)),
		"hash as action_type":            body(act("action_type", q(strings.ToUpper(hash)), "user_id", `{"phone":"13800138000"}`)),
		"phone as key":                   body(act("13800138000", "1", "user_id", `{"phone":"13800138000"}`)),
		"phone as param key":             body(act("action_param", `{"p13800138000":1}`, "user_id", `{"phone":"13800138000"}`)),
		"phone as top key":               []byte(`{"13800138000":1,"actions":[` + act("user_id", `{"phone":"13800138000"}`) + `]}`),
		"phone as user_id key":           body(act("user_id", `{"13800138000":"13800138000"}`)),
		"hash as user_id key":            body(act("user_id", `{"`+hash+`":"x"}`)),
		"phone as id":                    body(act("id", `"13800138000 "`, "user_id", `{"phone":"13800138000"}`)),
		"phone not string":               body(act("user_id", `{"phone":13800138000}`)),
		"user_id not object":             body(act("user_id", `["13800138000"]`)),
		"phone unknown in trace":         body(act("trace", `{"phone":"13800138000"}`)),
		"phone past time":                body(act("action_time", `"13800138000"`)),
		"phone as param value":           body(act("action_param", `{"credit_level":13800138000}`)),
		"syntax error after phone":       []byte(`{"actions":[{"user_id":{"phone":"13800138000"}}]`),
		"phone with separators as track": body(act("track", `"138-0013-8000"`, "user_id", `{"phone":"13800138000"}`)),
		"phone as a valid-looking id":    body(act("id", `"13800138000"`, "user_id", `{"phone":"13800138000"}`)),
	}
	for name, b := range bodies {
		t.Run(name, func(t *testing.T) {
			_, err := action.Decode(b, now)
			if err == nil {
				t.Fatal("want an error")
			}
			msg := err.Error()
			var ve *action.ValidationError
			if errors.As(err, &ve) {
				js, _ := json.Marshal(ve.Problems)
				msg += string(js)
			}
			for _, secret := range []string{testPhone, hash, strings.ToUpper(hash), "138-0013-8000"} {
				if strings.Contains(msg, secret) {
					t.Fatalf("error %q leaks %q", msg, secret)
				}
			}
		})
	}
}

func TestStoredForm(t *testing.T) {
	b := []byte(`{"actions":[{
	  "id": "loan-app-000123",
	  "track": "personal_loan",
	  "action_type": "WITHDRAW_DEPOSITS",
	  "action_time": "2026-11-23T10:15:00+08:00",
	  "user_id": {"phone": "+86 138-0013-8000"},
	  "trace": {"click_id": "wx0ckabc"},
	  "action_param": {"withdraw_deposits_level": 1, "risk_overdue": 1}
	}]}`)
	got := accept(t, b)
	want := []action.Action{{
		ID:          "loan-app-000123",
		Track:       "personal_loan",
		ActionType:  "WITHDRAW_DEPOSITS",
		ActionTime:  time.Date(2026, 11, 23, 2, 15, 0, 0, time.UTC).Unix(),
		UserID:      &action.UserID{HashPhone: md5hex("13800138000")},
		Trace:       &action.Trace{ClickID: "wx0ckabc"},
		ActionParam: map[string]int{"withdraw_deposits_level": 1, "risk_overdue": 1},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v; want %+v", got, want)
	}
	js, _ := json.Marshal(got[0])
	wantJS := `{"id":"loan-app-000123","track":"personal_loan","action_type":"WITHDRAW_DEPOSITS","action_time":1795400100,` +
		`"user_id":{"hash_phone":"` + md5hex("13800138000") + `"},"trace":{"click_id":"wx0ckabc"},` +
		`"action_param":{"risk_overdue":1,"withdraw_deposits_level":1}}`
	if string(js) != wantJS {
		t.Fatalf("stored JSON =\n%s\nwant\n%s", js, wantJS)
	}
	// The stored form is itself a valid request and decodes to the same actions.
	again := accept(t, []byte(`{"actions":[`+string(js)+`]}`))
	if !reflect.DeepEqual(again, got) {
		t.Fatalf("re-decoded %+v; want %+v", again, got)
	}
}

func benchBody(n int) []byte {
	as := make([]string, n)
	for i := range as {
		as[i] = fmt.Sprintf(`{"id":"loan-app-%06d","track":"personal_loan","action_type":"WITHDRAW_DEPOSITS",`+
			`"action_time":"2026-11-23T10:15:00+08:00","user_id":{"phone":"+86 138-0013-%04d"},`+
			`"trace":{"click_id":"wx0ck%08d"},"action_param":{"withdraw_deposits_level":1,"risk_overdue":1}}`, i, i%10000, i)
	}
	return body(as...)
}

func BenchmarkDecode(b *testing.B) {
	for _, n := range []int{1, 100} {
		data := benchBody(n)
		if _, err := action.Decode(data, now); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("actions=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := action.Decode(data, now); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/action")
		})
	}
}
