package redact

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestJSON(t *testing.T) {
	in := `{"id":"a1","user_id":{"hash_phone":"0123456789abcdef0123456789abcdef","phone":"13800138000"},` +
		`"card":{"card_no":"6262320120123210","cert_id":"411524198810280019","mobile":"13888888888"},` +
		`"note":"call 13912345678 now","terminal":{"ip":"210.20.10.33"},"amount":5000,"list":[{"certid":"11010519491231002X"}]}`
	out := string(JSON([]byte(in)))
	for _, secret := range []string{"0123456789abcdef0123456789abcdef", "13800138000", "6262320120123210", "411524198810280019", "13888888888", "13912345678", "210.20.10.33", "11010519491231002X"} {
		if strings.Contains(out, secret) {
			t.Errorf("%s survived: %s", secret, out)
		}
	}
	for _, kept := range []string{`"id":"a1"`, `"amount":5000`, `5678`} {
		if !strings.Contains(out, kept) {
			t.Errorf("%s lost: %s", kept, out)
		}
	}
	if got := string(JSON([]byte("not json 13800138000"))); strings.Contains(got, "138") {
		t.Errorf("unparseable payload echoed: %s", got)
	}
}

// TestDeviceIDsMasked: every device identifier of Tencent's user_id is
// masked whole, whatever its shape (a CAID or a hash has no digit run to
// find it by).
func TestDeviceIDsMasked(t *testing.T) {
	keys := []string{"hash_imei", "hash_idfa", "hash_oaid", "hash_android_id", "md5_sha256_imei", "md5_sha256_idfa", "md5_sha256_oaid", "caid"}
	for _, k := range keys {
		out := string(JSON([]byte(`{"user_id":{"` + k + `":"abcdefabcdefabcdef","caid_version":20230330}}`)))
		if strings.Contains(out, "abcdefabcdef") || !strings.Contains(out, `"caid_version":20230330`) {
			t.Errorf("%s: %s", k, out)
		}
	}
}

func TestDigits(t *testing.T) {
	tests := map[string]string{
		"card 6262320120123210 declined": "card ************3210 declined",
		"id 11010519491231002X":          "id **************002X",
		"code 9001 at 2026":              "code 9001 at 2026",
		"phone 13800138000":              "phone *******8000",
		"":                               "",
	}
	for in, want := range tests {
		if got := Digits(in); got != want {
			t.Errorf("Digits(%q) = %q, want %q", in, got, want)
		}
	}
}

// reference is the first implementation of JSON: decode into maps, mask,
// encode. The one-pass rewriter must mean the same document.
func reference(doc []byte) json.RawMessage {
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return json.RawMessage(`"<unparseable payload withheld>"`)
	}
	b, err := json.Marshal(walk(v, clear))
	if err != nil {
		return json.RawMessage(`"<payload withheld>"`)
	}
	return b
}

func walk(v any, m mode) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			under := m
			switch {
			case m == whole || Sensitive(k):
				under = whole
			case NameKey(k):
				under = name
			}
			t[k] = walk(x, under)
		}
		return t
	case []any:
		for i, x := range t {
			t[i] = walk(x, m)
		}
		return t
	case string:
		switch m {
		case whole:
			return Mask(t)
		case name:
			return Name(t)
		}
		return Text(t)
	case float64:
		if m != clear || MasksNumber(t) {
			return "***"
		}
		return t
	}
	return v
}

// FuzzJSON: for any input the rewriter's output is JSON and decodes to the
// same value as the reference's (key order and number spelling may
// differ), and an input that is not JSON gets the placeholder.
func FuzzJSON(f *testing.F) {
	for _, s := range []string{
		`{"id":"a1","user_id":{"phone":"13800138000"},"amount":5000.00,"n":null,"ok":true,"no":false}`,
		`{"card":{"card_no":"6262320120123210","cert_id":"411524198810280019","mobile":"13888888888"},"list":[1,2e3,-0.5,{"ip":"1.2.3.4"}]}`,
		`{"Phone":"13800138000","\u0070hone":"13900139000","note":"\u003cb\u003e 13912345678 caf\u00e9 \" \\"}`,
		` [ "x" , { } , [ ] , "" ] `, `"13800138000"`, `12345678901234567890`, `{"a":{"b":{"mobile":[1,"2",{"x":3}]}}}`,
		`{"dup":"1","dup":"13800138000"}`, "\"\xff\xfe 13800138000\"", `not json`, `{"a":}`, ``,
		`{"ext":{"bank_card":"6222 0212 3456 7890 128","tel":"+86 139 1234 5678","payee_name":"张三","mobile_no":"158-8765-4321"}}`,
		`{"x":13912345678,"y":6222021234567890128,"z":1.3912345678e10,"ts":1764825600000,"n":[{"realName":["Zhang",1]}]}`,
		`{"note":"mail zhang.san@example.com or １３９１２３４５６７８","id":"550e8400-e29b-41d4-a716-446655440000"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		got, want := JSON(doc), reference(doc)
		if !json.Valid(doc) {
			if string(got) != `"<unparseable payload withheld>"` {
				t.Fatalf("not JSON, got %s", got)
			}
			return
		}
		if !json.Valid(got) {
			t.Fatalf("output is not JSON: %s", got)
		}
		if again := JSON(got); !bytes.Equal(again, got) {
			t.Fatalf("masking its own output changed it:\nonce  %s\ntwice %s", got, again)
		}
		if string(want) == `"<unparseable payload withheld>"` {
			return // valid, but a number beyond float64 stopped the reference
		}
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, got)
		}
		if err := json.Unmarshal(want, &w); err != nil {
			t.Fatalf("reference output is not JSON: %v", err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("in  %s\ngot %s\nwant %s", doc, got, want)
		}
	})
}

// go test -run=NONE -bench=JSON -benchmem ./redact/
func BenchmarkJSON(b *testing.B) {
	doc := []byte(`{"id":"loan-app-000123","channel":"app","session_id":"abc0123456789","decision_event":"withdraw",` +
		`"event_time":"2026-11-23T14:20:50.521+08:00","account_id":"123456789","terminal":{"black_box":"bb-0123456789","ip":"210.20.10.33"},` +
		`"ext":{},"event_detail":{"withdraw":{}},"amount":5000,"card":{"card_no":"6262320120123210","cert_id":"411524198810280019","mobile":"13888888888"},` +
		`"credit":{"mode":"revolving","line":10000,"outstanding":2000,"overdue_days":0,"apr":0.18,"valid_until":"2026-12-01"}}`)
	b.Run("rewriter", func(b *testing.B) {
		for b.Loop() {
			JSON(doc)
		}
	})
	b.Run("reference", func(b *testing.B) {
		for b.Loop() {
			reference(doc)
		}
	})
}
