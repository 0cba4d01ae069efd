package upsim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/outpost-agent/outpost/upstream/unionpay"
	"github.com/outpost-agent/outpost/upstream/unionpay/upsim"
)

const (
	card   = "6262320120123210"
	certID = "411524198810280019"
)

func start(t *testing.T) (*upsim.Server, *httptest.Server) {
	t.Helper()
	return startShape(t, unionpay.ShapeTable)
}

// startShape starts a simulator of shape with the seed's sample
// credentials and its sample transaction.
func startShape(t *testing.T, shape unionpay.Shape) (*upsim.Server, *httptest.Server) {
	t.Helper()
	sim := upsim.New(upsim.Options{ID: "username", AppKey: "password", Shape: shape})
	sim.AddTransaction(unionpay.TransactionQuery{CardNo: card, TransDate: "20161201", TransAmount: 21200, CertID: certID})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv
}

func envelope(id, key, data string) string {
	return `{"id":"` + id + `","appKey":"` + key + `","data":` + data + `}`
}

func form(s string) string { return url.Values{"data": {s}}.Encode() }

// do sends one request and returns the raw answer as a generic map.
func do(t *testing.T, method, rawURL, ctype, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("answer %q: %v", b, err)
		}
	}
	return resp.StatusCode, m
}

func TestSimChecksRequests(t *testing.T) {
	const fo = "application/x-www-form-urlencoded"
	auth := "/fireeye/creditScore/transationAuthentication"
	score := "/fireeye/creditScore/UnionPayModelScore"
	okTx := `{"transDate":"20161201","cardNo":"` + card + `","certid":"` + certID + `","transAmount":21200}`
	okScore := `{"mobile":"13888888888","cardNo":"` + card + `","certid":"` + certID + `"}`
	tests := []struct {
		name   string
		method string
		path   string
		ctype  string
		body   string
		field  string // respCd or resp
		code   string
		data   any // nil: don't check
	}{
		{"auth match", "POST", auth, fo, form(envelope("username", "password", okTx)), "respCd", "0000", 1.0},
		{"auth amount with decimals", "POST", auth, fo, form(envelope("username", "password", strings.Replace(okTx, `21200`, `21200.00`, 1))), "respCd", "0000", 1.0},
		{"auth certid disagrees", "POST", auth, fo, form(envelope("username", "password", strings.Replace(okTx, certID, "110101199001011234", 1))), "respCd", "0000", 0.0},
		{"auth no such transaction", "POST", auth, fo, form(envelope("username", "password", strings.Replace(okTx, "20161201", "20161202", 1))), "respCd", "0003", 0.0},
		{"score", "POST", score, fo, form(envelope("username", "password", okScore)), "resp", "0000", float64(upsim.Predict(card, certID, "13888888888"))},
		{"GET with data in the query", "GET", score + "?" + form(envelope("username", "password", okScore)), "", "", "resp", "0000", nil},
		{"charset parameter is fine", "POST", score, fo + "; charset=UTF-8", form(envelope("username", "password", okScore)), "resp", "0000", nil},

		{"JSON body instead of a form", "POST", score, "application/json", envelope("username", "password", okScore), "resp", "0004", nil},
		{"form without data", "POST", score, fo, "x=1", "resp", "0004", nil},
		{"data not JSON", "POST", score, fo, form("{"), "resp", "0004", nil},
		{"unknown id", "POST", score, fo, form(envelope("stranger", "password", okScore)), "resp", "0001", nil},
		{"missing id", "POST", auth, fo, form(`{"appKey":"password","data":` + okTx + `}`), "respCd", "0001", nil},
		{"wrong appKey", "POST", auth, fo, form(envelope("username", "passw0rd", okTx)), "respCd", "0002", nil},
		{"score without mobile", "POST", score, fo, form(envelope("username", "password", `{"cardNo":"`+card+`","certid":"`+certID+`"}`)), "resp", "0004", nil},
		{"score without certid", "POST", score, fo, form(envelope("username", "password", `{"cardNo":"`+card+`","mobile":"1"}`)), "resp", "0004", nil},
		{"auth without amount", "POST", auth, fo, form(envelope("username", "password", `{"cardNo":"`+card+`","transDate":"20161201"}`)), "respCd", "0004", nil},
		{"auth date not YYYYMMDD", "POST", auth, fo, form(envelope("username", "password", strings.Replace(okTx, "20161201", "2016-12-01", 1))), "respCd", "0004", nil},
		{"auth amount not a number", "POST", auth, fo, form(envelope("username", "password", strings.Replace(okTx, `21200`, `"a lot"`, 1))), "respCd", "0004", nil},
		{"auth amount as a string (the table says double)", "POST", auth, fo, form(envelope("username", "password", strings.Replace(okTx, `21200`, `"21200"`, 1))), "respCd", "0004", nil},
		{"card number as a number (the table says string)", "POST", score, fo, form(envelope("username", "password", strings.Replace(okScore, `"`+card+`"`, card, 1))), "resp", "0004", nil},
		{"data is not an object", "POST", auth, fo, form(envelope("username", "password", `[1]`)), "respCd", "0004", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := start(t)
			status, m := do(t, tt.method, srv.URL+tt.path, tt.ctype, tt.body)
			if status != 200 || m[tt.field] != tt.code {
				t.Fatalf("HTTP %d %v, want %s=%s", status, m, tt.field, tt.code)
			}
			other := map[string]string{"respCd": "resp", "resp": "respCd"}[tt.field]
			if _, ok := m[other]; ok {
				t.Errorf("answer has %s too: %v", other, m)
			}
			if tt.data != nil && m["data"] != tt.data {
				t.Errorf("data = %v, want %v", m["data"], tt.data)
			}
			wantMsg := "Failed"
			if tt.code == "0000" {
				wantMsg = "Success"
			}
			if m["msg"] != wantMsg {
				t.Errorf("msg = %v", m["msg"])
			}
		})
	}
}

func TestSimMethodAndPath(t *testing.T) {
	_, srv := start(t)
	if status, _ := do(t, "PUT", srv.URL+"/x/UnionPayModelScore", "", ""); status != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d", status)
	}
	if status, _ := do(t, "POST", srv.URL+"/x/modelScore", "application/x-www-form-urlencoded", ""); status != http.StatusNotFound {
		t.Errorf("unknown path: %d", status)
	}
}

// TestSimRefusesRawJSONInTheQuery: JSON put in a query without
// URL-encoding is refused with HTTP 400, as a Java server refuses it, while
// the same JSON URL-encoded is read. Go's client sends such a query as it
// is (it does not encode it), so a raw one is a real request to refuse.
func TestSimRefusesRawJSONInTheQuery(t *testing.T) {
	_, srv := start(t)
	js := envelope("username", "password", `{"mobile":"13888888888","cardNo":"`+card+`","certid":"`+certID+`"}`)
	if status, m := do(t, "GET", srv.URL+"/fireeye/creditScore/UnionPayModelScore?"+form(js), "", ""); status != 200 || m["resp"] != "0000" {
		t.Fatalf("URL-encoded: HTTP %d %v", status, m)
	}
	if status, _ := do(t, "GET", srv.URL+"/fireeye/creditScore/UnionPayModelScore?data="+js, "", ""); status != http.StatusBadRequest {
		t.Fatalf("raw JSON in the query: HTTP %d, want 400", status)
	}
}

func TestSimFaultsAndStatsOverHTTP(t *testing.T) {
	sim, srv := start(t)
	api := srv.URL + "/fc/UnionPayModelScore"
	body := form(envelope("username", "password", `{"mobile":"13888888888","cardNo":"`+card+`","certid":"`+certID+`"}`))
	const fo = "application/x-www-form-urlencoded"

	if status, _ := do(t, "POST", srv.URL+"/_sim/faults", "application/json", `{"code":"0001","latency":"5ms"}`); status != http.StatusNoContent {
		t.Fatalf("POST faults: %d", status)
	}
	if f := sim.Faults(); f.Code != 1 || f.Latency.String() != "5ms" {
		t.Fatalf("faults = %+v", f)
	}
	if _, m := do(t, "POST", api, fo, body); m["resp"] != "0001" {
		t.Fatalf("forced code: %v", m)
	}
	// Credentials come first: a forced code is for authenticated callers.
	if _, m := do(t, "POST", api, fo, form(envelope("username", "x", `{}`))); m["resp"] != "0002" {
		t.Fatalf("wrong key under a forced code: %v", m)
	}
	do(t, "POST", srv.URL+"/_sim/faults", "application/json", `{"data":1200}`)
	if _, m := do(t, "POST", api, fo, body); m["data"] != 1200.0 {
		t.Fatalf("forced data: %v", m)
	}
	do(t, "POST", srv.URL+"/_sim/faults", "application/json", `{"http_status":502}`)
	if status, _ := do(t, "POST", api, fo, body); status != 502 {
		t.Fatalf("forced status: %d", status)
	}
	do(t, "POST", srv.URL+"/_sim/faults", "application/json", `{"outage":true}`)
	if resp, err := http.Post(api, fo, strings.NewReader(body)); err == nil {
		resp.Body.Close()
		t.Fatalf("outage answered %d", resp.StatusCode)
	}
	do(t, "POST", srv.URL+"/_sim/faults", "application/json", `{}`)

	status, m := do(t, "GET", srv.URL+"/_sim/stats", "", "")
	if status != 200 {
		t.Fatalf("stats: %d", status)
	}
	b, _ := json.Marshal(m)
	if strings.Contains(string(b), card) || !strings.Contains(string(b), unionpay.MaskCard(card)) {
		t.Errorf("stats must show cards masked: %s", b)
	}
	st := sim.Stats()
	if st.Requests != 5 || st.Accepted != 1 || st.ByCode["0001"] != 1 || st.ByCode["0002"] != 1 || st.ByCode["http_502"] != 1 || st.ByCode["outage"] != 1 {
		t.Errorf("stats = %+v", st)
	}
	if sim.Count(card) != 1 || sim.Requests() != 5 {
		t.Errorf("count %d requests %d", sim.Count(card), sim.Requests())
	}
}

// seedRequest reads one of the seed's sample requests from
// ../testdata/seed: "METHOD URL", then for a POST a blank line and the body.
func seedRequest(t *testing.T, name string) (method string, u *url.URL, body string) {
	t.Helper()
	b, err := os.ReadFile("../testdata/seed/" + name)
	if err != nil {
		t.Fatal(err)
	}
	head, body, _ := strings.Cut(string(b), "\n\n")
	method, rawURL, ok := strings.Cut(head, " ")
	if u, err = url.Parse(rawURL); !ok || err != nil {
		t.Fatalf("%s: %q: %v", name, head, err)
	}
	return method, u, body
}

// TestSimSampleShape: the sample-shape simulator takes the seed's sample
// requests byte for byte and answers them as the seed's sample answers do
// (data 1: the transaction exists; score 888), and refuses the table
// shape's requests.
func TestSimSampleShape(t *testing.T) {
	const fo = "application/x-www-form-urlencoded"
	am, au, _ := seedRequest(t, "transaction-request.txt")
	sm, su, sbody := seedRequest(t, "score-request.txt")
	auth, score := au.Path, su.Path
	tx := au.Query().Get("data")
	okScore := `{"mobile":"13888888888","cardNo":"` + card + `","certid":"` + certID + `"}`
	tests := []struct {
		name   string
		method string
		target string // path and query
		ctype  string
		body   string
		status int
		field  string
		code   string
		data   any
	}{
		{"the seed's transaction request", am, au.RequestURI(), "", "", 200, "respCd", "0000", 1.0},
		{"the seed's transaction request with its Content-Type", am, au.RequestURI(), fo, "", 200, "respCd", "0000", 1.0},
		{"the seed's score request", sm, score, "application/json", sbody, 200, "resp", "0000", 888.0},
		{"the seed's score request as a form", sm, score, fo, sbody, 200, "resp", "0000", 888.0},
		{"the seed's score request without a Content-Type", sm, score, "", sbody, 200, "resp", "0000", 888.0},
		{"no such transaction", "GET", auth + "?" + form(strings.Replace(tx, "20161201", "20161202", 1)), "", "", 200, "respCd", "0003", 0.0},
		{"amount with decimals", "GET", auth + "?" + form(strings.Replace(tx, `"21200"`, `"21200.00"`, 1)), "", "", 200, "respCd", "0000", 1.0},

		{"amount as a number (the table's double)", "GET", auth + "?" + form(strings.Replace(tx, `"21200"`, `21200`, 1)), "", "", 200, "respCd", "0004", nil},
		{"amount not a number", "GET", auth + "?" + form(strings.Replace(tx, `"21200"`, `"a lot"`, 1)), "", "", 200, "respCd", "0004", nil},
		{"transaction in the table's envelope", "GET", auth + "?" + form(envelope("username", "password", tx)), "", "", 200, "respCd", "0004", nil},
		{"transaction by the table's POST", "POST", auth, fo, form(envelope("username", "password", strings.Replace(tx, `"21200"`, `21200`, 1))), 405, "", "", nil},
		{"transaction JSON not URL-encoded", "GET", auth + "?data=" + tx, "", "", 400, "", "", nil},
		{"transaction without data", "GET", auth + "?x=1", "", "", 200, "respCd", "0004", nil},
		{"score at the table's path", "POST", "/fireeye/creditScore/UnionPayModelScore", fo, form(envelope("username", "password", okScore)), 404, "", "", nil},
		{"score body URL-encoded (the table's form)", "POST", score, fo, form(envelope("username", "password", okScore)), 200, "resp", "0004", nil},
		{"score body JSON without data=", "POST", score, "application/json", envelope("username", "password", okScore), 200, "resp", "0004", nil},
		{"score by GET", "GET", score + "?" + form(envelope("username", "password", okScore)), "", "", 405, "", "", nil},
		{"score wrong appKey", "POST", score, "application/json", "data=" + envelope("username", "passw0rd", okScore), 200, "resp", "0002", nil},
		{"score unknown id", "POST", score, "application/json", "data=" + envelope("stranger", "password", okScore), 200, "resp", "0001", nil},
		{"score without mobile", "POST", score, "application/json", "data=" + envelope("username", "password", `{"cardNo":"`+card+`","certid":"`+certID+`"}`), 200, "resp", "0004", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, srv := startShape(t, unionpay.ShapeSample)
			sim.SetScore(card, 888)
			status, m := do(t, tt.method, srv.URL+tt.target, tt.ctype, tt.body)
			if status != tt.status {
				t.Fatalf("HTTP %d %v, want %d", status, m, tt.status)
			}
			if status != 200 {
				return
			}
			if m[tt.field] != tt.code || (tt.data != nil && m["data"] != tt.data) {
				t.Fatalf("answer %v, want %s=%s data %v", m, tt.field, tt.code, tt.data)
			}
		})
	}
}

// TestSimTableShapeRefusesTheSample: the table-shape simulator refuses the
// seed's sample requests: the transaction one has no id (0001), the score
// one goes to a path the table does not have.
func TestSimTableShapeRefusesTheSample(t *testing.T) {
	_, srv := start(t)
	am, au, _ := seedRequest(t, "transaction-request.txt")
	if status, m := do(t, am, srv.URL+"/fireeye"+au.RequestURI(), "", ""); status != 200 || m["respCd"] != "0001" {
		t.Errorf("the seed's transaction request: HTTP %d %v, want respCd 0001", status, m)
	}
	sm, su, sbody := seedRequest(t, "score-request.txt")
	if status, _ := do(t, sm, srv.URL+su.Path, "application/json", sbody); status != http.StatusNotFound {
		t.Errorf("the seed's score request: HTTP %d, want 404", status)
	}
}
