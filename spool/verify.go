package spool

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime/debug"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/fb"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2"
	"github.com/dgraph-io/ristretto/v2/z"
	"github.com/outpost-agent/outpost/vfs"
)

// removeEmptyLogs deletes zero-length memtable (.mem) and value log (.vlog)
// files, which badger refuses to open ("Create a new file") and which would
// otherwise get a healthy store quarantined.
//
// Badger creates both files when it opens a store (and when it rotates
// them) and sizes them with ftruncate, but syncs them only at their first
// write. A power cut in between can leave the names on disk without their
// size (ext4 may commit the directory entry in another fsync's journal
// transaction): empty files. An empty file holds nothing; no acknowledged
// write can be in it, because a commit syncs the value log, which makes
// its size durable, before it is acknowledged. Found by the power-cut test
// (chaos/powercut_test.go, a FUSE file system that drops unsynced writes).
func removeEmptyLogs(dir string) ([]string, error) {
	unlock, ok, err := lockDir(dir)
	if err != nil || !ok {
		return nil, err // ErrLocked, or no lock to be had: badger.Open decides
	}
	defer unlock()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read store directory: %w", err)
	}
	var removed []string
	for _, e := range ents {
		if ext := filepath.Ext(e.Name()); !e.Type().IsRegular() || (ext != ".mem" && ext != ".vlog") {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Size() != 0 {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return removed, fmt.Errorf("remove empty %s: %w", e.Name(), err)
		}
		removed = append(removed, e.Name())
	}
	if len(removed) > 0 {
		if err := vfs.Default.SyncDir(dir); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// verifyTables checks every table the MANIFEST refers to (index and block
// checksums) before badger opens the store.
//
// Badger opens tables in goroutines of its own: a damaged table makes it
// panic there, where no recover of ours can reach, and the process dies at
// every start (a crash loop instead of a quarantine). A table with a bad
// block that badger does open is worse: reads of it hand back wrong keys,
// lose entries or panic later in an iterator. Here the same parsing runs in
// the caller's goroutine, under recover, with every block's checksum
// verified, so a damaged table is an error and the store is quarantined.
//
// It costs one read of the LSM (keys and value pointers only: payloads are
// in the value log) at Open.
//
// Only what is certainly damage is reported. Anything badger decides better
// (no MANIFEST yet, a key registry that does not open because the key is
// wrong, a table file that is missing) returns nil and is left to
// badger.Open and its error.
func verifyTables(o Options) (tv tableVersions, err error) {
	unlock, ok, err := lockDir(o.Dir)
	if err != nil || !ok {
		return tv, err // ErrLocked, or no lock to be had: badger.Open decides
	}
	defer unlock()

	fp, err := os.Open(filepath.Join(o.Dir, badger.ManifestFilename))
	if err != nil {
		return tv, nil // a new store (or one badger will report on)
	}
	defer fp.Close()
	mf, err := replayManifest(fp, o)
	if err != nil {
		return tv, fmt.Errorf("read MANIFEST: %w", err)
	}
	tv.orphans = orphanVersion(o, mf)
	if len(mf.Tables) == 0 {
		return tv, nil
	}

	var reg *badger.KeyRegistry
	var icache *ristretto.Cache[uint64, *fb.TableIndex]
	for _, tm := range mf.Tables {
		if tm.KeyID == 0 {
			continue
		}
		if reg, err = badger.OpenKeyRegistry(badger.KeyRegistryOptions{
			Dir: o.Dir, ReadOnly: true, EncryptionKey: o.EncryptionKey,
		}); err != nil {
			return tv, nil // a wrong key (or a damaged registry): badger.Open says which
		}
		if icache, err = newIndexCache(); err != nil {
			return tv, fmt.Errorf("verify tables: %w", err)
		}
		defer icache.Close()
		break
	}

	for id, tm := range mf.Tables {
		topt := table.Options{
			ReadOnly:    true,
			ChkMode:     options.OnTableRead, // every block's checksum
			BlockSize:   badgerOptions(o).BlockSize,
			Compression: tm.Compression,
			IndexCache:  icache,
		}
		if tm.KeyID != 0 {
			if topt.DataKey, err = reg.DataKey(tm.KeyID); err != nil {
				return tv, nil // badger reports a missing data key itself
			}
		}
		v, err := verifyTable(table.NewFilename(id, o.Dir), topt)
		if err != nil {
			return tv, err
		}
		tv.tables = max(tv.tables, v)
	}
	return tv, nil
}

// tableVersions: the newest badger version in the tables the MANIFEST
// lists, and in the table files it does not list (orphans).
type tableVersions struct{ tables, orphans uint64 }

// orphanVersion is the newest version in the table files the MANIFEST
// does not list. A crash leaves such files legitimately (a compaction's
// output, a memtable's flush, both written before the MANIFEST records
// them), and badger deletes them at open; their writes are older than
// what the listed tables or the memtable logs hold. One with newer writes
// means the MANIFEST lost records (cut or overwritten): badger would
// delete tables that hold data (see inspectLogs). Encrypted tables are
// not looked at (their index needs their data key).
func orphanVersion(o Options, mf badger.Manifest) (v uint64) {
	files, _ := filepath.Glob(filepath.Join(o.Dir, "*.sst"))
	for _, f := range files {
		id, ok := table.ParseFileID(filepath.Base(f))
		if !ok {
			continue
		}
		if _, listed := mf.Tables[id]; listed {
			continue
		}
		if checkTableFooter(f) != nil {
			continue // unreadable: nothing to compare
		}
		func() {
			m, err := z.OpenMmapFile(f, os.O_RDONLY, 0)
			if err != nil {
				return
			}
			defer func() {
				_ = recover()
				_ = m.Close(-1)
			}()
			t, err := table.OpenTable(m, table.Options{ReadOnly: true, ChkMode: options.NoVerification,
				BlockSize: badgerOptions(o).BlockSize, Compression: options.None})
			if err == nil {
				v = max(v, t.MaxVersion())
			}
		}()
	}
	return v
}

// newIndexCache is the cache badger keeps an encrypted table's decrypted
// index in.
func newIndexCache() (*ristretto.Cache[uint64, *fb.TableIndex], error) {
	return ristretto.NewCache(&ristretto.Config[uint64, *fb.TableIndex]{
		NumCounters: 1000, MaxCost: 4 << 20, BufferItems: 64,
	})
}

func replayManifest(fp *os.File, o Options) (mf badger.Manifest, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("badger panicked while reading it: %v", r)
		}
	}()
	mf, _, err = badger.ReplayManifestFile(fp, 0, badgerOptions(o))
	return mf, err
}

// verifyTable opens one table the way badger does, verifying every block,
// in this goroutine and under recover.
func verifyTable(name string, topt table.Options) (maxVersion uint64, err error) {
	m, err := z.OpenMmapFile(name, os.O_RDONLY, 0)
	if err != nil {
		return 0, nil // missing: badger says "file does not exist for table"
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("damaged table %s: badger panicked while reading it: %v\n%s", filepath.Base(name), r, debug.Stack())
		}
		// OpenTable closes the file on some errors, not all; a second
		// close fails harmlessly.
		_ = m.Close(-1)
	}()
	if err := checkTableFooter(name); err != nil {
		return 0, fmt.Errorf("damaged table %s: %w", filepath.Base(name), err)
	}
	t, err := table.OpenTable(m, topt)
	if err != nil {
		return 0, fmt.Errorf("damaged table %s: %w", filepath.Base(name), err)
	}
	return t.MaxVersion(), nil
}

// keyRegistryDamaged tells a key registry that cannot be what badger wrote
// from one that is intact but locked with another key. Badger reports both
// as "Encryption key mismatch": its check is only whether the 12-byte
// sanity text after the 16-byte IV decrypts to "Hello Badger". A wrong key
// must never get a store quarantined, so only what is certainly damage
// counts:
//
//   - shorter than IV + sanity text;
//   - the sanity text is not plain text (so the store is encrypted) but no
//     data key follows (badger adds one as soon as an encrypted store
//     opens);
//   - the data keys that follow are not intact CRC-framed records.
//
// A bit flip inside the IV or the sanity text of an intact registry is
// indistinguishable from a wrong key and is reported as one.
func keyRegistryDamaged(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, badger.KeyRegistryFileName))
	if err != nil {
		return false
	}
	const header = 16 + 12
	if len(b) < header {
		return true
	}
	if bytes.Equal(b[16:header], []byte("Hello Badger")) {
		return false // a store without encryption, opened with a key
	}
	rest := b[header:]
	if len(rest) == 0 {
		return true
	}
	for len(rest) > 0 {
		if len(rest) < 8 {
			return true
		}
		n := uint64(binary.BigEndian.Uint32(rest[0:4]))
		if uint64(len(rest)-8) < n {
			return true
		}
		if crc32.Checksum(rest[8:8+n], crc32.MakeTable(crc32.Castagnoli)) != binary.BigEndian.Uint32(rest[4:8]) {
			return true
		}
		rest = rest[8+n:]
	}
	return false
}
