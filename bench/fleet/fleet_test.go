package main

import (
	"testing"
	"time"
)

// TestSimClockJump: a jump fires the timers it passes at once and leaves
// the others due after the real time that remains.
func TestSimClockJump(t *testing.T) {
	c := newSimClock(time.Date(2026, 11, 23, 20, 0, 0, 0, shanghai))
	passed, ahead := c.After(time.Hour), c.After(time.Hour+200*time.Millisecond)
	c.Jump(time.Hour)
	select {
	case <-passed:
	case <-time.After(time.Second):
		t.Fatal("a timer the jump passed did not fire")
	}
	select {
	case <-ahead:
		t.Fatal("a timer still ahead fired at the jump")
	case <-time.After(50 * time.Millisecond):
	}
	select {
	case at := <-ahead:
		if want := time.Date(2026, 11, 23, 21, 0, 0, 200e6, shanghai); at.Before(want) {
			t.Fatalf("fired at %v, before %v", at, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a timer still ahead did not fire after the real time that remained")
	}
	a := agentClock{c: c, off: -time.Second}
	if agent := a.Now(); c.Now().Sub(agent) < time.Second || c.Now().Sub(agent) > 1100*time.Millisecond {
		t.Fatalf("agent clock %v, shared %v: want a second behind", agent, c.Now())
	}
}

// TestTongDunFleetSharesTheDailyCapAcrossMidnight is the TongDun scenario
// in small: 20 agents whose clocks are up to 300 ms off TongDun's share a
// daily cap of 200 with 300 checks queued. Each paused agent is refused
// once, nothing is sent while they are paused, and every check is
// delivered once, just after midnight: the agents whose clocks are ahead
// are refused once more at their midnight and do not lose a day.
func TestTongDunFleetSharesTheDailyCapAcrossMidnight(t *testing.T) {
	r, err := runTongDun(tongdunOptions{agents: 20, backlog: 15, dailyCap: 200, skew: 300 * time.Millisecond,
		start: time.Date(2026, 11, 23, 22, 0, 0, 0, shanghai), seed: 1, maxRun: 40 * time.Second,
		quiet: 200 * time.Millisecond, lead: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.Delivered != 300 || r.Left != 0 || r.DeadLettered != 0 || r.AcceptedByTD != 300 || r.AcceptedTwice != 0 {
		t.Fatalf("delivered %d, left %d, dead %d, accepted by TD %d (%d twice); want all 300 once",
			r.Delivered, r.Left, r.DeadLettered, r.AcceptedByTD, r.AcceptedTwice)
	}
	d1, d2 := r.ByDay["2026-11-23"], r.ByDay["2026-11-24"]
	if d1.Accepted != 200 || d2.Accepted != 100 || d2.Capped != 0 || len(r.ByDay) != 2 {
		t.Fatalf("by day %+v; want 200 on the 23rd (the cap), the other 100 on the 24th", r.ByDay)
	}
	if len(r.Nights) != 1 || r.Nights[0].RequestsWhilePaused != 0 {
		t.Fatalf("nights %+v; want one, without a request while paused", r.Nights)
	}
	// One 305 per agent when the cap ran out, at most one more at midnight
	// for the agents whose clocks are ahead.
	early := r.Nights[0].AgentsEarly
	if r.Refused305MaxPerAgent > 2 || d1.Capped > r.Agents+early {
		t.Fatalf("305s: %d on the 23rd, at most %d for one agent; %d agents early", d1.Capped, r.Refused305MaxPerAgent, early)
	}
	if r.Days[0].AgentsServed != r.Agents {
		t.Fatalf("only %d of %d agents got some of the 23rd's quota", r.Days[0].AgentsServed, r.Agents)
	}
}
