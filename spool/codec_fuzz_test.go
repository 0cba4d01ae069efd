package spool

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"
)

// Fuzz targets for the stored forms of codec.go: queue metadata, a record,
// and a q/ value read one entry at a time (firstEntry). decodeEntries has
// its own target, FuzzDecodeEntries, in codec_test.go. The journal's
// segments and checkpoints are fuzzed in journal_test.go.

// FuzzDecodeMeta: metadata decodes from exactly its encoding, and what
// decodes encodes back to the same bytes.
func FuzzDecodeMeta(f *testing.F) {
	f.Add(meta{}.encode())
	f.Add(meta{Head: 7, Tail: 12, Count: 5, Bytes: 900, DeadCount: 1, DeadBytes: 40}.encode())
	f.Add(meta{Head: 1 << 63, Tail: ^uint64(0), Count: -1, Bytes: -1 << 63}.encode())
	f.Add([]byte{1})
	f.Add(append([]byte{2}, make([]byte, metaLen-1)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			if len(b) == metaLen && b[0] == 1 {
				t.Fatalf("refused a well-formed record: %v", err)
			}
			return
		}
		if got := m.encode(); !bytes.Equal(got, b) {
			t.Fatalf("re-encoded %x, want %x", got, b)
		}
	})
}

// FuzzDecodeRecord: a record decodes, or is refused, without a panic;
// what decodes re-encodes to the same bytes when its lengths were written
// as the encoder writes them (binary.Uvarint also takes a longer form of a
// number: the record is still the same record), and always decodes again
// to the same record. The payload is what follows the strings, whole.
func FuzzDecodeRecord(f *testing.F) {
	for _, es := range [][]seqRecord{chunkEntries(1, 2, 3), {{9, record{DeadAt: -1, Reason: "max_attempts", Attempts: ^uint32(0)}}}} {
		for _, e := range es {
			f.Add(e.rec.encode())
		}
	}
	f.Add((&record{ID: string(make([]byte, 200))}).encode()) // a two-byte length
	f.Add([]byte{recordVersion})
	f.Add(append(make([]byte, 29), 0x80, 0x00, 0, 0)) // a length in two bytes where one would do
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		if b[0] != recordVersion {
			t.Fatalf("version %d decoded", b[0])
		}
		enc := r.encode()
		if len(enc) != r.size() {
			t.Fatalf("size %d, encoding %d bytes", r.size(), len(enc))
		}
		if minimalLengths(b) && !bytes.Equal(enc, b) {
			t.Fatalf("re-encoded %x, want %x", enc, b)
		}
		if !bytes.HasSuffix(b, r.Payload) || len(b)-len(r.Payload) < 29+3 {
			t.Fatalf("payload %x is not the tail of %x", r.Payload, b)
		}
		again, err := decodeRecord(enc)
		if err != nil || !reflect.DeepEqual(normalize([]seqRecord{{0, again}}), normalize([]seqRecord{{0, r}})) {
			t.Fatalf("re-decoded %+v, %v; want %+v", again, err, r)
		}
	})
}

// minimalLengths reports whether the three string lengths of an encoded
// record are each written in the fewest bytes, as appendTo writes them.
func minimalLengths(b []byte) bool {
	b = b[29:]
	for range 3 {
		n, k := binary.Uvarint(b)
		if k <= 0 || k != uvarintLen(n) {
			return false
		}
		b = b[k+int(n):]
	}
	return true
}

// FuzzFirstEntry: firstEntry, which decodes a q/ value only as far as it
// needs, agrees with decodeEntries on every value decodeEntries accepts;
// on any value it never returns an entry below from or above the key. A
// chunk that decodes re-encodes to the same bytes when its lengths are
// minimal.
func FuzzFirstEntry(f *testing.F) {
	f.Add(uint64(3), uint64(0), encodeChunk(chunkEntries(1, 2, 3)))
	f.Add(uint64(3), uint64(2), encodeChunk(chunkEntries(1, 2, 3)))
	f.Add(uint64(9), uint64(4), encodeChunk(chunkEntries(5, 9)))
	f.Add(uint64(9), uint64(10), encodeChunk(chunkEntries(5, 9)))
	f.Add(uint64(9), uint64(9), chunkEntries(9)[0].rec.encode())
	f.Add(uint64(2), uint64(0), encodeChunk(chunkEntries(2, 1)))
	f.Add(uint64(1), uint64(0), []byte{chunkVersion})
	f.Fuzz(func(t *testing.T, key, from uint64, v []byte) {
		e, ok, err := firstEntry(key, v, from)
		if err == nil && ok && (e.seq < from || e.seq > key) {
			t.Fatalf("entry %d returned from %d under key %d", e.seq, from, key)
		}
		es, derr := decodeEntries(key, v)
		if derr != nil {
			return
		}
		if err != nil {
			t.Fatalf("decodeEntries took the value, firstEntry refused it: %v", err)
		}
		i := 0
		for i < len(es) && es[i].seq < from {
			i++
		}
		if ok != (i < len(es)) {
			t.Fatalf("from %d: firstEntry ok %v; decodeEntries %+v", from, ok, es)
		}
		if ok && !reflect.DeepEqual(normalize([]seqRecord{e}), normalize(es[i:i+1])) {
			t.Fatalf("from %d: firstEntry %+v, decodeEntries %+v", from, e, es[i])
		}
		if v[0] != chunkVersion {
			return
		}
		for b := v[1:]; len(b) > 0; {
			n, k := binary.Uvarint(b[8:])
			if k != uvarintLen(n) || !minimalLengths(b[8+k:8+k+int(n)]) {
				return
			}
			b = b[8+k+int(n):]
		}
		if got := encodeChunk(es); !bytes.Equal(got, v) {
			t.Fatalf("re-encoded %x, want %x", got, v)
		}
	})
}
