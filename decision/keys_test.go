package decision

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"testing"
	"time"
)

func hashReference(key []byte, kind, v string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// TestKeysUnchanged: hashes, velocity keys and decision ids are spelt as
// before (stored keys must stay readable across the change).
func TestKeysUnchanged(t *testing.T) {
	e := New(Config{Store: NewSpoolStore(discardSpool{}), HashKey: []byte("test-hash-key")})
	defer e.Close()
	for _, c := range [][2]string{{"account", "acct-1"}, {"card", "6262320120123210"}, {"ip", ""}, {"", "x\x00y"}, {"device", string(make([]byte, 300))}} {
		for range 3 { // a pooled HMAC, reset, must hash as a new one
			if got, want := e.hash(c[0], c[1]), hashReference([]byte("test-hash-key"), c[0], c[1]); got != want {
				t.Fatalf("hash(%q, %q) = %s, want %s", c[0], c[1], got, want)
			}
		}
	}
	for _, ts := range []time.Time{time.Unix(0, 0), time.Unix(0, 1), time.Now(), time.Unix(1<<33, 999999999), time.Unix(-5, 0), time.Unix(0, -1)} {
		if got, want := velocityKey("x", "abc", ts, "d1"), "vel/x/abc/"+fmt.Sprintf("%020d", ts.UnixNano())+"-d1"; got != want {
			t.Fatalf("velocityKey(%v) = %s, want %s", ts, got, want)
		}
	}
	id := regexp.MustCompile(`^d[0-9a-f]+[0-9a-f]{12}$`)
	for _, ts := range []time.Time{time.Now(), time.Unix(0, 0), time.UnixMilli(0xabcdef)} {
		got := newID(ts)
		if !id.MatchString(got) || got[:len(got)-12] != fmt.Sprintf("d%x", ts.UnixMilli()) {
			t.Fatalf("newID(%v) = %s", ts, got)
		}
	}
}

func BenchmarkKeys(b *testing.B) {
	e := New(Config{Store: NewSpoolStore(discardSpool{}), HashKey: []byte("test-hash-key")})
	defer e.Close()
	now := time.Now()
	b.Run("hash", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e.hash("account", "lg-acct-17")
		}
	})
	b.Run("hash-before", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			hashReference(e.cfg.HashKey, "account", "lg-acct-17")
		}
	})
	b.Run("velocityKey", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			velocityKey("withdrawals_1h", "0123456789abcdef0123456789abcdef", now, "d19ab0c1d2e3f0123456789ab")
		}
	})
	b.Run("velocityKey-before", func(b *testing.B) {
		b.ReportAllocs()
		prefix, id := "vel/withdrawals_1h/0123456789abcdef0123456789abcdef/", "d19ab0c1d2e3f0123456789ab"
		for b.Loop() {
			_ = prefix + fmt.Sprintf("%020d", now.UnixNano()) + "-" + id
		}
	})
	b.Run("newID", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			newID(now)
		}
	})
}
