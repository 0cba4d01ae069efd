package spool

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const secretMarker = "SECRET-6262320120123210"

// markedRecords: payloads that carry the marker, small ones (kept inline in
// the LSM: under 64 bytes encoded) and large ones (in the value log); the
// large ones have ids that carry a marker of their own (ids are in keys:
// the LSM and the write-ahead log).
func markedRecords() []Record {
	var rs []Record
	for i := range 6 {
		r := Record{Queue: "tencent", ID: fmt.Sprintf("m%d", i), Payload: []byte(secretMarker)}
		if i%2 == 1 {
			r.ID = fmt.Sprintf("ID-MARK-%d", i)
			r.Payload = fmt.Appendf(nil, `{"card":"%s","pad":"%s"}`, secretMarker, strings.Repeat("y", 100+i))
		}
		rs = append(rs, r)
	}
	return rs
}

// filesContaining lists the files under dir that contain the marker.
func filesContaining(t *testing.T, dir, marker string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(marker)) {
			out = append(out, filepath.Base(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEncryptionAtRest(t *testing.T) {
	ctx := context.Background()
	for _, c := range plainAndEncrypted {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "spool")
			withKey := func(o *Options) { o.EncryptionKey = c.key }
			s := openT(t, dir, withKey)
			// The short payloads one by one (each a record of its own,
			// short enough to be kept in the LSM: write-ahead log and
			// tables), then the long ones in one append (a chunk, in the
			// value log).
			var rs, long []Record
			for _, r := range markedRecords() {
				if len(r.Payload) >= valueThreshold {
					long = append(long, r)
					continue
				}
				rs = append(rs, r)
				if _, err := s.Append(ctx, []Record{r}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.Append(ctx, long); err != nil {
				t.Fatal(err)
			}
			rs = append(rs, long...)
			// While open (what kill -9 would leave: write-ahead log,
			// value log), and after a clean close (tables).
			open := filesContaining(t, dir, secretMarker)
			openIDs := filesContaining(t, dir, "ID-MARK-")
			closeT(t, s)
			closed := filesContaining(t, dir, secretMarker)
			closedIDs := filesContaining(t, dir, "ID-MARK-")
			t.Logf("marker in files: open %v, closed %v; ids: open %v, closed %v", open, closed, openIDs, closedIDs)
			if c.key == nil {
				// The scan sees clear text where there is some: in every
				// kind of file that holds data.
				if !hasExt(open, ".mem") || !hasExt(open, ".vlog") || !hasExt(closed, ".sst") || !hasExt(closed, ".vlog") ||
					len(openIDs) == 0 || len(closedIDs) == 0 {
					t.Fatal("without a key the marker should be in the write-ahead log, the value log and the tables: the scan is blind")
				}
			} else if len(open)+len(closed)+len(openIDs)+len(closedIDs) > 0 {
				t.Fatal("clear text in an encrypted store")
			}

			s = openT(t, dir, withKey)
			defer closeT(t, s)
			got, err := s.Lease(ctx, "tencent", 100, 1<<20)
			if err != nil || len(got) != len(rs) {
				t.Fatalf("lease: %d entries, %v", len(got), err)
			}
			for i, e := range got {
				if e.ID != rs[i].ID || !bytes.Equal(e.Payload, rs[i].Payload) {
					t.Fatalf("entry %d: %s %q, want %s %q", i, e.ID, e.Payload, rs[i].ID, rs[i].Payload)
				}
			}
		})
	}
}

func hasExt(names []string, ext string) bool {
	for _, n := range names {
		if filepath.Ext(n) == ext {
			return true
		}
	}
	return false
}
