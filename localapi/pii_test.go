package localapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/outpost-agent/outpost/decision"
	"github.com/outpost-agent/outpost/spool"
)

// Raw personal data as an agent before the shape rules stored it: ids
// that look like a card, a resident ID and a mobile number, and free-form
// fields under keys it did not list.
var storedRaw = []string{"6222021234567890128", "11010519491231002X", "13912345678", "6222 0212 3456 7890 128", "158-8765-4321", "张三"}

const storedTD = `{"channel":"bank","session_id":"s-1","decision_event":"withdraw","event_time":"2026-11-23T14:20:50.521+08:00",` +
	`"terminal":{"ip":"210.20.10.33"},"ext":{"bank_card":"6222 0212 3456 7890 128","mobile_no":"158-8765-4321","payee_name":"张三"},` +
	`"event_detail":{"withdraw":{}}}`

// TestDeadLettersStoredBeforeAreShownMasked: a dead letter whose id looks
// like a card number (accepted by older agents) is listed with the id
// masked, its free-form payload masked by shape and by name.
func TestDeadLettersStoredBeforeAreShownMasked(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	recs := []spool.Record{
		{Queue: "tongdun", ID: "6222021234567890128#tongdun", Payload: []byte(storedTD)},
		{Queue: "tongdun", ID: "11010519491231002X#tongdun", Payload: []byte(storedTD)},
		{Queue: "tongdun", ID: "13912345678#tongdun", Payload: []byte(storedTD)},
	}
	if _, err := h.sp.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	es, err := h.sp.Lease(ctx, "tongdun", 10, 1<<20)
	if err != nil || len(es) != 3 {
		t.Fatalf("lease: %d %v", len(es), err)
	}
	if err := h.sp.DeadLetter(ctx, "tongdun", []uint64{es[0].Seq, es[1].Seq, es[2].Seq}, "code 9002: card 6222 0212 3456 7890 128 refused"); err != nil {
		t.Fatal(err)
	}
	resp, b := h.do(t, "GET", "/v1/deadletters?upstream=tongdun", "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	for _, s := range storedRaw {
		if strings.Contains(string(b), s) {
			t.Errorf("dead letters show %q: %s", s, b)
		}
	}
	for _, s := range []string{`"id":"***************0128#tongdun"`, `"id":"**************002X#tongdun"`, `"id":"*******5678#tongdun"`, `"payee_name":"张*"`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("want %s in %s", s, b)
		}
	}
	// Masked ids cannot be named: replaying them all still works.
	resp, b = h.do(t, "POST", "/v1/deadletters/replay", "application/json", []byte(`{"upstream":"tongdun","all":true}`))
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"replayed":3`) {
		t.Fatalf("replay: %d %s", resp.StatusCode, b)
	}
}

// storedDecider returns a record as an older agent stored it.
type storedDecider struct{ fixedDecider }

func (storedDecider) Get(id string) (*decision.Result, bool, error) {
	return &decision.Result{DecisionID: id, Result: "accept", Input: json.RawMessage(`{"id":"` + id + `",` + storedTD[1:])}, true, nil
}

// TestDecisionStoredBeforeIsShownMasked: GET /v1/decisions/{id} masks,
// by today's rules, a record an older agent stored.
func TestDecisionStoredBeforeIsShownMasked(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Decider = storedDecider{} })
	resp, b := h.do(t, http.MethodGet, "/v1/decisions/card:6222-0212-3456-7890-128", "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	for _, s := range append(storedRaw, "6222-0212-3456-7890-128") {
		if strings.Contains(string(b), s) {
			t.Errorf("decision shows %q: %s", s, b)
		}
	}
	if !strings.Contains(string(b), `"decision_id":"card:****-****-****-***0-128"`) {
		t.Errorf("decision id not masked: %s", b)
	}
}
