package decision

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/policy"
	"github.com/outpost-agent/outpost/spool"
)

// fleetTestPolicy: loan applications by phone, shared with the fleet; the
// fifth across the fleet in an hour is declined.
const fleetTestPolicy = `version: "fleet-test"
thresholds: {review_at: 50, decline_at: 80}
offline_limit: 100000
velocity:
  - {name: loan_apps_1h, key: phone, window: 1h, fleet: true}
  - {name: by_account_1h, key: account, window: 1h}
rules:
  - id: FLEET_LOAN_APPS
    class: block
    when: 'velocity.fleet("loan_apps_1h") >= 4'
    reason: 5th loan application from this phone across the fleet (fleet counter loan_apps_1h)
  - id: FLEET_VIEW_OLD
    class: review
    when: 'velocity.fleet_age_seconds() > 60.0'
    reason: the fleet view is over a minute old
`

// fakeFleet is the other agents' counts, set by the test, and the
// increments the engine asked for.
type fakeFleet struct {
	mu        sync.Mutex
	others    map[string]int64 // subject -> the other agents' count
	incs      []spool.Record
	state     string
	age       time.Duration
	notQueued int
}

func (f *fakeFleet) Subject(kind, value string) string { return "fleet:" + kind + ":" + value }
func (f *fakeFleet) Others(name string, window time.Duration, subject string, now time.Time) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.others[name+"/"+subject]
}
func (f *fakeFleet) Increment(name, kind string, window time.Duration, subject string, at time.Time, id string) spool.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, _ := json.Marshal(map[string]any{"counter": name, "subject": subject, "at": at})
	r := spool.Record{Queue: "velocity", ID: id + "/" + name, Payload: p}
	f.incs = append(f.incs, r)
	return r
}
func (f *fakeFleet) View(time.Time) (string, time.Duration) { return f.state, f.age }
func (f *fakeFleet) NotQueued(n int)                        { f.notQueued += n }

var _ Fleet = (*fakeFleet)(nil)

func fleetRig(t *testing.T, f Fleet) *rig {
	t.Helper()
	pol, err := policy.Parse([]byte(fleetTestPolicy), "fleet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(spool.Options{Dir: filepath.Join(t.TempDir(), "spool"), Queues: []string{"tencent", "tongdun", "unionpay", "velocity"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close(context.Background()) })
	r := newRig(t, func(c *Config) {
		c.Store, c.Policies, c.TongDun, c.UnionPay = NewSpoolStore(sp), fixedPolicy{pol}, nil, nil
		if f != nil {
			c.Fleet = f
		}
	})
	r.sp = sp
	return r
}

// application is a loan application from mobile (in card.mobile, or in
// TongDun v3's account object when v3).
func application(id, account, mobile string, v3 bool) *Request {
	req := withdraw(id, account, 1000)
	if v3 {
		req.EventDetail["account"] = map[string]any{"account_id": account, "phone": map[string]any{"country_code": float64(86), "phone_number": mobile}}
	} else {
		req.Card = &Card{CardNo: "6222020200112233445", CertID: "110101199003071234", Mobile: mobile}
	}
	return req
}

func TestPhoneVelocityFromCardOrAccount(t *testing.T) {
	r := fleetRig(t, nil)
	// The same phone, given as card.mobile or as v3's account phone, is
	// one subject; another phone is another.
	for i, tc := range []struct {
		mobile string
		v3     bool
		want   int64
	}{{"13800138000", false, 0}, {"13800138000", true, 1}, {"13900139000", false, 0}, {"13800138000", false, 2}} {
		res, err := r.eng.Decide(context.Background(), application("app-"+string(rune('a'+i)), "acct-"+string(rune('a'+i)), tc.mobile, tc.v3))
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Velocity["loan_apps_1h"]; got != tc.want {
			t.Errorf("application %d (%s, v3 %v): loan_apps_1h %d, want %d", i, tc.mobile, tc.v3, got, tc.want)
		}
	}
}

func TestFleetCountIsLocalPlusOthers(t *testing.T) {
	f := &fakeFleet{state: FleetLive, age: 800 * time.Millisecond, others: map[string]int64{}}
	r := fleetRig(t, f)
	// Agent A took three applications from this phone (the fleet says so);
	// this agent takes two: the second is the fifth across the fleet.
	f.others["loan_apps_1h/fleet:phone:86:13800138000"] = 3
	first := decide(t, r, application("b-1", "acct-1", "13800138000", false))
	if first.Result != policy.Accept || first.FleetVelocity["loan_apps_1h"] != 3 || first.Velocity["loan_apps_1h"] != 0 {
		t.Fatalf("4th across the fleet: %s, fleet %v, local %v", first.Result, first.FleetVelocity, first.Velocity)
	}
	fifth := decide(t, r, application("b-2", "acct-1", "13800138000", false))
	if fifth.Result != policy.Decline || !hasReason(fifth, "FLEET_LOAN_APPS") || fifth.FleetVelocity["loan_apps_1h"] != 4 || fifth.Velocity["loan_apps_1h"] != 1 {
		t.Fatalf("5th across the fleet: %s %+v, fleet %v, local %v", fifth.Result, fifth.Reasons, fifth.FleetVelocity, fifth.Velocity)
	}
	if fifth.Fleet == nil || fifth.Fleet.State != FleetLive || fifth.Fleet.AgeSeconds == nil || *fifth.Fleet.AgeSeconds != 0.8 {
		t.Errorf("fleet view in the record: %+v", fifth.Fleet)
	}
	if _, ok := fifth.FleetVelocity["by_account_1h"]; ok {
		t.Errorf("a local counter is in fleet_velocity: %v", fifth.FleetVelocity)
	}
	// Each decision queued one increment, in its own commit: the spool
	// holds them on the velocity queue.
	if len(f.incs) != 2 || r.sp.Stats()["velocity"].Depth != 2 {
		t.Errorf("increments asked %d, queued %d; want 2", len(f.incs), r.sp.Stats()["velocity"].Depth)
	}
	// The stored record says the same.
	got, ok, err := r.eng.Get("b-2")
	if err != nil || !ok || got.FleetVelocity["loan_apps_1h"] != 4 || got.Fleet.State != FleetLive {
		t.Errorf("stored %+v %v %v", got, ok, err)
	}
	// The same id again is the same decision: nothing counted or queued.
	decide(t, r, application("b-2", "acct-1", "13800138000", false))
	if len(f.incs) != 2 {
		t.Errorf("a repeated decision id queued another increment")
	}
}

func TestFleetViewOldOrOff(t *testing.T) {
	// Kafka unreachable for five minutes: the decision goes on, on the
	// local view, and says so; the policy sees the age.
	f := &fakeFleet{state: FleetStale, age: 5 * time.Minute, others: map[string]int64{}}
	r := fleetRig(t, f)
	res := decide(t, r, application("s-1", "acct-1", "13800138000", false))
	if res.Fleet == nil || res.Fleet.State != FleetStale || *res.Fleet.AgeSeconds != 300 || res.Result != policy.Review || !hasReason(res, "FLEET_VIEW_OLD") {
		t.Errorf("stale view: %s %+v %+v", res.Result, res.Reasons, res.Fleet)
	}
	// Never in step: no age at all.
	f.state = FleetNone
	res = decide(t, r, application("s-2", "acct-1", "13800138000", false))
	if res.Fleet.State != FleetNone || res.Fleet.AgeSeconds != nil || !hasReason(res, "FLEET_VIEW_OLD") {
		t.Errorf("no view: %+v %+v", res.Reasons, res.Fleet)
	}
	b, _ := json.Marshal(res.Fleet)
	if string(b) != `{"state":"none"}` {
		t.Errorf("recorded as %s", b)
	}

	// Fleet velocity off: velocity.fleet() is the local count.
	r = fleetRig(t, nil)
	for i := range 5 {
		res = decide(t, r, application("o-"+string(rune('a'+i)), "acct-1", "13800138000", false))
	}
	if res.Fleet.State != FleetOff || res.FleetVelocity["loan_apps_1h"] != 4 || res.Velocity["loan_apps_1h"] != 4 || !hasReason(res, "FLEET_LOAN_APPS") {
		t.Errorf("off: %s %+v fleet %v %+v", res.Result, res.Reasons, res.FleetVelocity, res.Fleet)
	}
}
