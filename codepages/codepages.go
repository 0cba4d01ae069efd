// Package codepages keeps the executable's cold pages out of the
// process's resident set.
//
// A Go binary's code and read-only data (text, rodata, the pclntab) are
// mapped from the executable file, and every page touched once stays
// resident: start-up alone (package initialisation, flag and config
// parsing, the policy compiler) left 15 MiB of the agent's 26 MiB binary
// in its RSS, of which about 3 MiB is in use at idle and 8 MiB under load.
// Those pages are the kernel's page cache and it can take them back, but
// they count in the RSS that operators, container limits' reports and
// the 128 MB budget look at.
//
// A Releaser drops them from the process's page tables with
// madvise(MADV_DONTNEED) every interval: the pages stay in the page
// cache, and the next touch of one maps it back in without any I/O (a
// minor fault, which also maps its neighbours). Only mappings that hold
// the file's contents unchanged are released: read-only, private, and
// without a single page copied on write (smaps "Anonymous: 0"), so there
// is nothing that DONTNEED could lose. Go's default build has no such
// pages; a PIE build's relocated read-only data has, and is left alone.
// The executable's mappings do not change while it runs, so, unlike the
// store's (spool's trimLoop), they are found once.
package codepages

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultInterval is how often the pages are released when Config leaves
// it zero. Hot code is faulted back in after each release (a few hundred
// minor faults), so once a second costs nothing measurable, and pages
// touched once (a status page, a reload) leave within a second.
const DefaultInterval = time.Second

// Config configures a Releaser.
type Config struct {
	Interval time.Duration // 0: DefaultInterval
	Logger   *slog.Logger  // nil: slog.Default()
}

// Releaser releases the executable's pages in the background until
// Close.
type Releaser struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start finds the executable's releasable mappings, releases them, and
// goes on doing so every interval. Where that is not possible (not Linux,
// no /proc, an old kernel) it logs why once and does nothing more.
func Start(cfg Config) *Releaser {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Releaser{cancel: cancel}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.loop(ctx, cfg)
	}()
	return r
}

func (r *Releaser) loop(ctx context.Context, cfg Config) {
	ranges, err := findRanges()
	if err == nil {
		err = release(ranges)
	}
	if err != nil {
		cfg.Logger.Info("not releasing the executable's cold pages", "err", err)
		return
	}
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := release(ranges); err != nil {
			cfg.Logger.Info("not releasing the executable's cold pages", "err", err)
			return
		}
	}
}

// Close stops releasing and waits for the loop to end.
func (r *Releaser) Close() {
	r.cancel()
	r.wg.Wait()
}

// span is a mapping's address range, [start, end).
type span struct{ start, end uintptr }
