package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/fb"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/badger/v4/y"
	"github.com/dgraph-io/ristretto/v2"
	"github.com/dgraph-io/ristretto/v2/z"
	"github.com/outpost-agent/outpost/journal"
	"github.com/outpost-agent/outpost/vfs"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// Salvage. A store whose files are damaged where badger cannot or will not
// cope (a table, the MANIFEST or the key registry that does not read; a
// memtable log or the newest value log with unreadable bytes in the part a
// checkpoint synced, which badger would cut off there with everything
// after) is rebuilt into a fresh store from everything that still reads:
//
//   - every table file in the directory (the MANIFEST is not needed to
//     find them), block by block: a block whose checksum fails loses its
//     keys, the others are read;
//   - every memtable log (.mem), entry by entry, finding the entries after
//     unreadable bytes again by their framing and CRC;
//   - the newest version of each key among all of them, its value read
//     from the value log through its pointer (each value has its own
//     checksum: a damaged one loses that value only).
//
// The rebuilt store takes the old one's place, the old one is moved to
// the quarantine folder for an operator, the journal (which belongs with
// the store) is carried over and replayed, and the queues are audited:
// their counters made to add up, and the entries that could not be read
// counted (damage.go). The agent then goes on delivering.
//
// This reads badger's file formats (v4.9.6, pinned in go.mod) directly:
// log entries (header, key with version, value, CRC-32C), value pointers,
// the key registry's framing. The tests in salvage_test.go write real
// stores with badger and damage them, so a format change fails them.

// Badger's entry meta bits (badger/v4 value.go).
const (
	bMetaDelete       = 1 << 0
	bMetaValuePointer = 1 << 1
	bMetaTxn          = 1 << 6
	bMetaFinTxn       = 1 << 7
	badgerLogHeader   = 20 // key id (8), base IV (12)
	salvageSuffix     = ".salvage"
	salvageMarker     = "SALVAGED"
)

var badgerInternal = []byte("!badger!")

// errLogDamage: a memtable log or the newest value log holds unreadable
// bytes that a checkpoint had synced (inspectLogs). The store is salvaged.
var errLogDamage = errors.New("damaged log file")

// logEntry is one entry of a badger log file. key and value may point
// into the file's read window: copy what is kept past the next read.
type logEntry struct {
	off       int64
	size      int64
	key       []byte // with its version
	meta      byte
	userMeta  byte
	expiresAt uint64
	value     []byte
}

// logFile reads one of badger's log files (.mem, .vlog) with pread
// through a window, not a mapping: a salvage reads every log of the store,
// and mapped pages count against the agent's memory (BENCHMARKS.md,
// session 12: a 1M-action store's salvage peaked at 854 MiB with
// mappings, 118-125 MiB with this, the batch flushes and releasePages).
type logFile struct {
	name   string
	f      *os.File // nil: the whole file is in win
	size   int64
	win    []byte // bytes [base, base+len(win)) of the file
	base   int64
	buf    []byte
	window int64  // bytes read ahead on a miss (0: just what is asked)
	key    []byte // the data key, nil in clear
	iv     []byte
}

// logWindow is how much a sequential read of a log reads at once.
const logWindow = 1 << 20

// logFileBytes is a log file held in memory (tests).
func logFileBytes(name string, b []byte) *logFile {
	lf := &logFile{name: name, size: int64(len(b)), win: b}
	if len(b) >= badgerLogHeader {
		lf.iv = b[8:badgerLogHeader]
	}
	return lf
}

// openLogFile opens a log file and finds its data key. keys may be nil (a
// store in clear).
func openLogFile(path string, keys map[uint64]*pb.DataKey) (*logFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	lf := &logFile{name: filepath.Base(path), f: f, size: fi.Size(), window: logWindow}
	h := lf.at(0, badgerLogHeader)
	if len(h) < badgerLogHeader {
		return lf, nil
	}
	lf.iv = slices.Clone(h[8:badgerLogHeader])
	// A store in clear has no data keys: whatever its header says (a
	// damaged header), its entries are in clear.
	if id := binary.BigEndian.Uint64(h[:8]); id != 0 && len(keys) > 0 {
		dk, ok := keys[id]
		if !ok {
			lf.close()
			return nil, fmt.Errorf("%s: data key %d is not in the key registry", lf.name, id)
		}
		lf.key = dk.Data
	}
	return lf, nil
}

func (lf *logFile) close() {
	if lf.f != nil {
		lf.f.Close()
	}
}

// at returns the file's bytes [off, off+n), fewer at its end. The slice
// is valid until the next call.
func (lf *logFile) at(off, n int64) []byte {
	if off < 0 || off >= lf.size || n <= 0 {
		return nil
	}
	n = min(n, lf.size-off)
	if off >= lf.base && off+n <= lf.base+int64(len(lf.win)) {
		return lf.win[off-lf.base : off-lf.base+n]
	}
	if lf.f == nil {
		return nil
	}
	w := min(max(n, lf.window), lf.size-off)
	if int64(cap(lf.buf)) < w {
		lf.buf = make([]byte, w)
	}
	m, _ := lf.f.ReadAt(lf.buf[:w], off)
	lf.win, lf.base = lf.buf[:m], off
	return lf.win[:min(n, int64(m))]
}

// entryAt decodes the entry at off if one is there whole, with a matching
// CRC.
func (lf *logFile) entryAt(off int64) (logEntry, bool) {
	if off < badgerLogHeader {
		return logEntry{}, false
	}
	h := lf.at(off, 22) // badger's largest header
	if len(h) < 5 {
		return logEntry{}, false
	}
	meta, umeta := h[0], h[1]
	i := 2
	klen, n := binary.Uvarint(h[i:])
	if n <= 0 || klen < 8 || klen > 1<<16 {
		return logEntry{}, false
	}
	i += n
	vlen, n := binary.Uvarint(h[i:])
	if n <= 0 || vlen > 1<<31 {
		return logEntry{}, false
	}
	i += n
	exp, n := binary.Uvarint(h[i:])
	if n <= 0 {
		return logEntry{}, false
	}
	i += n
	end := int64(i) + int64(klen) + int64(vlen)
	if off+end+4 > lf.size {
		return logEntry{}, false
	}
	p := lf.at(off, end+4)
	if int64(len(p)) != end+4 || crc32.Checksum(p[:end], y.CastagnoliCrcTable) != binary.BigEndian.Uint32(p[end:]) {
		return logEntry{}, false
	}
	kv := p[i:end]
	if lf.key != nil {
		iv := make([]byte, 16)
		copy(iv, lf.iv)
		binary.BigEndian.PutUint32(iv[12:], uint32(off))
		var err error
		if kv, err = y.XORBlockAllocate(kv, lf.key, iv); err != nil {
			return logEntry{}, false
		}
	}
	return logEntry{off: off, size: end + 4, key: kv[:klen], value: kv[klen:], meta: meta, userMeta: umeta, expiresAt: exp}, true
}

// zeroFrom reports whether the file holds only zeros from off. Only the
// file's data regions are read: badger's logs are sparse files far larger
// than what they hold (a memtable log is its whole arena), and reading
// their holes cost the spool's model test 80 s of CPU under -race.
func (lf *logFile) zeroFrom(off int64) bool {
	for _, r := range lf.dataRegions(off) {
		for o := r[0]; o < r[1]; {
			b := lf.at(o, min(logWindow, r[1]-o))
			if len(b) == 0 {
				break
			}
			if !journal.AllZero(b) {
				return false
			}
			o += int64(len(b))
		}
	}
	return true
}

// lastNonZero is the offset of the file's last byte that is not zero, or
// -1.
func (lf *logFile) lastNonZero() int64 {
	regions := lf.dataRegions(0)
	for i := len(regions) - 1; i >= 0; i-- {
		for end := regions[i][1]; end > regions[i][0]; {
			start := max(regions[i][0], end-logWindow)
			b := lf.at(start, end-start)
			if len(b) == 0 {
				break
			}
			if j := journal.LastNonZero(b); j >= 0 {
				return start + int64(j)
			}
			end = start
		}
	}
	return -1
}

// dataRegions are the spans [from, to) of the file from off on that may
// hold data: lseek's SEEK_DATA/SEEK_HOLE skip the holes (all of it where
// the file system cannot say, or the file is in memory).
func (lf *logFile) dataRegions(off int64) [][2]int64 {
	all := [][2]int64{{off, lf.size}}
	if lf.f == nil || off >= lf.size {
		return all
	}
	fd := int(lf.f.Fd())
	var regions [][2]int64
	for off < lf.size {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // no data past off
		}
		if err != nil {
			return all
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil {
			return all
		}
		regions = append(regions, [2]int64{d, min(h, lf.size)})
		off = h
	}
	return regions
}

// logScan is what reading a log file from its start found.
type logScan struct {
	// damaged: unreadable spans followed by readable entries; after[i]
	// is the version of the first entry after damaged[i].
	damaged []DamagedSpan
	after   []uint64
	tail    *DamagedSpan // unreadable bytes at the end
	maxTs   uint64       // the newest version among the readable entries
}

// scan reads every entry, skipping unreadable bytes to the next entry
// whose framing and CRC hold, and hands each to fn (nil: only the damage
// and the versions are wanted), and each damaged span to onDamage (may be
// nil) as it is found. An entry's bytes are valid during fn.
func (lf *logFile) scan(fn func(logEntry), onDamage func(DamagedSpan)) logScan {
	var sc logScan
	off := int64(badgerLogHeader)
	for off < lf.size {
		if e, ok := lf.entryAt(off); ok {
			sc.maxTs = max(sc.maxTs, y.ParseTs(e.key))
			if fn != nil {
				fn(e)
			}
			off += e.size
			continue
		}
		if journal.AllZero(lf.at(off, 64)) && lf.zeroFrom(off) {
			break
		}
		next := int64(-1)
		for p := off + 1; p < lf.size-6; p++ {
			if journal.AllZero(lf.at(p, 3)) {
				continue // a zero key length: no entry starts here
			}
			if _, ok := lf.entryAt(p); ok {
				next = p
				break
			}
		}
		if next < 0 {
			sc.tail = &DamagedSpan{File: lf.name, Offset: off, End: lf.lastNonZero() + 1, What: "unreadable bytes at the end"}
			break
		}
		e, _ := lf.entryAt(next)
		sc.damaged = append(sc.damaged, DamagedSpan{File: lf.name, Offset: off, End: next, What: "unreadable entries"})
		if onDamage != nil {
			onDamage(sc.damaged[len(sc.damaged)-1])
		}
		sc.after = append(sc.after, y.ParseTs(e.key))
		off = next
	}
	return sc
}

// inspectLogs looks for damage badger would take for a crash's torn tail
// and cut off, with what follows: unreadable bytes in a memtable log or in
// the newest value log, followed by entries a checkpoint had synced (a
// version at or below synced). Unreadable bytes followed only by newer
// entries may be a power cut's unwritten pages: badger cuts them off and
// the journal replays what they held. tablesMax is the newest version in
// the tables: if no log or table reaches synced, the end of a memtable log
// that a checkpoint synced is gone.
func inspectLogs(dir string, keys map[uint64]*pb.DataKey, synced uint64, tv tableVersions) error {
	tablesMax := tv.tables
	var files []string
	mems, _ := filepath.Glob(filepath.Join(dir, "*.mem"))
	files = append(files, mems...)
	if vlogs, _ := filepath.Glob(filepath.Join(dir, "*.vlog")); len(vlogs) > 0 {
		slices.Sort(vlogs)
		files = append(files, vlogs[len(vlogs)-1])
	}
	reach := tablesMax
	var tails []DamagedSpan
	// synced == 0: no checkpoint records a version (a store written before
	// it was recorded); any unreadable bytes might be a power cut's
	// unwritten pages. Only the orphans are compared.
	for _, f := range files {
		lf, err := openLogFile(f, keys)
		if err != nil {
			continue // no data key for it: badger.Open reports that
		}
		sc := lf.scan(nil, nil)
		lf.close()
		for i, d := range sc.damaged {
			if synced != 0 && sc.after[i] <= synced {
				return fmt.Errorf("%w: %s has unreadable bytes at [%d,%d) before entries a checkpoint synced", errLogDamage, d.File, d.Offset, d.End)
			}
		}
		if strings.HasSuffix(f, ".mem") {
			reach = max(reach, sc.maxTs)
			if sc.tail != nil {
				tails = append(tails, *sc.tail)
			}
		}
	}
	if tv.orphans > reach {
		return fmt.Errorf("%w: the MANIFEST does not list tables that hold newer writes (version %d) than every table and log it lists (%d): it lost records",
			errLogDamage, tv.orphans, reach)
	}
	if synced != 0 && reach < synced && len(tails) > 0 {
		return fmt.Errorf("%w: %s has unreadable bytes at [%d,%d), and no log or table holds the writes a checkpoint synced (up to version %d; found %d)",
			errLogDamage, tails[0].File, tails[0].Offset, tails[0].End, synced, reach)
	}
	return nil
}

// inspectStoreLogs runs inspectLogs on the store, under its lock.
func inspectStoreLogs(o Options, tv tableVersions) error {
	unlock, ok, err := lockDir(o.Dir)
	if err != nil || !ok {
		return err
	}
	defer unlock()
	_, synced, err := journal.ReadCheckpoint(vfs.Default, filepath.Join(o.Dir, journalDirName))
	if err != nil {
		return nil // the journal's recovery reports it
	}
	keys, _, err := readDataKeys(o.Dir, o.EncryptionKey)
	if err != nil {
		return nil // another key: badger.Open says so
	}
	return inspectLogs(o.Dir, keys, synced, tv)
}

// readDataKeys reads the key registry of an encrypted store, skipping
// damaged records. It fails with ErrKeyMismatch when the registry is intact
// but locked with another key.
func readDataKeys(dir string, master []byte) (map[uint64]*pb.DataKey, []DamagedSpan, error) {
	keys := map[uint64]*pb.DataKey{}
	b, err := os.ReadFile(filepath.Join(dir, badger.KeyRegistryFileName))
	if len(master) == 0 {
		// A store in clear needs no keys; an encrypted one cannot be read
		// without its key, and is never rebuilt empty for want of it.
		if err == nil && len(b) >= 28 && !bytes.Equal(b[16:28], []byte("Hello Badger")) && !keyRegistryDamaged(dir) {
			return nil, nil, fmt.Errorf("%w: the store is encrypted and no key is set", ErrKeyMismatch)
		}
		return keys, nil, nil
	}
	if err != nil {
		// Reported as damage, not an error: the salvage goes on with the
		// keys it has (none).
		return keys, []DamagedSpan{{File: badger.KeyRegistryFileName, What: err.Error()}}, nil //nolint:nilerr
	}
	var spans []DamagedSpan
	const header = 16 + 12
	if len(b) >= header {
		sanity, err := y.XORBlockAllocate(b[16:header], master, b[:16])
		if err == nil && !bytes.Equal(sanity, []byte("Hello Badger")) && !keyRegistryDamaged(dir) {
			return nil, nil, fmt.Errorf("%w: the key registry does not open with this key", ErrKeyMismatch)
		}
	}
	record := func(off int) (*pb.DataKey, int, bool) {
		if off+8 > len(b) {
			return nil, 0, false
		}
		n := int(binary.BigEndian.Uint32(b[off:]))
		if n == 0 || n > 4096 || off+8+n > len(b) ||
			crc32.Checksum(b[off+8:off+8+n], y.CastagnoliCrcTable) != binary.BigEndian.Uint32(b[off+4:]) {
			return nil, 0, false
		}
		dk := &pb.DataKey{}
		if proto.Unmarshal(b[off+8:off+8+n], dk) != nil {
			return nil, 0, false
		}
		return dk, 8 + n, true
	}
	for off := header; off < len(b); {
		dk, n, ok := record(off)
		if !ok {
			next := -1
			for p := off + 1; p < len(b); p++ {
				if _, _, ok := record(p); ok {
					next = p
					break
				}
			}
			end := next
			if end < 0 {
				end = len(b)
			}
			spans = append(spans, DamagedSpan{File: badger.KeyRegistryFileName, Offset: int64(off), End: int64(end), What: "unreadable data keys"})
			if next < 0 {
				break
			}
			off = next
			continue
		}
		data, err := y.XORBlockAllocate(dk.Data, master, dk.Iv)
		if err != nil {
			spans = append(spans, DamagedSpan{File: badger.KeyRegistryFileName, Offset: int64(off), End: int64(off + n), What: "a data key does not decrypt"})
		} else {
			dk.Data = data
			keys[dk.KeyId] = dk
		}
		off += n
	}
	return keys, spans, nil
}

// tableSource iterates over the readable blocks of one table.
type tableSource struct {
	t      *table.Table
	it     *table.Iterator
	bases  [][]byte
	blk    int
	valid  bool
	name   string
	badBlk []int
}

var _ y.Iterator = (*tableSource)(nil)

// openTableSource opens a table for salvage: its footer and index are
// checked here first (badger's own reader exits the process on some
// malformed footers), then blocks are read one by one.
func openTableSource(path string, keys map[uint64]*pb.DataKey, icache *ristretto.Cache[uint64, *fb.TableIndex]) (ts *tableSource, err error) {
	name := filepath.Base(path)
	if err := checkTableFooter(path); err != nil {
		return nil, err
	}
	tryKeys := []*pb.DataKey{nil}
	if len(keys) > 0 {
		tryKeys = tryKeys[:0]
		for _, k := range keys {
			tryKeys = append(tryKeys, k)
		}
	}
	var lastErr error
	for _, dk := range tryKeys {
		ts, err := openTableWith(path, dk, icache)
		if err == nil {
			return ts, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("table %s: %w", name, lastErr)
}

func openTableWith(path string, dk *pb.DataKey, icache *ristretto.Cache[uint64, *fb.TableIndex]) (ts *tableSource, err error) {
	m, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			_ = m.Close(-1)
			ts, err = nil, fmt.Errorf("badger panicked reading it: %v", r)
		}
	}()
	topt := table.Options{ReadOnly: true, ChkMode: options.OnBlockRead, BlockSize: 4 << 10, Compression: options.None, DataKey: dk}
	if dk != nil {
		topt.IndexCache = icache // badger keeps an encrypted table's decrypted index there
	}
	t, err := table.OpenTable(m, topt)
	if err != nil {
		return nil, err
	}
	ts = &tableSource{t: t, it: t.NewIterator(table.NOCACHE), name: filepath.Base(path)}
	for _, k := range t.KeySplits(math.MaxInt32, nil) {
		ts.bases = append(ts.bases, []byte(k))
	}
	return ts, nil
}

// checkTableFooter checks the footer and the index checksum of a table.
func checkTableFooter(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	pos := len(b) - 4
	if pos < 0 {
		return errors.New("shorter than a footer")
	}
	cl := int(binary.BigEndian.Uint32(b[pos:]))
	if cl <= 0 || cl > pos-4 {
		return errors.New("footer does not decode")
	}
	pos -= cl
	var chk pb.Checksum
	if err := proto.Unmarshal(b[pos:pos+cl], &chk); err != nil || (chk.Algo != pb.Checksum_CRC32C && chk.Algo != pb.Checksum_XXHash64) {
		return errors.New("index checksum does not decode")
	}
	pos -= 4
	il := int(binary.BigEndian.Uint32(b[pos:]))
	if il <= 0 || il > pos {
		return errors.New("index length out of range")
	}
	if err := y.VerifyChecksum(b[pos-il:pos], &chk); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	return nil
}

func (s *tableSource) inBlock() bool {
	if !s.it.Valid() {
		return false
	}
	return s.blk+1 >= len(s.bases) || y.CompareKeys(s.it.Key(), s.bases[s.blk+1]) < 0
}

// settle moves to the first readable entry from block s.blk on.
func (s *tableSource) settle() {
	for ; s.blk < len(s.bases); s.blk++ {
		ok := func() (ok bool) {
			defer func() {
				if recover() != nil {
					ok = false
				}
			}()
			s.it.Seek(s.bases[s.blk])
			return s.inBlock()
		}()
		if ok {
			s.valid = true
			return
		}
		s.badBlk = append(s.badBlk, s.blk)
	}
	s.valid = false
}

func (s *tableSource) Rewind() { s.blk, s.badBlk = 0, nil; s.settle() }
func (s *tableSource) Next() {
	ok := func() (ok bool) {
		defer func() {
			if recover() != nil {
				ok = false
			}
		}()
		s.it.Next()
		return s.inBlock()
	}()
	if !ok {
		s.blk++
		s.settle()
	}
}
func (s *tableSource) Seek(key []byte) {
	i := sort.Search(len(s.bases), func(i int) bool { return y.CompareKeys(s.bases[i], key) > 0 })
	s.blk = max(i-1, 0)
	s.settle()
	for s.valid && y.CompareKeys(s.Key(), key) < 0 {
		s.Next()
	}
}
func (s *tableSource) Key() []byte          { return s.it.Key() }
func (s *tableSource) Value() y.ValueStruct { return s.it.Value() }
func (s *tableSource) Valid() bool          { return s.valid }

// Close unmaps the table. It never drops the table's last reference:
// badger deletes a table's file when that goes.
func (s *tableSource) Close() error {
	s.it.Close() // gives back the iterator's own reference
	return s.t.MmapFile.Close(-1)
}

// sliceSource iterates over entries sorted by key (with version).
type sliceSource struct {
	es []logEntry
	i  int
}

var _ y.Iterator = (*sliceSource)(nil)

func (s *sliceSource) Rewind() { s.i = 0 }
func (s *sliceSource) Next()   { s.i++ }
func (s *sliceSource) Seek(key []byte) {
	s.i = sort.Search(len(s.es), func(i int) bool { return y.CompareKeys(s.es[i].key, key) >= 0 })
}
func (s *sliceSource) Key() []byte { return s.es[s.i].key }
func (s *sliceSource) Value() y.ValueStruct {
	e := s.es[s.i]
	return y.ValueStruct{Meta: e.meta, UserMeta: e.userMeta, ExpiresAt: e.expiresAt, Value: e.value}
}
func (s *sliceSource) Valid() bool  { return s.i < len(s.es) }
func (s *sliceSource) Close() error { return nil }

// valueLogs reads values through their pointers.
type valueLogs struct {
	dir   string
	keys  map[uint64]*pb.DataKey
	files map[uint32]*logFile
}

func (v *valueLogs) read(ptr []byte, key []byte) ([]byte, error) {
	if len(ptr) < 12 {
		return nil, errors.New("value pointer too short")
	}
	// badger encodes its valuePointer{Fid, Len, Offset uint32} in memory
	// order (structs.go: Encode): little endian here.
	fid, n, off := binary.LittleEndian.Uint32(ptr), binary.LittleEndian.Uint32(ptr[4:]), binary.LittleEndian.Uint32(ptr[8:])
	lf, ok := v.files[fid]
	if !ok {
		var err error
		if lf, err = openLogFile(filepath.Join(v.dir, fmt.Sprintf("%06d.vlog", fid)), v.keys); err != nil {
			return nil, err
		}
		lf.window = 0 // values are read one by one, out of order
		v.files[fid] = lf
	}
	e, ok := lf.entryAt(int64(off))
	if !ok || e.size != int64(n) {
		return nil, fmt.Errorf("value log %06d.vlog at %d: no intact entry", fid, off)
	}
	if !bytes.Equal(y.ParseKey(e.key), y.ParseKey(key)) {
		return nil, fmt.Errorf("value log %06d.vlog at %d holds another key", fid, off)
	}
	return slices.Clone(e.value), nil
}

func (v *valueLogs) close() {
	for _, lf := range v.files {
		lf.close()
	}
}

// salvageTestHook, when set, fails salvages (tests of the fallback).
var salvageTestHook func() error

// salvageResult is what a salvage rebuilt and lost.
type salvageResult struct {
	keys     int              // keys rebuilt
	unknown  bool             // whole files did not read: what they held is not counted
	spans    []DamagedSpan    // unreadable bytes found
	lostKeys map[string]int64 // keys whose newest version could not be read, by kind
	moved    string           // where the damaged store went
}

// salvageStore rebuilds the store at o.Dir from what its files still hold
// (see the comment at the top), moves the damaged store into the
// quarantine folder and puts the rebuilt one in its place, with the
// journal.
func salvageStore(o Options, now time.Time) (res salvageResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("salvage panicked: %v\n%s", r, debug.Stack())
		}
	}()
	res.lostKeys = map[string]int64{}
	if salvageTestHook != nil {
		if err := salvageTestHook(); err != nil {
			return res, err
		}
	}
	unlock, _, err := lockDir(o.Dir)
	if err != nil {
		return res, err
	}
	if unlock != nil {
		defer unlock()
	}
	// The rebuilt store is written through badger's mmaps, where a full
	// disk is a SIGBUS: at most as big as the damaged one, plus what any
	// open store needs (space.go).
	if o.FreeBytes != nil && o.MinFreeBytes > 0 {
		need := dirBytes(o.Dir) + drainReserve(o.MemTableSize)
		if free := o.FreeBytes(o.Dir); free >= 0 && free < need {
			return res, fmt.Errorf("%w on %s: %s free, salvaging the store needs %s", ErrDiskLow, o.Dir, mib(free), mib(need))
		}
	}
	keys, spans, err := readDataKeys(o.Dir, o.EncryptionKey)
	if err != nil {
		return res, err
	}
	res.spans = append(res.spans, spans...)

	var iters []y.Iterator
	defer func() {
		for _, it := range iters {
			_ = it.Close()
		}
	}()
	var icache *ristretto.Cache[uint64, *fb.TableIndex]
	if len(keys) > 0 {
		if icache, err = newIndexCache(); err != nil {
			return res, err
		}
		defer icache.Close()
	}
	var tables []*tableSource
	ssts, _ := filepath.Glob(filepath.Join(o.Dir, "*.sst"))
	slices.Sort(ssts)
	for _, p := range ssts {
		ts, err := openTableSource(p, keys, icache)
		if err != nil {
			fi, _ := os.Stat(p)
			var size int64
			if fi != nil {
				size = fi.Size()
			}
			res.spans = append(res.spans, DamagedSpan{File: filepath.Base(p), End: size, What: "table unreadable: " + err.Error()})
			res.unknown = true
			continue
		}
		tables = append(tables, ts)
		iters = append(iters, ts)
	}
	mems, _ := filepath.Glob(filepath.Join(o.Dir, "*.mem"))
	slices.Sort(mems)
	for _, p := range mems {
		lf, err := openLogFile(p, keys)
		if err != nil {
			res.spans = append(res.spans, DamagedSpan{File: filepath.Base(p), What: "memtable log unreadable: " + err.Error()})
			res.unknown = true
			continue
		}
		var es []logEntry
		sc := lf.scan(func(e logEntry) {
			if e.meta&bMetaFinTxn != 0 {
				return
			}
			e.key, e.value = slices.Clone(e.key), slices.Clone(e.value)
			es = append(es, e)
		}, nil)
		res.spans = append(res.spans, sc.damaged...)
		lf.close()
		// Newest first among equal keys, as in a table.
		sort.SliceStable(es, func(i, j int) bool { return y.CompareKeys(es[i].key, es[j].key) < 0 })
		iters = append(iters, &sliceSource{es: es})
	}

	// The value logs: every value there is under its key and version, so
	// one whose pointer was in a lost block or log entry is found again
	// (an older version loses to a newer one wherever it is).
	vlogFiles, _ := filepath.Glob(filepath.Join(o.Dir, "*.vlog"))
	slices.Sort(vlogFiles)
	for _, p := range vlogFiles {
		var fid uint32
		if _, err := fmt.Sscanf(filepath.Base(p), "%06d.vlog", &fid); err != nil {
			continue
		}
		lf, err := openLogFile(p, keys)
		if err != nil {
			res.spans = append(res.spans, DamagedSpan{File: filepath.Base(p), What: "value log unreadable: " + err.Error()})
			res.unknown = true
			continue
		}
		var es []logEntry
		sc := lf.scan(func(e logEntry) {
			if e.meta&bMetaFinTxn != 0 || bytes.HasPrefix(y.ParseKey(e.key), badgerInternal) {
				return
			}
			ptr := make([]byte, 12)
			binary.LittleEndian.PutUint32(ptr, fid)
			binary.LittleEndian.PutUint32(ptr[4:], uint32(e.size))
			binary.LittleEndian.PutUint32(ptr[8:], uint32(e.off))
			es = append(es, logEntry{key: slices.Clone(e.key), meta: e.meta&^(bMetaTxn|bMetaFinTxn) | bMetaValuePointer,
				userMeta: e.userMeta, expiresAt: e.expiresAt, value: ptr})
		}, nil)
		res.spans = append(res.spans, sc.damaged...)
		if sc.tail != nil {
			res.spans = append(res.spans, *sc.tail)
		}
		lf.close()
		sort.SliceStable(es, func(i, j int) bool { return y.CompareKeys(es[i].key, es[j].key) < 0 })
		iters = append(iters, &sliceSource{es: es})
	}

	tmp := filepath.Clean(o.Dir) + salvageSuffix
	if err := os.RemoveAll(tmp); err != nil {
		return res, err
	}
	nopt := o
	nopt.Dir = tmp
	ndb, err := badger.Open(badgerOptions(nopt))
	if err != nil {
		return res, fmt.Errorf("open the rebuilt store: %w", err)
	}
	closed := false
	defer func() {
		if !closed {
			ndb.Close()
		}
	}()
	vlogs := &valueLogs{dir: o.Dir, keys: keys, files: map[uint32]*logFile{}}
	defer vlogs.close()
	wb := ndb.NewWriteBatch()
	defer func() { wb.Cancel() }()
	// Badger sizes a batch by keys and value pointers, not by the values
	// that go to its value log: a batch of chunks can hold hundreds of
	// megabytes before it commits. The salvage flushes every few MiB.
	var pending, written int
	nowUnix := uint64(now.Unix())
	if len(iters) > 0 {
		mi := table.NewMergeIterator(iters, false)
		iters = nil // the merge iterator closes them
		defer mi.Close()
		var prev []byte
		for mi.Rewind(); mi.Valid(); mi.Next() {
			user := y.ParseKey(mi.Key())
			if prev != nil && bytes.Equal(user, prev) {
				continue // an older version
			}
			prev = append(prev[:0], user...)
			vs := mi.Value()
			if bytes.HasPrefix(user, badgerInternal) || vs.Meta&bMetaDelete != 0 || (vs.ExpiresAt != 0 && vs.ExpiresAt <= nowUnix) {
				continue
			}
			val := vs.Value
			if vs.Meta&bMetaValuePointer != 0 {
				if val, err = vlogs.read(vs.Value, mi.Key()); err != nil {
					res.lostKeys[keyKind(user)]++
					if len(res.spans) < 4*maxReportSpans {
						res.spans = append(res.spans, DamagedSpan{File: "value log", What: err.Error()})
					}
					continue
				}
			}
			e := badger.NewEntry(slices.Clone(user), slices.Clone(val)).WithMeta(vs.UserMeta)
			e.ExpiresAt = vs.ExpiresAt
			if err := wb.SetEntry(e); err != nil {
				return res, fmt.Errorf("write the rebuilt store: %w", err)
			}
			if pending += len(user) + len(val); pending > 4<<20 {
				if err := wb.Flush(); err != nil {
					return res, fmt.Errorf("write the rebuilt store: %w", err)
				}
				wb, pending = ndb.NewWriteBatch(), 0
				if written += 4 << 20; written%(8<<20) == 0 {
					// Both stores are mapped (the old one's tables read,
					// the new one's logs written): without this their pages
					// stay resident (BENCHMARKS.md, session 12).
					releasePages(o.Dir)
					releasePages(tmp)
				}
			}
			res.keys++
		}
	}
	for _, ts := range tables {
		for _, b := range ts.badBlk {
			res.spans = append(res.spans, DamagedSpan{File: ts.name, What: fmt.Sprintf("block %d of %d unreadable (its keys are lost, or an older version of them was used)", b, len(ts.bases))})
		}
	}
	if err := wb.Flush(); err != nil {
		return res, fmt.Errorf("write the rebuilt store: %w", err)
	}
	closed = true
	if err := ndb.Close(); err != nil {
		return res, fmt.Errorf("close the rebuilt store: %w", err)
	}
	if err := syncStore(tmp); err != nil {
		return res, err
	}
	// The journal belongs with the store: copied, so that the damaged
	// store keeps its own until the swap below is durable.
	if err := copyDir(filepath.Join(o.Dir, journalDirName), filepath.Join(tmp, journalDirName)); err != nil {
		return res, fmt.Errorf("carry the journal over: %w", err)
	}
	if err := writeSynced(filepath.Join(tmp, salvageMarker), []byte(now.UTC().Format(time.RFC3339))); err != nil {
		return res, err
	}
	if err := vfs.Default.SyncDir(tmp); err != nil {
		return res, err
	}
	q, err := quarantine(o, errors.New("salvaged"), now)
	if err != nil {
		return res, err
	}
	res.moved = q.Path
	return res, finishSalvage(o.Dir)
}

// finishSalvage puts a complete rebuilt store in place: after
// salvageStore, or at the next Open when a crash came between moving the
// damaged store away and this.
func finishSalvage(dir string) error {
	tmp := filepath.Clean(dir) + salvageSuffix
	if _, err := os.Stat(filepath.Join(tmp, salvageMarker)); err != nil {
		// No rebuilt store, or an unfinished one: the damaged store is
		// still in place and will be salvaged again.
		if rerr := os.RemoveAll(tmp); rerr != nil {
			return rerr
		}
		return nil
	}
	if _, err := os.Stat(dir); err == nil {
		// The damaged store was not moved yet: this rebuild is redone.
		return os.RemoveAll(tmp)
	}
	if err := os.Remove(filepath.Join(tmp, salvageMarker)); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	return vfs.Default.SyncDir(filepath.Dir(filepath.Clean(dir)))
}

// keyKind names what a key holds, for counting losses.
func keyKind(k []byte) string {
	switch {
	case len(k) > 1 && k[0] == kindEntry && k[1] == '/':
		return "queue entries (chunks)"
	case len(k) > 1 && k[0] == kindDead && k[1] == '/':
		return "dead letters"
	case len(k) > 1 && k[0] == kindDedup && k[1] == '/':
		return "duplicate markers"
	case bytes.HasPrefix(k, []byte(kvPrefix)):
		return "decision records and scores"
	}
	return "other"
}

// copyDir copies the regular files of src into dst, synced.
func copyDir(src, dst string) error {
	ents, err := os.ReadDir(src)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || journal.IsSpare(e.Name()) {
			continue // a spare journal segment holds nothing yet
		}
		in, err := os.Open(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		out, err := os.OpenFile(filepath.Join(dst, e.Name()), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err == nil {
			_, err = io.Copy(out, in)
			if err == nil {
				err = out.Sync()
			}
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		in.Close()
		if err != nil {
			return err
		}
	}
	return vfs.Default.SyncDir(dst)
}
