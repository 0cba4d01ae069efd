package tdsim_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/upstream/tongdun"
	"github.com/outpost-agent/outpost/upstream/tongdun/tdsim"
)

const good = `{"channel":"ch","session_id":"s1","decision_event":"marketing","event_time":"2021-10-12T14:20:50.521+07:00",` +
	`"account_id":"123456789","terminal":{"black_box":"bb","ip":"210.20.10.33"},"ext":{"ext_book_num":10},` +
	`"event_detail":{"marketing":{"marketing_id":"X08938"}}}`

func start(t *testing.T) (*tdsim.Server, *httptest.Server) {
	t.Helper()
	sim := tdsim.New(tdsim.Options{PartnerCode: "pc", PartnerKey: "pk", Channel: "ch"})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv
}

func post(t *testing.T, rawURL, contentType, body string) (int, tongdun.Response) {
	t.Helper()
	resp, err := http.Post(rawURL, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	var r tongdun.Response
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("answer %q: %v", b, err)
		}
	}
	return resp.StatusCode, r
}

func TestSimChecksRequests(t *testing.T) {
	tests := []struct {
		name    string
		query   string
		ctype   string
		body    string
		code    int
		message string
	}{
		{"accepted", "partner_code=pc&partner_key=pk", "application/json", good, 200, ""},
		{"charset parameter is fine", "partner_code=pc&partner_key=pk", "application/json; charset=UTF-8", good, 200, ""},
		{"no credentials", "", "application/json", good, 301, "未购买此服务"},
		{"wrong partner_key", "partner_code=pc&partner_key=nope", "application/json", good, 301, ""},
		{"wrong partner_code", "partner_code=other&partner_key=pk", "application/json", good, 301, ""},
		{"form body", "partner_code=pc&partner_key=pk", "application/x-www-form-urlencoded", good, 9202, "content-type不合法"},
		{"no content type", "partner_code=pc&partner_key=pk", "", good, 9202, ""},
		{"empty body", "partner_code=pc&partner_key=pk", "application/json", "", 9001, "request body为空"},
		{"not json", "partner_code=pc&partner_key=pk", "application/json", "{", 9002, ""},
		{"array of events", "partner_code=pc&partner_key=pk", "application/json", "[" + good + "," + good + "]", 9002, ""},
		{"two events in one body", "partner_code=pc&partner_key=pk", "application/json", good + good, 9002, ""},
		{"unknown field", "partner_code=pc&partner_key=pk", "application/json", strings.Replace(good, `"ext"`, `"extra"`, 1), 9002, "extra参数校验错误"},
		{"wrong type", "partner_code=pc&partner_key=pk", "application/json", strings.Replace(good, `"session_id":"s1"`, `"session_id":1`, 1), 9002, "session_id参数校验错误"},
		{"other channel", "partner_code=pc&partner_key=pk", "application/json", strings.Replace(good, `"channel":"ch"`, `"channel":"x"`, 1), 9002, "channel参数校验错误"},
		{"missing event_time", "partner_code=pc&partner_key=pk", "application/json", strings.Replace(good, `"event_time":"2021-10-12T14:20:50.521+07:00",`, ``, 1), 9001, "event_time为空"},
		{"event_detail of another event", "partner_code=pc&partner_key=pk", "application/json", strings.Replace(good, `{"marketing":`, `{"withdraw":`, 1), 9002, "event_detail参数校验错误"},
		{"no terminal values", "partner_code=pc&partner_key=pk", "application/json", strings.Replace(good, `{"black_box":"bb","ip":"210.20.10.33"}`, `{}`, 1), 9004, "black_box或ip至少存在一个"},
		{"1025 characters", "partner_code=pc&partner_key=pk", "application/json", strings.Replace(good, `"s1"`, `"`+strings.Repeat("s", 1025)+`"`, 1), 9003, "session_id参数长度或者大小超过1024"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, srv := start(t)
			status, r := post(t, srv.URL+"/api?"+tt.query, tt.ctype, tt.body)
			if status != http.StatusOK || r.Code != tt.code {
				t.Fatalf("HTTP %d code %d (%s), want 200 code %d", status, r.Code, r.Message, tt.code)
			}
			if tt.message != "" && r.Message != tt.message {
				t.Errorf("message %q, want %q", r.Message, tt.message)
			}
			accepted := 0
			if tt.code == 200 {
				accepted = 1
				if r.SequenceID == "" || r.Result == "" || r.Reasons == nil {
					t.Errorf("incomplete answer %+v", r)
				}
			}
			if len(sim.Received()) != accepted || sim.Requests() != 1 {
				t.Errorf("received %d, requests %d", len(sim.Received()), sim.Requests())
			}
		})
	}
}

func TestSimMethod(t *testing.T) {
	_, srv := start(t)
	resp, err := http.Get(srv.URL + "/api?partner_code=pc&partner_key=pk")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
}

func TestSimFaultsOverHTTP(t *testing.T) {
	sim, srv := start(t)
	api := srv.URL + "/api?" + url.Values{"partner_code": {"pc"}, "partner_key": {"pk"}}.Encode()

	resp, err := http.Post(srv.URL+"/_sim/faults", "application/json", strings.NewReader(`{"code":302,"latency":"20ms"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST faults: %d", resp.StatusCode)
	}
	if f := sim.Faults(); f.Code != 302 || f.Latency != 20*time.Millisecond {
		t.Fatalf("faults = %+v", f)
	}
	if _, r := post(t, api, "application/json", good); r.Code != 302 {
		t.Fatalf("code %d, want 302", r.Code)
	}

	resp, err = http.Post(srv.URL+"/_sim/faults", "application/json", strings.NewReader(`{"http_status":503,"retry_after":9}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Post(api, "application/json", strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "9" {
		t.Fatalf("got %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	if err := postFaults(srv.URL, `{"truncate":true}`); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Post(api, "application/json", strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if json.Valid(b) || !strings.HasPrefix(string(b), `{"code":200`) {
		t.Fatalf("truncated body %q", b)
	}

	if err := postFaults(srv.URL, `{"outage":true}`); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Post(api, "application/json", strings.NewReader(good)); err == nil {
		resp.Body.Close()
		t.Fatalf("outage answered HTTP %d", resp.StatusCode)
	}

	if err := postFaults(srv.URL, `{}`); err != nil {
		t.Fatal(err)
	}
	if _, r := post(t, api, "application/json", good); r.Code != 200 {
		t.Fatalf("after clearing faults: %d", r.Code)
	}

	resp, err = http.Get(srv.URL + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st tdsim.Stats
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if st.Requests != 5 || st.Accepted != 2 || st.ByCode["302"] != 1 || st.ByCode["http_503"] != 1 || st.ByCode["outage"] != 1 ||
		st.BySession["s1"] != 2 || st.Today != 2 {
		t.Fatalf("stats = %+v", st)
	}

	resp, err = http.Post(srv.URL+"/_sim/faults", "application/json", strings.NewReader(`{"latency":"soon"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad faults accepted: %d", resp.StatusCode)
	}
}

func postFaults(base, body string) error {
	resp, err := http.Post(base+"/_sim/faults", "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

func TestFaultsJSONRoundTrip(t *testing.T) {
	in := tdsim.Faults{Latency: 150 * time.Millisecond, ErrorRate: 0.5, ErrorCode: 9201, DailyCap: 3, Code: 303}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out tdsim.Faults
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) || !strings.Contains(string(b), `"latency":"150ms"`) {
		t.Fatalf("%s -> %+v", b, out)
	}
	if err := json.Unmarshal([]byte(`{"latency":1000000}`), &out); err != nil || out.Latency != time.Millisecond {
		t.Fatalf("nanoseconds: %v %v", err, out.Latency)
	}
}

func TestPredictIsStable(t *testing.T) {
	s1, r1, _ := tdsim.Predict("acct", "marketing")
	s2, r2, _ := tdsim.Predict("acct", "marketing")
	if s1 != s2 || r1 != r2 || s1 < 0 || s1 > 100 {
		t.Fatalf("%d %s / %d %s", s1, r1, s2, r2)
	}
	seen := map[string]bool{}
	for _, a := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"} {
		_, r, reasons := tdsim.Predict(a, "withdraw")
		seen[r] = true
		if (r == tongdun.ResultAccept) != (len(reasons) == 0) {
			t.Errorf("%s: result %s with %d reasons", a, r, len(reasons))
		}
	}
	if len(seen) < 2 {
		t.Errorf("predictions are not spread: %v", seen)
	}
}

// TestDailyCapPerShanghaiDay: the cap counts accepted events per Asia/Shanghai
// day on the injected clock, answers 305 past it until local midnight, and
// Stats.ByDay tells each day's accepted and capped events apart.
func TestDailyCapPerShanghaiDay(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	var mu sync.Mutex
	now := time.Date(2026, 11, 23, 23, 59, 0, 0, cst)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(t time.Time) { mu.Lock(); defer mu.Unlock(); now = t }
	sim := tdsim.New(tdsim.Options{PartnerCode: "pc", PartnerKey: "pk", Channel: "ch", Clock: clock})
	sim.SetFaults(tdsim.Faults{DailyCap: 2})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	api := srv.URL + "/api?partner_code=pc&partner_key=pk"

	for i, want := range []int{200, 200, 305, 305} {
		if _, r := post(t, api, "application/json", good); r.Code != want {
			t.Fatalf("event %d on the 23rd: code %d, want %d", i, r.Code, want)
		}
	}
	set(time.Date(2026, 11, 23, 23, 59, 59, 999e6, cst)) // still the 23rd in Shanghai
	if _, r := post(t, api, "application/json", good); r.Code != 305 {
		t.Fatalf("a millisecond before midnight: code %d, want 305", r.Code)
	}
	set(time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)) // 00:00 on the 24th in Shanghai
	for i, want := range []int{200, 200, 305} {
		if _, r := post(t, api, "application/json", good); r.Code != want {
			t.Fatalf("event %d on the 24th: code %d, want %d", i, r.Code, want)
		}
	}
	st := sim.Stats()
	want := map[string]tdsim.DayStats{"2026-11-23": {Accepted: 2, Capped: 3}, "2026-11-24": {Accepted: 2, Capped: 1}}
	if len(st.ByDay) != 2 || st.ByDay["2026-11-23"] != want["2026-11-23"] || st.ByDay["2026-11-24"] != want["2026-11-24"] ||
		st.Today != 2 || st.ByCode["305"] != 4 || st.Accepted != 4 {
		t.Fatalf("stats: by day %+v, today %d, 305s %d, accepted %d", st.ByDay, st.Today, st.ByCode["305"], st.Accepted)
	}
}

// startWith runs a simulator with the channel of the testdata requests
// ("test") and API version v, on a fixed clock.
func startWith(t *testing.T, v tongdun.APIVersion) (*tdsim.Server, string) {
	t.Helper()
	at := time.Date(2026, 11, 23, 15, 0, 0, 0, time.FixedZone("CST", 8*3600))
	sim := tdsim.New(tdsim.Options{PartnerCode: "pc", PartnerKey: "pk", Channel: "test", APIVersion: v, Clock: func() time.Time { return at }})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv.URL + "/fraud/promo/" + string(v) + "?partner_code=pc&partner_key=pk"
}

func readRequest(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "requests", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// postRaw posts body and returns the answer's bytes.
func postRaw(t *testing.T, api, body string) []byte {
	t.Helper()
	resp, err := http.Post(api, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d %q: %v", resp.StatusCode, b, err)
	}
	return b
}

// TestSimAPIVersion: a v2 endpoint answers v3's lookup event and account
// object 9002, naming the field; a v3 endpoint takes them, and checks the
// account object as TD's Account type.
func TestSimAPIVersion(t *testing.T) {
	lookup := readRequest(t, "v3-lookup-account.json")
	withdraw := readRequest(t, "v3-withdraw-account.json")
	tests := []struct {
		name     string
		body     string
		v2, v3   int
		v2m, v3m string
	}{
		{"lookup with an account", lookup, 9002, 200, "decision_event参数校验错误", ""},
		{"withdraw with an account", withdraw, 9002, 200, "event_detail.account参数校验错误", ""},
		{"lookup without the account", strings.Replace(lookup, `"account": {`, `"x": {`, 1), 9002, 9002, "decision_event参数校验错误", "event_detail参数校验错误"},
		{"account without account_id", strings.Replace(withdraw, `{"account_id":"acct-2"}`, `{}`, 1), 9002, 9001, "event_detail.account参数校验错误", "event_detail.account.account_id为空"},
		{"account with an undocumented field", strings.Replace(withdraw, `{"account_id":"acct-2"}`, `{"account_id":"acct-2","level":3}`, 1), 9002, 9002, "", "event_detail.account.level参数校验错误"},
		{"account with a phone number with +", strings.Replace(lookup, `"18700001111"`, `"+8618700001111"`, 1), 9002, 9002, "", "event_detail.account.phone.phone_number参数校验错误"},
		{"account null", strings.Replace(withdraw, `{"account_id":"acct-2"}`, `null`, 1), 9002, 9001, "", "event_detail.account为空"},
		{"account not an object", strings.Replace(withdraw, `{"account_id":"acct-2"}`, `"acct-2"`, 1), 9002, 9002, "event_detail参数校验错误", "event_detail参数校验错误"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				v    tongdun.APIVersion
				code int
				msg  string
			}{{tongdun.V2, tt.v2, tt.v2m}, {tongdun.V3, tt.v3, tt.v3m}} {
				sim, api := startWith(t, c.v)
				var r tongdun.Response
				if err := json.Unmarshal(postRaw(t, api, tt.body), &r); err != nil {
					t.Fatal(err)
				}
				if r.Code != c.code || c.msg != "" && r.Message != c.msg {
					t.Errorf("%s: code %d %q, want %d %q", c.v, r.Code, r.Message, c.code, c.msg)
				}
				if accepted := len(sim.Received()); (accepted == 1) != (c.code == 200) {
					t.Errorf("%s: %d accepted with code %d", c.v, accepted, r.Code)
				}
			}
		})
	}
}

// TestSimV2CorpusSameInV3: every valid v2 request is answered the same,
// byte for byte, by a v2 and a v3 endpoint.
func TestSimV2CorpusSameInV3(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "requests", "v2-*.json"))
	if err != nil || len(files) < 3 {
		t.Fatalf("corpus: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			body := readRequest(t, filepath.Base(f))
			_, api2 := startWith(t, tongdun.V2)
			_, api3 := startWith(t, tongdun.V3)
			a2, a3 := postRaw(t, api2, body), postRaw(t, api3, body)
			if !bytes.Equal(a2, a3) || !bytes.HasPrefix(a2, []byte(`{"code":200,`)) {
				t.Fatalf("v2 answered %s\nv3 answered %s", a2, a3)
			}
		})
	}
}

// TestSimSetAnswer: a recorded answer is replayed byte for byte to valid
// requests of its account, and only to them.
func TestSimSetAnswer(t *testing.T) {
	sample, err := os.ReadFile(filepath.Join("..", "testdata", "answers", "seed-sample.json"))
	if err != nil {
		t.Fatal(err)
	}
	sim, api := startWith(t, tongdun.V2)
	for _, bad := range []string{``, `[]`, `{"score":90}`, `{"code":"200"}`} {
		if err := sim.SetAnswer("123456789", []byte(bad)); err == nil {
			t.Errorf("SetAnswer(%q) accepted", bad)
		}
	}
	if err := sim.SetAnswer("123456789", sample); err != nil {
		t.Fatal(err)
	}
	example := readRequest(t, "v2-seed-example.json")
	if got := postRaw(t, api, example); !bytes.Equal(got, sample) {
		t.Fatalf("answered %s, want the sample as it is", got)
	}
	// Still checked first: an invalid request of the account gets its error.
	var r tongdun.Response
	if err := json.Unmarshal(postRaw(t, api, strings.Replace(example, `"marketing": {`, `"withdraw": {`, 1)), &r); err != nil || r.Code != 9002 {
		t.Fatalf("invalid request: %+v %v", r, err)
	}
	// Another account gets the simulator's own decision.
	if got := postRaw(t, api, strings.Replace(example, `"account_id": "123456789"`, `"account_id": "other"`, 1)); bytes.Equal(got, sample) {
		t.Fatal("another account got the fixed answer")
	}
	if st := sim.Stats(); st.Accepted != 2 || st.ByCode["200"] != 2 || st.ByCode["9002"] != 1 {
		t.Fatalf("stats %+v", st)
	}
}
