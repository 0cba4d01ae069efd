package e2e

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/action"
	"github.com/outpost-agent/outpost/upstream/tencent/tencentsim"
	"github.com/outpost-agent/outpost/upstream/tongdun"
	"github.com/outpost-agent/outpost/upstream/tongdun/tdsim"
	"github.com/outpost-agent/outpost/upstream/unionpay/upsim"
)

// TestNoPersonalDataAnywhere runs actions and decisions through every path
// that shows data — debug logs, /v1/status, /metrics, dead-letter listings,
// decision records, the CLI — with an encrypted store, and proves no raw
// phone, card, ID or mobile number, no phone hash, and no partner key or
// access token appears in any of them, nor in clear in the store's files.
func TestNoPersonalDataAnywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	const phone = "13912345678"
	sum := md5.Sum([]byte(phone))
	phoneHash := hex.EncodeToString(sum[:])
	const card, cert, mobile = "6222021234567890", "110105194912310021", "13700001111"

	tsim, tenv := tencentSim(t)
	tsim.SetFaults(tencentsim.Faults{BadActionIDs: []string{action.OuterActionID("pii-000001")}})
	td, up, denv := decisionSims(t)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("k", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	env := append(append(tenv, denv...), "AGENT_LOG_LEVEL=debug", "AGENT_ENCRYPTION_KEY_FILE="+keyFile)
	a := startAgent(t, data, env...)

	// Actions with a raw phone; one is rejected by Tencent and dead-lettered.
	var acts []string
	for i := 0; i < 3; i++ {
		acts = append(acts, fmt.Sprintf(`{"id":"pii-%06d","track":"personal_loan","action_type":"REGISTER","action_time":%d,"user_id":{"phone":"+86 %s"}}`,
			i, time.Now().Unix(), phone))
	}
	code, body, err := postJSON(context.Background(), http.DefaultClient, a.URL("/v1/actions"), []byte(`{"actions":[`+strings.Join(acts, ",")+`]}`))
	if err != nil || code != 202 {
		t.Fatalf("actions: %d %s %v", code, body, err)
	}
	// An invalid action whose error must not echo the number.
	code, body, _ = postJSON(context.Background(), http.DefaultClient, a.URL("/v1/actions"),
		[]byte(`{"actions":[{"id":"x","track":"`+phone+`","action_type":"REGISTER","action_time":1,"user_id":{"phone":"`+phone+`0"}}]}`))
	if code != 400 {
		t.Fatalf("invalid action: %d %s", code, body)
	}
	// Decisions with card data: one live, one while TongDun is down (queued
	// checks, UnionPay included since the store is encrypted).
	dec := func(id, account string) {
		b := fmt.Sprintf(`{"id":%q,"session_id":"s-%s","decision_event":"withdraw","event_time":"2026-11-23T14:20:50.521+08:00",`+
			`"account_id":%q,"terminal":{"ip":"210.20.10.33"},"event_detail":{"withdraw":{}},"amount":100,`+
			`"card":{"card_no":%q,"cert_id":%q,"mobile":%q},"transaction":{"date":"20261120","amount":10}}`, id, id, account, card, cert, mobile)
		code, body, err := postJSON(context.Background(), http.DefaultClient, a.URL("/v1/decisions"), []byte(b))
		if err != nil || code != 200 {
			t.Fatalf("decision %s: %d %s %v", id, code, body, err)
		}
	}
	dec("pii-live", "acct-live")
	td.SetFaults(tdsim.Faults{Outage: true})
	up.SetFaults(upsim.Faults{Outage: true})
	up.SetScore(card, 640)
	dec("pii-offline", "acct-offline")
	waitFor(t, "checks queued", 10*time.Second, func() bool {
		st, _ := getStatus(t, a)
		return st.Queues["tongdun"].Depth+st.Upstreams["tongdun"].Delivered > 0
	})
	td.SetFaults(tdsim.Faults{})
	up.SetFaults(upsim.Faults{})
	waitFor(t, "dead letter and queued checks settled", 30*time.Second, func() bool {
		st, _ := getStatus(t, a)
		return st.Queues["tencent"].DeadLetters == 1 && st.Queues["tongdun"].Depth == 0 && st.Queues["unionpay"].Depth == 0 &&
			st.Upstreams["unionpay"].Delivered > 0
	})

	texts := map[string]string{}
	get := func(name, path string) {
		resp, err := http.Get(a.URL(path))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		texts[name] = string(b)
	}
	get("status", "/v1/status")
	get("metrics", "/metrics")
	get("dead letters", "/v1/deadletters?upstream=tencent")
	get("live decision", "/v1/decisions/pii-live")
	get("offline decision", "/v1/decisions/pii-offline")
	texts["invalid action answer"] = string(body)
	out, _ := runCLI(t, a, "status", "--json")
	texts["agent status"] = out
	out, _ = runCLI(t, a, "deadletters", "list", "tencent", "--json")
	texts["agent deadletters"] = out
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	texts["logs"] = a.Logs.String()
	if !strings.Contains(texts["dead letters"], "pii-000001") || !strings.Contains(texts["offline decision"], "late_verdicts") {
		t.Fatalf("the scenario did not reach every path:\n%s\n%s", texts["dead letters"], texts["offline decision"])
	}

	secrets := map[string]string{"phone": phone, "phone hash": phoneHash, "card": card, "ID number": cert, "mobile": mobile,
		"tencent token": simToken, "tongdun partner key": tdKey, "unionpay app key": upKey}
	for where, text := range texts {
		for what, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s found in %s", what, where)
			}
		}
	}
	// The store is encrypted: the queued UnionPay check's card number is
	// not in clear in any file.
	filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil //nolint:nilerr // a file gone while walking holds nothing to find
		}
		b, _ := os.ReadFile(p)
		for what, s := range map[string]string{"card": card, "ID number": cert, "mobile": mobile} {
			if strings.Contains(string(b), s) {
				t.Errorf("%s in clear in %s", what, p)
			}
		}
		return nil
	})
}

// TestNoPersonalDataInIDsOrFreeFormFields runs the real binary: ids that
// look like a phone, ID-card or bank-card number are refused at intake,
// naming the rule; control characters and an amount of 1e308 are
// refused; and a TongDun ext and event_detail holding a card, phone
// numbers written with separators and a payee's name under keys redact
// never listed reach TongDun as they are, but never show raw in the
// stored decision, the dead letters (API and CLI), /v1/status, /metrics
// or the logs, nor in clear on the encrypted store's disk.
func TestNoPersonalDataInIDsOrFreeFormFields(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	_, tenv := tencentSim(t)
	td, _, denv := decisionSims(t)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("k", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	a := startAgent(t, data, append(append(tenv, denv...), "AGENT_LOG_LEVEL=debug", "AGENT_ENCRYPTION_KEY_FILE="+keyFile)...)
	post := func(path, body string) (int, string) {
		t.Helper()
		code, b, err := postJSON(context.Background(), http.DefaultClient, a.URL(path), []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return code, string(b)
	}
	answers := map[string]string{}

	// Ids that look like personal data: 400 on the id, naming the rule.
	ids := map[string]string{
		"13912345678":                  "a mainland mobile number",
		"11010519491231002X":           "a mainland ID-card number (check digit valid)",
		"6222021234567890128":          "a bank-card number (Luhn valid)",
		"card:6222-0212-3456-7890-128": "a bank-card number (Luhn valid)",
	}
	for id, kind := range ids {
		code, b := post("/v1/actions", `{"actions":[`+actionJSON(id, time.Now())+`]}`)
		if code != 400 || !strings.Contains(b, `"field":"actions[0].id","reason":"looks like `+kind) {
			t.Errorf("action id %s: %d %s", id, code, b)
		}
		answers["action "+id] = b
		code, b = post("/v1/decisions", string(decisionBody(id, "acct-id", 100, false)))
		if code != 400 || !strings.Contains(b, `"field":"id","reason":"looks like `+kind) {
			t.Errorf("decision id %s: %d %s", id, code, b)
		}
		answers["decision "+id] = b
	}
	// NUL and bidi controls in session_id, and an amount of 1e308.
	for field, body := range map[string]string{
		"session_id": strings.Replace(string(decisionBody("c-1", "acct-c", 100, false)), `"session_id":"s-c-1"`, `"session_id":"s\u0000\u202e1"`, 1),
		"amount":     strings.Replace(string(decisionBody("c-2", "acct-c", 100, false)), `"amount":100`, `"amount":1e308`, 1),
	} {
		if code, b := post("/v1/decisions", body); code != 400 || !strings.Contains(b, `"field":"`+field+`"`) {
			t.Errorf("%s: %d %s", field, code, b)
		}
	}

	// Free-form fields: one decision TongDun answers, one it refuses
	// (9002: the check is queued, then dead-lettered).
	const ext = `"ext":{"bank_card":"6222 0212 3456 7890 128","tel":"+86 139 1234 5678","payee_name":"张三","mobile_no":"158-8765-4321",` +
		`"contact":{"payee_card":"6222-0212-3456-7890-128","note":"或 13700001111"}},` +
		`"event_detail":{"withdraw":{"payee":{"name":"李四","card":"6222021234567890128"},"memo":"身份证 110105 19491231 002X"}}`
	freeForm := func(id, account string) string {
		return strings.Replace(string(decisionBody(id, account, 100, false)), `"event_detail":{"withdraw":{}}`, ext, 1)
	}
	if code, b := post("/v1/decisions", freeForm("ff-live", "acct-ff-live")); code != 200 {
		t.Fatalf("decision: %d %s", code, b)
	}
	var sent *tongdun.Request
	for _, r := range td.Received() {
		if r.SessionID == "s-ff-live" {
			sent = &r
		}
	}
	if sent == nil || sent.Ext["bank_card"] != "6222 0212 3456 7890 128" || sent.Ext["payee_name"] != "张三" ||
		sent.EventDetail["withdraw"]["memo"] != "身份证 110105 19491231 002X" {
		t.Fatalf("TongDun did not get the request as it was: %+v", sent)
	}
	td.SetFaults(tdsim.Faults{Code: 9002})
	if code, b := post("/v1/decisions", freeForm("ff-dead", "acct-ff-dead")); code != 200 {
		t.Fatalf("decision: %d %s", code, b)
	}
	waitFor(t, "the refused check in the dead letters", 20*time.Second, func() bool {
		st, _ := getStatus(t, a)
		return st.Queues["tongdun"].DeadLetters == 1
	})

	texts := map[string]string{}
	get := func(name, path string) {
		resp, err := http.Get(a.URL(path))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		texts[name] = string(b)
	}
	get("status", "/v1/status")
	get("metrics", "/metrics")
	get("dead letters", "/v1/deadletters?upstream=tongdun")
	get("live decision", "/v1/decisions/ff-live")
	get("refused decision", "/v1/decisions/ff-dead")
	out, _ := runCLI(t, a, "deadletters", "list", "tongdun", "--json")
	texts["agent deadletters"] = out
	out, _ = runCLI(t, a, "deadletters", "list", "tongdun")
	texts["agent deadletters table"] = out
	out, _ = runCLI(t, a, "status")
	texts["agent status"] = out
	for k, v := range answers {
		texts["answer to "+k] = v
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	texts["logs"] = a.Logs.String()
	if !strings.Contains(texts["dead letters"], `"id":"ff-dead#tongdun"`) || !strings.Contains(texts["refused decision"], `"payee_name"`) {
		t.Fatalf("the scenario did not reach every path:\n%s\n%s", texts["dead letters"], texts["refused decision"])
	}

	raw := []string{"6222 0212 3456 7890 128", "6222-0212-3456-7890-128", "6222021234567890128", "+86 139 1234 5678", "139 1234 5678",
		"13912345678", "158-8765-4321", "15887654321", "13700001111", "张三", "李四", "110105 19491231 002X", "11010519491231002X"}
	for where, text := range texts {
		for _, s := range raw {
			if strings.Contains(text, s) {
				t.Errorf("%q found in %s", s, where)
			}
		}
	}
	for _, where := range []string{"dead letters", "live decision", "refused decision"} {
		if !strings.Contains(texts[where], `"payee_name":"张*"`) {
			t.Errorf("the payee's name is not masked to its first character in %s", where)
		}
	}
	filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil //nolint:nilerr // a file gone while walking holds nothing to find
		}
		b, _ := os.ReadFile(p)
		for _, s := range raw {
			if strings.Contains(string(b), s) {
				t.Errorf("%q in clear in %s", s, p)
			}
		}
		return nil
	})
}
