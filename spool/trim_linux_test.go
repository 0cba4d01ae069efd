//go:build linux

package spool

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

func TestResidentFileBytes(t *testing.T) {
	n, err := residentFileBytes()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary's own code is file-backed and resident.
	if n <= 0 {
		t.Fatalf("resident file-backed bytes = %d, want > 0", n)
	}
}

// A burst of writes is trimmed long before TrimInterval when the mapped
// pages grow past TrimAboveBytes; with the threshold out of reach they stay.
func TestTrimEarlyPastThreshold(t *testing.T) {
	if _, err := trimMappings(os.TempDir()); err == errNoPageout {
		t.Skip("this kernel has no MADV_PAGEOUT (Linux 5.4+): nothing to test")
	}
	for _, tc := range []struct {
		name    string
		above   int64
		trimmed bool
	}{
		{"threshold reached", 1 << 20, true},
		{"threshold out of reach", 1 << 40, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(Options{Dir: dir, Queues: []string{"q"}, TrimInterval: time.Hour, TrimAboveBytes: tc.above})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			payload := make([]byte, 1024)
			for i := range 16 {
				recs := make([]Record, 500)
				for j := range recs {
					recs[j] = Record{Queue: "q", ID: fmt.Sprintf("r-%d-%d", i, j), Payload: payload}
				}
				if _, err := s.Append(context.Background(), recs); err != nil {
					t.Fatal(err)
				}
			}
			mapped := func() int64 {
				var kb int64
				for _, v := range rssByExt(dir) {
					kb += v
				}
				return kb << 10
			}
			wait := time.Second // enough for ten checks
			if tc.trimmed {
				wait = 3 * time.Second
			}
			deadline := time.Now().Add(wait)
			for mapped() >= 1<<20 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			got := mapped()
			if tc.trimmed && got >= 1<<20 {
				t.Fatalf("store mappings still hold %d bytes resident after %v", got, wait)
			}
			if !tc.trimmed && got < 4<<20 {
				t.Fatalf("store mappings hold only %d bytes resident: trimmed without reaching the threshold?", got)
			}
		})
	}
}
