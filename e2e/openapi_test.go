package e2e

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/internal/openapitest"
)

// TestOpenAPIRealBinary: the binary serves localapi/openapi.json at
// /openapi.json, and what only the binary wires (the policy's status,
// the forwarder's view of the upstreams, /metrics, the profiler) answers
// as it describes. localapi's TestOpenAPI covers every route and error
// code on the API's own server.
func TestOpenAPIRealBinary(t *testing.T) {
	t.Parallel() // see agent_test.go
	const admin = "admin-token-0123456789"
	a := startAgent(t, t.TempDir(), "AGENT_PPROF=true", "AGENT_ADMIN_TOKEN="+admin)
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get(a.URL("/openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	served, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	file, err := os.ReadFile("../localapi/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || !bytes.Equal(served, file) {
		t.Fatalf("/openapi.json: %d %s, the file: %v", resp.StatusCode, resp.Header.Get("Content-Type"), bytes.Equal(served, file))
	}
	chk := openapitest.New(t, served)
	base := "http://" + a.Addr
	auth := []string{"Content-Type", "application/json", "Authorization", "Bearer " + admin}
	now := time.Now()
	for _, x := range []struct {
		method, path string
		body         string
		status       int
	}{
		{"POST", "/v1/actions", string(batchJSON([]string{"oa-bin-1", "oa-bin-2"}, now)), 202},
		{"POST", "/v1/decisions", `{"id":"dec-bin-1","session_id":"s-0123456789","decision_event":"withdraw","event_time":"2026-11-23T14:20:50.521+08:00",` +
			`"account_id":"acct-1","terminal":{"ip":"210.20.10.33"},"event_detail":{"withdraw":{}},"amount":12}`, 200},
		{"GET", "/v1/decisions/dec-bin-1", "", 200},
		{"GET", "/v1/status", "", 200},
		{"GET", "/v1/deadletters?upstream=tongdun", "", 200},
		{"POST", "/v1/deadletters/replay", `{"upstream":"tencent","all":true}`, 200},
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/metrics", "", 200},
		{"GET", "/", "", 200},
		{"GET", "/debug/pprof/", "", 200},
		{"GET", "/debug/pprof/goroutine?debug=1", "", 200},
		{"GET", "/v1/deadletters?upstream=tencent", "", 200},
	} {
		var body []byte
		if x.body != "" {
			body = []byte(x.body)
		}
		st, _, b := chk.Do(t, hc, base, x.method, x.path, body, true, auth...)
		if st != x.status {
			t.Errorf("%s %s: %d %s", x.method, x.path, st, b)
		}
	}
	// The admin routes without the admin token.
	st, _, b := chk.Do(t, hc, base, "GET", "/v1/deadletters?upstream=tencent", nil, true)
	if st != 401 {
		t.Errorf("dead letters without a token: %d %s", st, b)
	}
}
