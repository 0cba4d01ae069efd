package action_test

import (
	"encoding/json"
	"testing"

	"github.com/outpost-agent/outpost/action"
)

func sameAsMarshal(t *testing.T, a *action.Action) {
	t.Helper()
	want, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.AppendJSON(nil); string(got) != string(want) {
		t.Fatalf("AppendJSON:\n got %s\nwant %s", got, want)
	}
}

func TestAppendJSONMatchesMarshal(t *testing.T) {
	for name, a := range map[string]*action.Action{
		"minimal": {ID: "a", Track: "payment", ActionType: "REGISTER", ActionTime: 1},
		"full": {ID: "loan-app-000123", Track: "personal_loan", ActionType: "WITHDRAW_DEPOSITS", ActionTime: 1763864100,
			UserID: &action.UserID{HashPhone: "0123abcd", SHA256Phone: "ff", WechatOpenID: "o-1", WechatAppID: "wx1",
				WechatUnionID: "u", HashIMEI: "i", HashIDFA: "d", HashOAID: "o"},
			Trace:       &action.Trace{ClickID: "click-1"},
			ActionParam: map[string]int{"withdraw_deposits_level": 1, "risk_overdue": 5, "credit_level": 2}},
		"new fields": {ID: "n1", Track: "payment", ActionType: "REGISTER", ActionTime: 1,
			UserID: &action.UserID{HashAndroidID: "a", MD5SHA256IMEI: "b", MD5SHA256IDFA: "c", MD5SHA256OAID: "d", CAID: "e", CAIDVersion: 20230330},
			URL:    "https://bank.example/apply?a=1&b=<2>", Channel: "TENCENT", CustomAction: "Speak_frequently",
			ProductInform: &action.ProductInform{ContentType: "LOAN", ProductCatalogID: "cat", ProductID: []string{"p1", "p<2>"}, CategoryPath: []string{"贷款", "个贷"}}},
		"caid version alone":    {ID: "c", UserID: &action.UserID{CAIDVersion: -1}},
		"product_inform partly": {ID: "p", ProductInform: &action.ProductInform{CategoryPath: []string{"a"}}},
		"product_inform ids":    {ID: "p", ProductInform: &action.ProductInform{ProductCatalogID: "c", ProductID: []string{"x"}}},
		"empty product_inform":  {ID: "p", ProductInform: &action.ProductInform{ProductID: []string{}}},
		"empty blocks":          {ID: "x", Track: "t", ActionType: "y", ActionTime: -5, UserID: &action.UserID{}, Trace: &action.Trace{}, ActionParam: map[string]int{}},
		"escaping":              {ID: `q"\<>&`, Track: "é\u2028\x01", ActionType: "\xff\xfe", Trace: &action.Trace{ClickID: "tab\there"}},
		"negative numbers":      {ID: "n", ActionParam: map[string]int{"b": -1, "a": 0}},
	} {
		t.Run(name, func(t *testing.T) { sameAsMarshal(t, a) })
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("loan-1", "personal_loan", "CREDIT", int64(1763864100), "abc", "click", "credit_level", 2)
	f.Add("<&>", "\u2028", "\xff", int64(-1), "", "", "", 0)
	f.Fuzz(func(t *testing.T, id, track, typ string, at int64, phone, click, pk string, pv int) {
		a := &action.Action{ID: id, Track: track, ActionType: typ, ActionTime: at}
		if phone != "" {
			a.UserID = &action.UserID{HashPhone: phone, WechatOpenID: phone}
		}
		if click != "" {
			a.Trace = &action.Trace{ClickID: click}
		}
		if pk != "" {
			a.ActionParam = map[string]int{pk: pv, pk + "x": -pv}
		}
		sameAsMarshal(t, a)
	})
}

func BenchmarkEncodeAction(b *testing.B) {
	a := &action.Action{ID: "loan-app-000123", Track: "personal_loan", ActionType: "WITHDRAW_DEPOSITS", ActionTime: 1763864100,
		UserID:      &action.UserID{HashPhone: "5d41402abc4b2a76b9719d911017c592"},
		Trace:       &action.Trace{ClickID: "wx0abc123"},
		ActionParam: map[string]int{"withdraw_deposits_level": 1, "risk_overdue": 1}}
	b.Run("json.Marshal", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(a); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		buf := make([]byte, 0, 512)
		for b.Loop() {
			buf = a.AppendJSON(buf[:0])
		}
	})
}
