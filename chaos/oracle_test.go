package chaos

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/action"
	"github.com/outpost-agent/outpost/upstream/tencent/tencentsim"
)

const simToken = "chaos-access-token-0123456789"

// expected is what the app posted for one action, as Tencent must get it.
type expected struct {
	hashPhone  string
	actionTime int64
}

// ledger is the oracle's memory: every action the scenario posted and what
// the agent answered for it. Ids are never reused, so each id has exactly
// one answer.
type ledger struct {
	name string

	mu       sync.Mutex
	want     map[string]expected
	acked    map[string]bool // 202
	refused  map[string]bool // 4xx: must never be delivered
	rejected map[string]bool // 503 "nothing was stored": must never be delivered
	unknown  map[string]bool // connection error, time-out, other: either outcome is fine
	codes    map[int]int     // HTTP status -> requests
	restarts int
	// invalidAcked holds the answers to invalid batches that got a 202.
	invalidAcked []string

	next     atomic.Int64
	requests atomic.Int64
	connErrs atomic.Int64
}

func newLedger(name string) *ledger {
	return &ledger{name: name, want: map[string]expected{}, acked: map[string]bool{}, refused: map[string]bool{},
		rejected: map[string]bool{}, unknown: map[string]bool{}, codes: map[int]int{}}
}

// newIDs reserves n fresh ids and remembers their payloads.
func (l *ledger) newIDs(n int, now time.Time) ([]string, []expected) {
	ids := make([]string, n)
	exp := make([]expected, n)
	for i := range ids {
		k := l.next.Add(1)
		ids[i] = fmt.Sprintf("%s-%d", l.name, k)
		phone := fmt.Sprintf("138%08d", k%100000000)
		sum := md5.Sum([]byte(phone))
		exp[i] = expected{hashPhone: hex.EncodeToString(sum[:]), actionTime: now.Unix() - k%600}
	}
	l.mu.Lock()
	for i, id := range ids {
		l.want[action.OuterActionID(id)] = exp[i] // as Tencent sees it
	}
	l.mu.Unlock()
	return ids, exp
}

func actionJSON(id string, e expected, extra string) string {
	return fmt.Sprintf(`{"id":%q,"track":"personal_loan","action_type":"WITHDRAW_DEPOSITS","action_time":%d,`+
		`"user_id":{"phone":"138%s"},"action_param":{"withdraw_deposits_level":1,"risk_overdue":1}%s}`,
		id, e.actionTime, phoneSuffix(id), extra)
}

// phoneSuffix is the 8 digits after 138 for an id (its number mod 10^8).
func phoneSuffix(id string) string {
	var k int64
	fmt.Sscanf(id[strings.LastIndexByte(id, '-')+1:], "%d", &k)
	return fmt.Sprintf("%08d", k%100000000)
}

// batch builds a request body; invalid adds an unknown field to one action,
// which the agent must refuse whole.
func batch(ids []string, exp []expected, invalid bool) []byte {
	parts := make([]string, len(ids))
	for i, id := range ids {
		extra := ""
		if invalid && i == len(ids)/2 {
			extra = `,"extra_field":1`
		}
		parts[i] = actionJSON(id, exp[i], extra)
	}
	return []byte(`{"actions":[` + strings.Join(parts, ",") + `]}`)
}

// outcome is what one POST /v1/actions got.
type outcome struct {
	ids        []string
	code       int
	retryAfter string
	body       []byte
	err        error
}

// post sends one batch of n fresh actions and books the answer.
// postAcked posts n actions to a in requests of 100 and fails the test
// unless every request is acknowledged: a fill, not a load.
func (l *ledger) postAcked(t *testing.T, a *agent, n int) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < n; i += 100 {
		if o := l.post(context.Background(), client, a, 100, false); o.code != http.StatusAccepted {
			t.Fatalf("post: %d %s %v", o.code, o.body, o.err)
		}
	}
}

func (l *ledger) post(ctx context.Context, c *http.Client, a *agent, n int, invalid bool) outcome {
	ids, exp := l.newIDs(n, time.Now())
	l.requests.Add(1)
	code, h, body, err := postJSON(ctx, c, a.URL("/v1/actions"), batch(ids, exp, invalid))
	o := outcome{ids: ids, code: code, body: body, err: err}
	if h != nil {
		o.retryAfter = h.Get("Retry-After")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var into map[string]bool
	switch {
	case err != nil:
		l.connErrs.Add(1)
		into = l.unknown
	case code == http.StatusAccepted:
		into = l.acked
		if invalid {
			// booked as acked: the oracle then fails on the leak, and
			// reports this too, which makes the cause plain.
			l.invalidAcked = append(l.invalidAcked, string(body))
		}
	case code >= 400 && code < 500:
		into = l.refused
	case code == http.StatusServiceUnavailable:
		into = l.rejected
	default:
		into = l.unknown
	}
	if err == nil {
		l.codes[code]++
	}
	for _, id := range ids {
		into[id] = true
	}
	return o
}

// load posts batches of 1-20 actions from workers goroutines until ctx
// ends; every 10th batch is invalid. It returns when all have stopped.
func (l *ledger) load(ctx context.Context, a *agent, workers int) {
	// Paced (about 500 actions/s a worker): steady load, and a backlog
	// that drains in seconds, not minutes.
	runWorkers(ctx, workers, 20*time.Millisecond, func(c *http.Client, rng *rand.Rand) {
		l.post(ctx, c, a, 1+rng.IntN(20), rng.IntN(10) == 0)
	})
}

// runWorkers calls do from n goroutines, each with its own random source,
// pausing pace between calls, until ctx ends; it returns when all have
// stopped. The workers share one keep-alive client.
func runWorkers(ctx context.Context, n int, pace time.Duration, do func(*http.Client, *rand.Rand)) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for ctx.Err() == nil {
				do(client, rng)
				time.Sleep(pace)
			}
		}(w)
	}
	wg.Wait()
}

// tencent is the simulator behind a tap that sees every request the agent
// sends, so the payload of every attempt (re-sends included) is checked,
// not only the first copy the simulator keeps.
type tencent struct {
	sim *tencentsim.Server
	url string
	env []string

	mu       sync.Mutex
	attempts map[string]int // outer_action_id -> times sent, whatever the answer
	sent     map[string][]json.RawMessage
}

func newTencent(t *testing.T) *tencent {
	t.Helper()
	tc := &tencent{
		sim:      tencentsim.New(tencentsim.Options{AccessToken: simToken, AccountID: 11, UserActionSetID: 22}),
		attempts: map[string]int{},
		sent:     map[string][]json.RawMessage{},
	}
	hs := httptest.NewServer(tc)
	t.Cleanup(hs.Close)
	tc.url = hs.URL
	tc.env = []string{
		"AGENT_TENCENT_URL=" + hs.URL, "AGENT_TENCENT_ACCOUNT_ID=11", "AGENT_TENCENT_USER_ACTION_SET_ID=22",
		"AGENT_TENCENT_ACCESS_TOKEN=" + simToken,
		"AGENT_FORWARD_FLUSH_INTERVAL=50ms", "AGENT_FORWARD_BACKOFF_MAX=300ms", "AGENT_FORWARD_BREAKER_OPEN=200ms",
		"AGENT_FORWARD_PROBE_INTERVAL=300ms",
	}
	return tc
}

// envUnpaced is the agent's environment for tc with Tencent's client-side
// request limit (4,000 a minute) lifted, and extra: where the limit would
// only pace a drain, the backlog goes out as fast as the agent sends.
func (tc *tencent) envUnpaced(extra ...string) []string {
	return slices.Concat(extra, tc.env, []string{"AGENT_TENCENT_REQUESTS_PER_MINUTE=1000000"})
}

func (tc *tencent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == tencentsim.Path && r.Method == http.MethodPost {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var req struct {
			Actions []json.RawMessage `json:"actions"`
		}
		if json.Unmarshal(body, &req) == nil {
			tc.mu.Lock()
			for _, raw := range req.Actions {
				var a struct {
					ID string `json:"outer_action_id"`
				}
				json.Unmarshal(raw, &a)
				tc.attempts[a.ID]++
				if len(tc.sent[a.ID]) < 4 {
					tc.sent[a.ID] = append(tc.sent[a.ID], append(json.RawMessage(nil), raw...))
				}
			}
			tc.mu.Unlock()
		}
	}
	tc.sim.ServeHTTP(w, r)
}

// delivered reports whether the action posted with id reached Tencent
// (under its outer_action_id).
func (tc *tencent) delivered(id string) bool {
	return tc.sim.DeliveryCount(action.OuterActionID(id)) > 0
}

// summary is what a scenario reports.
type summary struct {
	name                                              string
	requests, sent, acked, refused, rejected, unknown int
	delivered, duplicated, lost, leaked, damaged      int
	restarts                                          int
	recover                                           time.Duration // faults over -> backlog delivered and a fresh action delivered
	probe                                             time.Duration // a fresh action: posted -> delivered
	extra                                             string
}

func (s summary) String() string {
	return fmt.Sprintf("chaos %s: requests=%d events sent=%d acknowledged=%d refused(4xx)=%d rejected(503)=%d unknown=%d "+
		"delivered=%d duplicated=%d lost=%d leaked=%d damaged=%d restarts=%d recover=%s probe=%s%s",
		s.name, s.requests, s.sent, s.acked, s.refused, s.rejected, s.unknown, s.delivered, s.duplicated,
		s.lost, s.leaked, s.damaged, s.restarts, s.recover.Round(time.Millisecond), s.probe.Round(time.Millisecond), s.extra)
}

// conserve is the oracle. a is the agent running now, faultsOver when the
// last fault stopped. It waits (up to drain) for every acknowledged action
// to reach Tencent, checks the payload of every attempt Tencent saw, that
// nothing refused arrived, then posts a fresh action and requires it to be
// delivered within 10 s. It logs the summary, prints it as one line, and
// fails the test on any breach.
func conserve(t *testing.T, l *ledger, tc *tencent, a *agent, faultsOver time.Time, drain time.Duration, extra string) summary {
	t.Helper()
	return check(t, l, tc, a, faultsOver, drain, extra, false)
}

// check is conserve; allowLoss counts lost actions without failing (for a
// store damaged on purpose).
func check(t *testing.T, l *ledger, tc *tencent, a *agent, faultsOver time.Time, drain time.Duration, extra string, allowLoss bool) summary {
	t.Helper()
	l.mu.Lock()
	acked := make([]string, 0, len(l.acked))
	for id := range l.acked {
		acked = append(acked, id)
	}
	var problems []string
	for _, body := range l.invalidAcked {
		problems = append(problems, "an invalid batch got 202: "+body)
	}
	l.mu.Unlock()
	sort.Strings(acked)

	missing := func() []string {
		var m []string
		for _, id := range acked {
			if !tc.delivered(id) {
				m = append(m, id)
			}
		}
		return m
	}
	// With loss allowed, what is missing once the agent's queues are empty
	// (every entry delivered and acknowledged, or set aside as unreadable)
	// can no longer arrive: the wait ends there instead of running out
	// drain. The queues are read before the deliveries, so a delivery
	// racing with the read is seen.
	settled := func() bool { return false }
	if allowLoss {
		var polled time.Time
		settled = func() bool {
			if time.Since(polled) < 200*time.Millisecond {
				return false
			}
			polled = time.Now()
			st, err := agentStatus(a)
			if err != nil || len(st.Queues) == 0 {
				return false
			}
			for _, q := range st.Queues {
				if q.Depth > 0 || q.InFlight > 0 {
					return false
				}
			}
			return true
		}
	}
	var lostIDs []string
	if allowLoss {
		// Lost is what is missing once the queues are empty; a drain still
		// under way when drain runs out (a busy machine) has lost nothing
		// yet, so the wait is for the queues, within a wide bound.
		drain = max(drain, 60*time.Second)
	}
	// Without allowLoss the queues are not read (settled is false): the
	// wait ends when everything arrived or drain runs out.
	if !waitUntil(drain, func() bool { done := settled(); lostIDs = missing(); return len(lostIDs) == 0 || done }) {
		code, body, _ := a.GetJSON("/v1/status", nil)
		still := ""
		if allowLoss {
			still = ", the queues still not empty"
		}
		problems = append(problems, fmt.Sprintf("%d of %d acknowledged actions not delivered after %s%s (first: %v); status %d %s",
			len(lostIDs), len(acked), drain, still, head(lostIDs, 5), code, body))
	}

	// A fresh action, now that the faults are over: the agent is alive.
	probeID := ""
	var probe time.Duration
	{
		client := &http.Client{Timeout: 10 * time.Second}
		start := time.Now()
		o := l.post(context.Background(), client, a, 1, false)
		probeID = o.ids[0]
		if o.err != nil || o.code != http.StatusAccepted {
			problems = append(problems, fmt.Sprintf("fresh action after recovery: %d %s %v", o.code, o.body, o.err))
		} else if !waitUntil(10*time.Second, func() bool { return tc.delivered(probeID) }) {
			problems = append(problems, "fresh action "+probeID+" not delivered within 10s of its 202: the agent is wedged")
		} else {
			probe = time.Since(start)
		}
	}
	recover := time.Since(faultsOver)

	l.mu.Lock()
	defer l.mu.Unlock()
	s := summary{name: l.name, requests: int(l.requests.Load()), sent: len(l.want), acked: len(l.acked), refused: len(l.refused),
		rejected: len(l.rejected), unknown: len(l.unknown), restarts: l.restarts, recover: recover, probe: probe, extra: extra}
	s.lost = len(lostIDs)
	if l.acked[probeID] && !tc.delivered(probeID) {
		s.lost++
	}
	for id, bad := range map[string]map[string]bool{"refused": l.refused, "rejected": l.rejected} {
		for rid := range bad {
			if tc.delivered(rid) || tc.attemptCount(rid) > 0 {
				s.leaked++
				if s.leaked <= 5 {
					problems = append(problems, fmt.Sprintf("%s action %s was sent to Tencent", id, rid))
				}
			}
		}
	}
	// Every copy the simulator accepted, and every attempt the tap saw,
	// must be an action the app posted, intact.
	for _, d := range tc.sim.Delivered() {
		s.delivered++
		if n := tc.sim.DeliveryCount(d.OuterActionID); n > 1 {
			s.duplicated += n - 1
		}
		if msg := l.checkPayload(d); msg != "" {
			s.damaged++
			if s.damaged <= 5 {
				problems = append(problems, "delivered: "+msg)
			}
		}
	}
	tc.mu.Lock()
	for id, raws := range tc.sent {
		for _, raw := range raws {
			var d tencentsim.Action
			if err := json.Unmarshal(raw, &d); err != nil {
				problems = append(problems, fmt.Sprintf("attempt for %s not JSON: %s", id, raw))
				continue
			}
			if msg := l.checkPayload(d); msg != "" {
				s.damaged++
				if s.damaged <= 5 {
					problems = append(problems, "sent: "+msg)
				}
			}
		}
	}
	tc.mu.Unlock()
	codes := make([]string, 0, len(l.codes))
	for c, n := range l.codes {
		codes = append(codes, fmt.Sprintf("%d:%d", c, n))
	}
	sort.Strings(codes)
	t.Logf("answers by status %v, connection errors %d", codes, l.connErrs.Load())
	t.Log(s.String())
	fmt.Println(s.String())
	if (s.lost > 0 && !allowLoss) || s.leaked > 0 || s.damaged > 0 || len(problems) > 0 {
		t.Errorf("conservation broken:\n  %s\nagent log tail:\n%s", strings.Join(problems, "\n  "), a.Tail(20))
	}
	return s
}

// attemptCount is how many times the action posted with id was sent.
func (tc *tencent) attemptCount(id string) int {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.attempts[action.OuterActionID(id)]
}

// checkPayload compares one action Tencent got with what was posted.
func (l *ledger) checkPayload(d tencentsim.Action) string {
	e, ok := l.want[d.OuterActionID]
	switch {
	case !ok:
		return fmt.Sprintf("%q was never posted", d.OuterActionID)
	case d.UserID["hash_phone"] != e.hashPhone || len(d.UserID) != 1:
		return fmt.Sprintf("%s user_id %v, want hash_phone %s", d.OuterActionID, d.UserID, e.hashPhone)
	case d.ActionTime != e.actionTime:
		return fmt.Sprintf("%s action_time %d, want %d", d.OuterActionID, d.ActionTime, e.actionTime)
	case d.ActionType != "WITHDRAW_DEPOSITS":
		return fmt.Sprintf("%s action_type %q", d.OuterActionID, d.ActionType)
	case len(d.ActionParam) != 2 || d.ActionParam["withdraw_deposits_level"] != 1.0 || d.ActionParam["risk_overdue"] != 1.0:
		return fmt.Sprintf("%s action_param %v", d.OuterActionID, d.ActionParam)
	}
	return ""
}

func head(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
