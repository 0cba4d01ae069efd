package action

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

var validSeeds = []string{
	``, ` `, `{}`, `[]`, ` { } `, `[ ]`, `{"a":1}`, `{"a":1,}`, `[1,]`, `[,1]`, `{,}`, `{"a"}`, `{"a":}`, `{"a" 1}`, `{1:2}`,
	`"x"`, `"\u00e9\n\t\"\\\/\b\f\r"`, `"\u00G0"`, `"\u00e"`, `"\x"`, "\"a\x01b\"", "\"a\x7fb\"", "\"\xff\xfe\"", `"abc`, `"\`,
	`0`, `-0`, `01`, `-`, `1.`, `1.5`, `.5`, `1e5`, `1E+5`, `1e-5`, `1e`, `1e+`, `-1.5e-10`, `+1`, `00`, `0.0e0`, `1.5.5`, `2-1`,
	`true`, `false`, `null`, `tru`, `nul`, `falsey`, `True`, `nulll`, `true false`, `1 2`, `[1 2]`, `{"a":1 "b":2}`,
	`[[[]]]`, `[[[]]`, `[]]`, `{]`, `[}`, `{"a":[}]`, `[{"a":{"b":[1,{"c":null}]}}]`,
	"\t\r\n[1]\n", "\v[1]", "\ufeff[1]", "[1]\x00", `{"actions":[{"id":"a"}]} trailing`,
	strings.Repeat("[", 63) + strings.Repeat("]", 63),
	strings.Repeat("[", 64) + strings.Repeat("]", 64),
	strings.Repeat("[", 65) + "1" + strings.Repeat("]", 65),
	strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
}

// checkValid: a true answer from validJSON must always be right, and below
// the nesting it leaves to json.Valid, every answer must be.
func checkValid(t *testing.T, in []byte) {
	t.Helper()
	got, want := validJSON(in), json.Valid(in)
	if got && !want {
		t.Fatalf("validJSON(%q) = true, json.Valid = false", in)
	}
	if got != want && maxDepth(in) < maxFastDepth {
		t.Fatalf("validJSON(%q) = %v, json.Valid = %v", in, got, want)
	}
}

// maxDepth is the deepest bracket nesting of in, ignoring strings loosely.
func maxDepth(in []byte) int {
	d, m := 0, 0
	for _, c := range in {
		switch c {
		case '{', '[':
			d++
			m = max(m, d)
		case '}', ']':
			d--
		}
	}
	return m
}

func TestValidJSONMatchesEncodingJSON(t *testing.T) {
	for _, s := range validSeeds {
		checkValid(t, []byte(s))
	}
	if !validJSON([]byte(strings.Repeat("[", 63) + strings.Repeat("]", 63))) {
		t.Fatal("63 levels should be handled without json.Valid")
	}
	// Random mutations of seeds and of real requests.
	seeds := append([]string{string(benchBodyInternal())}, validSeeds...)
	alphabet := []byte("{}[]\":,\\ \t\n0123456789-+.eEtrufalsn\x01\x7f\xc3\xa9/bu")
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 200000; n++ {
		in := []byte(seeds[rng.IntN(len(seeds))])
		for k := rng.IntN(4); k >= 0; k-- {
			p := 0
			if len(in) > 0 {
				p = rng.IntN(len(in) + 1)
			}
			switch rng.IntN(3) {
			case 0: // insert
				in = append(in[:p], append([]byte{alphabet[rng.IntN(len(alphabet))]}, in[p:]...)...)
			case 1: // delete
				if p < len(in) {
					in = append(in[:p], in[p+1:]...)
				}
			default: // replace
				if p < len(in) {
					in[p] = alphabet[rng.IntN(len(alphabet))]
				}
			}
		}
		checkValid(t, in)
	}
}

func benchBodyInternal() []byte {
	return []byte(`{"actions":[{"id":"loan-app-000001","track":"personal_loan","action_type":"WITHDRAW_DEPOSITS",` +
		`"action_time":"2026-11-23T10:15:00+08:00","user_id":{"phone":"+86 138-0013-0001"},` +
		`"trace":{"click_id":"wx0ck\u00e900000001"},"action_param":{"withdraw_deposits_level":1,"risk_overdue":-1.5e3}}]}`)
}

func FuzzValidJSON(f *testing.F) {
	for _, s := range validSeeds {
		f.Add([]byte(s))
	}
	f.Add(benchBodyInternal())
	f.Fuzz(checkValid)
}

func BenchmarkValidJSON(b *testing.B) {
	in := benchBodyInternal()
	b.Run("json.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			json.Valid(in)
		}
	})
	b.Run("validJSON", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			validJSON(in)
		}
	})
}
