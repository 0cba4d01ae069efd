package redact

import (
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
