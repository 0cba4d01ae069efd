package redact

import (
	"bytes"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestPersonal is the boundary of what an id may be: each case an id and
// the kind Personal names ("" accepted).
func TestPersonal(t *testing.T) {
	tests := []struct{ id, want string }{
		// the ids
		{"13912345678", KindMobile},
		{"11010519491231002X", KindResidentID},
		{"6222021234567890128", KindBankCard},
		{"card:6222-0212-3456-7890-128", KindBankCard},
		// mobile: 1[3-9] and 9 digits, 86 or 0086 before it, written any way
		{"u13912345678", KindMobile},
		{"tel-139-1234-5678", KindMobile},
		{"8613912345678", KindMobile},
		{"+86.139.1234.5678", KindMobile},
		{"008613912345678", KindMobile},
		{"158_8765_4321", KindMobile},
		{"order:158:8765:4321:v2", KindMobile},
		{"tel139-1234-5678", ""}, // a run glued to letters is not joined to the next
		{"12912345678", ""},      // 1 then 2: no mobile network
		{"1391234567", ""},       // 10 digits
		{"139123456789", ""},     // 12 digits: one number, not a mobile in it
		{"1391234567x8", ""},
		// resident ID: date of birth and check digit
		{"411524198810280019", KindResidentID},
		{"id-110105-19491231-002x", KindResidentID},
		{"110105194912310021", ""}, // wrong check digit
		{"41152419881028001X", ""}, // wrong check digit
		{"110105194913310029", ""}, // month 13
		{"011524198810280019", ""}, // no region starts with 0
		{"110105194912310", ""},    // the 15-digit form: not refused
		// bank card: 13-19 digits, Luhn, an issuer's first digit
		{"6262320120123213", KindBankCard},
		{"6222 0212 3456 7890 128", KindBankCard},
		{"pay4111111111111111", KindBankCard},
		{"2221000000000009", KindBankCard}, // Mastercard 2-series
		{"6262320120123210", ""},           // fails Luhn
		{"1000000000009", ""},              // starts with 1: no issuer
		{"20261204123453", ""},             // a timestamp starting 20 (Luhn valid)
		{"2026-1204-1234-5672", ""},        // the same written with hyphens
		{"evt-20261204123456789", ""},      // with milliseconds
		{"1764825600000", ""},              // Unix milliseconds
		{"1764825600000000000", ""},        // Unix nanoseconds
		{"4111111111111111111111", ""},     // 22 digits: not a card
		{"6222021234567890128#tongdun", KindBankCard},
		// ordinary ids
		{"loan-app-000123", ""},
		{"pii-000001", ""},
		{"demo-1", ""},
		{"d18f3a2b4c5d60123456789ab", ""},
		{"550e8400-e29b-41d4-a716-446655440000", ""},
		{"13912345-6222-4021-8345-678901234567", ""}, // a UUID, whatever its digits
		{"0123456789abcdef0123456789abcdef", ""},     // an MD5 in hex
		{"deadbeef13912345678", ""},                  // a long hex word is not looked into
		{"Az09._:-", ""},
		{"v3-000000000123", ""},          // a version, then a sequence number (Luhn valid joined)
		{"lg-ab12c3d7-000000000001", ""}, // cmd/loadgen's ids
		{"", ""},
	}
	for _, tc := range tests {
		if got := Personal(tc.id); got != tc.want {
			t.Errorf("Personal(%q) = %q, want %q", tc.id, got, tc.want)
		}
	}
}

// TestPersonalSparesUUIDsAndTimestamps: no random UUID, hex digest or
// timestamp id is ever refused.
func TestPersonalSparesUUIDsAndTimestamps(t *testing.T) {
	for i := range 20000 {
		var b [16]byte
		rand.Read(b[:])
		u := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
		for _, id := range []string{u, "req-" + u, fmt.Sprintf("%x", b), strings.ToUpper(u)} {
			if k := Personal(id); k != "" {
				t.Fatalf("Personal(%q) = %q", id, k)
			}
		}
		// cmd/loadgen's ids: a run id that may end in digits, then a
		// 12-digit sequence number.
		run := fmt.Sprintf("%x", b[:4])
		for _, id := range []string{fmt.Sprintf("lg-%s-%012d", run, i), fmt.Sprintf("v%d-%012d", i%10, i), fmt.Sprintf("svc%s-%d", run[:3], 1e12+i)} {
			if k := Personal(id); k != "" {
				t.Fatalf("Personal(%q) = %q", id, k)
			}
		}
		ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 37 * time.Minute)
		for _, id := range []string{ts.Format("20060102150405"), ts.Format("20060102150405.000"), fmt.Sprint("evt-", ts.UnixMilli()),
			fmt.Sprint(ts.UnixNano()), ts.Format("2006-01-02T15:04:05"), ts.Format("20060102-150405")} {
			if k := Personal(id); k != "" {
				t.Fatalf("Personal(%q) = %q", id, k)
			}
		}
	}
}

func TestID(t *testing.T) {
	tests := map[string]string{
		"card:6222-0212-3456-7890-128": "card:****-****-****-***0-128",
		"6222021234567890128#tongdun":  "***************0128#tongdun",
		"11010519491231002X":           "**************002X",
		"158_8765_4321":                "***_****_4321",
		"loan-app-000123":              "loan-app-000123",
		"d18f3a2b4c5d60123456789ab":    "d18f3a2b4c5d60123456789ab", // ordinary ids are shown whole
	}
	for in, want := range tests {
		if got := ID(in); got != want {
			t.Errorf("ID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestText(t *testing.T) {
	tests := map[string]string{
		// separators
		"+86 139 1234 5678":       "+** *** **** 5678",
		"158-8765-4321":           "***-****-4321",
		"6222 0212 3456 7890 128": "**** **** **** ***0 128",
		"110105 19491231 002X":    "****** ******** 002X",
		"call 139.1234.5678":      "call ***.****.5678",
		"010-6552 8888":           "***-**** 8888", // a landline: 11 digits
		"１３９１２３４５６７８":             "*******５６７８",
		"e-mail zhang.san@example.com, 13912345678@163.com.": "e-mail z***@example.com, *******5***@163.com.",
		// stays readable
		"2026-11-23T14:20:50.521+08:00":            "2026-11-23T14:20:50.521+08:00",
		"2026-11-23 14:20:50":                      "2026-11-23 14:20:50",
		"210.20.10.33":                             "210.20.10.33",
		"code 9001 at 2026":                        "code 9001 at 2026",
		"req 550e8400-e29b-41d4-a716-446655440000": "req 550e8400-e29b-41d4-a716-446655440000",
		"a@b": "a@b",
		"张三":  "张三",
	}
	for in, want := range tests {
		if got := Text(in); got != want {
			t.Errorf("Text(%q) = %q, want %q", in, got, want)
		}
		if got := Text(want); got != want {
			t.Errorf("Text(%q) = %q: masking a masked text changed it", want, got)
		}
	}
}

func TestKeys(t *testing.T) {
	for _, k := range []string{"phone", "Phone", "bank_card", "tel", "mobile_no", "payee_card", "payeeCard", "contactPhone",
		"home_tel", "user_email", "id_card", "IDCard", "id_card_no", "cert_no", "bankCardNo", "card_number", "payee-mobile"} {
		if !Sensitive(k) {
			t.Errorf("Sensitive(%q) = false", k)
		}
	}
	for _, k := range []string{"card", "session_id", "event_time", "amount", "hotel", "title", "channel", "valid_until",
		"terminal", "ext", "event_detail", "credit", "transaction", "location", "mode", "date", "cards_count"} {
		if Sensitive(k) {
			t.Errorf("Sensitive(%q) = true", k)
		}
	}
	for k, want := range map[string]bool{"name": true, "payee_name": true, "realName": true, "NAME": true, "channel": false, "nam": false} {
		if NameKey(k) != want {
			t.Errorf("NameKey(%q) = %v", k, !want)
		}
	}
	for in, want := range map[string]string{"张三": "张*", "欧阳娜娜": "欧*", "Zhang San": "Z*", "张*": "张*", "***": "***", "": ""} {
		if got := Name(in); got != want {
			t.Errorf("Name(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMasksNumber(t *testing.T) {
	for f, want := range map[float64]bool{
		13912345678: true, -13912345678: true, 8613912345678: true, 6262320120123213: true, 6222021234567890128: true,
		1e15: true, 1e300: true,
		1e10: false, 12912345678: false, 13912345678.5: false, 1764825600000: false, 5000: false, 0.18: false,
	} {
		if got := MasksNumber(f); got != want {
			t.Errorf("MasksNumber(%v) = %v", f, got)
		}
	}
}

// TestGolden: testdata/*.json masked is testdata/*.golden (go test
// -update rewrites them).
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.json")
	if len(files) == 0 {
		t.Fatal("no golden inputs")
	}
	for _, in := range files {
		doc, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		got := append(JSON(doc), '\n')
		golden := strings.TrimSuffix(in, ".json") + ".golden"
		if *update {
			os.WriteFile(golden, got, 0o644)
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\ngot  %s\nwant %s", in, got, want)
		}
	}
}
