package localapi

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/outpost-agent/outpost/action"
	"github.com/outpost-agent/outpost/spool"
)

// TestTencentDeadLettersShowOuterActionID: a Tencent dead letter is
// listed with its id as posted and the outer_action_id it was sent under
// (the id mapped to Tencent's alphabet), to find it in Tencent's reports;
// an id stored before the id rules shows both masked.
func TestTencentDeadLettersShowOuterActionID(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	ids := []string{"loan-app-000123", "evt_42", "card:6222-0212-3456-7890-128"}
	var recs []spool.Record
	for _, id := range ids {
		recs = append(recs, spool.Record{Queue: QueueTencent, ID: id, Payload: []byte(`{"id":"` + id + `"}`)})
	}
	if _, err := h.sp.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	es, err := h.sp.Lease(ctx, QueueTencent, 10, 1<<20)
	if err != nil || len(es) != len(ids) {
		t.Fatalf("lease: %d %v", len(es), err)
	}
	if err := h.sp.DeadLetter(ctx, QueueTencent, []uint64{es[0].Seq, es[1].Seq, es[2].Seq}, "rejected by tencent: code 31001"); err != nil {
		t.Fatal(err)
	}
	resp, b := h.do(t, "GET", "/v1/deadletters?upstream=tencent", "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	var got struct {
		DeadLetters []struct {
			ID            string `json:"id"`
			OuterActionID string `json:"outer_action_id"`
		} `json:"dead_letters"`
	}
	if err := json.Unmarshal(b, &got); err != nil || len(got.DeadLetters) != len(ids) {
		t.Fatalf("listing %s: %v", b, err)
	}
	for i, want := range []struct{ id, outer string }{
		{"loan-app-000123", action.OuterActionID("loan-app-000123")},
		{"evt_42", "evt_42"},
	} {
		if d := got.DeadLetters[i]; d.ID != want.id || d.OuterActionID != want.outer {
			t.Errorf("dead letter %d: id %q outer_action_id %q; want %q %q", i, d.ID, d.OuterActionID, want.id, want.outer)
		}
	}
	legacy := got.DeadLetters[2]
	for _, raw := range []string{"6222-0212-3456-7890-128", "6222_0212_3456_7890_128", "6222021234567890128"} {
		if strings.Contains(string(b), raw) {
			t.Errorf("listing shows %q: %s", raw, b)
		}
	}
	if !strings.HasPrefix(legacy.OuterActionID, "card_") || !strings.Contains(legacy.OuterActionID, "0_128_") {
		t.Errorf("legacy outer_action_id %q: want it masked but recognisable", legacy.OuterActionID)
	}
	// Other upstreams have no outer_action_id.
	_, b = h.do(t, "GET", "/v1/deadletters?upstream=tongdun", "", nil)
	if strings.Contains(string(b), "outer_action_id") {
		t.Errorf("tongdun listing has an outer_action_id: %s", b)
	}
}
