package decision

import (
	"testing"
	"time"
)

// TestMemCacheEvictsLeastRecentlyUsed: a full cache drops the entry used
// longest ago (a busy account stays cached), and a stored score clears a
// remembered failure.
func TestMemCacheEvictsLeastRecentlyUsed(t *testing.T) {
	m := newMemCache(3)
	for _, k := range []string{"a", "b", "c"} {
		m.put(k, cached{Score: 1})
	}
	m.get("a")
	m.put("d", cached{Score: 2})
	for k, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true} {
		if _, ok := m.get(k); ok != want {
			t.Errorf("%s cached: %v, want %v", k, ok, want)
		}
	}
	now := time.Unix(1e9, 0)
	m.failed("e", now.Add(time.Second))
	if !m.negative("e", now) || m.negative("e", now.Add(time.Second)) {
		t.Error("a failure is remembered until its time, not after")
	}
	m.put("e", cached{Score: 3})
	if m.negative("e", now) {
		t.Error("a stored score leaves a failure remembered")
	}
}
