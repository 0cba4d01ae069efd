package decision

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/policy"
	"github.com/outpost-agent/outpost/spool"
)

// mapStore is a Spool over a map: under a SpoolStore, what Get and lookup
// read back is exactly the bytes a test put under the stored key layout.
type mapStore map[string][]byte

func (m mapStore) Write(_ context.Context, kvs []spool.KV, _ []spool.Record) (spool.AppendResult, error) {
	for _, kv := range kvs {
		if kv.Delete {
			delete(m, kv.Key)
		} else {
			m[kv.Key] = kv.Value
		}
	}
	return spool.AppendResult{}, nil
}

func (m mapStore) Get(key string) ([]byte, bool, error) {
	v, ok := m[key]
	return v, ok, nil
}

func (m mapStore) Scan(prefix, start string, fn func(string, []byte) bool) error {
	var keys []string
	for k := range m {
		if strings.HasPrefix(k, prefix) && k >= start {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !fn(k, m[k]) {
			break
		}
	}
	return nil
}

// storedResult is a decision record as Decide writes one.
func storedResult() *Result {
	score, match := 62, true
	return &Result{
		DecisionID: "d19b0c7e2a1f3c4d5e6f7a8b", Result: "review", Score: 35.5,
		Reasons:       []policy.Reason{{ID: "TD_POINTS", Reason: "TongDun score"}},
		PolicyVersion: "2026-11-20", PolicySHA256: strings.Repeat("ab", 32), Degraded: true,
		Signals: map[string]SignalView{
			"tongdun":        {Status: "fresh", Source: "live", Score: &score, Result: "review", Reasons: []policy.Reason{{ID: "IDRBVBBY", Reason: "短时间内操作频率异常"}}},
			"unionpay_model": {Status: "missing", Source: "none", Queued: true, Note: "queued"},
			"unionpay_txn":   {Status: "stale", Source: "cache", Match: &match, AgeSeconds: 86400},
		},
		DecidedAt: time.Date(2026, 11, 23, 15, 0, 0, 123456789, time.FixedZone("", 8*3600)),
		Fired:     []policy.Fired{{ID: "TD_POINTS"}},
		Velocity:  map[string]int64{"logins_10m": 4},
		Input:     json.RawMessage(`{"id":"r-1","channel":"bank","decision_event":"withdraw","amount":500}`),
	}
}

// FuzzStoredDecision: Get decodes any stored record and late verdict, or
// says the record is unreadable, without a panic; a late verdict that
// does not decode is left out, not an error; what Get returns, written
// again by encodeRecord, reads back the same.
func FuzzStoredDecision(f *testing.F) {
	late, _ := json.Marshal(Late{At: time.Date(2026, 11, 23, 15, 0, 1, 0, time.UTC), Answer: json.RawMessage(`{"code":200,"score":90,"result":"decline"}`)})
	rec := encodeRecord(storedResult())
	f.Add(rec, late)
	f.Add(rec, []byte("not json"))
	withLate := storedResult()
	withLate.Late = map[string]Late{"unionpay_model": {At: time.Unix(5, 0).UTC(), Answer: json.RawMessage(`{"score":888}`)}}
	b, _ := json.Marshal(withLate)
	f.Add(b, []byte(`{"at":"2026-11-23T15:00:01Z","answer":null}`))
	f.Add([]byte(`{"decision_id":"x","input":{ "a" : [1, 2] },"decided_at":"2026-11-23T15:00:00.5-07:00"}`), []byte(`{}`))
	f.Add([]byte(`{"score":1e400}`), []byte{})
	f.Add([]byte(`{"Result":"accept","RESULT":"decline","signals":{"tongdun":{"score":null}}}`), []byte(`{"answer":"x"}`))
	f.Fuzz(func(t *testing.T, rec, late []byte) {
		st := mapStore{"dec/d1": rec, "late/d1/tongdun": late}
		e := New(Config{Store: NewSpoolStore(st)})
		r, ok, err := e.Get("d1")
		var plain Result
		if json.Unmarshal(rec, &plain) != nil {
			if err == nil || ok || r != nil {
				t.Fatalf("an unreadable record read: %+v, %v, %v", r, ok, err)
			}
			return
		}
		if err != nil || !ok || r == nil {
			t.Fatalf("a readable record refused: %v, %v", ok, err)
		}
		wantLate := plain.Late
		if l := (Late{}); json.Unmarshal(late, &l) == nil {
			if wantLate == nil {
				wantLate = map[string]Late{}
			}
			wantLate["tongdun"] = l
		}
		if got, want := mustMarshal(t, r.Late), mustMarshal(t, wantLate); !bytes.Equal(got, want) {
			t.Fatalf("late verdicts %s, want %s", got, want)
		}
		out := encodeRecord(r)
		if out == nil || !json.Valid(out) {
			t.Fatalf("record written again is not JSON: %q", out)
		}
		want := mustMarshal(t, r)
		delete(st, "late/d1/tongdun")
		st["dec/d1"] = out
		again, ok, err := e.Get("d1")
		if err != nil || !ok {
			t.Fatalf("written again, read back: %v, %v", ok, err)
		}
		if got := mustMarshal(t, again); !bytes.Equal(got, want) {
			t.Fatalf("round trip:\ngot  %s\nwant %s", got, want)
		}
	})
}

// FuzzCachedScore: a score-cache entry in the store decodes or is a miss,
// never a panic, and what decodes is written back by encodeCached to the
// same entry.
func FuzzCachedScore(f *testing.F) {
	f.Add(encodeCached(cached{At: time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC), Score: 90, Result: "decline",
		Reasons: []reason{{"IDRBVBBY", "短时间内操作频率异常"}}, SequenceID: "1648777165770866F82AC7F326307055"}))
	f.Add(encodeCached(cached{At: time.Unix(0, 1), Score: 888}))
	f.Add([]byte(`{"at":"not a time"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e := New(Config{Store: NewSpoolStore(mapStore{"sc/td/k": b})})
		c, ok := e.lookup("td/k")
		var want cached
		if json.Unmarshal(b, &want) != nil {
			if ok {
				t.Fatalf("%q read as %+v", b, c)
			}
			return
		}
		if !ok {
			t.Fatalf("%q: a miss", b)
		}
		if hit, ok := e.lookup("td/k"); !ok || !bytes.Equal(encodeCached(hit), encodeCached(c)) {
			t.Fatalf("memory gives %+v, the store gave %+v", hit, c)
		}
		var again cached
		if err := json.Unmarshal(encodeCached(c), &again); err != nil || !bytes.Equal(encodeCached(again), encodeCached(c)) {
			t.Fatalf("written back as %s, read %+v, %v", encodeCached(c), again, err)
		}
	})
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
