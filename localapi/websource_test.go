package localapi

import (
	"strings"
	"testing"

	"github.com/outpost-agent/outpost/action"
)

// TestWebDataSourceRequiresURL: with the Tencent data source set to WEB,
// an action without its page url is refused with 400 and the field's
// path, and nothing of the request is stored; with a url it is taken.
func TestWebDataSourceRequiresURL(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Actions = action.Options{DataSource: action.DataSourceWeb} })
	resp, b := h.do(t, "POST", "/v1/actions", "application/json",
		body(act("w1", `,"url":"https://bank.example/loan"`), act("w2", "")))
	if resp.StatusCode != 400 || !strings.Contains(string(b), `"field":"actions[1].url"`) ||
		!strings.Contains(string(b), "the Tencent data source is WEB") {
		t.Fatalf("without url: %d %s", resp.StatusCode, b)
	}
	if d := h.sp.Stats()[QueueTencent].Depth; d != 0 {
		t.Fatalf("%d stored from a refused request", d)
	}
	resp, b = h.do(t, "POST", "/v1/actions", "application/json",
		body(act("w1", `,"url":"https://bank.example/loan"`), act("w2", `,"url":"http://h5.bank.example/a?b=c"`)))
	if resp.StatusCode != 202 {
		t.Fatalf("with url: %d %s", resp.StatusCode, b)
	}
	// Not WEB: url optional, still checked when given.
	h = newHarness(t)
	if resp, b := h.do(t, "POST", "/v1/actions", "application/json", body(act("n1", ""))); resp.StatusCode != 202 {
		t.Fatalf("no url, data source not WEB: %d %s", resp.StatusCode, b)
	}
	resp, b = h.do(t, "POST", "/v1/actions", "application/json", body(act("n2", `,"url":"/relative"`)))
	if resp.StatusCode != 400 || !strings.Contains(string(b), `"field":"actions[0].url"`) {
		t.Fatalf("relative url: %d %s", resp.StatusCode, b)
	}
}
