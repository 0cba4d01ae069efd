package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/outpost-agent/outpost/journal"
	"github.com/outpost-agent/outpost/vfs"
)

// The journal's records (package journal) hold the writes of one group
// commit, encoded here: the journal itself does not look inside them.

const (
	journalDirName = "journal"

	mutSet byte = 1
	mutDel byte = 2
)

// applyRecord applies one record's writes to badger in one transaction.
func applyRecord(db *badger.DB, body []byte) error {
	txn := db.NewTransaction(true)
	defer txn.Discard()
	err := decodeMutations(body, func(kind byte, key, val []byte, expiresAt uint64) error {
		if kind == mutDel {
			return txn.Delete(key)
		}
		e := badger.NewEntry(key, val)
		e.ExpiresAt = expiresAt
		return txn.SetEntry(e)
	})
	if err != nil {
		return err
	}
	return txn.Commit()
}

// appendMutation encodes one write: kind, expiry (Unix seconds, 0 none),
// key and value, lengths as uvarints.
func appendMutation(b []byte, kind byte, key, val []byte, expiresAt uint64) []byte {
	b, _, _ = appendMutationAt(b, kind, key, val, expiresAt)
	return b
}

// appendMutationAt is appendMutation, and says where in the result the
// key and the value begin.
func appendMutationAt(b []byte, kind byte, key, val []byte, expiresAt uint64) (out []byte, keyAt, valAt int) {
	b = append(b, kind)
	b = binary.AppendUvarint(b, expiresAt)
	b = binary.AppendUvarint(b, uint64(len(key)))
	keyAt = len(b)
	b = append(b, key...)
	b = binary.AppendUvarint(b, uint64(len(val)))
	valAt = len(b)
	return append(b, val...), keyAt, valAt
}

func decodeMutations(b []byte, fn func(kind byte, key, val []byte, expiresAt uint64) error) error {
	for len(b) > 0 {
		kind, exp, key, val, n := decodeMutation(b)
		if n <= 0 {
			return fmt.Errorf("%w: a record does not decode", journal.ErrJournal)
		}
		if err := fn(kind, key, val, exp); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// decodeMutation decodes the write b starts with and its length, or 0.
func decodeMutation(b []byte) (kind byte, expiresAt uint64, key, val []byte, size int) {
	if len(b) == 0 || (b[0] != mutSet && b[0] != mutDel) {
		return 0, 0, nil, nil, 0
	}
	kind, off := b[0], 1
	exp, n := binary.Uvarint(b[off:])
	if n <= 0 {
		return 0, 0, nil, nil, 0
	}
	off += n
	var kv [2][]byte
	for i := range kv {
		l, n := binary.Uvarint(b[off:])
		if n <= 0 || l > uint64(len(b)-off-n) {
			return 0, 0, nil, nil, 0
		}
		kv[i] = b[off+n : off+n+int(l)]
		off += n + int(l)
	}
	return kind, exp, kv[0], kv[1], off
}

// syncStore makes badger's files durable: every file it writes through an
// mmap (value logs, memtable logs, MANIFEST, key registry, discard stats),
// then the directory. Tables are skipped: badger syncs each one when it
// writes it. A file deleted meanwhile is skipped too; what it held is in a
// table or was garbage.
func syncStore(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasSuffix(e.Name(), ".sst") || e.Name() == "LOCK" {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("sync %s: %w", e.Name(), err)
		}
	}
	return vfs.Default.SyncDir(dir)
}
