package localapi

import (
	"slices"
	"testing"
	"time"
)

// TestHistoryMinuteByMinute: counts land in their minute, the window slides
// (a bucket reused an hour later starts from zero), totals keep everything.
func TestHistoryMinuteByMinute(t *testing.T) {
	now := time.Date(2026, 12, 4, 10, 0, 30, 0, time.UTC)
	h := NewHistory(func() time.Time { return now })
	h.Queued(5, 1)
	h.Refused(2)
	h.Decided("accept")
	h.Decided("nonsense")
	now = now.Add(time.Minute)
	h.Queued(3, 0)
	h.Delivered(7)
	h.Decided("decline")

	tot, lh, sum := h.snapshot()
	if tot != (ActionTotals{Accepted: 8, Duplicates: 1, Refused: 2, Delivered: 7}) {
		t.Fatalf("totals %+v", tot)
	}
	if want := time.Date(2026, 12, 4, 9, 2, 0, 0, time.UTC); !lh.From.Equal(want) {
		t.Fatalf("from %v, want %v", lh.From, want)
	}
	last2 := func(s []int64) []int64 { return s[len(s)-2:] }
	for _, c := range []struct {
		name      string
		got, want []int64
	}{
		{"queued", last2(lh.Queued), []int64{5, 3}},
		{"delivered", last2(lh.Delivered), []int64{0, 7}},
		{"refused", last2(lh.Refused), []int64{2, 0}},
		{"accept", last2(lh.Decisions["accept"]), []int64{1, 0}},
		{"decline", last2(lh.Decisions["decline"]), []int64{0, 1}},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	if sum["accept"] != 1 || sum["decline"] != 1 || sum["review"] != 0 {
		t.Errorf("decisions in the hour %v", sum)
	}

	// 59 minutes on, the first minute is the oldest shown; one more and it
	// has left the window, though its bucket is not reused yet.
	now = now.Add(58 * time.Minute)
	_, lh, _ = h.snapshot()
	if lh.Queued[0] != 5 || len(lh.Queued) != 60 {
		t.Fatalf("an hour on: %v", lh.Queued)
	}
	now = now.Add(time.Minute)
	_, lh, sum = h.snapshot()
	if lh.Queued[0] != 3 || sum["accept"] != 0 {
		t.Fatalf("past the hour: %v %v", lh.Queued, sum)
	}
	h.Queued(1, 0) // reuses the first minute's bucket
	_, lh, _ = h.snapshot()
	if lh.Queued[59] != 1 {
		t.Fatalf("a reused bucket starts from zero: %v", lh.Queued)
	}
	if tot, _, _ := h.snapshot(); tot.Accepted != 9 {
		t.Fatalf("totals %+v", tot)
	}
}
