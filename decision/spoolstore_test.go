package decision

import (
	"bytes"
	"context"
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
