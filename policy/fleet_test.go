package policy

import (
	"math"
	"slices"
	"testing"
)

// fleetPolicy shares one counter with the fleet and keeps one local.
const fleetPolicy = `version: "fleet-1"
thresholds: {review_at: 50, decline_at: 80}
offline_limit: 100
velocity:
  - {name: loan_apps_1h, key: phone, window: 1h, fleet: true}
  - {name: logins_10m, key: device, window: 10m}
rules:
  - id: FLEET_LOAN_APPS
    class: block
    when: 'velocity.fleet("loan_apps_1h") >= 4'
    reason: 5th loan application from this phone across the fleet in an hour (fleet counter loan_apps_1h)
  - id: FLEET_VIEW_OLD
    class: review
    when: 'velocity.fleet_age_seconds() > 60.0 && amount > offline_limit'
    reason: the fleet's counts are over a minute old
tests:
  - name: the fleet sees the spread
    input: {event: withdraw, velocity: {loan_apps_1h: 1}, fleet_velocity: {loan_apps_1h: 4}}
    expect: {result: decline, reasons: [FLEET_LOAN_APPS]}
  - name: no fleet view at all
    input: {amount: 500, fleet_age_seconds: none}
    expect: {result: review, reasons: [FLEET_VIEW_OLD]}
  - name: a fresh view
    input: {amount: 500, fleet_age_seconds: 2.5}
    expect: {result: accept}
`

func TestFleetFunctions(t *testing.T) {
	p, err := Parse([]byte(fleetPolicy), "fleet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v := p.Velocity()
	if len(v) != 2 || !v[0].Fleet || v[0].Key != "phone" || v[1].Fleet {
		t.Fatalf("velocity %+v", v)
	}
	for _, tc := range []struct {
		name    string
		in      Input
		result  string
		reasons []string
	}{
		// The local count alone never fires the fleet rule.
		{"local 4, fleet left out", Input{Velocity: map[string]int64{"loan_apps_1h": 4}}, Accept, []string{}},
		{"fleet 3", Input{FleetVelocity: map[string]int64{"loan_apps_1h": 3}}, Accept, []string{}},
		{"fleet 4", Input{FleetVelocity: map[string]int64{"loan_apps_1h": 4}}, Decline, []string{"FLEET_LOAN_APPS"}},
		{"old view, small amount", Input{Amount: 50, FleetAgeSeconds: 3600}, Accept, []string{}},
		{"old view, large amount", Input{Amount: 500, FleetAgeSeconds: 61}, Review, []string{"FLEET_VIEW_OLD"}},
		{"no view", Input{Amount: 500, FleetAgeSeconds: NoFleetView}, Review, []string{"FLEET_VIEW_OLD"}},
		{"a non-finite age is invalid input", Input{FleetAgeSeconds: math.Inf(1)}, Review, []string{ReasonInvalidInput}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.Now = testNow
			d := p.Decide(&in)
			if d.Result != tc.result || !slices.Equal(reasonIDs(d), tc.reasons) || len(d.Errors) > 0 {
				t.Errorf("got %s %v %v, want %s %v", d.Result, reasonIDs(d), d.Errors, tc.result, tc.reasons)
			}
		})
	}
}

func TestFleetFunctionsCheckedAtLoad(t *testing.T) {
	const h = "version: \"t\"\nthresholds: {review_at: 50, decline_at: 80}\noffline_limit: 100\n" +
		"velocity:\n  - {name: apps, key: phone, window: 1h, fleet: true}\n  - {name: local, key: account, window: 1h}\nrules:\n"
	for _, tc := range []struct {
		name string
		src  string
		want []wantErr
	}{
		{"a counter not shared", h + "  - {id: A, class: review, reason: r, when: 'velocity.fleet(\"local\") > 1'}\n",
			[]wantErr{{8, 61, `velocity counter "local" is not shared with the fleet`}}},
		{"a counter not declared", h + "  - {id: A, class: review, reason: r, when: 'velocity.fleet(\"nope\") > 1'}\n",
			[]wantErr{{8, 61, `velocity counter "nope" is not declared`}}},
		{"a name that is not a literal", h + "  - {id: A, class: review, reason: r, when: 'velocity.fleet(event) > 1'}\n",
			[]wantErr{{8, 61, "as a string literal"}}},
		{"another map", h + "  - {id: A, class: review, reason: r, when: '{\"apps\": 1}.fleet(\"apps\") > 1'}\n",
			[]wantErr{{8, 0, "fleet() is called on velocity only"}}},
		{"age of another map", h + "  - {id: A, class: review, reason: r, when: '{\"apps\": 1}.fleet_age_seconds() > 1.0'}\n",
			[]wantErr{{8, 0, "fleet_age_seconds() is called on velocity only"}}},
		{"the age is a double", h + "  - {id: A, class: review, reason: r, when: 'velocity.fleet_age_seconds() > 1'}\n",
			[]wantErr{{8, 0, "no matching overload"}}},
		{"fleet is a boolean", "version: \"t\"\nthresholds: {review_at: 50, decline_at: 80}\noffline_limit: 100\n" +
			"velocity:\n  - {name: apps, key: phone, window: 1h, fleet: yes please}\nrules: []\n",
			[]wantErr{{5, 0, "velocity[0].fleet"}}},
		{"a test's fleet count of a local counter", h + "  []\ntests:\n  - {name: t, input: {fleet_velocity: {local: 1}}, expect: {result: accept}}\n",
			[]wantErr{{10, 0, `counter "local" is not shared with the fleet`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), "inline.yaml")
			checkErrors(t, err, "inline.yaml", tc.want)
		})
	}
}
