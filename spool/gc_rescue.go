package spool

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/y"
)

// Value-log GC and damage. Badger's GC rewrites a value log by reading it
// from its start and moving the values still live, then deletes the file.
// Its reader stops at the first entry whose checksum fails, as at a torn
// tail: the live values after damaged bytes are not moved, and go with
// the file. The spool learns which file was rewritten (badger says so in
// its log), and while the file is still on disk (gc.go holds the deletion
// back) reads it again itself, past the damage: every value after it that
// the store still points to is written again, through the committer (so
// the journal has it), before the file may go. The damaged values are lost
// either way; Lease finds them unreadable and sets them aside, reported.

// rewriteWatch is badger's logger: it keeps nothing but the id of the
// value log a GC rewrite is moving.
type rewriteWatch struct{ fid atomic.Int64 }

var _ badger.Logger = (*rewriteWatch)(nil)

func (w *rewriteWatch) Errorf(string, ...any)   {}
func (w *rewriteWatch) Warningf(string, ...any) {}
func (w *rewriteWatch) Debugf(string, ...any)   {}

// Infof catches badger's "Rewriting fid: %d" (value.go, rewrite).
func (w *rewriteWatch) Infof(format string, args ...any) {
	if !strings.HasPrefix(format, "Rewriting fid: ") || len(args) != 1 {
		return
	}
	if fid, ok := args[0].(uint32); ok {
		w.fid.Store(int64(fid))
	}
}

// rescued is one value written again: its key, the version that must
// still be the store's for the write to happen, and the value.
type rescued struct {
	key       []byte
	version   uint64
	value     []byte
	expiresAt uint64
}

// rescueAfterDamage reads the value log fid (rewritten by GC, not yet
// deleted) past any damage and writes again every value after the damage
// that the store still points to. It returns how many it wrote.
func (s *Spool) rescueAfterDamage(fid uint32) (int, error) {
	keys, _, err := readDataKeys(s.opts.Dir, s.opts.EncryptionKey)
	if err != nil {
		return 0, err
	}
	path := filepath.Join(s.opts.Dir, fmt.Sprintf("%06d.vlog", fid))
	lf, err := openLogFile(path, keys)
	if err != nil {
		return 0, err
	}
	defer lf.close()
	var after []rescued
	var damagedFrom int64 = -1
	sc := lf.scan(func(e logEntry) {
		if damagedFrom < 0 || e.off < damagedFrom || e.meta&bMetaFinTxn != 0 {
			return
		}
		after = append(after, rescued{key: bytes.Clone(y.ParseKey(e.key)), version: y.ParseTs(e.key),
			value: bytes.Clone(e.value), expiresAt: e.expiresAt})
	}, func(d DamagedSpan) {
		if damagedFrom < 0 {
			damagedFrom = d.Offset
		}
	})
	if len(sc.damaged) == 0 {
		return 0, nil
	}
	r := DamageReport{At: s.now().UTC(), Found: "value-log GC", Spans: sc.damaged,
		Message: fmt.Sprintf("value log %06d.vlog is damaged: badger's GC would have dropped the values after the damage with the file; they were checked and the live ones written again, and the damaged ones are set aside when read", fid)}
	if len(r.Spans) > maxReportSpans {
		r.Spans = r.Spans[:maxReportSpans]
	}
	if len(after) == 0 {
		s.noteDamage(r)
		logDamage(s.log, r)
		return 0, nil
	}
	// In commits of at most 256 values and 4 MiB (one commit has limits,
	// and a journal record holds the values).
	written := 0
	for len(after) > 0 {
		n, size := 0, 0
		for n < len(after) && n < 256 && (n == 0 || size+len(after[n].value) < 4<<20) {
			size += len(after[n].key) + len(after[n].value)
			n++
		}
		o := &op{kind: opRescue, rescue: after[:n]}
		if err := s.submit(s.ctx, o); err != nil {
			return written, fmt.Errorf("write again the values after damage in %06d.vlog: %w", fid, err)
		}
		written += o.n
		after = after[n:]
	}
	r.Message = fmt.Sprintf("value log %06d.vlog is damaged: badger's GC would have dropped the %d live values after the damage with the file; they were written again, and the damaged ones are set aside when read", fid, written)
	if err := s.submit(s.ctx, &op{kind: opRescue, report: &r}); err != nil {
		return written, fmt.Errorf("store the damage report: %w", err)
	}
	s.noteDamage(r)
	logDamage(s.log, r)
	return written, nil
}

// applyRescue writes again each value whose key still has the version
// read from the damaged log (anything newer, or a deletion, wins).
func (g *group) applyRescue(o *op) error {
	for _, r := range o.rescue {
		it, err := g.txn.Get(r.key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return werr("rescue: %w", err)
		}
		if it.Version() != r.version {
			continue
		}
		switch {
		case r.expiresAt == 0:
			err = g.set(r.key, r.value)
		case r.expiresAt > uint64(g.now.Unix()):
			err = g.setTTL(r.key, r.value, time.Until(time.Unix(int64(r.expiresAt), 0)))
		default:
			continue // expired meanwhile
		}
		if err != nil {
			return werr("rescue: %w", err)
		}
		o.n++
	}
	if o.report != nil {
		if err := g.setDamageReport(*o.report); err != nil {
			return werr("rescue: %w", err)
		}
	}
	return nil
}
