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
	"syscall"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/internal/agenttest"
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
	t.Parallel() // see agent_test.go
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
		a.Kill9() // requests and forwarding are in flight right now
		stop()
	}
	a := startAgent(t, data, tc.env...)
	l.restarts++
	if len(l.acked) < 500 || len(l.refused) == 0 {
		t.Fatalf("the load did not run: %d acknowledged, %d refused", len(l.acked), len(l.refused))
	}
	conserve(t, l, tc, a, time.Now(), 60*time.Second, fmt.Sprintf(" kills=%d", kills))
	if err := a.Sigterm(); err != nil {
		t.Errorf("clean stop: %v\n%s", err, a.Tail(20))
	}
}

// 2. The upstream flaps (outage, 503, latency, throttling with
// Retry-After, truncated answers) every ~300 ms while the app posts and the
// agent is killed and restarted.
func TestUpstreamFlappingWithKills(t *testing.T) {
	skipShort(t)
	t.Parallel() // see agent_test.go
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
		a.Kill9()
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
	if err := a.Sigterm(); err != nil {
		t.Errorf("clean stop: %v\n%s", err, a.Tail(20))
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
		err := a.Sigterm()
		stopTimes = append(stopTimes, time.Since(at))
		stop()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			t.Errorf("round %d: exit after SIGTERM: %v (want 0)\n%s", r, err, a.Tail(20))
		default:
			t.Errorf("round %d: %v\n%s", r, err, a.Tail(20))
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
	if err := a.Sigterm(); err != nil {
		t.Errorf("clean stop: %v", err)
	}
}

// 4. The data directory's filesystem fills up while Tencent is away: intake
// pushes back (503 spool_full with Retry-After, decisions too) and /readyz
// says so. The disk fills further and the agent is restarted on it, below
// AGENT_MIN_FREE_DISK: it must come up drain-only, deliver its whole
// backlog once Tencent is back, still refuse new work (/readyz 503, the
// status saying why), and take new work by itself once space is freed.
func TestDataDirFilesystemFull(t *testing.T) {
	skipShort(t)
	t.Parallel() // see agent_test.go
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=320m", "tmpfs", mnt).CombinedOutput(); err != nil {
		agenttest.Unavailable(t, "cannot mount a 320 MiB tmpfs for the data directory (needs root or CAP_SYS_ADMIN): %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	// Fillers stand for other tenants of the disk; removing them later is
	// space freeing up. The agent gets about 36 MiB above its minimum (the
	// default AGENT_MIN_FREE_DISK, 128 MiB) to fill.
	fillTo(t, mnt, "filler", 164<<20)
	data := filepath.Join(mnt, "data")
	tc := newTencent(t)
	tc.sim.SetFaults(tencentsim.Faults{Outage: true})
	// The spool cap is far away: the disk fills first. GC every second
	// gives back the value log of what was delivered.
	env := tc.envUnpaced("AGENT_SPOOL_MAX_BYTES=8GiB", "AGENT_STORE_GC_INTERVAL=1s")
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
			for ctx.Err() == nil && !a.Exited() {
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
	if len(l.acked) < 1000 {
		t.Fatalf("only %d actions acknowledged before the disk filled: no backlog to deliver", len(l.acked))
	}
	if a.Exited() {
		t.Fatalf("the agent died when its filesystem filled up: %v (acknowledged %d actions)\n%s", a.Err(), len(l.acked), a.Crash(24))
	}
	if first.err != nil || first.code != http.StatusServiceUnavailable || first.retryAfter == "" || !strings.Contains(string(first.body), "spool_full") {
		t.Errorf("first pushback: %d Retry-After=%q %s %v; want 503 spool_full with Retry-After", first.code, first.retryAfter, first.body, first.err)
	}
	for k := range pushback {
		if !strings.HasPrefix(k, "503 ") {
			t.Errorf("pushback answer other than 503: %s", k)
		}
	}
	checkRefusing(t, a, "on a full disk")
	if err := a.Sigterm(); err != nil {
		t.Errorf("SIGTERM on a full disk: %v (want exit 0)\n%s", err, a.Tail(15))
	}

	// The disk fills further while the agent is down: below the minimum,
	// below half of it, above what opening and draining need.
	fillTo(t, mnt, "filler2", 48<<20)
	tc.sim.SetFaults(tencentsim.Faults{})
	faultsOver := time.Now()
	a, err := tryStartAgent(t, data, 30*time.Second, env...)
	if err != nil {
		t.Fatalf("restart on a full disk with %d acknowledged actions queued: %.1500s", len(l.acked), err)
	}
	l.restarts++
	if !strings.Contains(a.Logs.String(), "starting drain-only") {
		t.Errorf("the log does not say the agent started drain-only:\n%s", a.Tail(20))
	}
	checkRefusing(t, a, "after a restart on a full disk")
	if o := l.post(context.Background(), client, a, 10, false); o.code != http.StatusServiceUnavailable || !strings.Contains(string(o.body), "spool_full") {
		t.Errorf("post after a restart on a full disk: %d %s %v", o.code, o.body, o.err)
	}
	// The backlog goes out while the disk stays full.
	var undelivered []string
	if !waitUntil(90*time.Second, func() bool {
		undelivered = undelivered[:0]
		l.mu.Lock()
		for id := range l.acked {
			if !tc.delivered(id) {
				undelivered = append(undelivered, id)
			}
		}
		l.mu.Unlock()
		return len(undelivered) == 0
	}) {
		t.Fatalf("drain-only: %d of %d acknowledged actions not delivered after 90 s\n%s", len(undelivered), len(l.acked), a.Tail(20))
	}
	drained := time.Since(faultsOver)
	checkRefusing(t, a, "once drained, the disk still full")

	// Space comes back: intake resumes by itself.
	for _, f := range []string{"filler", "filler2"} {
		if err := os.Remove(filepath.Join(mnt, f)); err != nil {
			t.Fatal(err)
		}
	}
	spaceBack := time.Now()
	var accepting time.Duration
	if waitUntil(30*time.Second, func() bool {
		o := l.post(context.Background(), client, a, 1, false)
		return o.err == nil && o.code == http.StatusAccepted
	}) {
		accepting = time.Since(spaceBack)
	} else {
		t.Errorf("no action accepted within 30 s of space coming back")
	}
	if rc, body, _ := a.GetJSON("/readyz", nil); rc != http.StatusOK {
		t.Errorf("/readyz with space back: %d %s", rc, body)
	}
	var st intakeDoc
	if _, body, err := a.GetJSON("/v1/status", &st); err != nil || st.Store.Intake.State != "accepting" {
		t.Errorf("/v1/status with space back: %v %s", err, body)
	}
	if !strings.Contains(a.Logs.String(), "disk space is back") {
		t.Errorf("the log does not say space is back:\n%s", a.Tail(20))
	}
	conserve(t, l, tc, a, faultsOver, 90*time.Second, fmt.Sprintf(" first_pushback=%d/Retry-After:%s drained_on_full_disk_in=%s accepting_again_after=%s",
		first.code, first.retryAfter, drained.Round(time.Millisecond), accepting.Round(time.Millisecond)))
	if err := a.Sigterm(); err != nil {
		t.Errorf("clean stop: %v", err)
	}
}

// fillTo writes the file name on the file system at mnt until free bytes
// are left there.
func fillTo(t *testing.T, mnt, name string, free int64) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	if n := int64(st.Bavail)*st.Bsize - free; n > 0 {
		if err := os.WriteFile(filepath.Join(mnt, name), make([]byte, n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

type intakeDoc struct {
	Store struct {
		Intake struct {
			State, Reason, Message string
		} `json:"intake"`
	} `json:"store"`
}

// checkRefusing: a refusing agent says so, on /readyz (503, disk_low) and
// in /v1/status, and a decision gets 503 spool_full, as actions do.
func checkRefusing(t *testing.T, a *agent, when string) {
	t.Helper()
	var rd struct{ Status, Reason, Error string }
	if rc, body, _ := a.GetJSON("/readyz", &rd); rc != http.StatusServiceUnavailable || rd.Reason != "disk_low" {
		t.Errorf("/readyz %s: %d %s; want 503 disk_low", when, rc, strings.TrimSpace(body))
	}
	var st intakeDoc
	if _, body, err := a.GetJSON("/v1/status", &st); err != nil || st.Store.Intake.State != "refusing" ||
		!strings.Contains(st.Store.Intake.Message, "AGENT_MIN_FREE_DISK") {
		t.Errorf("/v1/status %s: %v %s; want store.intake refusing, saying why", when, err, body)
	}
	dec := []byte(`{"id":"full-disk-1","channel":"bank","session_id":"s-full","decision_event":"withdraw","event_time":"` +
		time.Now().Format("2006-01-02T15:04:05.000-07:00") + `","account_id":"acct-1","terminal":{"ip":"210.20.10.33"},"event_detail":{"withdraw":{}},"amount":100}`)
	code, h, body, err := postJSON(context.Background(), &http.Client{Timeout: 10 * time.Second}, a.URL("/v1/decisions"), dec)
	if err != nil || code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || !strings.Contains(string(body), `"spool_full"`) {
		t.Errorf("decision %s: %d %s %v; want 503 spool_full with Retry-After", when, code, body, err)
	}
}

// 5. Store files damaged between runs: the agent must start (recovery or
// quarantine, not a crash loop), /readyz must be 200 and report the
// quarantine when there was one.
func TestDamagedStoreStarts(t *testing.T) {
	skipShort(t)
	t.Parallel() // see agent_test.go
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
	// The store is filled once (with Tencent away, everything stays in
	// it) and stopped; every case damages its own copy.
	pristine := t.TempDir()
	base := newLedger("damage")
	{
		tc := newTencent(t)
		tc.sim.SetFaults(tencentsim.Faults{Outage: true})
		a := startAgent(t, pristine, tc.env...)
		base.postAcked(t, a, n)
		if err := a.Sigterm(); err != nil {
			t.Fatalf("stop: %v", err)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := t.TempDir()
			copyTree(t, pristine, data)
			l := cloneLedger(base, "damage-"+c.name)
			files, _ := filepath.Glob(filepath.Join(data, "spool", c.glob))
			if len(files) == 0 {
				all, _ := filepath.Glob(filepath.Join(data, "spool", "*"))
				t.Skipf("no %s in the store to damage (files: %v)", c.glob, all)
			}
			victim := c.pick(files)
			what := c.damage(t, victim)
			t.Logf("damaged %s: %s", filepath.Base(victim), what)

			tc := newTencent(t)
			env := tc.envUnpaced()
			start := time.Now()
			a, err := tryStartAgent(t, data, 30*time.Second, env...)
			if err != nil {
				// One more try shows whether it is a crash loop.
				_, err2 := tryStartAgent(t, data, 30*time.Second, env...)
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
			code, body, err := a.GetJSON("/readyz", &rd)
			if err != nil || code != http.StatusOK {
				t.Errorf("/readyz: %d %s %v", code, body, err)
			}
			moved, _ := filepath.Glob(filepath.Join(data, "quarantine", "*"))
			st, err := agentStatus(a)
			if err != nil {
				t.Fatal(err)
			}
			var reported int64
			salvagedTo := ""
			for _, r := range st.Store.Damage {
				for _, n := range r.EntriesLost {
					reported += n
				}
				if r.SetAside != "" {
					salvagedTo = r.SetAside
				}
			}
			switch {
			case len(moved) > 0 && rd.Quarantine == nil && salvagedTo == "":
				t.Errorf("store moved to %v but neither /readyz nor /v1/status reports why: %s", moved, body)
			case rd.Quarantine != nil && len(moved) == 0:
				t.Errorf("/readyz reports a quarantine at %s but nothing is in %s", rd.Quarantine.Path, filepath.Join(data, "quarantine"))
			case salvagedTo != "" && !strings.Contains(body, "damage found in the store"):
				t.Errorf("the store was salvaged (kept at %s) but /readyz does not warn: %s", salvagedTo, body)
			}
			outcome := "recovered in place"
			switch {
			case rd.Quarantine != nil:
				outcome = "quarantined: " + rd.Quarantine.Reason
			case salvagedTo != "":
				outcome = "salvaged, the damaged store kept at " + salvagedTo
			}
			// Damage may cost data; what is delivered must be intact, nothing
			// must be invented, and the agent must stay up and deliver.
			s := conserveAllowLoss(t, l, tc, a, start, fmt.Sprintf(" damage=%q file=%s startup=%s outcome=%q",
				what, filepath.Base(victim), startup.Round(time.Millisecond), outcome))
			if a.Exited() {
				t.Errorf("FINDING: the agent died after starting on a store with %s: %v\n%s", c.name, a.Err(), a.Tail(20))
			}
			// Whatever was lost was said: in /v1/status, with its count.
			if st, err := agentStatus(a); err == nil {
				reported = 0
				for _, r := range st.Store.Damage {
					for _, n := range r.EntriesLost {
						reported += n
					}
				}
			}
			if rd.Quarantine == nil && int64(s.lost) > reported {
				t.Errorf("FINDING: %d of %d acknowledged actions lost, %d reported: lost silently", s.lost, s.acked, reported)
			}
		})
	}
}

// conserveAllowLoss is the oracle for a store damaged on purpose: losses
// are counted but allowed; damaged payloads, leaks and a wedged agent are
// not.
func conserveAllowLoss(t *testing.T, l *ledger, tc *tencent, a *agent, since time.Time, extra string) summary {
	t.Helper()
	return check(t, l, tc, a, since, 60*time.Second, extra, true)
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
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(float64(fi.Size()) * at)
	if off+int64(n) > fi.Size() {
		off = max(0, fi.Size()-int64(n))
	}
	m := flipAt(t, p, off, n)
	return fmt.Sprintf("%d bytes inverted at offset %d of %d", m, off, fi.Size())
}
