package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/upstream/tongdun"
	"github.com/outpost-agent/outpost/upstream/tongdun/tdsim"
)

const tdPartnerKey = "chaos-td-partner-key"

// decisionLedger is the oracle's memory for decisions: what each id got.
type decisionLedger struct {
	mu       sync.Mutex
	account  map[string]string    // id -> account posted
	result   map[string]string    // 200: the result answered
	answered map[string]time.Time // 200: when the answer came
	queued   map[string]bool      // 200 with the TongDun check queued: must reach TongDun
	live     map[string]bool      // 200 answered with TongDun asked live
	refused  map[string]bool      // 4xx: must never reach TongDun
	unknown  map[string]bool      // anything else: either outcome is fine
	next     atomic.Int64
	requests atomic.Int64
	t        testing.TB
}

func newDecisionLedger(t testing.TB) *decisionLedger {
	return &decisionLedger{t: t, account: map[string]string{}, result: map[string]string{}, answered: map[string]time.Time{}, queued: map[string]bool{},
		live: map[string]bool{}, refused: map[string]bool{}, unknown: map[string]bool{}}
}

// queuedCount is how many decisions were answered with their TongDun
// check queued.
func (l *decisionLedger) queuedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queued)
}

// decisionJSON is a withdrawal check; invalid names a decision_event that
// TongDun does not have, which the agent must refuse.
func decisionJSON(id, account string, invalid bool) []byte {
	event := "withdraw"
	if invalid {
		event = "teleport"
	}
	return fmt.Appendf(nil, `{"id":%q,"session_id":"s-%s","decision_event":%q,"event_time":%q,"account_id":%q,`+
		`"terminal":{"ip":"210.20.10.33"},"event_detail":{%q:{}},"amount":%d}`,
		id, id, event, tongdun.FormatEventTime(time.Now()), account, event, 100+len(id))
}

type decisionAnswer struct {
	Result   string `json:"result"`
	Degraded bool   `json:"degraded"`
	Signals  map[string]struct {
		Source string `json:"source"`
		Queued bool   `json:"queued"`
	} `json:"signals"`
}

// post sends one fresh decision and books the answer.
func (l *decisionLedger) post(ctx context.Context, c *http.Client, a *agent, invalid bool) {
	k := l.next.Add(1)
	id := fmt.Sprintf("dec-%d", k)
	account := fmt.Sprintf("acct-%d", k%50)
	l.requests.Add(1)
	code, _, body, err := postJSON(ctx, c, a.URL("/v1/decisions"), decisionJSON(id, account, invalid))
	l.mu.Lock()
	defer l.mu.Unlock()
	l.account[id] = account
	var d decisionAnswer
	switch {
	case err != nil:
		l.unknown[id] = true
	case code == http.StatusOK && json.Unmarshal(body, &d) == nil:
		if invalid {
			l.t.Errorf("an invalid decision got 200: %s", body)
		}
		l.result[id] = d.Result
		l.answered[id] = time.Now()
		switch td := d.Signals["tongdun"]; {
		case td.Queued:
			l.queued[id] = true
		case td.Source == "live":
			l.live[id] = true
		default:
			l.unknown[id] = true // e.g. answered from the cache: nothing promised
		}
	case code >= 400 && code < 500:
		l.refused[id] = true
	default:
		l.unknown[id] = true
	}
}

// load posts decisions from workers goroutines until ctx ends; every 10th
// is invalid.
func (l *decisionLedger) load(ctx context.Context, a *agent, workers int) {
	runWorkers(ctx, workers, 10*time.Millisecond, func(c *http.Client, rng *rand.Rand) {
		l.post(ctx, c, a, rng.IntN(10) == 0)
	})
}

// 8. Decisions under kill -9 while TongDun flaps, with
// AGENT_DECISION_SYNC_WITHIN set: every decision that got
// 200 is still stored with the same result after the restarts, every
// TongDun check it queued reaches TongDun intact (duplicates allowed: the
// session id is the de-duplication key), nothing refused ever does, and
// a fresh decision is answered live once TongDun is back.
func TestDecisionChecksSurviveKill9(t *testing.T) {
	skipShort(t)
	t.Parallel() // see agent_test.go
	kills := 4
	if soak() {
		kills = 30
	}
	td, env := newTongDun(t)
	// Decisions answered before their sync (TongDun up: asked live, nothing
	// queued) must survive a kill too: the record is in the file when it is
	// answered. The default, synced before the answer, survives the harder
	// power cuts (TestDecisionsSurvivePowerCuts).
	env = append(env, "AGENT_DECISION_SYNC_WITHIN=50ms")
	l := newDecisionLedger(t)
	data := t.TempDir()
	restarts := 0
	wantQueued := 0
	for i := 0; i < kills; i++ {
		// TongDun is down in most cycles (the checks queue), up in some
		// (answered live, and the queue drains while the agent is killed).
		down := i%3 != 2
		td.SetFaults(tdsim.Faults{Outage: down})
		a := startAgent(t, data, env...)
		if i > 0 {
			restarts++
		}
		stop := runLoad(l.load, a, 4)
		time.Sleep(time.Duration(500+rand.IntN(1000)) * time.Millisecond)
		if down {
			// A busy machine may answer few decisions in the pause: the
			// cycle goes on until it has queued its share of checks.
			wantQueued += 35
			waitUntil(20*time.Second, func() bool { return l.queuedCount() >= wantQueued })
		}
		a.Kill9()
		stop()
	}
	td.SetFaults(tdsim.Faults{})
	faultsOver := time.Now()
	a := startAgent(t, data, env...)
	restarts++
	conserveDecisions(t, l, td, a, faultsOver, restarts, nil, fmt.Sprintf(" kills=%d", kills))
	if err := a.Sigterm(); err != nil {
		t.Errorf("clean stop: %v\n%s", err, a.Tail(20))
	}
}

// 9. Decisions through power cuts: the data directory on powerfs, the cut
// inside a commit's write (or at a random instant, one cycle in three),
// with TongDun down so that the checks queue. Every decision answered 200
// must still be stored with its answer, and every check it queued must
// reach TongDun, as after kill -9.
func TestDecisionsSurvivePowerCuts(t *testing.T) {
	decisionPowerCuts(t, 0)
}

// 9b. The same with AGENT_DECISION_SYNC_WITHIN: a decision that queues
// nothing (TongDun up, asked live: every other cycle) is answered before
// its record is synced. A cut may take such decisions, but only those
// answered within the bound before it (plus the margin of a loaded test
// machine); every decision that queued a check is synced before its
// answer and survives, and every check reaches TongDun.
func TestDecisionsSyncedWithinSurvivePowerCuts(t *testing.T) {
	decisionPowerCuts(t, 20*time.Millisecond)
}

// syncWithinMargin: how long after its bound a decision's sync may still
// be under way on this machine (FUSE, the race detector, two cores).
const syncWithinMargin = 200 * time.Millisecond

func decisionPowerCuts(t *testing.T, syncWithin time.Duration) {
	skipShort(t)
	if syncWithin == 0 {
		// With a bound, lost decisions are judged by their age at the
		// cut (syncWithinMargin), which a busy CPU could stretch: serial.
		t.Parallel() // see agent_test.go
	}
	cycles := 3
	if syncWithin > 0 {
		cycles = 4
	}
	if soak() {
		cycles = 20
	}
	fsys, backing, mnt, data := newPowerStore(t)
	td, env := newTongDun(t)
	if syncWithin > 0 {
		env = append(env, "AGENT_DECISION_SYNC_WITHIN="+syncWithin.String())
	}
	td.SetFaults(tdsim.Faults{Outage: true})
	l := newDecisionLedger(t)
	var dropped, storeDropped int64
	var cuts [][2]time.Time // each cut, and the end of its kill
	for i := 0; i < cycles; i++ {
		// TongDun up (answered live, nothing queued) in the odd cycles:
		// such a decision is answered before badger applies it, and with
		// SYNC_WITHIN before its sync too. Down in the even ones: the
		// checks queue, and are synced before their answer.
		td.SetFaults(tdsim.Faults{Outage: i%2 == 0})
		a := startAgent(t, data, env...)
		stop := runLoad(l.load, a, 4)
		time.Sleep(time.Duration(500+rand.IntN(1000)) * time.Millisecond)
		if i%3 != 2 {
			select {
			case <-fsys.ArmCut(commitFile):
			case <-time.After(5 * time.Second):
				t.Errorf("cycle %d: no commit wrote to the store within 5s under load", i)
			}
		}
		cut := time.Now()
		rep := fsys.CutThen(a.Kill9)
		stop()
		cuts = append(cuts, [2]time.Time{cut, time.Now()})
		dropped += rep.DroppedBytes
		for _, f := range rep.Lost {
			if storeFile(f.Name) {
				storeDropped += f.Bytes
			}
		}
		if err := fsys.Unmount(); err != nil {
			t.Fatalf("cycle %d: unmount after the cut: %v", i, err)
		}
		fsys = mountPowerFS(t, backing, mnt, false)
	}
	a := startAgent(t, data, env...)
	var rd struct {
		Quarantine *struct{ Path, Reason string } `json:"quarantine"`
	}
	if _, body, err := a.GetJSON("/readyz", &rd); err != nil || rd.Quarantine != nil {
		t.Errorf("FINDING: after the last cut the store was quarantined or not ready: %s %v", body, err)
	}
	td.SetFaults(tdsim.Faults{})
	// mayLose: a decision answered before its sync, within the bound of a cut.
	var mayLose func(id string) (time.Duration, bool)
	if syncWithin > 0 {
		mayLose = func(id string) (time.Duration, bool) {
			at := l.answered[id]
			if l.queued[id] {
				return 0, false // queued a check: synced before its answer
			}
			// Answered before the cut within the bound, or after it
			// (an answer that does not wait for the disk can still go
			// out between the cut and the kill).
			for _, c := range cuts {
				if age := c[0].Sub(at); age <= syncWithin+syncWithinMargin && !at.After(c[1]) {
					return age, true
				}
			}
			return 0, false
		}
	}
	conserveDecisions(t, l, td, a, time.Now(), cycles, mayLose,
		fmt.Sprintf(" cycles=%d sync_within=%s bytes_dropped_at_cut=%d of_them_store_files=%d", cycles, syncWithin, dropped, storeDropped))
	if storeDropped == 0 {
		t.Error("no cut dropped unsynced data of the store's files: the test did not simulate a power loss")
	}
	if err := a.Sigterm(); err != nil {
		t.Errorf("clean stop: %v\n%s", err, a.Tail(20))
	}
}

// conserveDecisions is the decisions' oracle, run once the faults are over
// and a is the agent running on the store: it waits (up to a minute) for
// every queued TongDun check to reach TongDun, checks what TongDun got,
// that nothing refused reached it, that every answered decision is stored
// with its answer, and that a fresh decision is answered live. It prints
// the summary and fails the test on any breach.
//
// mayLose, when set, says which answered decisions a power cut may have
// taken (AGENT_DECISION_SYNC_WITHIN) and how long before the cut each was
// answered: those missing are counted and their oldest age printed, not
// failed.
func conserveDecisions(t *testing.T, l *decisionLedger, td *tdsim.Server, a *agent, faultsOver time.Time, restarts int,
	mayLose func(id string) (time.Duration, bool), extra string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queued) < 100 || len(l.refused) == 0 {
		t.Fatalf("the load did not run: %d checks queued, %d refused", len(l.queued), len(l.refused))
	}
	var problems []string
	queued := make([]string, 0, len(l.queued))
	for id := range l.queued {
		queued = append(queued, id)
	}
	sort.Strings(queued)
	var lost []string
	waitUntil(60*time.Second, func() bool {
		lost = lost[:0]
		for _, id := range queued {
			if td.Count("s-"+id) == 0 {
				lost = append(lost, id)
			}
		}
		return len(lost) == 0
	})
	if len(lost) > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d queued TongDun checks never reached TongDun (first: %v)",
			len(lost), len(queued), head(lost, 5)))
	}
	leaked := 0
	for id := range l.refused {
		if td.Count("s-"+id) > 0 {
			leaked++
			problems = append(problems, "refused decision "+id+" reached TongDun")
		}
	}
	// What TongDun got is what the app asked, intact.
	damaged, duplicated := 0, 0
	seen := map[string]int{}
	for _, r := range td.Received() {
		id := strings.TrimPrefix(r.SessionID, "s-")
		seen[id]++
		if acct, ok := l.account[id]; !ok || r.AccountID != acct || r.DecisionEvent != "withdraw" ||
			r.Terminal == nil || r.Terminal.IP != "210.20.10.33" || r.Channel != "bank" {
			damaged++
			if damaged <= 5 {
				problems = append(problems, fmt.Sprintf("TongDun got %+v for %s (posted account %q)", r, id, acct))
			}
		}
	}
	for _, n := range seen {
		duplicated += n - 1
	}
	// Every answered decision is still stored, with the answer given.
	unstored, lostInBound := 0, 0
	var oldestLost time.Duration
	stored := map[string]int{} // account -> its decisions the store holds
	for id, want := range l.result {
		var got struct {
			ID     string `json:"decision_id"`
			Result string `json:"result"`
		}
		code, raw, err := a.GetJSON("/v1/decisions/"+id, &got)
		if code == http.StatusOK && got.ID == id {
			stored[l.account[id]]++
		}
		if code == http.StatusNotFound && mayLose != nil {
			if age, ok := mayLose(id); ok {
				lostInBound++
				oldestLost = max(oldestLost, age)
				continue
			}
		}
		// Its own record, not another decision's (the engine reuses its
		// encoding buffer once the store has a record).
		if err != nil || code != http.StatusOK || got.Result != want || got.ID != id {
			unstored++
			if unstored <= 5 {
				problems = append(problems, fmt.Sprintf("decision %s answered %q, stored: %d %s %v", id, want, code, raw, err))
			}
		}
	}
	// Velocity counters are exact: a decision's velocity event is in its
	// record's commit, kept or lost with it, so a fresh decision for an
	// account counts exactly that account's decisions the store holds
	// (answered ones, above, and those whose answer never came, which may
	// or may not have been stored).
	for id := range l.unknown {
		if _, answered := l.result[id]; answered {
			continue
		}
		var got struct {
			ID string `json:"decision_id"`
		}
		if code, _, err := a.GetJSON("/v1/decisions/"+id, &got); err == nil && code == http.StatusOK && got.ID == id {
			stored[l.account[id]]++
		}
	}
	accounts := map[string]bool{}
	for _, account := range l.account {
		accounts[account] = true
	}
	velocityChecked, velocityWrong := 0, 0
	for account := range accounts {
		id := "velocity-probe-" + account
		code, _, body, err := postJSON(context.Background(), http.DefaultClient, a.URL("/v1/decisions"), decisionJSON(id, account, false))
		var rec struct {
			Velocity map[string]int `json:"velocity"`
		}
		if err == nil && code == http.StatusOK {
			code, _, err = a.GetJSON("/v1/decisions/"+id, &rec)
		}
		if err != nil || code != http.StatusOK {
			problems = append(problems, fmt.Sprintf("velocity probe for %s: %d %s %v", account, code, body, err))
			continue
		}
		velocityChecked++
		if got := rec.Velocity["withdrawals_1h"]; got != stored[account] {
			velocityWrong++
			if velocityWrong <= 5 {
				problems = append(problems, fmt.Sprintf("velocity: %s's withdrawals_1h counted %d earlier decisions, the store holds %d", account, got, stored[account]))
			}
		}
	}
	// The agent is alive: a fresh decision is answered live.
	var probe time.Duration
	start := time.Now()
	if !waitUntil(15*time.Second, func() bool {
		n := len(l.live)
		l.mu.Unlock()
		l.post(context.Background(), http.DefaultClient, a, false)
		l.mu.Lock()
		return len(l.live) > n
	}) {
		problems = append(problems, "no decision answered live within 15 s of TongDun's return: the agent is wedged")
	} else {
		probe = time.Since(start)
	}
	s := fmt.Sprintf("chaos decisions: requests=%d answered=%d queued_checks=%d live=%d refused(4xx)=%d unknown=%d "+
		"checks_delivered=%d duplicated=%d lost=%d leaked=%d damaged=%d unstored=%d lost_within_sync_bound=%d oldest_lost=%s velocity_checked=%d velocity_wrong=%d restarts=%d recover=%s probe=%s%s",
		l.requests.Load(), len(l.result), len(l.queued), len(l.live), len(l.refused), len(l.unknown),
		len(queued)-len(lost), duplicated, len(lost), leaked, damaged, unstored, lostInBound, oldestLost.Round(time.Microsecond), velocityChecked, velocityWrong, restarts,
		time.Since(faultsOver).Round(time.Millisecond), probe.Round(time.Millisecond), extra)
	t.Log(s)
	fmt.Println(s)
	if len(problems) > 0 {
		t.Errorf("conservation broken:\n  %s\nagent log tail:\n%s", strings.Join(problems, "\n  "), a.Tail(20))
	}
}

// newTongDun starts a TongDun simulator and returns the agent environment
// that points at it (fast retries, a short decision budget, and no score
// cache, so that every check is a fresh question).
func newTongDun(t *testing.T) (*tdsim.Server, []string) {
	t.Helper()
	td := tdsim.New(tdsim.Options{PartnerCode: "bank", PartnerKey: tdPartnerKey, Channel: "bank"})
	tds := httptest.NewServer(td)
	t.Cleanup(tds.Close)
	return td, []string{
		"AGENT_TONGDUN_URL=" + tds.URL + "/riskService", "AGENT_TONGDUN_PARTNER_CODE=bank",
		"AGENT_TONGDUN_PARTNER_KEY=" + tdPartnerKey, "AGENT_TONGDUN_CHANNEL=bank",
		"AGENT_FORWARD_FLUSH_INTERVAL=50ms", "AGENT_FORWARD_BACKOFF_MAX=300ms", "AGENT_FORWARD_BREAKER_OPEN=200ms",
		"AGENT_FORWARD_PROBE_INTERVAL=300ms", "AGENT_DECISION_TIMEOUT=150ms",
		"AGENT_TONGDUN_CACHE_TTL=1ms", "AGENT_TONGDUN_CACHE_MAX_STALE=1ms",
	}
}
