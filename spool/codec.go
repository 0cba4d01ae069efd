package spool

import (
	"encoding/binary"
	"errors"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Key layout. Every key starts with a one-letter kind and the queue name, so
// each queue is a contiguous range and kinds never interleave:
//
//	q/<queue>/<seq:8 BE>   entries waiting for delivery (FIFO by seq): one
//	                       entry (recordVersion, its seq is the key's), or
//	                       a chunk of them (chunkVersion, see below)
//	x/<queue>/<seq:8 BE>   a dead letter, keeping the seq it had
//	d/<queue>/<id>         idempotency marker (TTL = dedupe window), value = seq
//	m/<queue>              queue metadata: head cursor, tail, counts, bytes
//
// Readers never seek from the start of a q/ range: badger keeps tombstones
// until compaction drops them, and a FIFO's head is exactly where they pile
// up. They seek from the persisted head cursor instead.
const (
	kindEntry = 'q'
	kindDead  = 'x'
	kindDedup = 'd'
	kindMeta  = 'm'
)

func prefix(kind byte, queue string) []byte { return prefixCap(kind, queue, 0) }

// prefixCap is prefix with room for extra bytes after it: one allocation
// per key.
func prefixCap(kind byte, queue string, extra int) []byte {
	b := make([]byte, 0, len(queue)+3+extra)
	b = append(b, kind, '/')
	b = append(b, queue...)
	return append(b, '/')
}

func seqKey(kind byte, queue string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(prefixCap(kind, queue, 8), seq)
}

func seqFromKey(k []byte) uint64 {
	if len(k) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k[len(k)-8:])
}

func dedupKey(queue, id string) []byte {
	return append(prefixCap(kindDedup, queue, len(id)), id...)
}

func metaKey(queue string) []byte {
	return append([]byte{kindMeta, '/'}, queue...)
}

// meta is persisted in the same transaction as every change it describes, so
// counters and data can never disagree after a crash.
type meta struct {
	Head      uint64 // lowest seq that may still exist: entries below it are gone, even if a chunk still holds them
	Tail      uint64 // next seq to assign
	Count     int64
	Bytes     int64
	DeadCount int64
	DeadBytes int64
}

const metaLen = 1 + 6*8

func (m meta) encode() []byte {
	b := make([]byte, 0, metaLen)
	b = append(b, 1)
	for _, v := range []uint64{m.Head, m.Tail, uint64(m.Count), uint64(m.Bytes), uint64(m.DeadCount), uint64(m.DeadBytes)} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b
}

func decodeMeta(b []byte) (meta, error) {
	if len(b) != metaLen || b[0] != 1 {
		return meta{}, errors.New("bad queue metadata record")
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(b[1+8*i:]) }
	return meta{Head: u(0), Tail: u(1), Count: int64(u(2)), Bytes: int64(u(3)), DeadCount: int64(u(4)), DeadBytes: int64(u(5))}, nil
}

// record is the stored form of an entry (live or dead).
type record struct {
	EnqueuedAt    int64 // unix nanoseconds
	Attempts      uint32
	LastAttemptAt int64
	DeadAt        int64
	ID            string
	LastError     string
	Reason        string
	Payload       []byte
}

const recordVersion = 1

// size is the exact length of the record's encoding.
func (r *record) size() int {
	n := 1 + 8 + 4 + 8 + 8 + len(r.Payload)
	for _, s := range []string{r.ID, r.LastError, r.Reason} {
		n += uvarintLen(uint64(len(s))) + len(s)
	}
	return n
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func (r *record) encode() []byte { return r.appendTo(make([]byte, 0, r.size())) }

func (r *record) appendTo(b []byte) []byte {
	b = append(b, recordVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(r.EnqueuedAt))
	b = binary.BigEndian.AppendUint32(b, r.Attempts)
	b = binary.BigEndian.AppendUint64(b, uint64(r.LastAttemptAt))
	b = binary.BigEndian.AppendUint64(b, uint64(r.DeadAt))
	for _, s := range []string{r.ID, r.LastError, r.Reason} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return append(b, r.Payload...)
}

var errBadRecord = errors.New("bad spool record")

func decodeRecord(b []byte) (record, error) {
	var r record
	if len(b) < 29 || b[0] != recordVersion {
		return r, errBadRecord
	}
	r.EnqueuedAt = int64(binary.BigEndian.Uint64(b[1:]))
	r.Attempts = binary.BigEndian.Uint32(b[9:])
	r.LastAttemptAt = int64(binary.BigEndian.Uint64(b[13:]))
	r.DeadAt = int64(binary.BigEndian.Uint64(b[21:]))
	b = b[29:]
	var strs [3]string
	for i := range strs {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return r, errBadRecord
		}
		strs[i] = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	r.ID, r.LastError, r.Reason = strs[0], strs[1], strs[2]
	r.Payload = b
	return r, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// A chunk is entries of one queue that one commit appended (up to
// maxChunk of them, from one or many appends), under one key: badger's
// costs are per entry (its write path, memtable inserts, value-log
// headers, the keys compactions rewrite), so 100 actions cost one entry
// instead of 100. Requests of 100 went from 113k to 174k-190k actions/s,
// single actions from 22k-25k to 24k-26k requests/s (BENCHMARKS.md,
// session 9).
//
// The key is the seq of the chunk's last entry when it was written, and
// never changes: removing entries (ack, dead letter) rewrites the chunk
// without them, or deletes it when none is left; recording an attempt
// rewrites it in place. Entries below the queue's head are gone, so when
// the removed entries are the first of the queue (acknowledged in order)
// the head moves past them and the chunk is not rewritten (editEntries).
// Seqs are handed out in order and a chunk holds a run of them, so every
// live seq s is in the chunk with the smallest key >= s: a seek finds it.
//
// Value: chunkVersion, then per entry, in seq order: seq (8 bytes, big
// endian), the record's length (uvarint), the record. A single entry is
// stored as a plain record (recordVersion) when appended, as every entry
// was before chunks.
//
// Within a commit, appends gather their entries in the group's chunks;
// any other op that reads entries or numbers them (ack, failure, dead
// letter, replay, damage) first stages those chunks, so it sees them, and
// a replayed entry's seq never falls inside a chunk's run.
const (
	chunkVersion = 2
	maxChunk     = 128
)

// seqRecord is an entry of a queue: its seq and record.
type seqRecord struct {
	seq uint64
	rec record
}

// encodeChunk encodes entries (in seq order) as a chunk.
func encodeChunk(es []seqRecord) []byte {
	n := 1
	for i := range es {
		sz := es[i].rec.size()
		n += 8 + uvarintLen(uint64(sz)) + sz
	}
	b := make([]byte, 1, n)
	b[0] = chunkVersion
	for i := range es {
		b, _ = appendChunkEntry(b, es[i].seq, &es[i].rec)
	}
	return b
}

// appendChunkEntry appends one entry of a chunk to b, and says where its
// record starts.
func appendChunkEntry(b []byte, seq uint64, r *record) (_ []byte, recordAt int) {
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.AppendUvarint(b, uint64(r.size()))
	recordAt = len(b)
	return r.appendTo(b), recordAt
}

// decodeEntries decodes the value stored under the q/ key with seq key:
// one record or a chunk. The records' payloads point into v.
func decodeEntries(key uint64, v []byte) ([]seqRecord, error) {
	if len(v) > 0 && v[0] == recordVersion {
		r, err := decodeRecord(v)
		if err != nil {
			return nil, err
		}
		return []seqRecord{{key, r}}, nil
	}
	if len(v) == 0 || v[0] != chunkVersion {
		return nil, errBadRecord
	}
	var out []seqRecord
	b := v[1:]
	for len(b) > 0 {
		e, rest, err := nextChunkEntry(b)
		if err != nil {
			return nil, err
		}
		if e.seq > key || (len(out) > 0 && e.seq <= out[len(out)-1].seq) {
			return nil, errBadRecord
		}
		out = append(out, e)
		b = rest
	}
	if len(out) == 0 {
		return nil, errBadRecord
	}
	return out, nil
}

func nextChunkEntry(b []byte) (seqRecord, []byte, error) {
	if len(b) < 9 {
		return seqRecord{}, nil, errBadRecord
	}
	seq := binary.BigEndian.Uint64(b)
	n, k := binary.Uvarint(b[8:])
	if k <= 0 || uint64(len(b)-8-k) < n {
		return seqRecord{}, nil, errBadRecord
	}
	b = b[8+k:]
	r, err := decodeRecord(b[:n:n])
	if err != nil {
		return seqRecord{}, nil, err
	}
	return seqRecord{seq, r}, b[n:], nil
}

// entryIterator iterates over the q/ keys of queue, values read on demand.
func entryIterator(txn *badger.Txn, queue string) *badger.Iterator {
	opt := badger.DefaultIteratorOptions
	opt.PrefetchValues = false
	opt.Prefix = prefix(kindEntry, queue)
	return txn.NewIterator(opt)
}

// itemEntries reads and decodes the q/ value an entryIterator is at.
func itemEntries(it *badger.Iterator) (key uint64, es []seqRecord, err error) {
	key = seqFromKey(it.Item().Key())
	v, err := it.Item().ValueCopy(nil)
	if err != nil {
		return key, nil, err
	}
	es, err = decodeEntries(key, v)
	return key, es, err
}

// firstEntry decodes the first entry of a q/ value at or after seq from
// (entries below the queue's head are gone: see editEntries), and no
// further. ok is false when there is none.
func firstEntry(key uint64, v []byte, from uint64) (e seqRecord, ok bool, err error) {
	if len(v) == 0 || v[0] != chunkVersion {
		es, err := decodeEntries(key, v)
		if err != nil {
			return seqRecord{}, false, err
		}
		return es[0], es[0].seq >= from, nil
	}
	for b := v[1:]; len(b) > 0; {
		if e, b, err = nextChunkEntry(b); err != nil {
			return seqRecord{}, false, err
		}
		if e.seq > key {
			return seqRecord{}, false, errBadRecord
		}
		if e.seq >= from {
			return e, true, nil
		}
	}
	return seqRecord{}, false, nil
}
