package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/outpost-agent/outpost/journal"
	"github.com/outpost-agent/outpost/vfs"
)

// Replaying the journal (package journal) into badger at Open: the records
// after the checkpoint, in order, past any damage (journal's read.go says
// how damage is told from a torn tail), then the queues audited where
// records were lost.

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
func recoverJournal(db *badger.DB, o Options, now time.Time, audit bool, onSeal func()) (j *journal.Journal, rec journalRecovery, err error) {
	dir := filepath.Join(o.Dir, journalDirName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, rec, err
	}
	names, err := journal.ListSegments(vfs.Default, dir)
	if err != nil {
		return nil, rec, err
	}
	ckpt, _, err := journal.ReadCheckpoint(vfs.Default, dir)
	if err != nil {
		// Which records the store holds is unknown: replay every segment
		// there is (replaying a record the store holds changes nothing).
		rec.spans = append(rec.spans, DamagedSpan{File: journalDirName + "/" + journal.CheckpointName, What: err.Error() + "; every segment replayed"})
		ckpt = 0
		if len(names) > 0 {
			first, _ := journal.SegmentFirst(names[0])
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
		sc, err := journal.ParseSegment(path, data, o.EncryptionKey)
		if errors.Is(err, journal.ErrKeyMismatch) {
			return nil, rec, fmt.Errorf("%w: %w", ErrKeyMismatch, err)
		}
		if err != nil {
			return nil, rec, err
		}
		var spans []DamagedSpan
		if sc.First > last+1 {
			lose(last+1, sc.First-1)
			spans = append(spans, DamagedSpan{File: journalDirName + "/" + name, What: fmt.Sprintf("records %d to %d are missing before this segment", last+1, sc.First-1)})
		}
		// Lost records are counted where the sequence numbers jump: after
		// a damaged span, or between segments.
		for _, r := range sc.Recs {
			if r.Seq <= last {
				continue // covered by the checkpoint
			}
			if r.Seq != last+1 {
				lose(last+1, r.Seq-1)
			}
			if gapFound {
				noteAppended(r.Body, excused)
			}
			if err := applyRecord(db, r.Body); err != nil {
				return nil, rec, fmt.Errorf("replay journal record %d: %w", r.Seq, err)
			}
			last = r.Seq
			rec.replayed++
		}
		for _, d := range sc.Damaged {
			spans = append(spans, DamagedSpan{File: journalDirName + "/" + name, Offset: d.Off, End: d.End, What: spanWhat(d)})
		}
		if t := sc.Tail; t != nil {
			sp := DamagedSpan{File: journalDirName + "/" + name, Offset: t.Off, End: t.End}
			if i < len(names)-1 {
				// Not the newest segment: the next one says how many
				// records these bytes held.
				nextFirst, _ := journal.SegmentFirst(names[i+1])
				sp.What = fmt.Sprintf("unreadable bytes at the end of a segment that is not the newest: records from %d", t.From)
				if nextFirst > t.From {
					sp.What = fmt.Sprintf("unreadable bytes at the end of a segment that is not the newest: records %d to %d", t.From, nextFirst-1)
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
	if err := journal.WriteCheckpoint(vfs.Default, dir, last, db.MaxVersion()); err != nil {
		return nil, rec, err
	}
	for _, name := range names {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return nil, rec, err
		}
	}
	// Leftovers of an interrupted checkpoint.
	_ = os.Remove(filepath.Join(dir, journal.CheckpointName+".tmp"))
	j, err = journal.New(journal.Options{Dir: dir, Key: o.EncryptionKey, OnSeal: onSeal, Buffered: o.PutSyncWithin > 0,
		SegmentSize: o.journalSegmentSize}, last)
	if err != nil {
		return nil, rec, err
	}
	return j, rec, nil
}

func spanWhat(d journal.Span) string {
	switch {
	case d.To < d.From:
		return d.Why
	case d.To == d.From:
		return fmt.Sprintf("%s: record %d", d.Why, d.From)
	}
	return fmt.Sprintf("%s: records %d to %d", d.Why, d.From, d.To)
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
			return nil //nolint:nilerr // not an entry this can count: the audit finds it unreadable
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
