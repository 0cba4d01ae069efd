package localapi

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/outpost-agent/outpost/decision"
	"github.com/outpost-agent/outpost/policy"
	"github.com/outpost-agent/outpost/spool"
)

// fullDisk is a spool on a disk whose free space the test sets (the
// minimum is the agent's default, 128 MiB).
type fullDisk struct {
	sp   *spool.Spool
	free atomic.Int64
}

func newFullDisk(t *testing.T, free int64) *fullDisk {
	t.Helper()
	d := &fullDisk{}
	d.free.Store(free)
	sp, err := spool.Open(spool.Options{Dir: filepath.Join(t.TempDir(), "spool"), Queues: []string{"tencent", "tongdun", "unionpay"},
		MinFreeBytes: 128 << 20, FreeBytes: func(string) int64 { return d.free.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close(context.Background()) })
	d.sp = sp
	return d
}

type readyzBody struct {
	Status, Reason, Error string
}

type intakeBody struct {
	Store struct {
		Intake struct {
			State, Reason, Message string
			FreeDiskBytes          int64 `json:"free_disk_bytes"`
			MinFreeDiskBytes       int64 `json:"min_free_disk_bytes"`
		} `json:"intake"`
	} `json:"store"`
}

// TestReadyzWhileIntakeRefuses: on a disk under its minimum /readyz
// answers 503 with the reason and /v1/status says why, while actions get
// spool_full; with space back both say so and actions are taken again.
func TestReadyzWhileIntakeRefuses(t *testing.T) {
	d := newFullDisk(t, 40<<20)
	h := newHarness(t, func(c *Config) { c.Store = d.sp })

	resp, b := h.do(t, "GET", "/readyz", "", nil)
	var rd readyzBody
	json.Unmarshal(b, &rd)
	if resp.StatusCode != 503 || rd.Status != "not_ready" || rd.Reason != "disk_low" || !strings.Contains(rd.Error, "AGENT_MIN_FREE_DISK") {
		t.Errorf("readyz on a full disk: %d %s", resp.StatusCode, b)
	}
	_, b = h.do(t, "GET", "/v1/status", "", nil)
	var st intakeBody
	json.Unmarshal(b, &st)
	if in := st.Store.Intake; in.State != "refusing" || in.Reason != "disk_low" || in.FreeDiskBytes != 40<<20 ||
		in.MinFreeDiskBytes != 128<<20 || !strings.Contains(in.Message, "queued items are still delivered") {
		t.Errorf("status on a full disk: %s", b)
	}
	if resp, b := h.do(t, "POST", "/v1/actions", "application/json", body(act("a", ""))); resp.StatusCode != 503 ||
		resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "spool_full") {
		t.Errorf("post on a full disk: %d %s", resp.StatusCode, b)
	}

	d.free.Store(200 << 20)
	if resp, b := h.do(t, "GET", "/readyz", "", nil); resp.StatusCode != 200 {
		t.Errorf("readyz with space back: %d %s", resp.StatusCode, b)
	}
	_, b = h.do(t, "GET", "/v1/status", "", nil)
	st = intakeBody{}
	json.Unmarshal(b, &st)
	if st.Store.Intake.State != "accepting" || st.Store.Intake.Reason != "" {
		t.Errorf("status with space back: %s", b)
	}
	if resp, b := h.do(t, "POST", "/v1/actions", "application/json", body(act("a", ""))); resp.StatusCode != 202 {
		t.Errorf("post with space back: %d %s", resp.StatusCode, b)
	}
}

// TestReadyzWhenTheSpoolIsFull: a spool that holds AGENT_SPOOL_MAX_BYTES
// is not ready either.
func TestReadyzWhenTheSpoolIsFull(t *testing.T) {
	sp := newSpool(t, 20_000)
	h := newHarness(t, func(c *Config) { c.Store = sp })
	for i := 0; ; i++ {
		resp, b := h.do(t, "POST", "/v1/actions", "application/json", body(act(fmt.Sprint("id", i), "")))
		if resp.StatusCode == 503 {
			break
		}
		if resp.StatusCode != 202 || i > 1000 {
			t.Fatalf("post %d: %d %s", i, resp.StatusCode, b)
		}
	}
	resp, b := h.do(t, "GET", "/readyz", "", nil)
	var rd readyzBody
	json.Unmarshal(b, &rd)
	if resp.StatusCode != 503 || rd.Reason != "spool_full" || !strings.Contains(rd.Error, "AGENT_SPOOL_MAX_BYTES") {
		t.Errorf("readyz of a full spool: %d %s", resp.StatusCode, b)
	}
}

type onePolicy struct{ p *policy.Policy }

func (o onePolicy) Current() *policy.Policy { return o.p }

// TestDecisionOnAFullDiskIsSpoolFull: a decision that cannot be recorded
// for a full disk answers 503 spool_full with Retry-After, as actions do,
// not store_unavailable.
func TestDecisionOnAFullDiskIsSpoolFull(t *testing.T) {
	d := newFullDisk(t, 40<<20)
	eng := decision.New(decision.Config{Store: decision.NewSpoolStore(d.sp), Policies: onePolicy{policy.Default()}, HashKey: []byte("test-hash-key")})
	t.Cleanup(eng.Close)
	h := newHarness(t, func(c *Config) { c.Store, c.Decider, c.DefaultChannel = d.sp, eng, "bank" })
	req := []byte(`{"session_id":"s-1","decision_event":"withdraw","event_time":"2026-11-23T14:20:50.521+08:00",` +
		`"account_id":"acct-1","terminal":{"ip":"210.20.10.33"},"event_detail":{"withdraw":{}},"amount":12}`)
	resp, b := h.do(t, "POST", "/v1/decisions", "application/json", req)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), `"spool_full"`) {
		t.Errorf("decision on a full disk: %d Retry-After=%q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	d.free.Store(200 << 20)
	if resp, b := h.do(t, "POST", "/v1/decisions", "application/json", req); resp.StatusCode != 200 {
		t.Errorf("decision with space back: %d %s", resp.StatusCode, b)
	}
}
