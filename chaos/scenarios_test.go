package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/upstream/tencent/tencentsim"
)

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: builds, kills and damages the real binary")
	}
}

// runLoad starts load (a ledger's load method) against a and returns a
// function that stops it and waits for the workers.
func runLoad(load func(context.Context, *agent, int), a *agent, workers int) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { load(ctx, a, workers); close(done) }()
	return func() { cancel(); <-done }
}

// 1. kill -9 at random instants under steady load, many times in a row.
func TestKill9AtRandomInstants(t *testing.T) {
	skipShort(t)
	kills := 5
	if soak() {
		kills = 50
	}
	tc := newTencent(t)
	l := newLedger("kill9")
	data := t.TempDir()
	for i := 0; i < kills; i++ {
		a := startAgent(t, data, tc.env...)
		if i > 0 {
			l.restarts++
		}
		stop := runLoad(l.load, a, 4)
		time.Sleep(time.Duration(300+rand.IntN(900)) * time.Millisecond)
		a.kill9() // requests and forwarding are in flight right now
		stop()
	}
	a := startAgent(t, data, tc.env...)
	l.restarts++
	if len(l.acked) < 500 || len(l.refused) == 0 {
		t.Fatalf("the load did not run: %d acknowledged, %d refused", len(l.acked), len(l.refused))
	}
	conserve(t, l, tc, a, time.Now(), 60*time.Second, fmt.Sprintf(" kills=%d", kills))
	if err := a.sigterm(); err != nil {
		t.Errorf("clean stop: %v\n%s", err, a.tail(20))
	}
}

// 2. The upstream flaps (outage, 503, latency, throttling with
// Retry-After, truncated answers) every ~300 ms while the app posts and the
// agent is killed and restarted.
func TestUpstreamFlappingWithKills(t *testing.T) {
	skipShort(t)
	kills := 4
	if soak() {
		kills = 40
	}
	tc := newTencent(t)
	l := newLedger("flap")
	data := t.TempDir()

	cycle := []tencentsim.Faults{
		{Outage: true},
		{HTTPStatus: http.StatusServiceUnavailable, RetryAfter: time.Second},
		{Latency: 300 * time.Millisecond},
		{Throttle: true, RetryAfter: time.Second},
		{Truncate: true},
		{},
	}
	flapCtx, stopFlap := context.WithCancel(context.Background())
	var flapWG sync.WaitGroup
	names := []string{"outage", "http503", "latency300ms", "throttle", "truncate", "none"}
	var flips int
	perFault := map[string]int{} // simulator requests while each fault was on
	flapWG.Add(1)
	go func() {
		defer flapWG.Done()
		for i := 0; flapCtx.Err() == nil; i++ {
			tc.sim.SetFaults(cycle[i%len(cycle)])
			before := tc.sim.Requests()
			flips = i + 1
			select {
			case <-flapCtx.Done():
			case <-time.After(time.Duration(250+rand.IntN(100)) * time.Millisecond):
			}
			perFault[names[i%len(cycle)]] += tc.sim.Requests() - before
		}
	}()
	defer stopFlap()

	for i := 0; i < kills; i++ {
		a := startAgent(t, data, tc.env...)
		if i > 0 {
			l.restarts++
		}
		stop := runLoad(l.load, a, 3)
		time.Sleep(time.Duration(800+rand.IntN(1200)) * time.Millisecond)
		a.kill9()
		stop()
	}
	a := startAgent(t, data, tc.env...)
	l.restarts++
	stop := runLoad(l.load, a, 3)
	time.Sleep(time.Second)
	stop()
	stopFlap()
	flapWG.Wait()
	tc.sim.SetFaults(tencentsim.Faults{})
	faultsOver := time.Now()
	if len(l.acked) < 300 {
		t.Fatalf("the load did not run: %d acknowledged", len(l.acked))
	}
	st := tc.sim.Stats()
	conserve(t, l, tc, a, faultsOver, 60*time.Second,
		fmt.Sprintf(" kills=%d fault_changes=%d sim_requests_while_flapping=%d (by fault %v) accepted=%d", kills, flips, st.Requests, perFault, st.AcceptedRequests))
	if err := a.sigterm(); err != nil {
		t.Errorf("clean stop: %v\n%s", err, a.tail(20))
	}
}

// 3. SIGTERM under load: requests in flight finish, the agent exits 0, and
// nothing acknowledged is lost after a restart.
func TestSIGTERMUnderLoad(t *testing.T) {
	skipShort(t)
	rounds := 1
	if soak() {
		rounds = 10
	}
	tc := newTencent(t)
	tc.sim.SetFaults(tencentsim.Faults{Latency: 20 * time.Millisecond}) // batches in flight too
	l := newLedger("sigterm")
	data := t.TempDir()
	var afterTerm, shuttingDown int64
	var stopTimes []time.Duration
	for r := 0; r < rounds; r++ {
		a := startAgent(t, data, tc.env...)
		if r > 0 {
			l.restarts++
		}
		stop := runLoad(l.load, a, 16)
		time.Sleep(time.Duration(800+rand.IntN(700)) * time.Millisecond)
		errsBefore := l.connErrs.Load()
		l.mu.Lock()
		sdBefore := l.codes[http.StatusServiceUnavailable]
		l.mu.Unlock()
		at := time.Now()
		err := a.sigterm()
		stopTimes = append(stopTimes, time.Since(at))
		stop()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			t.Errorf("round %d: exit after SIGTERM: %v (want 0)\n%s", r, err, a.tail(20))
		default:
			t.Errorf("round %d: %v\n%s", r, err, a.tail(20))
		}
		// Connection errors after SIGTERM: those requests got no answer,
		// so no 202; the oracle checks none of them was acknowledged
		// and lost (they are booked as unknown: delivered or not).
		afterTerm += l.connErrs.Load() - errsBefore
		l.mu.Lock()
		shuttingDown += int64(l.codes[http.StatusServiceUnavailable] - sdBefore)
		l.mu.Unlock()
	}
	a := startAgent(t, data, tc.env...)
	l.restarts++
	if len(l.acked) < 300 {
		t.Fatalf("the load did not run: %d acknowledged", len(l.acked))
	}
	tc.sim.SetFaults(tencentsim.Faults{})
	conserve(t, l, tc, a, time.Now(), 60*time.Second,
		fmt.Sprintf(" sigterms=%d conn_errors_after_sigterm=%d 503_after_sigterm=%d stop_took=%v", rounds, afterTerm, shuttingDown, stopTimes))
	if err := a.sigterm(); err != nil {
		t.Errorf("clean stop: %v", err)
	}
}

// 4. The data directory's filesystem fills up while Tencent is away.
func TestDataDirFilesystemFull(t *testing.T) {
	skipShort(t)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a 64 MiB tmpfs for the data directory (needs root or CAP_SYS_ADMIN): %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	// The filler stands for other tenants of the disk; removing it later
	// is space freeing up (badger does not shrink its files at once).
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 32<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(mnt, "data")
	tc := newTencent(t)
	tc.sim.SetFaults(tencentsim.Faults{Outage: true})
	// The spool cap is far away: the disk fills first. The agent keeps a
	// 16 MiB reserve (AGENT_MIN_FREE_DISK) so badger never writes into an
	// mmap with no disk behind it.
	env := append([]string{"AGENT_SPOOL_MAX_BYTES=8GiB", "AGENT_MIN_FREE_DISK=16MiB"}, tc.env...)
	l := newLedger("diskfull")
	a := startAgent(t, data, env...)

	// Post until the API pushes back.
	client := &http.Client{Timeout: 10 * time.Second}
	var (
		mu       sync.Mutex
		first    *outcome
		pushback = map[string]int{}
	)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && !a.exited() {
				o := l.post(ctx, client, a, 200, false)
				if o.err == nil && o.code == http.StatusAccepted {
					continue
				}
				if ctx.Err() != nil {
					return
				}
				mu.Lock()
				key := fmt.Sprintf("%d Retry-After=%q %s", o.code, o.retryAfter, strings.TrimSpace(string(o.body)))
				if o.err != nil {
					key = "error: " + o.err.Error()
				}
				pushback[key]++
				if first == nil {
					first = &o
					// keep pushing for a moment: the refusal must hold
					go func() { time.Sleep(time.Second); cancel() }()
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	cancel()
	df, _ := exec.Command("df", "-h", mnt).CombinedOutput()
	t.Logf("after filling: acknowledged %d actions; pushback answers %v\n%s", len(l.acked), pushback, df)
	if first == nil {
		t.Fatalf("no pushback within 90 s after %d acknowledged actions", len(l.acked))
	}
	if a.exited() {
		// Go on: the rest of the acceptance (restart on the full disk,
		// nothing acknowledged lost once space is back) still applies.
		t.Errorf("FINDING: the agent died when its filesystem filled up: %v (acknowledged %d actions, first pushback %d %q %v)\n%s",
			a.err, len(l.acked), first.code, first.body, first.err, a.crash(24))
	} else {
		if first.err != nil || first.code != http.StatusServiceUnavailable || first.retryAfter == "" {
			t.Errorf("first pushback: %d Retry-After=%q %s %v; want 503 with Retry-After", first.code, first.retryAfter, first.body, first.err)
		}
		for k := range pushback {
			if !strings.HasPrefix(k, "503 ") {
				t.Errorf("pushback answer other than 503: %s", k)
			}
		}
		// Still serving, nothing damaged: status answers, readiness says
		// what it sees.
		if _, err := a.status(); err != nil {
			t.Errorf("/v1/status on a full disk: %v", err)
		}
		rc, rbody, _ := a.getJSON("/readyz", nil)
		t.Logf("/readyz on a full disk: %d %s", rc, strings.TrimSpace(rbody))
		stopErr := a.sigterm()
		t.Logf("SIGTERM on a full disk: exit %v", stopErr)
		if stopErr != nil {
			t.Errorf("SIGTERM on a full disk: %v (want exit 0)\n%s", stopErr, a.tail(15))
		}
	}
	// A restart on the still-full disk works.
	a2, err := tryStartAgent(t, data, 30*time.Second, env...)
	restartedFull := err == nil
	if err != nil {
		t.Errorf("FINDING: restart on the full disk failed: %.1500s", err)
	} else {
		a = a2
		l.restarts++
	}
	if restartedFull {
		var rd struct {
			Quarantine *struct{ Path, Reason string } `json:"quarantine"`
		}
		rc, rbody, _ := a.getJSON("/readyz", &rd)
		t.Logf("/readyz after restart on a full disk: %d %s", rc, strings.TrimSpace(rbody))
		if rd.Quarantine != nil {
			t.Errorf("FINDING: the store was quarantined after a restart on a full disk: %s", rd.Quarantine.Reason)
		}
	}

	// Space comes back and Tencent too.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	tc.sim.SetFaults(tencentsim.Faults{})
	faultsOver := time.Now()
	if !restartedFull {
		// Space is back: the agent must start now, store intact.
		a = startAgent(t, data, env...)
		l.restarts++
		var rd struct {
			Quarantine *struct{ Path, Reason string } `json:"quarantine"`
		}
		if _, _, err := a.getJSON("/readyz", &rd); err == nil && rd.Quarantine != nil {
			t.Errorf("FINDING: the store was quarantined after the disk filled: %s", rd.Quarantine.Reason)
		}
	}
	var accepting time.Duration
	if waitUntil(30*time.Second, func() bool {
		o := l.post(context.Background(), client, a, 1, false)
		return o.err == nil && o.code == http.StatusAccepted
	}) {
		accepting = time.Since(faultsOver)
	} else {
		t.Errorf("no action accepted within 30 s of space coming back")
	}
	conserve(t, l, tc, a, faultsOver, 90*time.Second, fmt.Sprintf(" first_pushback=%d/Retry-After:%s accepting_again_after=%s",
		first.code, first.retryAfter, accepting.Round(time.Millisecond)))
	if err := a.sigterm(); err != nil {
		t.Errorf("clean stop: %v", err)
	}
}

// 5. Store files damaged between runs: the agent must start (recovery or
// quarantine, not a crash loop), /readyz must be 200 and report the
// quarantine when there was one.
func TestDamagedStoreStarts(t *testing.T) {
	skipShort(t)
	cases := []struct {
		name   string
		glob   string
		pick   func([]string) string
		damage func(t *testing.T, path string) string
	}{
		{"vlog-truncated", "*.vlog", newest, func(t *testing.T, p string) string { return truncateHalf(t, p) }},
		{"sst-bitflip", "*.sst", largest, func(t *testing.T, p string) string { return flip(t, p, 0.5, 16) }},
		{"manifest-bitflip", "MANIFEST", newest, func(t *testing.T, p string) string { return flip(t, p, 0.6, 4) }},
		{"manifest-truncated", "MANIFEST", newest, func(t *testing.T, p string) string { return truncateHalf(t, p) }},
		{"vlog-bitflip", "*.vlog", newest, func(t *testing.T, p string) string { return flip(t, p, 0.5, 8) }},
	}
	n := 2000
	if soak() {
		n = 20000
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tc := newTencent(t)
			tc.sim.SetFaults(tencentsim.Faults{Outage: true}) // everything stays in the store
			l := newLedger("damage-" + c.name)
			data := t.TempDir()
			a := startAgent(t, data, tc.env...)
			client := &http.Client{Timeout: 10 * time.Second}
			for i := 0; i < n; i += 100 {
				if o := l.post(context.Background(), client, a, 100, false); o.code != http.StatusAccepted {
					t.Fatalf("post: %d %s %v", o.code, o.body, o.err)
				}
			}
			if err := a.sigterm(); err != nil {
				t.Fatalf("stop: %v", err)
			}
			files, _ := filepath.Glob(filepath.Join(data, "spool", c.glob))
			if len(files) == 0 {
				all, _ := filepath.Glob(filepath.Join(data, "spool", "*"))
				t.Skipf("no %s in the store to damage (files: %v)", c.glob, all)
			}
			victim := c.pick(files)
			what := c.damage(t, victim)
			t.Logf("damaged %s: %s", filepath.Base(victim), what)

			tc.sim.SetFaults(tencentsim.Faults{})
			start := time.Now()
			a, err := tryStartAgent(t, data, 30*time.Second, tc.env...)
			if err != nil {
				// One more try shows whether it is a crash loop.
				_, err2 := tryStartAgent(t, data, 30*time.Second, tc.env...)
				t.Fatalf("FINDING: the agent does not start after %s of %s (%s); second start: %v\nfirst start: %v",
					c.name, filepath.Base(victim), what, err2 != nil, err)
			}
			l.restarts++
			startup := time.Since(start)
			var rd struct {
				Status     string `json:"status"`
				Quarantine *struct {
					Path   string `json:"path"`
					Reason string `json:"reason"`
				} `json:"quarantine"`
			}
			code, body, err := a.getJSON("/readyz", &rd)
			if err != nil || code != http.StatusOK {
				t.Errorf("/readyz: %d %s %v", code, body, err)
			}
			moved, _ := filepath.Glob(filepath.Join(data, "quarantine", "*"))
			switch {
			case len(moved) > 0 && rd.Quarantine == nil:
				t.Errorf("store moved to %v but /readyz does not report a quarantine: %s", moved, body)
			case rd.Quarantine != nil && len(moved) == 0:
				t.Errorf("/readyz reports a quarantine at %s but nothing is in %s", rd.Quarantine.Path, filepath.Join(data, "quarantine"))
			}
			outcome := "recovered in place"
			if rd.Quarantine != nil {
				outcome = "quarantined: " + rd.Quarantine.Reason
			}
			// Damage may cost data; what is delivered must be intact, nothing
			// must be invented, and the agent must stay up and deliver.
			s := conserveAllowLoss(t, l, tc, a, start, fmt.Sprintf(" damage=%q file=%s startup=%s outcome=%q",
				what, filepath.Base(victim), startup.Round(time.Millisecond), outcome))
			if a.exited() {
				t.Errorf("FINDING: the agent died after starting on a store with %s: %v\n%s", c.name, a.err, a.tail(20))
			}
			if rd.Quarantine == nil && s.lost > 0 {
				t.Logf("NOTE: %d of %d acknowledged actions lost without a quarantine (damage absorbed in place)", s.lost, s.acked)
			}
		})
	}
}

// conserveAllowLoss is the oracle for a store damaged on purpose: losses
// are counted but allowed; damaged payloads, leaks and a wedged agent are
// not.
func conserveAllowLoss(t *testing.T, l *ledger, tc *tencent, a *agent, since time.Time, extra string) summary {
	t.Helper()
	return check(t, l, tc, a, since, 3*time.Second, extra, true)
}

func newest(files []string) string {
	sort.Strings(files) // badger numbers its files
	return files[len(files)-1]
}

func largest(files []string) string {
	best, size := files[0], int64(-1)
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && fi.Size() > size {
			best, size = f, fi.Size()
		}
	}
	return best
}

func truncateHalf(t *testing.T, p string) string {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("truncated from %d to %d bytes", fi.Size(), fi.Size()/2)
}

func flip(t *testing.T, p string, at float64, n int) string {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	off := int64(float64(fi.Size()) * at)
	if off+int64(n) > fi.Size() {
		off = max(0, fi.Size()-int64(n))
	}
	buf := make([]byte, n)
	m, _ := f.ReadAt(buf, off)
	for i := range buf[:m] {
		buf[i] ^= 0xFF
	}
	if _, err := f.WriteAt(buf[:m], off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d bytes inverted at offset %d of %d", m, off, fi.Size())
}
