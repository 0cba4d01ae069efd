package spool

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"time"

	badger "github.com/dgraph-io/badger/v4"
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
//     records after the damage are kept and replayed, the damaged bytes
//     are copied aside, and what they cost is counted and reported (see
//     damage.go).
//
// Records are found again after damage by their framing: the first offset
// past it where a length, a sequence number after the last one read and a
// matching CRC line up.
//
// One case stays blind: damage to the very last record of the newest
// segment looks like a torn tail, since nothing follows it. It is
// reported (WARN, with its offset) but not counted as a loss.

// journalRecord is one record read back.
type journalRecord struct {
	seq  uint64
	body []byte
}

// journalSpan is a run of unreadable bytes in a segment.
type journalSpan struct {
	off, end int64
	// from, to: the sequence numbers of the records the span held, when
	// what surrounds it tells; to < from: none (a damaged header).
	from, to uint64
	why      string
}

// segmentScan is what reading one segment found.
type segmentScan struct {
	name    string
	first   uint64
	recs    []journalRecord
	damaged []journalSpan // unreadable bytes with readable records after them
	tail    *journalSpan  // unreadable bytes at the end, nothing readable after them
}

// maxResyncGap bounds how far past the last record read a sequence number
// found after damage may be: more records than any segment holds.
const maxResyncGap = journalSegmentSize / journalRecordHead

// readSegment reads one segment file.
func readSegment(path string, key []byte) (segmentScan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return segmentScan{}, err
	}
	return parseSegment(path, data, key)
}

// parseSegment reads a segment's bytes: its records in order, and its
// unreadable spans. An error means the segment cannot be read at all in a
// way that is not damage: a newer version, or a key that does not match.
func parseSegment(path string, data, key []byte) (segmentScan, error) {
	name := filepath.Base(path)
	sc := segmentScan{name: name}
	nameFirst, nameOK := segmentFirst(name)
	headerOK := len(data) >= journalHeaderSize && string(data[:4]) == journalMagic &&
		crc32.Checksum(data[:32], castagnoli) == binary.BigEndian.Uint32(data[32:36])
	var (
		aead cipher.AEAD
		err  error
	)
	switch {
	case !headerOK && allZero(data):
		return sc, nil // created, the header never reached the disk: no record did either
	case !headerOK:
		// The records are framed on their own; the name gives the first
		// sequence number. The salt may be damaged too: then every
		// record fails authentication and is reported lost.
		if !nameOK || len(data) < journalHeaderSize {
			return sc, fmt.Errorf("%w: %s: bad header and no sequence number in its name", ErrJournal, name)
		}
		sc.first = nameFirst
		sc.damaged = append(sc.damaged, journalSpan{off: 0, end: journalHeaderSize, from: 1, to: 0, why: "segment header damaged"})
		if key != nil {
			if aead, err = segmentAEAD(key, data[16:32]); err != nil {
				return sc, err
			}
		}
	default:
		if data[4] != 1 {
			return sc, fmt.Errorf("%w: %s: version %d", ErrJournal, name, data[4])
		}
		sc.first = binary.BigEndian.Uint64(data[8:16])
		switch {
		case data[5] == 1 && key == nil:
			return sc, fmt.Errorf("%w: %s is encrypted and no key is set", ErrKeyMismatch, name)
		case data[5] == 1:
			if aead, err = segmentAEAD(key, data[16:32]); err != nil {
				return sc, err
			}
		case key != nil:
			return sc, fmt.Errorf("%w: %s is not encrypted and a key is set", ErrKeyMismatch, name)
		}
	}

	var authOK, authFailed int
	off, want := journalHeaderSize, sc.first
	for off < len(data) {
		if n, ok := recordAt(data, off, want); ok {
			rec := data[off+8 : off+journalRecordHead+n]
			body := rec[8:]
			if aead != nil {
				if body, err = aead.Open(nil, nonce(want), body, rec[:8]); err != nil {
					authFailed++
					sc.damaged = append(sc.damaged, journalSpan{off: int64(off), end: int64(off + journalRecordHead + n),
						from: want, to: want, why: "record fails authentication"})
					off += journalRecordHead + n
					want++
					continue
				}
				authOK++
			}
			sc.recs = append(sc.recs, journalRecord{seq: want, body: body})
			off += journalRecordHead + n
			want++
			continue
		}
		if allZero(data[off:]) {
			break // the end
		}
		p, seq := resync(data, off+1, want)
		if p < 0 {
			sc.tail = &journalSpan{off: int64(off), end: int64(lastNonZero(data) + 1), from: want, to: want - 1,
				why: "unreadable bytes at the end"}
			break
		}
		sc.damaged = append(sc.damaged, journalSpan{off: int64(off), end: int64(p), from: want, to: seq - 1,
			why: "unreadable records"})
		off, want = p, seq
	}
	if headerOK && aead != nil && authFailed > 0 && authOK == 0 {
		// An intact header and intact records, none of which authenticate:
		// this is another key, not damage.
		return sc, fmt.Errorf("%w: %w: %s: no record authenticates with this key", ErrKeyMismatch, ErrJournal, name)
	}
	return sc, nil
}

// recordAt reports whether a whole record with sequence number want and a
// matching CRC starts at off, and its body's length.
func recordAt(data []byte, off int, want uint64) (int, bool) {
	if off+journalRecordHead > len(data) {
		return 0, false
	}
	n := int(binary.BigEndian.Uint32(data[off : off+4]))
	if n == 0 || n > len(data)-off-journalRecordHead {
		return 0, false
	}
	if binary.BigEndian.Uint64(data[off+8:off+16]) != want {
		return 0, false
	}
	rec := data[off+8 : off+journalRecordHead+n]
	return n, crc32.Checksum(rec, castagnoli) == binary.BigEndian.Uint32(data[off+4:off+8])
}

// resync finds the first offset from start where a readable record with a
// sequence number in [want, want+maxResyncGap] begins, or -1.
func resync(data []byte, start int, want uint64) (int, uint64) {
	for p := start; p+journalRecordHead <= len(data); p++ {
		seq := binary.BigEndian.Uint64(data[p+8 : p+16])
		if seq < want || seq > want+maxResyncGap {
			continue
		}
		if _, ok := recordAt(data, p, seq); ok {
			return p, seq
		}
	}
	return -1, 0
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.NativeEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func lastNonZero(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != 0 {
			return i
		}
	}
	return -1
}

// listSegments returns the segment files of dir, oldest first.
func listSegments(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if _, ok := segmentFirst(e.Name()); ok && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names) // fixed-width hex: lexical order is numeric order
	return names, nil
}

// journalRecovery is what replaying the journal did.
type journalRecovery struct {
	replayed int
	// lost: records after the checkpoint that could not be read.
	lost   uint64
	spans  []DamagedSpan
	torn   *DamagedSpan // a torn tail of the newest segment (not a loss)
	report *DamageReport
	// entriesLost: what the audit found missing, by queue.
	entriesLost map[string]int64
}

// recoverJournal replays into db every record after the checkpoint, syncs
// badger, checkpoints, and returns a journal ready to append after the
// last record. Damaged records are skipped and reported, and the records
// after them replayed; the queues are then audited (their counters made to
// add up again, and the entries the damage took counted) and the report
// stored in the same sync. audit forces the audit (the store was salvaged).
func recoverJournal(db *badger.DB, o Options, now time.Time, audit bool) (j *journal, rec journalRecovery, err error) {
	dir := filepath.Join(o.Dir, journalDirName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, rec, err
	}
	names, err := listSegments(dir)
	if err != nil {
		return nil, rec, err
	}
	ckpt, _, err := readCheckpoint(dir)
	if err != nil {
		// Which records the store holds is unknown: replay every segment
		// there is (replaying a record the store holds changes nothing).
		rec.spans = append(rec.spans, DamagedSpan{File: journalDirName + "/" + checkpointName, What: err.Error() + "; every segment replayed"})
		ckpt = 0
		if len(names) > 0 {
			first, _ := segmentFirst(names[0])
			ckpt = max(first, 1) - 1
		}
	}

	var (
		last     = ckpt
		gapFound bool
		tailLo   map[string]uint64          // each queue's tail before the first lost record
		excused  map[string]map[uint64]bool // entries appended after it
		setAside = filepath.Join(quarantineDir(o), "journal-"+now.UTC().Format("20060102T150405Z"))
	)
	// lose notes records from..to as lost (those the checkpoint covers
	// are not: the store holds them).
	var counted uint64 // lost records are counted up to here
	lose := func(from, to uint64) {
		from = max(from, last+1, counted+1)
		if to < from {
			return
		}
		counted = to
		rec.lost += to - from + 1
		if !gapFound {
			gapFound = true
			tailLo, excused = queueTails(db, o.Queues), map[string]map[uint64]bool{}
		}
	}
	for i, name := range names {
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, rec, err
		}
		sc, err := parseSegment(path, data, o.EncryptionKey)
		if err != nil {
			return nil, rec, err
		}
		var spans []DamagedSpan
		if sc.first > last+1 {
			lose(last+1, sc.first-1)
			spans = append(spans, DamagedSpan{File: journalDirName + "/" + name, What: fmt.Sprintf("records %d to %d are missing before this segment", last+1, sc.first-1)})
		}
		// Lost records are counted where the sequence numbers jump: after
		// a damaged span, or between segments.
		for _, r := range sc.recs {
			if r.seq <= last {
				continue // covered by the checkpoint
			}
			if r.seq != last+1 {
				lose(last+1, r.seq-1)
			}
			if gapFound {
				noteAppended(r.body, excused)
			}
			if err := applyRecord(db, r.body); err != nil {
				return nil, rec, fmt.Errorf("replay journal record %d: %w", r.seq, err)
			}
			last = r.seq
			rec.replayed++
		}
		for _, d := range sc.damaged {
			spans = append(spans, DamagedSpan{File: journalDirName + "/" + name, Offset: d.off, End: d.end, What: spanWhat(d)})
		}
		if t := sc.tail; t != nil {
			sp := DamagedSpan{File: journalDirName + "/" + name, Offset: t.off, End: t.end}
			if i < len(names)-1 {
				// Not the newest segment: the next one says how many
				// records these bytes held.
				nextFirst, _ := segmentFirst(names[i+1])
				sp.What = fmt.Sprintf("unreadable bytes at the end of a segment that is not the newest: records from %d", t.from)
				if nextFirst > t.from {
					sp.What = fmt.Sprintf("unreadable bytes at the end of a segment that is not the newest: records %d to %d", t.from, nextFirst-1)
				}
				spans = append(spans, sp)
			} else {
				sp.What = "a torn write at the end of the newest segment (a crash cut it; never acknowledged), or damage to its last record"
				rec.torn = &sp
			}
		}
		if len(spans) > 0 {
			if err := setAsideBytes(setAside, journalDirName+"/"+name, data, spans); err != nil {
				return nil, rec, fmt.Errorf("set aside damaged journal bytes: %w", err)
			}
			rec.spans = append(rec.spans, spans...)
		}
	}

	if gapFound || audit {
		lo := tailLo
		if audit {
			lo = nil // salvaged: nothing known, count from each head
		}
		release := func() { releasePages(o.Dir) }
		if rec.entriesLost, err = auditQueues(db, o.Queues, lo, excused, release); err != nil {
			return nil, rec, fmt.Errorf("audit queues after damage: %w", err)
		}
	}
	if gapFound || len(rec.spans) > 0 {
		r := DamageReport{At: now.UTC(), Found: "journal replay at start-up", Spans: rec.spans,
			JournalRecordsLost: rec.lost, EntriesLost: rec.entriesLost, SetAside: setAside,
			Message: fmt.Sprintf("the journal is damaged: %d records could not be read, the records after them were replayed, %d queue entries are missing",
				rec.lost, sumLost(rec.entriesLost))}
		if !gapFound {
			r.Message = "the journal is damaged where the store already held what it recorded: nothing is lost"
			r.EntriesLost = nil
		}
		rec.report = &r
		if err := db.Update(func(txn *badger.Txn) error { return putDamageReport(txn, r) }); err != nil {
			return nil, rec, fmt.Errorf("store damage report: %w", err)
		}
	}
	if rec.replayed > 0 || gapFound || audit {
		if err := syncStore(o.Dir); err != nil {
			return nil, rec, fmt.Errorf("sync after replay: %w", err)
		}
	}
	// Always: a salvaged store numbers its versions afresh, and the
	// recorded version must be this store's.
	if err := writeCheckpoint(dir, last, db.MaxVersion()); err != nil {
		return nil, rec, err
	}
	for _, name := range names {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return nil, rec, err
		}
	}
	// Leftovers of an interrupted checkpoint.
	_ = os.Remove(filepath.Join(dir, checkpointName+".tmp"))
	j = &journal{dir: dir, key: slices.Clone(o.EncryptionKey), lastSeq: last, applied: last, ckpt: last}
	if err := j.adoptSpare(); err != nil {
		return nil, rec, err
	}
	return j, rec, nil
}

func spanWhat(d journalSpan) string {
	switch {
	case d.to < d.from:
		return d.why
	case d.to == d.from:
		return fmt.Sprintf("%s: record %d", d.why, d.from)
	}
	return fmt.Sprintf("%s: records %d to %d", d.why, d.from, d.to)
}

func sumLost(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// queueTails reads each queue's tail as the store holds it now.
func queueTails(db *badger.DB, queues []string) map[string]uint64 {
	out := map[string]uint64{}
	_ = db.View(func(txn *badger.Txn) error {
		for _, q := range queues {
			out[q] = 1
			it, err := txn.Get(metaKey(q))
			if err != nil {
				continue
			}
			if v, err := it.ValueCopy(nil); err == nil {
				if m, err := decodeMeta(v); err == nil {
					out[q] = m.Tail
				}
			}
		}
		return nil
	})
	return out
}

// noteAppended adds to appended the seqs of the entries a record writes.
// An entry appended after lost records and absent later was delivered, not
// lost.
func noteAppended(body []byte, appended map[string]map[uint64]bool) {
	_ = decodeMutations(body, func(kind byte, key, val []byte, _ uint64) error {
		if kind != mutSet || len(key) < 11 || key[0] != kindEntry || key[1] != '/' {
			return nil
		}
		q := string(key[2 : len(key)-9])
		es, err := decodeEntries(seqFromKey(key), val)
		if err != nil {
			return nil
		}
		if appended[q] == nil {
			appended[q] = map[uint64]bool{}
		}
		for _, e := range es {
			appended[q][e.seq] = true
		}
		return nil
	})
}
