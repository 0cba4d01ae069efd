package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestPrintVelocity: agent status says what the fleet view holds, and
// says it loudly when increments left Kafka before this agent read them.
func TestPrintVelocity(t *testing.T) {
	for _, tc := range []struct {
		name, status string
		want, not    []string
	}{
		{"live", `{"state":"live","age_seconds":1,"topic":"outpost.velocity.v1","partitions":{"0":{"lag":2}},"entries":3,"max_entries":100,"merged_total":7,"duplicates_total":1}`,
			[]string{"fleet velocity: LIVE", "2 records behind in 1 partitions", "merged 7, duplicates skipped 1"}, []string{"NOT COUNTED", "local view"}},
		{"expired", `{"state":"live","topic":"outpost.velocity.v1","expired_unread_total":3}`,
			[]string{"NOT COUNTED: 3 increments left Kafka before this agent read them"}, nil},
		{"stale", `{"state":"stale","reason":"brokers unreachable","topic":"outpost.velocity.v1"}`,
			[]string{"STALE", "decisions use the local view: brokers unreachable"}, []string{"NOT COUNTED"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v velocityDoc
			if err := json.Unmarshal([]byte(tc.status), &v); err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			printVelocity(&b, &v)
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("no %q in:\n%s", w, b.String())
				}
			}
			for _, n := range tc.not {
				if strings.Contains(b.String(), n) {
					t.Errorf("%q in:\n%s", n, b.String())
				}
			}
		})
	}
}
