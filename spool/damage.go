package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/outpost-agent/outpost/vfs"
)

// Damage. A file of the store can be damaged (a flipped bit, a sector that
// no longer reads, bytes overwritten) without the store failing to open.
// Whatever the spool finds unreadable it reports in the same way: a
// DamageReport kept in the store (so it outlives restarts), an ERROR log
// line, Damage() for /v1/status and the metrics, and a copy of the damaged
// bytes under QuarantineDir. Where the loss can be counted it is: queue
// entries carry consecutive seqs, so an audit of a queue after the damage
// finds the seqs that are neither waiting, nor dead letters, nor gone
// below the head (delivered).

// DamageReport is one finding of damage and what it cost.
type DamageReport struct {
	At time.Time `json:"at"`
	// Found says when and how: "journal replay at start-up", "store
	// salvage at start-up", "reading queue tencent".
	Found string        `json:"found"`
	Spans []DamagedSpan `json:"spans,omitempty"`
	// JournalRecordsLost: commits whose journal records could not be read
	// and that the store did not hold yet.
	JournalRecordsLost uint64 `json:"journal_records_lost,omitempty"`
	// EntriesLost: queue entries (actions, queued checks) that could not be
	// read back, by queue. They are counted from the queue's seqs: an
	// entry that was delivered out of order just before the damage is
	// counted too, so the figure is an upper bound (exact when the queue
	// is delivered in order, the default).
	EntriesLost map[string]int64 `json:"entries_lost,omitempty"`
	// OtherKeysLost: other stored keys that could not be read (decision
	// records, cached scores, duplicate markers). For the journal, the keys
	// that lost records which could be read (one a damaged span, format 2)
	// wrote and the store does not hold; not those whose names the damage
	// hit.
	OtherKeysLost int64 `json:"other_keys_lost,omitempty"`
	// CountUnknown: whole files could not be read (a table whose index is
	// gone, a log without its data key), or lost journal records could not
	// be read to count what they appended beyond the audit's sight (several
	// in one damaged span, a missing segment, a journal before format 2,
	// damage where a record's writes are framed), so what they held is not
	// in the counts above.
	CountUnknown bool `json:"count_unknown,omitempty"`
	// SetAside: where copies of the damaged bytes (or the damaged store)
	// were put.
	SetAside string `json:"set_aside,omitempty"`
	Message  string `json:"message"`
}

// DamagedSpan is a run of unreadable bytes in one file.
type DamagedSpan struct {
	File   string `json:"file"`
	Offset int64  `json:"offset"`
	End    int64  `json:"end"`
	What   string `json:"what"`
}

// Lost is the number of queue entries the report counts as lost.
func (r DamageReport) Lost() int64 {
	var n int64
	for _, v := range r.EntriesLost {
		n += v
	}
	return n
}

// damageKeyPrefix holds the reports, one key each, named by time.
var damageKeyPrefix = []byte("m\x00damage\x00")

// maxDamageReports is how many reports the store keeps (the newest), and
// maxReportSpans how many spans one report lists.
const (
	maxDamageReports = 50
	maxReportSpans   = 64
)

func damageKey(at time.Time) []byte {
	return append(slices.Clone(damageKeyPrefix), at.UTC().Format("20060102T150405.000000000Z")...)
}

// putDamageReport stores r in txn and drops the oldest reports beyond
// maxDamageReports.
func putDamageReport(txn *badger.Txn, r DamageReport) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := txn.Set(damageKey(r.At), b); err != nil {
		return err
	}
	var keys [][]byte
	opt := badger.DefaultIteratorOptions
	opt.PrefetchValues = false
	opt.Prefix = damageKeyPrefix
	it := txn.NewIterator(opt)
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	it.Close()
	for len(keys) > maxDamageReports {
		if err := txn.Delete(keys[0]); err != nil {
			return err
		}
		keys = keys[1:]
	}
	return nil
}

// loadDamageReports reads the stored reports, oldest first. A report that
// does not decode is itself reported, not dropped.
func loadDamageReports(db *badger.DB) ([]DamageReport, error) {
	var (
		out  []DamageReport
		keys [][]byte
	)
	err := db.View(func(txn *badger.Txn) error {
		opt := badger.DefaultIteratorOptions
		opt.Prefix = damageKeyPrefix
		it := txn.NewIterator(opt)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var r DamageReport
			v, err := it.Item().ValueCopy(nil)
			if err == nil {
				err = json.Unmarshal(v, &r)
			}
			if err != nil {
				r = DamageReport{Found: "a stored damage report", Message: "a damage report is itself unreadable: " + err.Error()}
			}
			out = append(out, r)
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil || len(out) <= maxDamageReports {
		return out, err
	}
	// Reports found while running are added without trimming.
	drop := len(out) - maxDamageReports
	err = db.Update(func(txn *badger.Txn) error {
		for _, k := range keys[:drop] {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return out[drop:], err
}

// Damage lists the damage found in the store, oldest first: what the
// store keeps of earlier starts, and what this run found.
func (s *Spool) Damage() []DamageReport {
	s.damageMu.Lock()
	defer s.damageMu.Unlock()
	return slices.Clone(s.damage)
}

// noteDamage adds a report found while running (the committer stores it).
func (s *Spool) noteDamage(r DamageReport) {
	s.damageMu.Lock()
	s.damage = append(s.damage, r)
	if len(s.damage) > maxDamageReports {
		s.damage = s.damage[len(s.damage)-maxDamageReports:]
	}
	s.damageMu.Unlock()
}

// logDamage writes the report's ERROR line.
func logDamage(s interface {
	Error(msg string, args ...any)
}, r DamageReport) {
	args := []any{"found", r.Found, "journal_records_lost", r.JournalRecordsLost, "entries_lost", r.Lost(),
		"other_keys_lost", r.OtherKeysLost}
	for q, n := range r.EntriesLost {
		args = append(args, "lost_"+q, n)
	}
	if r.SetAside != "" {
		args = append(args, "set_aside", r.SetAside)
	}
	for i, sp := range r.Spans {
		if i == 8 {
			args = append(args, "more_spans", len(r.Spans)-i)
			break
		}
		args = append(args, fmt.Sprintf("span%d", i), fmt.Sprintf("%s [%d,%d): %s", sp.File, sp.Offset, sp.End, sp.What))
	}
	s.Error("STORE DAMAGE: "+r.Message, args...)
}

// setAsideBytes copies damaged bytes of a file into dir, one file per span
// named after the file and the span's offsets, and syncs them.
func setAsideBytes(dir, file string, data []byte, spans []DamagedSpan) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, sp := range spans {
		if sp.File != file || sp.End <= sp.Offset || sp.End > int64(len(data)) {
			continue
		}
		name := fmt.Sprintf("%s.%d-%d.damaged", strings.ReplaceAll(file, string(filepath.Separator), "_"), sp.Offset, sp.End)
		if err := writeSynced(filepath.Join(dir, name), data[sp.Offset:sp.End]); err != nil {
			return err
		}
	}
	return vfs.Default.SyncDir(dir)
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// quarantineDir is where damaged bytes and stores are set aside.
func quarantineDir(o Options) string {
	if o.QuarantineDir != "" {
		return o.QuarantineDir
	}
	return filepath.Join(filepath.Dir(filepath.Clean(o.Dir)), "quarantine")
}

// queueAudit is what auditQueue found in one queue.
type queueAudit struct {
	meta       meta
	lost       int64 // seqs that are neither waiting, dead, delivered nor excused
	unreadable int   // values that do not decode (Lease sets them aside)
}

// auditQueue counts a queue again from what its keys hold, after damage or
// lost journal records made its metadata doubtful: live entries and bytes,
// dead letters and their bytes, the tail past every seq in use, and the
// seqs from lo up that are gone without a trace (not waiting, not a dead
// letter, not below the head, and not in excused: seqs appended after the
// damage, whose absence means they were delivered). Unreadable values
// count as neither: the next Lease sets them aside with their own report.
func auditQueue(txn *badger.Txn, queue string, m meta, lo uint64, excused map[uint64]bool, release func()) (queueAudit, error) {
	a := queueAudit{meta: m}
	a.meta.Count, a.meta.Bytes, a.meta.DeadCount, a.meta.DeadBytes = 0, 0, 0, 0

	dead := map[uint64]bool{}
	var maxSeq uint64
	opt := badger.DefaultIteratorOptions
	opt.PrefetchValues = false
	opt.Prefix = prefix(kindDead, queue)
	it := txn.NewIterator(opt)
	for it.Rewind(); it.Valid(); it.Next() {
		seq := seqFromKey(it.Item().Key())
		maxSeq = max(maxSeq, seq)
		v, err := it.Item().ValueCopy(nil)
		if err != nil {
			a.unreadable++
			continue
		}
		r, err := decodeRecord(v)
		if err != nil {
			a.unreadable++
			continue
		}
		dead[seq] = true
		a.meta.DeadCount++
		a.meta.DeadBytes += storedSize(r.ID, len(r.Payload))
	}
	it.Close()

	if lo < m.Head {
		lo = m.Head
	}
	// skip: seqs whose absence from the queue is explained, sorted.
	skip := make([]uint64, 0, len(dead)+len(excused))
	for s := range dead {
		skip = append(skip, s)
	}
	for s := range excused {
		if !dead[s] {
			skip = append(skip, s)
		}
	}
	slices.Sort(skip)
	cur := lo // every seq below cur is accounted for
	gone := func(to uint64) {
		if to <= cur {
			return
		}
		i, _ := slices.BinarySearch(skip, cur)
		j, _ := slices.BinarySearch(skip, to)
		a.lost += int64(to-cur) - int64(j-i)
	}
	it = entryIterator(txn, queue)
	defer it.Close()
	var prevKey uint64
	var read int64
	for it.Seek(seqKey(kindEntry, queue, m.Head)); it.Valid(); it.Next() {
		if read += it.Item().ValueSize(); read > 8<<20 && release != nil {
			// The values are read through badger's mapping of its value
			// logs, and no trim loop runs yet: a million entries' worth
			// would stay resident.
			release()
			read = 0
		}
		key, es, err := itemEntries(it)
		maxSeq = max(maxSeq, key)
		if err != nil {
			// Its entries are somewhere in (prevKey, key]: excused here,
			// set aside and reported by Lease.
			a.unreadable++
			if key+1 > cur {
				gone(max(cur, prevKey+1))
				cur = key + 1
			}
			prevKey = key
			continue
		}
		prevKey = key
		for _, e := range es {
			if e.seq < m.Head {
				continue
			}
			a.meta.Count++
			a.meta.Bytes += storedSize(e.rec.ID, len(e.rec.Payload))
			if e.seq >= cur {
				gone(e.seq)
				cur = e.seq + 1
			}
		}
	}
	if maxSeq+1 > a.meta.Tail {
		// Metadata older than the entries (its newest version was lost):
		// never hand out a seq that is in use.
		a.meta.Tail = maxSeq + 1
	}
	gone(a.meta.Tail)
	return a, nil
}

// auditQueues audits every queue (from lo[q], or the head) and writes the
// corrected metadata. It returns the lost entries by queue (only queues
// with a loss).
func auditQueues(db *badger.DB, queues []string, lo map[string]uint64, excused map[string]map[uint64]bool, release func()) (map[string]int64, error) {
	lost := map[string]int64{}
	err := db.Update(func(txn *badger.Txn) error {
		for _, q := range queues {
			m := meta{Head: 1, Tail: 1}
			switch it, err := txn.Get(metaKey(q)); {
			case errors.Is(err, badger.ErrKeyNotFound):
			case err != nil:
				return fmt.Errorf("read metadata of %s: %w", q, err)
			default:
				v, err := it.ValueCopy(nil)
				if err == nil {
					m, err = decodeMeta(v)
				}
				if err != nil {
					// Unreadable metadata: count everything from 1.
					m = meta{Head: 1, Tail: 1}
				}
			}
			from, ok := lo[q]
			if !ok {
				from = m.Head
			}
			a, err := auditQueue(txn, q, m, from, excused[q], release)
			if err != nil {
				return err
			}
			if a.lost > 0 {
				lost[q] = a.lost
			}
			if err := txn.Set(metaKey(q), a.meta.encode()); err != nil {
				return err
			}
		}
		return nil
	})
	return lost, err
}
