package action_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/outpost-agent/outpost/action"
)

// TestMoreUserIDs: the user_id forms of Tencent's v3 model the agent
// did not take before: hash_android_id (MD5), the md5_sha256_* forms
// (SHA-256 of the MD5) and the CAID with its version.
func TestMoreUserIDs(t *testing.T) {
	hex32 := "0123456789ABCDEFabcdef0123456789"
	hex64 := strings.Repeat("ABCDEF0123456789", 4)
	lo32, lo64 := strings.ToLower(hex32), strings.ToLower(hex64)
	cases := []struct {
		name, userID  string
		want          *action.UserID
		field, reason string
	}{
		{"hash_android_id", `{"hash_android_id":"` + hex32 + `"}`, &action.UserID{HashAndroidID: lo32}, "", ""},
		{"md5_sha256_imei", `{"md5_sha256_imei":"` + hex64 + `"}`, &action.UserID{MD5SHA256IMEI: lo64}, "", ""},
		{"md5_sha256_idfa", `{"md5_sha256_idfa":"` + hex64 + `"}`, &action.UserID{MD5SHA256IDFA: lo64}, "", ""},
		{"md5_sha256_oaid", `{"md5_sha256_oaid":"` + hex64 + `"}`, &action.UserID{MD5SHA256OAID: lo64}, "", ""},
		{"caid", `{"caid":"` + lo32 + `"}`, &action.UserID{CAID: lo32}, "", ""},
		{"caid with version", `{"caid":"` + lo32 + `","caid_version":20230330}`, &action.UserID{CAID: lo32, CAIDVersion: 20230330}, "", ""},
		{"all at once", `{"hash_android_id":"` + hex32 + `","md5_sha256_oaid":"` + hex64 + `","caid":"c1"}`,
			&action.UserID{HashAndroidID: lo32, MD5SHA256OAID: lo64, CAID: "c1"}, "", ""},

		{"hash_android_id 64", `{"hash_android_id":"` + hex64 + `"}`, nil, "actions[0].user_id.hash_android_id", "must be 32 hex characters (MD5)"},
		{"md5_sha256_imei 32", `{"md5_sha256_imei":"` + hex32 + `"}`, nil, "actions[0].user_id.md5_sha256_imei", "must be 64 hex characters (SHA-256)"},
		{"md5_sha256_idfa non-hex", `{"md5_sha256_idfa":"` + strings.Repeat("z", 64) + `"}`, nil, "actions[0].user_id.md5_sha256_idfa", "must be 64 hex characters (SHA-256)"},
		{"caid 65", `{"caid":"` + strings.Repeat("c", 65) + `"}`, nil, "actions[0].user_id.caid", "must be 1-64 printable ASCII characters"},
		{"caid empty", `{"caid":""}`, nil, "actions[0].user_id.caid", "must be 1-64 printable ASCII characters"},
		{"caid_version alone", `{"caid_version":1,"hash_android_id":"` + hex32 + `"}`, nil, "actions[0].user_id.caid_version", "is only allowed with caid"},
		{"caid_version string", `{"caid":"c","caid_version":"20230330"}`, nil, "actions[0].user_id.caid_version", "must be a positive integer"},
		{"caid_version zero", `{"caid":"c","caid_version":0}`, nil, "actions[0].user_id.caid_version", "must be a positive integer"},
		{"caid_version fraction", `{"caid":"c","caid_version":1.5}`, nil, "actions[0].user_id.caid_version", "must be a positive integer"},
		{"caid_version huge", `{"caid":"c","caid_version":99999999999}`, nil, "actions[0].user_id.caid_version", "must be a positive integer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := body(act("user_id", c.userID))
			if c.field != "" {
				wantProblem(t, b, c.field, c.reason)
				return
			}
			got := accept(t, b)
			if !reflect.DeepEqual(got[0].UserID, c.want) {
				t.Fatalf("UserID = %+v; want %+v", got[0].UserID, c.want)
			}
			sameAsMarshal(t, &got[0])
		})
	}
}

// TestOptionalTencentFields: channel, custom_action and product_inform
// are optional; given, they are checked and passed on.
func TestOptionalTencentFields(t *testing.T) {
	long := strings.Repeat("x", 129)
	cases := []struct {
		name          string
		kv            []string
		want          func(a *action.Action) bool
		field, reason string
	}{
		{"none", nil, func(a *action.Action) bool {
			return a.Channel == "" && a.CustomAction == "" && a.ProductInform == nil
		}, "", ""},
		{"channel", []string{"channel", `"TENCENT"`}, func(a *action.Action) bool { return a.Channel == "TENCENT" }, "", ""},
		{"null channel", []string{"channel", `null`}, func(a *action.Action) bool { return a.Channel == "" }, "", ""},
		{"custom_action", []string{"custom_action", `"Speak_frequently"`}, func(a *action.Action) bool { return a.CustomAction == "Speak_frequently" }, "", ""},
		{"custom_action in Chinese", []string{"custom_action", `"多日开口"`}, func(a *action.Action) bool { return a.CustomAction == "多日开口" }, "", ""},
		{"product_inform", []string{"product_inform", `{"content_type":"LOAN","product_catalog_id":"cat-1","product_id":["p1","p2"],"category_path":["贷款","个贷"]}`},
			func(a *action.Action) bool {
				return reflect.DeepEqual(a.ProductInform, &action.ProductInform{ContentType: "LOAN", ProductCatalogID: "cat-1",
					ProductID: []string{"p1", "p2"}, CategoryPath: []string{"贷款", "个贷"}})
			}, "", ""},
		{"product_inform type only", []string{"product_inform", `{"content_type":"BANKCARD"}`},
			func(a *action.Action) bool {
				return reflect.DeepEqual(a.ProductInform, &action.ProductInform{ContentType: "BANKCARD"})
			}, "", ""},
		{"empty product_inform", []string{"product_inform", `{}`}, func(a *action.Action) bool { return a.ProductInform == nil }, "", ""},

		{"channel unknown", []string{"channel", `"WEIBO"`}, nil, "actions[0].channel", "unknown channel"},
		{"channel lower case", []string{"channel", `"tencent"`}, nil, "actions[0].channel", "unknown channel"},
		{"channel number", []string{"channel", `1`}, nil, "actions[0].channel", "must be a string"},
		{"custom_action empty", []string{"custom_action", `""`}, nil, "actions[0].custom_action", "must be 1-128 bytes"},
		{"custom_action long", []string{"custom_action", q(long)}, nil, "actions[0].custom_action", "must be 1-128 bytes"},
		{"custom_action control", []string{"custom_action", `"a\nb"`}, nil, "actions[0].custom_action", "must be 1-128 bytes"},
		{"custom_action bidi", []string{"custom_action", `"a\u202eb"`}, nil, "actions[0].custom_action", "must be 1-128 bytes"},
		{"product_inform not object", []string{"product_inform", `[]`}, nil, "actions[0].product_inform", "must be an object"},
		{"content_type unknown", []string{"product_inform", `{"content_type":"MORTGAGE"}`}, nil, "actions[0].product_inform.content_type", "unknown content_type"},
		{"product_id not array", []string{"product_inform", `{"product_id":"p1"}`}, nil, "actions[0].product_inform.product_id", "must be an array of strings"},
		{"product_id empty", []string{"product_inform", `{"product_id":[]}`}, nil, "actions[0].product_inform.product_id", "must hold 1 to 50 strings"},
		{"product_id number", []string{"product_inform", `{"product_id":["p",1]}`}, nil, "actions[0].product_inform.product_id[1]", "must be a string"},
		{"product_id 51", []string{"product_inform", `{"product_id":[` + strings.Repeat(`"p",`, 50) + `"p"]}`}, nil, "actions[0].product_inform.product_id", "must hold 1 to 50 strings"},
		{"category_path 11", []string{"product_inform", `{"category_path":[` + strings.Repeat(`"c",`, 10) + `"c"]}`}, nil, "actions[0].product_inform.category_path", "must hold 1 to 10 strings"},
		{"catalog id long", []string{"product_inform", `{"product_catalog_id":` + q(long) + `}`}, nil, "actions[0].product_inform.product_catalog_id", "must be a string of 1-128 bytes"},
		{"unknown product key", []string{"product_inform", `{"price":1}`}, nil, "actions[0].product_inform.price", "unknown field"},
		{"duplicate product key", []string{"product_inform", `{"content_type":"LOAN","content_type":"LOAN"}`}, nil, "actions[0].product_inform.content_type", "duplicate key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := body(act(c.kv...))
			if c.field != "" {
				wantProblem(t, b, c.field, c.reason)
				return
			}
			got := accept(t, b)
			if !c.want(&got[0]) {
				t.Fatalf("got %+v", got[0])
			}
			sameAsMarshal(t, &got[0])
			// The stored form is itself a valid request.
			again := accept(t, body(string(got[0].AppendJSON(nil))))
			if !reflect.DeepEqual(again, got) {
				t.Fatalf("re-decoded %+v; want %+v", again[0], got[0])
			}
		})
	}
}

// TestURL: the page URL of an action from an H5/web page: optional, but
// required when the Tencent data source is WEB; an absolute http(s) URL
// of at most 2048 bytes, with no personal data named in its query.
func TestURL(t *testing.T) {
	long := "https://bank.example/" + strings.Repeat("a", 2048-len("https://bank.example/"))
	cases := []struct {
		name, url     string // url "-" leaves it out
		web           bool
		want          string
		field, reason string
	}{
		{"https", `"https://bank.example/loan/apply?gdt_vid=wx0abc&utm_source=tencent#step2"`, false, "https://bank.example/loan/apply?gdt_vid=wx0abc&utm_source=tencent#step2", "", ""},
		{"http with port", `"http://h5.bank.example:8080/a"`, true, "http://h5.bank.example:8080/a", "", ""},
		{"2048 bytes", q(long), true, long, "", ""},
		{"non-ASCII path", `"https://bank.example/贷款/申请"`, true, "https://bank.example/贷款/申请", "", ""},
		{"absent, not web", "-", false, "", "", ""},
		{"null, not web", "null", false, "", "", ""},

		{"absent, web", "-", true, "", "actions[0].url", "is required: the Tencent data source is WEB"},
		{"null, web", "null", true, "", "actions[0].url", "is required: the Tencent data source is WEB"},
		{"2049 bytes", q(long + "a"), false, "", "actions[0].url", "must be an absolute http or https URL"},
		{"empty", `""`, true, "", "actions[0].url", "must be an absolute http or https URL"},
		{"relative", `"/loan/apply"`, false, "", "actions[0].url", "must be an absolute http or https URL"},
		{"no host", `"https:///apply"`, false, "", "actions[0].url", "must be an absolute http or https URL"},
		{"ftp", `"ftp://bank.example/a"`, false, "", "actions[0].url", "must be an absolute http or https URL"},
		{"javascript", `"javascript:alert(1)"`, false, "", "actions[0].url", "must be an absolute http or https URL"},
		{"space", `"https://bank.example/a b"`, false, "", "actions[0].url", "must be an absolute http or https URL"},
		{"control", `"https://bank.example/a\u0000"`, false, "", "actions[0].url", "must be an absolute http or https URL"},
		{"bad escape", `"https://bank.example/%zz"`, false, "", "actions[0].url", "must be an absolute http or https URL"},
		{"number", `5`, false, "", "actions[0].url", "must be a string"},
		{"user info", `"https://user:pw@bank.example/a"`, false, "", "actions[0].url", "must not carry a user name or password"},
		{"phone in query", `"https://bank.example/a?phone=13800138000"`, false, "", "actions[0].url", `query parameter "phone" holds personal data`},
		{"mobile_no in query", `"https://bank.example/a?x=1&mobile_no=1"`, false, "", "actions[0].url", `query parameter "mobile_no" holds personal data`},
		{"token in query", `"https://bank.example/a?access_token=abc"`, false, "", "actions[0].url", `query parameter "access_token" holds personal data or a secret`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := action.Options{}
			if c.web {
				opts.DataSource = action.DataSourceWeb
			}
			b := body(act("url", c.url))
			got, err := action.DecodeWith(b, now, opts)
			if c.field != "" {
				var ve *action.ValidationError
				if got != nil || !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Field != c.field || !strings.Contains(ve.Problems[0].Reason, c.reason) {
					t.Fatalf("got %v, %v; want one problem %s: %s", got, err, c.field, c.reason)
				}
				if strings.Contains(err.Error(), "13800138000") {
					t.Fatalf("error echoes the phone number: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got[0].URL != c.want {
				t.Fatalf("url %q, want %q", got[0].URL, c.want)
			}
			sameAsMarshal(t, &got[0])
		})
	}
	// Every other data source type leaves url optional.
	for _, ds := range action.DataSourceTypes() {
		if _, err := action.DecodeWith(body(act()), now, action.Options{DataSource: ds}); (err != nil) != (ds == action.DataSourceWeb) {
			t.Errorf("data source %s, no url: %v", ds, err)
		}
	}
}
