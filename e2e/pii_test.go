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

	"github.com/outpost-agent/outpost/upstream/tencent/tencentsim"
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
	tsim.SetFaults(tencentsim.Faults{BadActionIDs: []string{"pii-000001"}})
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
	code, body, err := postJSON(context.Background(), http.DefaultClient, a.url("/v1/actions"), []byte(`{"actions":[`+strings.Join(acts, ",")+`]}`))
	if err != nil || code != 202 {
		t.Fatalf("actions: %d %s %v", code, body, err)
	}
	// An invalid action whose error must not echo the number.
	code, body, _ = postJSON(context.Background(), http.DefaultClient, a.url("/v1/actions"),
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
		code, body, err := postJSON(context.Background(), http.DefaultClient, a.url("/v1/decisions"), []byte(b))
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
		resp, err := http.Get(a.url(path))
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
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	texts["logs"] = a.logs.String()
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
			return nil
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
