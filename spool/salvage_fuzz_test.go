package spool

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/y"
)

// badgerEntry encodes one log entry as badger writes it in clear.
func badgerEntry(meta byte, key, val []byte, exp uint64) []byte {
	b := []byte{meta, 0}
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = binary.AppendUvarint(b, uint64(len(val)))
	b = binary.AppendUvarint(b, exp)
	b = append(b, key...)
	b = append(b, val...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, y.CastagnoliCrcTable))
}

// FuzzLogScan: whatever bytes a memtable log or value log holds, reading it
// for salvage never panics, and what it returns lies inside the file, in
// order, without overlaps: entries and damaged spans tile the file.
func FuzzLogScan(f *testing.F) {
	good := append(badgerEntry(0, y.KeyWithTs([]byte("q/tencent/\x00\x00\x00\x00\x00\x00\x00\x01"), 5), []byte("value"), 0),
		badgerEntry(1, y.KeyWithTs([]byte("d/tencent/x"), 6), nil, 99)...)
	f.Add(good)
	f.Add(append(bytes.Repeat([]byte{0xa5}, 13), good...))
	f.Add([]byte{0, 0, 9, 200, 1, 0})
	f.Fuzz(func(t *testing.T, body []byte) {
		lf := logFileBytes("fuzz.mem", append(make([]byte, badgerLogHeader), body...))
		end := int64(badgerLogHeader)
		sc := lf.scan(func(e logEntry) {
			if e.off < end || e.size <= 0 || e.off+e.size > lf.size {
				t.Fatalf("entry [%d,+%d) outside the file or overlapping (from %d)", e.off, e.size, end)
			}
			if len(e.key) < 8 {
				t.Fatalf("entry at %d has a key of %d bytes, no version", e.off, len(e.key))
			}
			end = e.off + e.size
		}, nil)
		for i, d := range sc.damaged {
			if d.Offset >= d.End || d.End > lf.size || (i > 0 && d.Offset < sc.damaged[i-1].End) {
				t.Fatalf("damaged span [%d,%d) out of order or outside %d bytes", d.Offset, d.End, lf.size)
			}
		}
	})
}

// FuzzKeyRegistry: any key registry file reads as data keys, damage or an
// error, never a panic.
func FuzzKeyRegistry(f *testing.F) {
	dir := f.TempDir()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithEncryptionKey(testKey).WithIndexCacheSize(1 << 20))
	if err != nil {
		f.Fatal(err)
	}
	if err := db.Close(); err != nil {
		f.Fatal(err)
	}
	reg, err := os.ReadFile(filepath.Join(dir, badger.KeyRegistryFileName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(reg, true)
	f.Add(reg[:30], true)
	f.Add([]byte("0123456789abcdefHello Badger"), false)
	f.Fuzz(func(t *testing.T, b []byte, encrypted bool) {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, badger.KeyRegistryFileName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		var key []byte
		if encrypted {
			key = testKey
		}
		keys, spans, err := readDataKeys(d, key)
		if err != nil {
			return
		}
		for id, k := range keys {
			if k.KeyId != id {
				t.Fatalf("key %d filed under %d", k.KeyId, id)
			}
		}
		for _, s := range spans {
			if s.End > int64(len(b)) || s.Offset > s.End {
				t.Fatalf("span [%d,%d) outside %d bytes", s.Offset, s.End, len(b))
			}
		}
	})
}

// FuzzTableFooter: a table file's footer is checked without panicking
// (badger's own reader exits the process on some malformed footers).
func FuzzTableFooter(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0})
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "000001.sst")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_ = checkTableFooter(p)
	})
}
