package decision

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/outpost-agent/outpost/upstream/tongdun"
)

// tdRequests reads the TD request bodies of upstream/tongdun's testdata
// whose names match pattern.
func tdRequests(t *testing.T, pattern string) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "upstream", "tongdun", "testdata", "requests", pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: %v %v", pattern, files, err)
	}
	m := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m[filepath.Base(f)] = b
	}
	return m
}

// TestV3ShapesNeedTheSetting: with the agent set for v2 (the default),
// v3's lookup event and account object are refused, the field named and
// the setting that takes them said; set for v3 they are taken.
func TestV3ShapesNeedTheSetting(t *testing.T) {
	v3 := tdRequests(t, "v3-*.json")
	lookup, withdraw := string(v3["v3-lookup-account.json"]), string(v3["v3-withdraw-account.json"])
	for _, tt := range []struct {
		name, body, field string
	}{
		{"lookup with an account", lookup, "decision_event"},
		{"lookup alone", strings.Replace(lookup, `"account": {`, `"ignored": {`, 1), "decision_event"},
		{"withdraw with an account", withdraw, "event_detail.account"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, parse := range []func([]byte) (*Request, error){
				func(b []byte) (*Request, error) { return ParseRequest(b, "bank") },
				func(b []byte) (*Request, error) { return Parse(b, ParseOptions{TongDunVersion: tongdun.V2}) },
			} {
				_, err := parse([]byte(tt.body))
				var ie *InvalidError
				if !errors.As(err, &ie) || len(ie.Problems) != 1 || ie.Problems[0].Field != tt.field ||
					!strings.Contains(ie.Problems[0].Reason, "needs AGENT_TONGDUN_API_VERSION=v3") ||
					!strings.Contains(ie.Problems[0].Reason, "TongDun code 9002") {
					t.Fatalf("v2: %v %+v, want one problem on %s naming the setting", err, ie, tt.field)
				}
			}
		})
	}
	for name, body := range v3 {
		r, err := Parse(body, ParseOptions{DefaultChannel: "bank", TongDunVersion: tongdun.V3})
		if err != nil {
			t.Fatalf("%s as v3: %v", name, err)
		}
		if _, ok := r.EventDetail[tongdun.DetailAccount]; !ok {
			t.Errorf("%s: account object lost: %+v", name, r.EventDetail)
		}
	}
	// v3 still checks the account object, naming the field.
	_, err := Parse([]byte(strings.Replace(withdraw, `{"account_id":"acct-2"}`, `{"account_id":"acct-2","vip":true}`, 1)),
		ParseOptions{TongDunVersion: tongdun.V3})
	var ie *InvalidError
	if !errors.As(err, &ie) || len(ie.Problems) != 1 || ie.Problems[0].Field != "event_detail.account.vip" ||
		strings.Contains(ie.Problems[0].Reason, "AGENT_") {
		t.Fatalf("v3, undocumented account field: %v %+v", err, ie)
	}
}

// TestAccountObjectMaskedWhenStored: the account object's personal data
// (account id, phone, e-mail) is masked in the stored input, by either
// path that writes it.
func TestAccountObjectMaskedWhenStored(t *testing.T) {
	body := tdRequests(t, "v3-lookup-account.json")["v3-lookup-account.json"]
	r, err := Parse(body, ParseOptions{TongDunVersion: tongdun.V3})
	if err != nil {
		t.Fatal(err)
	}
	in := maskedInput(r)
	if ref := maskedInputReference(r); !bytes.Equal(in, ref) {
		t.Fatalf("masked input differs:\n%s\n%s", in, ref)
	}
	for _, clear := range []string{"18700001111", "user@example.com", "123456789", `"country_code":86`} {
		if bytes.Contains(in, []byte(clear)) {
			t.Errorf("stored input shows %s: %s", clear, in)
		}
	}
	if !bytes.Contains(in, []byte(`"account":{"account_id":"***(9)"`)) || !bytes.Contains(in, []byte(`"register_time":"2021-10-12T14:20:50.521+07:00"`)) {
		t.Errorf("stored input: %s", in)
	}
}

// TestV2CorpusSameInV3: every request the agent took before, or refused,
// it takes or refuses the same when set for v3: the same request, the same
// stored input, the same problems.
func TestV2CorpusSameInV3(t *testing.T) {
	bodies := map[string][]byte{"bench": benchBody(3), "card": benchCardBody()}
	for i, b := range requestBodies {
		bodies[fmt.Sprintf("requestBodies[%d]", i)] = []byte(b)
	}
	for name, b := range tdRequests(t, "v2-*.json") {
		bodies[name] = b
	}
	accepted := 0
	for name, body := range bodies {
		r2, err2 := Parse(body, ParseOptions{DefaultChannel: "bank"})
		r3, err3 := Parse(body, ParseOptions{DefaultChannel: "bank", TongDunVersion: tongdun.V3})
		if err2 == nil {
			accepted++
			if err3 != nil || !reflect.DeepEqual(r2, r3) || !bytes.Equal(maskedInput(r2), maskedInput(r3)) {
				t.Errorf("%s: v2 took %+v, v3 %+v %v", name, r2, r3, err3)
			}
			continue
		}
		var ie2, ie3 *InvalidError
		if !errors.As(err2, &ie2) || !errors.As(err3, &ie3) || !reflect.DeepEqual(fields(ie2.Problems), fields(ie3.Problems)) {
			t.Errorf("%s: v2 refused %v, v3 %v", name, err2, err3)
		}
	}
	t.Logf("%d requests, %d valid", len(bodies), accepted)
	if accepted < 10 {
		t.Fatalf("only %d valid requests in the corpus", accepted)
	}
}

func fields(ps []Problem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Field)
	}
	return out
}
