package spool

import (
	"encoding/binary"
	"errors"
	"time"
)

// Key layout. Every key starts with a one-letter kind and the queue name, so
// each queue is a contiguous range and kinds never interleave:
//
//	q/<queue>/<seq:8 BE>   an entry waiting for delivery (FIFO by seq)
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
	Head      uint64 // lowest seq that may still exist (a hint: seek start)
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

func (r *record) encode() []byte {
	n := 1 + 8 + 4 + 8 + 8 + 3*binary.MaxVarintLen32 + len(r.ID) + len(r.LastError) + len(r.Reason) + len(r.Payload)
	b := make([]byte, 0, n)
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
