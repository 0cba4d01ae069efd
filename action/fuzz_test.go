package action_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/action"
)

func FuzzDecode(f *testing.F) {
	seeds := []string{
		string(benchBody(1)),
		string(benchBody(3)),
		`{"actions":[{"id":"e1","track":"enterprise_loan","action_type":"CREDIT","action_time":"2026-11-23T10:15:00+08:00","user_id":{"wechat_openid":"o1","wechat_app_id":"wx1"},"action_param":{"credit_level":2}}]}`,
		`{"actions":[{"id":"w1","track":"wealth_management","action_type":"COMPLETE_ORDER","action_time":1795400100,"trace":{"click_id":"c"},"action_param":{"complete_order_level":3}}]}`,
		`{"actions":[{"id":"w2","track":"wealth_management","action_type":"COMPLETE_ORDER","action_time":1795400100,"user_id":{"hash_android_id":"0123456789abcdef0123456789ABCDEF","caid":"c1","caid_version":2},"channel":"TENCENT","custom_action":"x","product_inform":{"content_type":"FINANCIAL","product_id":["a","b"],"category_path":["c"]}}]}`,
		`{"actions":[{"id":"p1","track":"payment","action_type":"VIEW_CONTENT","action_time":1795400100,"user_id":{"hash_imei":"0123456789ABCDEF0123456789abcdef","phone":"8613800138000"}}]}`,
		`{"actions":[{"id":"x","track":"payment","action_type":"CREDIT","action_time":"yesterday","user_id":{"phone":"+86 138-0013-8000","hash_phone":"x"},"action_param":{"credit_level":1.5}}]}`,
		`{"actions":[{"id":"d","track":"credit_card_short","action_type":"REGISTER","action_time":1795400100,"trace":{"click_id":"a"}},{"id":"d","track":"13800138000","action_type":"13800138000","action_time":0,"user_id":{"13800138000":"13800138000"}}]}`,
		`{"actions":[],"phone":"13800138000"}`,
		`{"actions":[{"id":"\u0069","track":"personal_loan","action_type":"WITHDRAW_DEPOSITS","action_time":1795400100,"user_id":{"phone":"\u0031\u00338001380\u00300"},"action_param":{"risk_overdue":6,"x":1}}]}`,
		`{"actions":[{"user_id":{"phone":"13800138000"}}]} trailing`,
		`[{"actions":null}]`,
		``,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		acts, err := action.Decode(in, now)
		if err != nil {
			if acts != nil {
				t.Fatalf("actions returned with error %v", err)
			}
			checkError(t, in, err)
			return
		}
		if len(acts) == 0 || len(acts) > action.MaxActions {
			t.Fatalf("accepted %d actions", len(acts))
		}
		checkActions(t, in, acts)
	})
}

var (
	digitRun = regexp.MustCompile(`[0-9]{11,}`)
	lowerHex = regexp.MustCompile(`^[0-9a-f]+$`)
)

// phoneValues returns every string value of a "phone" member anywhere in a
// valid JSON text, including repeated keys.
func phoneValues(in []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(in))
	var out []string
	// stack of container kinds; for objects, whether the next token is a key.
	type frame struct{ obj, wantKey bool }
	var stack []frame
	lastKey := ""
	for {
		tok, err := dec.Token()
		if err != nil {
			return out
		}
		top := len(stack) - 1
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if top >= 0 && stack[top].obj {
					stack[top].wantKey = true
				}
				stack = append(stack, frame{obj: d == '{', wantKey: d == '{'})
			default:
				stack = stack[:top]
			}
			continue
		}
		if top >= 0 && stack[top].obj {
			if stack[top].wantKey {
				lastKey, _ = tok.(string)
				stack[top].wantKey = false
				continue
			}
			stack[top].wantKey = true
			if s, ok := tok.(string); ok && lastKey == "phone" {
				out = append(out, s)
			}
		}
	}
}

// secrets returns the strings no error message may contain: every 11-digit
// window of a digit run in a phone value, and the MD5 of the normalised
// phone.
func secrets(in []byte) []string {
	var out []string
	for _, p := range phoneValues(in) {
		for _, run := range digitRun.FindAllString(p, -1) {
			for j := 0; j+11 <= len(run); j++ {
				out = append(out, run[j:j+11])
			}
		}
		if d, ok := normalisePhone(p); ok {
			out = append(out, d, md5hex(d), strings.ToUpper(md5hex(d)))
		}
	}
	return out
}

// normalisePhone is the test's own reading of the phone rule.
func normalisePhone(p string) (string, bool) {
	p = strings.NewReplacer(" ", "", "-", "").Replace(p)
	if len(p) == 14 && strings.HasPrefix(p, "+86") {
		p = p[3:]
	} else if len(p) == 13 && strings.HasPrefix(p, "86") {
		p = p[2:]
	}
	if len(p) != 11 || p[0] != '1' || strings.Trim(p, "0123456789") != "" {
		return "", false
	}
	return p, true
}

func checkError(t *testing.T, in []byte, err error) {
	var se *action.SyntaxError
	var ve *action.ValidationError
	switch {
	case errors.As(err, &se):
		if json.Valid(in) {
			t.Fatalf("SyntaxError %v for valid JSON", err)
		}
		if se.Offset < 0 || se.Offset > int64(len(in)) {
			t.Fatalf("offset %d outside body of %d bytes", se.Offset, len(in))
		}
		return
	case errors.As(err, &ve):
		if !json.Valid(in) {
			t.Fatalf("ValidationError %v for invalid JSON", err)
		}
		if n := len(ve.Problems); n == 0 || n > 101 {
			t.Fatalf("%d problems", n)
		}
		for _, p := range ve.Problems {
			if p.Reason == "" {
				t.Fatalf("problem without reason: %+v", p)
			}
		}
	default:
		t.Fatalf("error %T %v is neither *SyntaxError nor *ValidationError", err, err)
	}
	msg := err.Error()
	js, _ := json.Marshal(ve.Problems)
	for _, s := range secrets(in) {
		if strings.Contains(msg, s) || strings.Contains(string(js), s) {
			t.Fatalf("error leaks %q: %s", s, msg)
		}
	}
}

func checkActions(t *testing.T, in []byte, acts []action.Action) {
	if !json.Valid(in) {
		t.Fatalf("accepted invalid JSON")
	}
	lo, hi := now.Add(-30*24*time.Hour).Unix(), now.Add(5*time.Minute).Unix()
	ids := map[string]bool{}
	for i, a := range acts {
		if ids[a.ID] {
			t.Fatalf("actions[%d]: duplicate id accepted", i)
		}
		ids[a.ID] = true
		if !slices.Contains(wantTracks[a.Track], a.ActionType) {
			t.Fatalf("actions[%d]: %s on %s accepted", i, a.ActionType, a.Track)
		}
		if a.ActionTime < lo || a.ActionTime > hi {
			t.Fatalf("actions[%d]: action_time %d outside [%d, %d]", i, a.ActionTime, lo, hi)
		}
		if a.UserID == nil && (a.Trace == nil || a.Trace.ClickID == "") {
			t.Fatalf("actions[%d]: neither user_id nor click_id", i)
		}
		if u := a.UserID; u != nil {
			js, _ := json.Marshal(u)
			if strings.Contains(string(js), `"phone"`) || *u == (action.UserID{}) {
				t.Fatalf("actions[%d]: bad user_id %s", i, js)
			}
			for _, h := range []string{u.HashPhone, u.HashIMEI, u.HashIDFA, u.HashOAID, u.SHA256Phone,
				u.HashAndroidID, u.MD5SHA256IMEI, u.MD5SHA256IDFA, u.MD5SHA256OAID} {
				if h != "" && !lowerHex.MatchString(h) {
					t.Fatalf("actions[%d]: hash %q not lower-case hex", i, h)
				}
			}
		}
		for name, v := range a.ActionParam {
			ok := false
			for _, p := range wantParams {
				ok = ok || p.name == name && v >= 1 && v <= p.max && slices.Contains(p.where, [2]string{a.Track, a.ActionType})
			}
			if !ok {
				t.Fatalf("actions[%d]: action_param %s=%d accepted on %s/%s", i, name, v, a.Track, a.ActionType)
			}
		}
	}
	// Differential check against encoding/json: the walker picked the same
	// values, and the input's phones are stored as the MD5 of the
	// normalised number.
	var req struct {
		Actions []struct {
			ID         string `json:"id"`
			Track      string `json:"track"`
			ActionType string `json:"action_type"`
			UserID     *struct {
				Phone        *string `json:"phone"`
				WechatOpenID string  `json:"wechat_openid"`
			} `json:"user_id"`
			Trace *struct {
				ClickID string `json:"click_id"`
			} `json:"trace"`
		} `json:"actions"`
	}
	if err := json.Unmarshal(in, &req); err != nil || len(req.Actions) != len(acts) {
		t.Fatalf("encoding/json reads %d actions (%v); Decode accepted %d", len(req.Actions), err, len(acts))
	}
	for i, r := range req.Actions {
		a := acts[i]
		if r.ID != a.ID || r.Track != a.Track || r.ActionType != a.ActionType {
			t.Fatalf("actions[%d]: encoding/json reads %q %q %q; Decode %q %q %q", i, r.ID, r.Track, r.ActionType, a.ID, a.Track, a.ActionType)
		}
		if r.Trace != nil && r.Trace.ClickID != "" && (a.Trace == nil || a.Trace.ClickID != r.Trace.ClickID) {
			t.Fatalf("actions[%d]: click_id %q stored as %+v", i, r.Trace.ClickID, a.Trace)
		}
		if r.UserID == nil {
			continue
		}
		if r.UserID.WechatOpenID != "" && (a.UserID == nil || a.UserID.WechatOpenID != r.UserID.WechatOpenID) {
			t.Fatalf("actions[%d]: wechat_openid %q stored as %+v", i, r.UserID.WechatOpenID, a.UserID)
		}
		if r.UserID.Phone == nil {
			continue
		}
		d, ok := normalisePhone(*r.UserID.Phone)
		if !ok || a.UserID == nil || a.UserID.HashPhone != md5hex(d) {
			t.Fatalf("actions[%d]: phone %q stored as %+v", i, *r.UserID.Phone, a.UserID)
		}
	}
	// The stored form is stable: it is itself a valid request that decodes
	// to the same actions, and marshals to the same bytes.
	stored, err := json.Marshal(acts)
	if err != nil {
		t.Fatal(err)
	}
	again, err := action.Decode([]byte(`{"actions":`+string(stored)+`}`), now)
	if err != nil {
		t.Fatalf("stored form %s does not re-validate: %v", stored, err)
	}
	if restored, _ := json.Marshal(again); !bytes.Equal(restored, stored) {
		t.Fatalf("stored form not stable:\n%s\n%s", stored, restored)
	}
}
