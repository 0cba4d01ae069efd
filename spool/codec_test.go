package spool

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
)

func chunkEntries(seqs ...uint64) []seqRecord {
	var es []seqRecord
	for i, s := range seqs {
		es = append(es, seqRecord{s, record{
			EnqueuedAt: int64(1000 + i), Attempts: uint32(i), LastAttemptAt: int64(i * 7),
			ID: fmt.Sprintf("id-%d", s), LastError: map[bool]string{true: "boom"}[i%2 == 1],
			Payload: bytes.Repeat([]byte{'p'}, 10*i),
		}})
	}
	return es
}

func TestChunkRoundTrip(t *testing.T) {
	for _, seqs := range [][]uint64{{7}, {1, 2, 3}, {5, 9, 200, 1 << 40}} {
		es := chunkEntries(seqs...)
		key := seqs[len(seqs)-1]
		got, err := decodeEntries(key, encodeChunk(es))
		if err != nil {
			t.Fatalf("%v: %v", seqs, err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(es)) {
			t.Fatalf("%v: got %+v, want %+v", seqs, got, es)
		}
		for i, e := range es {
			// From each entry's seq, and from just above the one before.
			for _, from := range []uint64{e.seq, map[bool]uint64{true: 0, false: es[max(i-1, 0)].seq + 1}[i == 0]} {
				first, ok, err := firstEntry(key, encodeChunk(es), from)
				if err != nil || !ok || !reflect.DeepEqual(normalize([]seqRecord{first}), normalize(es[i:i+1])) {
					t.Fatalf("%v from %d: first entry %+v, %v, %v; want seq %d", seqs, from, first, ok, err, e.seq)
				}
			}
		}
		if _, ok, err := firstEntry(key, encodeChunk(es), key+1); ok || err != nil {
			t.Fatalf("%v: an entry at or above %d: %v, %v", seqs, key+1, ok, err)
		}
		// The key may be above the entries left (entries were removed),
		// never below one.
		if _, err := decodeEntries(key+5, encodeChunk(es)); err != nil {
			t.Errorf("%v under a higher key: %v", seqs, err)
		}
		if _, err := decodeEntries(key-1, encodeChunk(es)); err == nil {
			t.Errorf("%v under key %d: an entry above the key was accepted", seqs, key-1)
		}
	}
}

// A single entry stored as a plain record (as every entry was before
// chunks) takes its seq from the key.
func TestPlainRecordIsOneEntry(t *testing.T) {
	r := chunkEntries(0)[0].rec
	got, err := decodeEntries(42, r.encode())
	if err != nil || len(got) != 1 || got[0].seq != 42 || got[0].rec.ID != r.ID {
		t.Fatalf("got %+v, %v", got, err)
	}
}

// The writer's output is what encodeChunk makes, and a chunk of one is a
// plain record.
func TestChunkWriterMatchesEncodeChunk(t *testing.T) {
	for _, n := range []int{1, 2, 5} {
		var seqs []uint64
		for i := range n {
			seqs = append(seqs, uint64(100+i))
		}
		es := chunkEntries(seqs...)
		var c chunkWriter
		for i := range es {
			c.add(es[i].seq, &es[i].rec, n-i)
		}
		v := c.buf
		if n == 1 {
			v = c.buf[c.first:]
			if !bytes.Equal(v, es[0].rec.encode()) {
				t.Fatalf("a chunk of one is not the plain record")
			}
			continue
		}
		if !bytes.Equal(v, encodeChunk(es)) {
			t.Fatalf("%d entries: the writer's chunk differs from encodeChunk's", n)
		}
	}
}

func TestDecodeEntriesRefusesDamage(t *testing.T) {
	good := encodeChunk(chunkEntries(1, 2, 3))
	out := append([]byte(nil), good...)
	swapped := encodeChunk(chunkEntries(2, 1))
	for name, v := range map[string][]byte{
		"empty":         {},
		"version only":  {chunkVersion},
		"bad version":   append([]byte{9}, good[1:]...),
		"truncated":     good[:len(good)-3],
		"trailing byte": append(out, 0),
		"out of order":  swapped,
	} {
		if es, err := decodeEntries(3, v); err == nil {
			t.Errorf("%s: decoded %d entries", name, len(es))
		}
	}
}

// A record's payload inside a chunk cannot grow into the next entry.
func TestChunkPayloadsAreCapped(t *testing.T) {
	es, err := decodeEntries(2, encodeChunk(chunkEntries(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	p := es[0].rec.Payload
	_ = append(p, 'X', 'X', 'X')
	again, err := decodeEntries(2, encodeChunk(es))
	if err != nil || again[1].rec.ID != "id-2" {
		t.Fatalf("appending to a payload changed the next entry: %+v, %v", again, err)
	}
}

func normalize(es []seqRecord) []seqRecord {
	out := append([]seqRecord(nil), es...)
	for i := range out {
		if len(out[i].rec.Payload) == 0 {
			out[i].rec.Payload = nil
		}
	}
	return out
}

// FuzzDecodeEntries: any bytes decode to entries or an error, never a
// panic; what decodes re-encodes to the same entries.
func FuzzDecodeEntries(f *testing.F) {
	f.Add(uint64(3), encodeChunk(chunkEntries(1, 2, 3)))
	f.Add(uint64(9), chunkEntries(9)[0].rec.encode())
	f.Add(uint64(1), []byte{chunkVersion, 0, 0, 0, 0, 0, 0, 0, 1, 200})
	f.Fuzz(func(t *testing.T, key uint64, v []byte) {
		es, err := decodeEntries(key, v)
		if err != nil {
			return
		}
		for i, e := range es {
			if e.seq > key || (i > 0 && e.seq <= es[i-1].seq) {
				t.Fatalf("entry %d: seq %d out of order or above key %d", i, e.seq, key)
			}
		}
		again, err := decodeEntries(key, encodeChunk(es))
		if err != nil || !reflect.DeepEqual(normalize(again), normalize(es)) {
			t.Fatalf("re-encoded: %+v, %v; want %+v", again, err, es)
		}
	})
}
