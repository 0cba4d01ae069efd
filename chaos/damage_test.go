package chaos

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/internal/agenttest"
	"github.com/outpost-agent/outpost/upstream/tencent/tencentsim"
)

// 6. Bytes flipped on disk. The real binary holds 3,000 acknowledged
// actions (30 requests of 100) with Tencent unreachable; it is stopped
// (kill -9 before a checkpoint, so the journal holds them; kill -9 after
// one, so badger's logs do; SIGTERM, so a table does), three bytes are
// inverted at one offset of one file, and it starts again against a
// working Tencent. Every action the damage does not touch must be
// delivered, intact; what it touches (one journal record or one stored
// value: one request's actions, or two where the bytes straddle them) may
// be lost, and must then be reported with its count in /v1/status.
//
// The default run takes a few offsets of each file; -soak takes one every
// 4 KiB. The spool's own sweep, spool/damage_test.go, takes half of every
// file's 4 KiB offsets in plain go test (the first and last of each file
// always, the rest drawn from a logged seed) and all of them with
// OUTPOST_SOAK=1.
func TestDamageLosesOnlyWhatItTouches(t *testing.T) {
	skipShort(t)
	t.Parallel() // see agent_test.go
	type target struct {
		name string
		stop string // "kill-early", "kill-after-checkpoint", "sigterm"
		glob string // the file damaged, under the data directory
	}
	targets := []target{
		{"journal", "kill-early", "spool/journal/*.jnl"},
		{"memtable-log", "kill-after-checkpoint", "spool/*.mem"},
		{"value-log", "kill-after-checkpoint", "spool/*.vlog"},
		{"table", "sigterm", "spool/*.sst"},
	}
	// One filled store per way of stopping, shared by the targets stopped
	// that way (memtable-log and value-log) and copied for every case. The
	// three are filled at once, and the targets run in parallel: each case
	// has its own copy, agent and simulator.
	var (
		mu     sync.Mutex
		stores = map[string]filledStore{}
		stops  []string
	)
	for _, tg := range targets {
		if !slices.Contains(stops, tg.stop) {
			stops = append(stops, tg.stop)
		}
	}
	dirs := map[string]string{}
	for _, stop := range stops {
		dirs[stop] = t.TempDir() // the test's, not the fill's: the cases copy it
	}
	t.Run("fill", func(t *testing.T) {
		for _, stop := range stops {
			dir := dirs[stop]
			t.Run(stop, func(t *testing.T) {
				t.Parallel()
				f := fillStore(t, dir, stop)
				mu.Lock()
				stores[stop] = f
				mu.Unlock()
			})
		}
	})
	if t.Failed() {
		return
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			f := stores[tg.stop]
			pristine, base := f.dir, f.base
			files, _ := filepath.Glob(filepath.Join(pristine, tg.glob))
			if len(files) == 0 {
				all, _ := filepath.Glob(filepath.Join(pristine, "spool", "*"))
				t.Fatalf("no %s to damage (files: %v)", tg.glob, all)
			}
			sort.Strings(files)
			victim, err := filepath.Rel(pristine, files[len(files)-1])
			if err != nil {
				t.Fatal(err)
			}
			used := usedLen(t, files[len(files)-1])
			// The cases of a target run in turn, the targets in parallel: a
			// parallel subtest's T (and the agent and simulator its cleanups
			// hold) lives until its parent ends, which under -soak (hundreds
			// of cases a target) kept gigabytes.
			for _, off := range damageOffsets(used) {
				t.Run(fmt.Sprint(off), func(t *testing.T) {
					damageCase(t, base, pristine, victim, off)
				})
			}
		})
	}
}

// fillStore has the real binary acknowledge 3,000 actions into dir with
// Tencent unreachable, then stops it the way stop says.
func fillStore(t *testing.T, dir, stop string) filledStore {
	tc := newTencent(t)
	tc.sim.SetFaults(tencentsim.Faults{Outage: true})
	f := filledStore{dir: dir, base: newLedger("dmg-" + stop)}
	a := startAgent(t, f.dir, tc.env...)
	f.base.postAcked(t, a, 3000)
	switch stop {
	case "kill-early":
		a.Kill9()
	case "kill-after-checkpoint":
		// A checkpoint (one every 5 s) after the last post, covering
		// everything: the journal is free, badger's logs hold it all.
		c0 := metricValue(t, a, "outpost_spool_checkpoints_total")
		if c0 < 0 {
			t.Fatalf("no outpost_spool_checkpoints_total on /metrics")
		}
		if !waitUntil(30*time.Second, func() bool {
			return metricValue(t, a, "outpost_spool_checkpoints_total") > c0 &&
				metricValue(t, a, "outpost_spool_journal_pending_records") == 0
		}) {
			t.Fatalf("no checkpoint covering the posts within 30 s\n%s", a.Tail(20))
		}
		a.Kill9()
	case "sigterm":
		if err := a.Sigterm(); err != nil {
			t.Fatalf("stop: %v", err)
		}
	default:
		t.Fatalf("unknown way to stop: %q", stop)
	}
	return f
}

// filledStore is a data directory an agent filled and stopped, and the
// ledger of what it acknowledged.
type filledStore struct {
	dir  string
	base *ledger
}

// metricValue is the value of an unlabelled metric on the agent's
// /metrics, or -1 when it cannot be read.
func metricValue(t *testing.T, a *agent, name string) float64 {
	t.Helper()
	_, body, err := a.GetJSON("/metrics", nil)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}

// damageOffsets: every 4 KiB with -soak, a handful spread over the file
// otherwise, and the file's last bytes: in the journal, the last record,
// which nothing follows (its end tells its damage from a write a crash
// cut, journal's read.go), hit in its body.
func damageOffsets(used int64) []int64 {
	var out []int64
	if soak() {
		for off := int64(4096); off < used-4096; off += 4096 {
			out = append(out, off)
		}
		return append(out, used-4096, used-1000, used-100, used-20)
	}
	for _, f := range []float64{0.2, 0.5, 0.8} {
		off := int64(float64(used) * f)
		if off > 64 && off < used-4096 {
			out = append(out, off)
		}
	}
	if used > 8192 {
		out = append(out, used-1000)
	}
	if len(out) == 0 && used > 128 {
		out = append(out, used/2)
	}
	return out
}

func damageCase(t *testing.T, base *ledger, pristine, victim string, off int64) {
	data := t.TempDir()
	copyTree(t, pristine, data)
	flipAt(t, filepath.Join(data, victim), off, 3)

	l := cloneLedger(base, base.name)
	tc := newTencent(t)
	start := time.Now()
	a, err := tryStartAgent(t, data, 30*time.Second, tc.envUnpaced()...)
	if err != nil {
		t.Fatalf("FINDING: the agent does not start after 3 bytes of %s were inverted at %d: %v", victim, off, err)
	}
	l.restarts++
	s := check(t, l, tc, a, start, 60*time.Second, fmt.Sprintf(" damage=3@%d file=%s", off, victim), true)
	st, err := agentStatus(a)
	if err != nil {
		t.Fatal(err)
	}
	var (
		reported int64
		unknown  bool
	)
	for _, r := range st.Store.Damage {
		for _, n := range r.EntriesLost {
			reported += n
		}
		unknown = unknown || r.CountUnknown
		t.Logf("report: %s", r.Message)
	}
	switch {
	case s.lost > 200:
		t.Errorf("FINDING: 3 bytes at %d of %s lost %d of %d actions: more than the record or value they are in", off, victim, s.lost, s.acked)
	case s.lost > 0 && unknown && strings.HasPrefix(victim, "spool/journal"):
		// A lost journal record that could not be read to count what it
		// held: reported as uncounted, loud, and checked by the lines
		// below. (Other files' uncounted losses are still findings.)
		t.Logf("%d actions lost, reported with count_unknown", s.lost)
	case s.lost > 0 && int64(s.lost) > reported:
		t.Errorf("FINDING: %d actions lost, %d reported in /v1/status: loss not (fully) reported", s.lost, reported)
	case s.lost > 0 && strings.HasPrefix(victim, "spool/journal") && int64(s.lost) != reported:
		t.Errorf("journal damage: %d actions lost, %d reported; the count must be exact", s.lost, reported)
	}
	if s.lost > 0 && !strings.Contains(a.Logs.String(), "STORE DAMAGE") {
		t.Errorf("%d actions lost and no STORE DAMAGE line in the log", s.lost)
	}
	if a.Exited() {
		t.Errorf("the agent died: %v\n%s", a.Err(), a.Tail(20))
	}
	if err := a.Sigterm(); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// cloneLedger is a ledger named name that knows what base posted and got
// acknowledged, for an agent started on a copy of base's store; its fresh
// ids do not meet base's.
func cloneLedger(base *ledger, name string) *ledger {
	l := newLedger(name)
	base.mu.Lock()
	l.want, l.acked = maps.Clone(base.want), maps.Clone(base.acked)
	base.mu.Unlock()
	l.next.Store(base.next.Load() + 1_000_000)
	return l
}

// usedLen is the length of path up to its last byte that is not zero.
func usedLen(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != 0 {
			return int64(i + 1)
		}
	}
	return 0
}

// flipAt inverts n bytes of path at off (fewer at its end), syncs, and
// says how many.
func flipAt(t *testing.T, path string, off int64, n int) int {
	t.Helper()
	m, err := agenttest.InvertBytes(path, off, n)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// copyTree copies the regular files under src into dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		if !fi.Mode().IsRegular() || fi.Name() == "LOCK" {
			return nil
		}
		return agenttest.CopyFile(p, to)
	})
	if err != nil {
		t.Fatal(err)
	}
}
