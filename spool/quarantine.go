package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/outpost-agent/outpost/vfs"
)

// quarantine moves a store that would not open out of the way, into a
// dated folder, so the agent can start empty instead of crash-looping. The
// files are kept for an operator (or a recovery tool) to look at.
func quarantine(o Options, cause error, now time.Time) (*QuarantineInfo, error) {
	qdir := o.QuarantineDir
	if qdir == "" {
		qdir = filepath.Join(filepath.Dir(filepath.Clean(o.Dir)), "quarantine")
	}
	if err := os.MkdirAll(qdir, 0o700); err != nil {
		return nil, fmt.Errorf("create quarantine folder: %w", err)
	}
	dst := filepath.Join(qdir, filepath.Base(filepath.Clean(o.Dir))+"-"+now.UTC().Format("20060102T150405Z"))
	for i := 1; ; i++ {
		if _, err := os.Stat(dst); os.IsNotExist(err) {
			break
		}
		dst = fmt.Sprintf("%s-%d", dst, i)
	}
	if err := os.Rename(o.Dir, dst); err != nil {
		return nil, fmt.Errorf("move store to quarantine: %w", err)
	}
	// Make the move durable before a new store is created in its place.
	for _, d := range []string{qdir, filepath.Dir(filepath.Clean(o.Dir))} {
		if err := vfs.Default.SyncDir(d); err != nil {
			return nil, fmt.Errorf("quarantine: %w", err)
		}
	}
	reason := cause.Error()
	if len(reason) > 512 {
		reason = reason[:512]
	}
	return &QuarantineInfo{Path: dst, Reason: reason, At: now.UTC()}, nil
}
