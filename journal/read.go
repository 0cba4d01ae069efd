package journal

import (
	"bytes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"slices"

	"github.com/outpost-agent/outpost/vfs"
)

// Reading the journal back. A segment holds its records one after the
// other, then zeros. What is neither a readable record nor the zeros of
// the end is one of two things:
//
//   - a torn tail: the record a crash cut while it was being written. It
//     was never acknowledged (a record is acknowledged once synced, and
//     only the last one written can be unsynced), nothing readable follows
//     it, and it is skipped. Only the newest segment can end so; the same
//     bytes at the end of an older segment are damage, and the next
//     segment's first sequence number says how many records they held.
//   - damage: unreadable bytes with readable records after them. The
//     records after the damage are kept and replayed; the reader (the
//     spool) copies the damaged bytes aside and counts what they cost.
//
// Records are found again after damage by their framing: the first offset
// past it where a length, a sequence number after the last one read and a
// matching CRC line up.
//
// Damage to the very last record of the newest segment has nothing after
// it: in a version 2 segment its end (the CRC repeated, and a CRC of the
// head) tells it from a write a crash cut (damagedLast), and it is damage,
// counted. What stays blind: such damage in a version 1 segment, damage
// to both a last record's head and its end, and a last record holding an
// aligned 512-byte run of zeros (a crash could have left that sector
// unwritten); they read as a torn tail, not counted.

// Record is one record read back.
type Record struct {
	Seq  uint64
	Body []byte
}

// Span is a run of unreadable bytes in a segment.
type Span struct {
	Off, End int64
	// From, To: the sequence numbers of the records the span held, when
	// what surrounds it tells; To < From: none (a damaged header).
	From, To uint64
	Why      string
	// Body: for a span of one version 2 record (the last, found damaged
	// by damagedLast, or one with the next record after it), its body as
	// it reads, unverified (deciphered without authentication when
	// sealed), for the reader to count what was lost; never to apply.
	Body []byte
}

// Scan is what reading one segment found.
type Scan struct {
	Name    string
	First   uint64
	Recs    []Record
	Damaged []Span // unreadable bytes with readable records after them
	Tail    *Span  // unreadable bytes at the end, nothing readable after them
}

// maxResyncGap bounds how far past the last record read a sequence number
// found after damage may be: more records than any segment holds.
const maxResyncGap = SegmentSize / RecordHead

// ReadSegment reads one segment file.
func ReadSegment(fs vfs.FS, path string, key []byte) (Scan, error) {
	data, err := fs.ReadFile(path)
	if err != nil {
		return Scan{}, err
	}
	return ParseSegment(path, data, key)
}

// ParseSegment reads a segment's bytes: its records in order, and its
// unreadable spans. An error means the segment cannot be read at all in a
// way that is not damage: a newer version, or a key that does not match.
func ParseSegment(path string, data, key []byte) (Scan, error) {
	name := filepath.Base(path)
	sc := Scan{Name: name}
	nameFirst, nameOK := SegmentFirst(name)
	headerOK := len(data) >= HeaderSize && string(data[:4]) == magic &&
		crc32.Checksum(data[:32], castagnoli) == binary.BigEndian.Uint32(data[32:36])
	var (
		block cipher.Block // deciphers a damaged record's body
		aead  cipher.AEAD
		err   error
	)
	switch {
	case !headerOK && AllZero(data):
		return sc, nil // created, the header never reached the disk: no record did either
	case !headerOK:
		// The records are framed on their own; the name gives the first
		// sequence number, and the version is the one whose framing
		// reads more of them. The salt may be damaged too: then every
		// record fails authentication and is reported lost.
		if !nameOK || len(data) < HeaderSize {
			return sc, fmt.Errorf("%w: %s: bad header and no sequence number in its name", ErrJournal, name)
		}
		sc.First = nameFirst
		sc.Damaged = append(sc.Damaged, Span{Off: 0, End: HeaderSize, From: 1, To: 0, Why: "segment header damaged"})
		if key != nil {
			if block, aead, err = segmentCipher(key, data[16:32]); err != nil {
				return sc, err
			}
		}
		v1, v2 := sc, sc
		v2.Damaged = slices.Clone(sc.Damaged)
		readRecords(&v1, data, aead, block, 1)
		readRecords(&v2, data, aead, block, Version)
		if len(v1.Recs) > len(v2.Recs) {
			return v1, nil
		}
		return v2, nil
	default:
		if data[4] < 1 || data[4] > Version {
			return sc, fmt.Errorf("%w: %w: %s: version %d (this build reads up to %d)", ErrJournal, ErrNewerVersion, name, data[4], Version)
		}
		sc.First = binary.BigEndian.Uint64(data[8:16])
		switch {
		case data[5] == 1 && key == nil:
			return sc, fmt.Errorf("%w: %s is encrypted and no key is set", ErrKeyMismatch, name)
		case data[5] == 1:
			if block, aead, err = segmentCipher(key, data[16:32]); err != nil {
				return sc, err
			}
		case key != nil:
			return sc, fmt.Errorf("%w: %s is not encrypted and a key is set", ErrKeyMismatch, name)
		}
	}
	authOK, authFailed := readRecords(&sc, data, aead, block, data[4])
	if aead != nil && authFailed > 0 && authOK == 0 {
		// An intact header and intact records, none of which authenticate:
		// this is another key, not damage.
		return sc, fmt.Errorf("%w: %w: %s: no record authenticates with this key", ErrKeyMismatch, ErrJournal, name)
	}
	return sc, nil
}

// readRecords reads the records of a segment of the given version from
// its first, into sc. block deciphers a damaged last record (nil: clear).
func readRecords(sc *Scan, data []byte, aead cipher.AEAD, block cipher.Block, version byte) (authOK, authFailed int) {
	var err error
	// The last byte that is not zero, found once, when damage asks.
	last, lastKnown := 0, false
	lastNonZero := func() int {
		if !lastKnown {
			last, lastKnown = LastNonZero(data), true
		}
		return last
	}
	off, want := HeaderSize, sc.First
	for off < len(data) {
		if n, ok := RecordAt(data, off, want); ok {
			size := min(RecordSize(version, n), len(data)-off) // its end may be cut off
			rec := data[off+8 : off+RecordHead+n]
			body := rec[8:]
			if aead != nil {
				if body, err = aead.Open(nil, nonce(want), body, rec[:8]); err != nil {
					authFailed++
					sc.Damaged = append(sc.Damaged, Span{Off: int64(off), End: int64(off + size),
						From: want, To: want, Why: "record fails authentication"})
					off += size
					want++
					continue
				}
				authOK++
			}
			sc.Recs = append(sc.Recs, Record{Seq: want, Body: body})
			off += size
			want++
			continue
		}
		if AllZero(data[off:]) {
			break // the end
		}
		p, seq := resync(data, off+1, want, lastNonZero())
		if p >= 0 {
			sp := Span{Off: int64(off), End: int64(p), From: want, To: seq - 1, Why: "unreadable records"}
			if seq == want+1 && version >= 2 {
				// One record, from here to the next: its body for the
				// reader to count what it held.
				sp.Body = damagedBody(data, off, p, want, aead, block)
			}
			sc.Damaged = append(sc.Damaged, sp)
			off, want = p, seq
			continue
		}
		if version >= 2 {
			if end, ok := damagedLast(data, off, want, lastNonZero()); ok {
				sc.Damaged = append(sc.Damaged, Span{Off: int64(off), End: int64(end), From: want, To: want,
					Why: "the last record is damaged (its end shows it was written whole)", Body: damagedBody(data, off, end, want, aead, block)})
				break
			}
		}
		sc.Tail = &Span{Off: int64(off), End: int64(lastNonZero() + 1), From: want, To: want - 1,
			Why: "unreadable bytes at the end"}
		break
	}
	return authOK, authFailed
}

// damagedBody is the body of the version 2 record seq that lies in
// data[off:end], as it reads: deciphered without authentication when
// sealed (nil without the cipher). For counting, never to apply.
func damagedBody(data []byte, off, end int, seq uint64, aead cipher.AEAD, block cipher.Block) []byte {
	if end-off <= RecordHead+RecordEnd {
		return nil
	}
	body := data[off+RecordHead : end-RecordEnd]
	if aead == nil {
		return body
	}
	if block == nil {
		return nil
	}
	return unsealUnverified(block, seq, body)
}

// RecordSize is the size on disk of a record whose body is n bytes, in a
// segment of the given version.
func RecordSize(version byte, n int) int {
	if version >= 2 {
		return RecordHead + n + RecordEnd
	}
	return RecordHead + n
}

// RecordAt reports whether a whole record with sequence number want and a
// matching CRC starts at off, and its body's length. A version 2 record's
// end is not needed to read it: a record whose CRC matches was written.
func RecordAt(data []byte, off int, want uint64) (int, bool) {
	if off+RecordHead > len(data) {
		return 0, false
	}
	n := int(binary.BigEndian.Uint32(data[off : off+4]))
	if n == 0 || n > len(data)-off-RecordHead {
		return 0, false
	}
	if binary.BigEndian.Uint64(data[off+8:off+16]) != want {
		return 0, false
	}
	rec := data[off+8 : off+RecordHead+n]
	return n, crc32.Checksum(rec, castagnoli) == binary.BigEndian.Uint32(data[off+4:off+8])
}

// sectorSize is the unit a disk writes whole or not at all.
const sectorSize = 512

// damagedLast reports whether the unreadable bytes from off to last (the
// last byte of a version 2 segment that is not zero) are record want written
// whole and damaged since, rather than a write a crash cut, and where the
// record ends. A crash leaves a prefix of a record's bytes (a write cut
// part-way) or some of its sectors (a disk writing its cache out of
// order), into a file that held zeros there; so the record was written
// whole when its end is there, matching its head, and none of its
// sectors is all zeros:
//
//   - the end is found by its own CRC, which covers the head it repeats
//     (length, CRC, sequence number): this survives damage to the head;
//   - or the head is intact (sequence number want, a length that puts the
//     end where the last bytes that are not zero are): this survives
//     damage to the end.
//
// Damage to both, or a body holding a whole sector of zeros, still reads
// as a cut write.
func damagedLast(data []byte, off int, want uint64, last int) (int, bool) {
	if last < off {
		return 0, false
	}
	end := -1
	var head [RecordHead]byte
	for e := last + 1; e <= min(last+RecordEnd, len(data)); e++ {
		n := e - off - RecordHead - RecordEnd
		if n <= 0 {
			continue
		}
		binary.BigEndian.PutUint32(head[0:4], uint32(n))
		copy(head[4:8], data[e-8:e-4])
		binary.BigEndian.PutUint64(head[8:16], want)
		if crc32.Checksum(head[:], castagnoli) == binary.BigEndian.Uint32(data[e-4:e]) {
			end = e
			break
		}
	}
	if end < 0 && off+RecordHead <= len(data) && binary.BigEndian.Uint64(data[off+8:off+16]) == want {
		n := int(binary.BigEndian.Uint32(data[off : off+4]))
		if e := off + RecordHead + n + RecordEnd; n > 0 && e <= len(data) && e > last && e-RecordEnd <= last {
			end = e
		}
	}
	if end < 0 {
		return 0, false
	}
	for p := off; p <= last; {
		q := min((p/sectorSize+1)*sectorSize, last+1)
		if AllZero(data[p:q]) {
			return 0, false // a sector the crash may not have written
		}
		p = q
	}
	return end, true
}

// resync finds the first offset from start where a readable record with a
// sequence number in [want, want+maxResyncGap] begins, or -1. A record's
// sequence number is not zero, so none begins past last, the last byte
// that is not: the zeros at a segment's end (most of it, after a crash) are not
// searched byte by byte.
func resync(data []byte, start int, want uint64, last int) (int, uint64) {
	for p := start; p <= last && p+RecordHead <= len(data); p++ {
		seq := binary.BigEndian.Uint64(data[p+8 : p+16])
		if seq < want || seq > want+maxResyncGap {
			continue
		}
		if _, ok := RecordAt(data, p, seq); ok {
			return p, seq
		}
	}
	return -1, 0
}

// zeroPage is compared against: bytes.Equal runs the runtime's vector
// compare, several times faster than a loop of ours and about a hundred
// times faster under the race detector, which instruments every load of a
// loop but not the runtime's (opening a store scans its logs' preallocated
// tails for damage: the spool's model test spent 82 s of CPU there).
var zeroPage [64 << 10]byte

// AllZero reports whether b holds only zeros.
func AllZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroPage))
		if !bytes.Equal(b[:n], zeroPage[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// LastNonZero is the index of b's last byte that is not zero, or -1.
func LastNonZero(b []byte) int {
	const chunk = 4 << 10
	end := len(b)
	for end > 0 {
		start := max(0, end-chunk)
		if AllZero(b[start:end]) {
			end = start
			continue
		}
		for i := end - 1; i >= start; i-- {
			if b[i] != 0 {
				return i
			}
		}
	}
	return -1
}

// ListSegments returns the segment files of dir, oldest first.
func ListSegments(fs vfs.FS, dir string) ([]string, error) {
	ents, err := fs.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if _, ok := SegmentFirst(e); ok {
			names = append(names, e)
		}
	}
	slices.Sort(names) // fixed-width hex: lexical order is numeric order
	return names, nil
}

// ErrNewerVersion: a segment was written by a newer build, in a version
// this one cannot read. The journal is left as it is.
var ErrNewerVersion = errors.New("journal written in a newer version")

// ErrKeyMismatch: a segment was written with another key (or none). The
// journal is left as it is.
var ErrKeyMismatch = errors.New("encryption key does not match the journal")
