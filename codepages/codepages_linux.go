//go:build linux

package codepages

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func findRanges() ([]span, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the executable: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	spans, err := parseSmaps(f, exe)
	if err != nil {
		return nil, fmt.Errorf("read /proc/self/smaps: %w", err)
	}
	if len(spans) == 0 {
		return nil, errors.New("no read-only mapping of " + exe + " in /proc/self/smaps")
	}
	return spans, nil
}

// parseSmaps returns the mappings of the file exe that are read-only,
// private and hold no page of their own (Anonymous: 0).
func parseSmaps(r io.Reader, exe string) ([]span, error) {
	var (
		out  []span
		cur  span
		keep bool // cur is exe's, read-only and private: so far releasable
	)
	flush := func() {
		if keep {
			out = append(out, cur)
		}
		keep = false
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		// A mapping's header: "start-end perms offset dev inode [path]";
		// its attributes: "Name: value [kB]".
		addr, rest, ok := strings.Cut(line, " ")
		lo, hi, isRange := strings.Cut(addr, "-")
		if ok && isRange && !strings.HasSuffix(addr, ":") {
			flush()
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 != nil || err2 != nil || end <= start {
				continue
			}
			fields := strings.Fields(rest)
			if len(fields) < 5 {
				continue
			}
			perms := fields[0]
			// The path is everything after the inode (it may hold spaces);
			// a replaced executable reads "path (deleted)".
			_, path, _ := strings.Cut(rest, " "+fields[2]+" "+fields[3]+" ")
			path = strings.TrimSuffix(strings.TrimSpace(path), " (deleted)")
			cur = span{uintptr(start), uintptr(end)}
			keep = path == exe && len(perms) == 4 && perms[0] == 'r' && perms[1] == '-' && perms[3] == 'p'
			continue
		}
		if keep {
			if v, ok := strings.CutPrefix(line, "Anonymous:"); ok && strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")) != "0" {
				keep = false
			}
		}
	}
	flush()
	return out, sc.Err()
}

var errUnsupported = errors.New("madvise(MADV_DONTNEED) refused")

func release(spans []span) error {
	if err := advise(spans, unix.MADV_DONTNEED); err != nil {
		return fmt.Errorf("%w: %w", errUnsupported, err)
	}
	return nil
}

// advise applies madvise(advice) to every span, up to the first refusal.
func advise(spans []span, advice uintptr) error {
	for _, s := range spans {
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, s.start, s.end-s.start, advice); e != 0 {
			return e
		}
	}
	return nil
}
