package spool

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestKVWriteGetScanReopen(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "spool")
	s := openT(t, dir)
	res, err := s.Write(ctx, []KV{{Key: "dec/1", Value: []byte("one")}, {Key: "dec/2", Value: []byte("two")}, {Key: "vel/a/1", Value: []byte("x")}},
		recs("tongdun", "1:td"))
	if err != nil || res.Accepted != 1 {
		t.Fatalf("write: %+v %v", res, err)
	}
	if d := s.Stats()["tongdun"].Depth; d != 1 {
		t.Fatalf("record not queued with the keys: depth %d", d)
	}
	closeT(t, s)
	s = openT(t, dir)
	defer closeT(t, s)
	v, ok, err := s.Get("dec/2")
	if err != nil || !ok || string(v) != "two" {
		t.Fatalf("get after reopen: %q %v %v", v, ok, err)
	}
	var keys []string
	s.Scan("dec/", "", func(k string, v []byte) bool { keys = append(keys, k); return true })
	if len(keys) != 2 || keys[0] != "dec/1" {
		t.Fatalf("scan = %v", keys)
	}
	s.Write(ctx, []KV{{Key: "dec/1", Delete: true}}, nil)
	if _, ok, _ := s.Get("dec/1"); ok {
		t.Fatal("deleted key still there")
	}
	s.Write(ctx, []KV{{Key: "ttl", Value: []byte("v"), TTL: time.Second}}, nil)
	if _, ok, _ := s.Get("ttl"); !ok {
		t.Fatal("ttl key missing at once")
	}
	// KV keys never show up in queue operations.
	if es, _ := s.Lease(ctx, "tencent", 10, 1<<20); len(es) != 0 {
		t.Fatalf("kv leaked into a queue: %v", es)
	}
}
