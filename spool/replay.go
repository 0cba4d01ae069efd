package spool

import (
	"bytes"
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
// records were lost. A lost record's sequence number is used up: the
// journal goes on after it, so a record read later is never taken for it.

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
	// countUnknown: a lost record could not be read to count what it
	// wrote beyond the audit's sight.
	countUnknown bool
	// otherLost: keys lost records wrote (decision records, velocity
	// events, scores) that the store does not hold.
	otherLost int64
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
		last       = ckpt
		lostBodies [][]byte // bodies of lost records, one a span, unverified
		gapFound   bool
		tailLo     map[string]uint64          // each queue's tail before the first lost record
		excused    map[string]map[uint64]bool // entries appended after it
		setAside   = filepath.Join(quarantineDir(o), "journal-"+now.UTC().Format("20060102T150405Z"))
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
		if errors.Is(err, journal.ErrNewerVersion) {
			return nil, rec, fmt.Errorf("%w: %w: run the newer agent, or move the store aside to start empty", ErrNewerFormat, err)
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
			if d.From <= d.To && d.To > last {
				// Nothing read after this damage: no jump in the sequence
				// numbers will count its records (the last record of a
				// segment, found damaged by its end).
				lose(d.From, d.To)
				last = d.To
			}
			if d.From == d.To && d.From > ckpt {
				// One lost record, its body as it reads (nil: none): what
				// it appended beyond a queue's tail no later record moved
				// past, the audit cannot see; it is counted from the
				// record itself, below.
				lostBodies = append(lostBodies, d.Body)
			}
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
				sp.What = "a torn write at the end of the newest segment (a crash cut it; never acknowledged), or, where that cannot be told (journal's read.go), damage to its last record"
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
	if rec.lost > 0 {
		// Every lost record is counted by the audit where a later record
		// appended to the same queue; what it appended beyond a tail that
		// nothing moved past is counted only from its own body. A lost
		// record whose body is not read (several in one span, a missing
		// segment, a journal before format 2) leaves that unknown.
		tails := queueTails(db, o.Queues)
		has := func(key []byte) bool {
			return db.View(func(txn *badger.Txn) error { _, err := txn.Get(key); return err }) == nil
		}
		var read uint64
		for _, body := range lostBodies {
			if body == nil {
				continue // not read: counts as unknown below
			}
			n, others, ok := entriesAppendedBy(body, tails, has)
			if !ok {
				continue
			}
			read++
			rec.otherLost += others
			for q, k := range n {
				if rec.entriesLost == nil {
					rec.entriesLost = map[string]int64{}
				}
				rec.entriesLost[q] += k
			}
		}
		rec.countUnknown = read < rec.lost
	}
	if gapFound || len(rec.spans) > 0 {
		r := DamageReport{At: now.UTC(), Found: "journal replay at start-up", Spans: rec.spans,
			JournalRecordsLost: rec.lost, EntriesLost: rec.entriesLost, OtherKeysLost: rec.otherLost, CountUnknown: rec.countUnknown, SetAside: setAside,
			Message: fmt.Sprintf("the journal is damaged: %d records could not be read, the records after them were replayed, %d queue entries are missing",
				rec.lost, sumLost(rec.entriesLost))}
		if rec.otherLost > 0 {
			r.Message += fmt.Sprintf("; %d keys the lost records wrote (decision records, velocity events, cached scores) are missing too", rec.otherLost)
		}
		if rec.countUnknown {
			r.Message += "; some lost records could not be read to count what they wrote beyond their queues' tails (count_unknown)"
		}
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
		SegmentSize: o.journalSegmentSize, FS: o.journalFS}, last)
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

// entriesAppendedBy counts, by queue, the entries that body (a lost
// journal record's, as it reads) appended beyond each queue's tail as the
// store holds it after the replay: the entries lost with it that the audit
// cannot see. The body
// is damaged, so nothing in it is applied; it is read only to count
// (readDamagedMutations), and a count is taken only where two witnesses
// agree: the queue's new tail in its metadata, and the entries its chunks
// hold; or the metadata alone, where the damage is shown to be elsewhere
// (a chunk that does not decode, bytes skipped, a key of no kind). ok is
// false when a queue's count cannot be known: never a wrong count. others
// counts the other keys it writes (decision records, velocity events,
// scores: "k/") that the store does not hold (has says).
func entriesAppendedBy(body []byte, tails map[string]uint64, has func(key []byte) bool) (lost map[string]int64, others int64, ok bool) {
	type seen struct {
		newTail   uint64 // 0: no readable metadata
		appended  map[uint64]bool
		undecoded bool // a chunk that may hold new entries does not decode, or holds old ones
	}
	qs := map[string]*seen{}
	get := func(q string) *seen {
		if qs[q] == nil {
			qs[q] = &seen{appended: map[uint64]bool{}}
		}
		return qs[q]
	}
	// queueOf: the queue a key names, if known and well formed.
	queueOf := func(key []byte, seqd bool) (string, bool) {
		rest := key[2:]
		if seqd {
			if len(rest) < 10 || rest[len(rest)-9] != '/' {
				return "", false
			}
			rest = rest[:len(rest)-9]
		}
		_, known := tails[string(rest)]
		return string(rest), known
	}
	// suspect: the damage is shown to be outside the metadata: a key of
	// no kind (damaged, or bytes misread as a write) whose value is not a
	// queue's metadata, or bytes skipped. strays: metadata under a
	// damaged key.
	var (
		suspect bool
		strays  []uint64
	)
	odd := func(val []byte) {
		if m, err := decodeMeta(val); err == nil {
			strays = append(strays, m.Tail)
			return
		}
		suspect = true
	}
	// known: a key of a kind the spool writes, for a queue it has.
	known := func(key []byte) bool {
		if len(key) < 2 {
			return false
		}
		switch {
		case key[1] == 0:
			return key[0] == 'm' || key[0] == 'g' // the store's own keys
		case key[1] != '/':
			return false
		}
		switch key[0] {
		case kindMeta:
			_, ok := queueOf(key, false)
			return ok
		case kindEntry, kindDead:
			_, ok := queueOf(key, true)
			return ok
		case kindDedup:
			i := bytes.IndexByte(key[2:], '/')
			_, ok := tails[string(key[2:2+max(i, 0)])]
			return i > 0 && ok
		}
		return key[0] == kvPrefix[0]
	}
	skipped := readDamagedMutations(body, known, func(kind byte, key, val []byte) {
		if !known(key) {
			odd(val)
			return
		}
		switch key[0] {
		case kvPrefix[0]:
			if kind == mutSet && !has(key) {
				others++
			}
		case kindMeta:
			if key[1] != '/' {
				return
			}
			q, _ := queueOf(key, false)
			if m, err := decodeMeta(val); err == nil && kind == mutSet {
				get(q).newTail = m.Tail
			} else {
				suspect = true
			}
		case kindEntry:
			q, _ := queueOf(key, true)
			tail := tails[q]
			if kind != mutSet || seqFromKey(key) < tail {
				return // an ack, or a chunk rewritten: no new entry
			}
			es, err := decodeEntries(seqFromKey(key), val)
			if err != nil {
				get(q).undecoded = true
				return
			}
			for _, e := range es {
				if e.seq < tail {
					// A chunk this record made holds only entries it
					// appended: a seq below the tail is damage.
					get(q).undecoded = true
					continue
				}
				get(q).appended[e.seq] = true
			}
		}
	})
	suspect = suspect || skipped > 0
	// Metadata under a damaged key: the queue's whose metadata is missing,
	// when it is the only one.
	var missing []*seen
	for _, s := range qs {
		if s.newTail == 0 {
			missing = append(missing, s)
		}
	}
	if len(strays) == 1 && len(missing) == 1 {
		missing[0].newTail = strays[0]
	}
	lost = map[string]int64{}
	for q, s := range qs {
		tail := tails[q]
		if s.newTail == 0 {
			return nil, 0, false // the chunks alone cannot tell one lost to damage
		}
		byMeta := max(s.newTail, tail) - tail
		read, consecutive := uint64(len(s.appended)), true
		for seq := range s.appended {
			consecutive = consecutive && seq < tail+read
		}
		switch {
		case !consecutive || byMeta > uint64(len(body)/minEntrySize):
			return nil, 0, false
		case read == byMeta && !s.undecoded:
			// The metadata and the chunks agree.
		case read < byMeta && (s.undecoded || suspect):
			// A chunk unread, the damage there: the metadata vouches.
		default:
			return nil, 0, false // they disagree, and either may be damaged
		}
		if byMeta > 0 {
			lost[q] = int64(byMeta)
		}
	}
	if suspect && len(qs) == 0 {
		return nil, 0, false // what was misread may have held anything
	}
	return lost, others, true
}

// minEntrySize bounds how many entries a record of a given size can
// append: an entry's seq, length and fixed fields.
const minEntrySize = 8 + 1 + 29

// readDamagedMutations calls fn for the writes of a damaged record's body
// that can be read, in order, and returns how many bytes it skipped. Past
// damage, a write's framing can read wrong: a length that swallows the
// writes after it, or bytes that happen to frame a write. So the body is
// read the way that finds the most writes whose keys are of a kind the
// spool writes (known says), skipping as few bytes as it can: a misread
// length swallows writes that the true reading finds.
func readDamagedMutations(b []byte, known func(key []byte) bool, fn func(kind byte, key, val []byte)) (skipped int) {
	// From each offset to the end: the most known writes, the fewest bytes
	// skipped at that, and the first step (a write's length, or 0: skip a
	// byte).
	// int32: a record is one group commit, under badger's batch size
	// (hundreds of KB): 12 bytes a byte of it, once, at start-up.
	score, skip, step := make([]int32, len(b)+1), make([]int32, len(b)+1), make([]int32, len(b)+1)
	for p := len(b) - 1; p >= 0; p-- {
		score[p], skip[p] = score[p+1], skip[p+1]+1
		if _, _, key, _, n := decodeMutation(b[p:]); n > 0 {
			sc := score[p+n]
			if known(key) {
				sc++
			}
			if sc > score[p] || (sc == score[p] && skip[p+n] <= skip[p]) {
				score[p], skip[p], step[p] = sc, skip[p+n], int32(n)
			}
		}
	}
	for p := 0; p < len(b); {
		if step[p] == 0 {
			skipped++
			p++
			continue
		}
		kind, _, key, val, n := decodeMutation(b[p:])
		fn(kind, key, val)
		p += n
	}
	return skipped
}
