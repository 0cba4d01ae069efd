package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/client"
)

// TestTypesMatchTheAgent reads every answer the client decodes from the
// real local API and decodes it into the client's type with unknown fields
// refused: a field the agent sends that the client lacks fails here.
// (localapi's TestOpenAPI holds the agent to openapi.json the same way.)
func TestTypesMatchTheAgent(t *testing.T) {
	addr, sp, stop := startAgent()
	defer stop()
	ctx := context.Background()
	get := func(method, path, body string) []byte {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+addr+path, bytes.NewReader([]byte(body)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b
	}
	strict := func(name string, b []byte, v any) {
		t.Helper()
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Errorf("%s: %v\n%s", name, err, b)
		}
		if reflect.ValueOf(v).Elem().IsZero() {
			t.Errorf("%s: nothing decoded from %s", name, b)
		}
	}
	const decision = `{"id":"dec-types-1","session_id":"s-0123456789","decision_event":"withdraw","event_time":"2026-11-23T14:20:50.521+08:00",` +
		`"account_id":"acct-1","terminal":{"ip":"210.20.10.33"},"event_detail":{"withdraw":{}},"amount":12}`
	strict("actions", get("POST", "/v1/actions", `{"actions":[{"id":"types-1","track":"payment","action_type":"REGISTER","action_time":`+
		jsonTime(time.Now())+`,"user_id":{"phone":"13800138000"}}]}`), &client.ActionsResult{})
	strict("decision", get("POST", "/v1/decisions", decision), &client.Decision{})
	strict("decision record", get("GET", "/v1/decisions/dec-types-1", ""), &client.DecisionRecord{})
	strict("readyz", get("GET", "/readyz", ""), &client.Readiness{})

	es, err := sp.Lease(ctx, "tencent", 1, 1<<20)
	if err != nil || len(es) != 1 {
		t.Fatalf("lease: %v", err)
	}
	if err := sp.DeadLetter(ctx, "tencent", []uint64{es[0].Seq}, "31002: bad"); err != nil {
		t.Fatal(err)
	}
	var dl struct {
		DeadLetters []client.DeadLetter `json:"dead_letters"`
	}
	strict("dead letters", get("GET", "/v1/deadletters?upstream=tencent", ""), &dl)
	strict("status", get("GET", "/v1/status", ""), &client.Status{})

	c, _ := client.New(client.Config{Addr: addr})
	st, err := c.Status(ctx)
	if err != nil || st.Queues["tencent"].DeadLetters != 1 || !json.Valid(st.Raw) {
		t.Errorf("Status: %+v %v", st, err)
	}
	dead, err := c.DeadLetters(ctx, "tencent", 0, 0)
	if err != nil || len(dead) != 1 || dead[0].ID != "types-1" || !json.Valid(dead[0].Raw) {
		t.Fatalf("DeadLetters: %+v %v", dead, err)
	}
	if n, err := c.ReplayDeadLetters(ctx, client.Replay{Upstream: "tencent", IDs: []string{"types-1"}}); err != nil || n != 1 {
		t.Errorf("ReplayDeadLetters: %d %v", n, err)
	}
	rec, err := c.Decision(ctx, "dec-types-1")
	if err != nil || rec.DecisionID != "dec-types-1" || rec.PolicySHA256 == "" || rec.DecidedAt.IsZero() {
		t.Errorf("Decision: %+v %v", rec, err)
	}
	if rd, err := c.Ready(ctx); err != nil || rd.Status != "ready" {
		t.Errorf("Ready: %+v %v", rd, err)
	}
	if err := c.Health(ctx); err != nil {
		t.Errorf("Health: %v", err)
	}
}

func jsonTime(t time.Time) string {
	b, _ := json.Marshal(t)
	return string(b)
}
