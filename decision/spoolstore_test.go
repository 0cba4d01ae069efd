package decision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/policy"
	"github.com/outpost-agent/outpost/spool"
)

// TestStoredLayoutReadable: what the engine stored before Store was
// declared, spelt here as it was written (engine.go's keys, by hand), is
// read by today's engine: a decision with its late verdict, velocity
// events, a cached score. An upgraded agent keeps its data directory.
func TestStoredLayoutReadable(t *testing.T) {
	r := newRig(t)
	now := time.Unix(0, r.clock.Load())
	key := []byte("test-hash-key")
	var vd policy.VelocityDef
	for _, v := range policy.Default().Velocity() {
		if v.Key == "account" && (len(v.Events) == 0 || slices.Contains(v.Events, "withdraw")) {
			vd = v
		}
	}
	rec := encodeRecord(storedResult())
	late := []byte(`{"at":"2026-11-23T15:00:01Z","answer":{"code":200,"score":90}}`)
	acct := hashReference(key, "account", "acct-old")
	kvs := []spool.KV{
		{Key: "dec/d-old", Value: rec, TTL: time.Hour},
		{Key: "late/d-old/tongdun", Value: late, TTL: time.Hour},
		{Key: "sc/td/" + acct + "/withdraw", Value: encodeCached(cached{At: now.Add(-time.Minute), Score: 91, Result: "decline"}), TTL: time.Hour},
	}
	for i := range 2 {
		at := now.Add(-time.Duration(i+1) * time.Minute)
		kvs = append(kvs, spool.KV{Key: fmt.Sprintf("vel/%s/%s/%020d-d-old%d", vd.Name, acct, at.UnixNano(), i), Value: []byte{1}, TTL: time.Hour})
	}
	if _, err := r.sp.Write(context.Background(), kvs, nil); err != nil {
		t.Fatal(err)
	}
	got, ok, err := r.eng.Get("d-old")
	if err != nil || !ok || got.DecisionID != storedResult().DecisionID || !bytes.Contains(got.Late["tongdun"].Answer, []byte(`"score":90`)) {
		t.Fatalf("the stored decision: %+v %v %v", got, ok, err)
	}
	res := decide(t, r, withdraw("d-new", "acct-old", 10))
	if td := res.Signals["tongdun"]; td.Source != "cache" || *td.Score != 91 {
		t.Errorf("the stored score was not used: %+v", td)
	}
	if n := res.Velocity[vd.Name]; n != 2 {
		t.Errorf("%s = %d, want the 2 stored events", vd.Name, n)
	}
	// And today's engine writes the same keys.
	for _, k := range []string{"dec/d-new", fmt.Sprintf("vel/%s/%s/%020d-d-new", vd.Name, acct, now.UnixNano())} {
		if _, ok, err := r.sp.Get(k); !ok || err != nil {
			t.Errorf("key %s not written: %v", k, err)
		}
	}
}

// TestAuditCopy: with AuditTo, a decision record is also a record on the
// audit queue, in its own commit; on a full spool the decision is still
// recorded, its copy dropped and counted once, through the engine's
// second commit (without its queued checks) as well. The record's buffer
// is the caller's again once Commit returns.
func TestAuditCopy(t *testing.T) {
	ctx := context.Background()
	for _, full := range []bool{false, true} {
		t.Run(fmt.Sprintf("full=%v", full), func(t *testing.T) {
			var max int64
			if full {
				max = 1 // no queued record fits
			}
			sp, err := spool.Open(spool.Options{Dir: t.TempDir(), Queues: []string{"tongdun", "audit"}, MaxBytes: max})
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close(ctx)
			var dropped int
			st := NewSpoolStore(sp).AuditTo("audit", func(n int) { dropped += n })
			rec := []byte(`{"decision_id":"d1"}`)
			c := &Commit{
				Record: DecisionRecord{ID: "d1", Record: rec, TTL: time.Hour},
				Queue:  []spool.Record{{Queue: "tongdun", ID: "d1/td", Payload: []byte(`{}`)}},
			}
			err = st.Commit(ctx, c)
			if full {
				// As the engine does: refused for its checks, committed again without.
				if !errors.Is(err, spool.ErrFull) {
					t.Fatalf("commit on a full spool: %v, want spool.ErrFull", err)
				}
				c.Queue = nil
				err = st.Commit(ctx, c)
			}
			if err != nil {
				t.Fatal(err)
			}
			copy(rec, "XXXXXXXX") // the caller's again (Decide reuses it)
			if _, ok, err := st.Decision("d1"); !ok || err != nil {
				t.Fatalf("decision not recorded: %v %v", ok, err)
			}
			es, err := sp.Lease(ctx, "audit", 10, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case full && (len(es) != 0 || dropped != 1):
				t.Errorf("full spool: %d audit copies queued, %d counted dropped; want 0 and 1", len(es), dropped)
			case !full && (len(es) != 1 || es[0].ID != "d1" || string(es[0].Payload) != `{"decision_id":"d1"}` || dropped != 0):
				t.Errorf("audit queue %+v, dropped %d; want the record d1 once, none dropped", es, dropped)
			}
		})
	}
}
