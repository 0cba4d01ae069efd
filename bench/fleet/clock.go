package main

import (
	"sync"
	"time"
)

// simClock is the fleet's shared wall clock in the TongDun scenario. It runs
// at real speed from a chosen simulated start, so requests, time-outs and
// back-offs take the time they take; Jump moves it forward at once, firing
// the timers it passes, so a night in which every agent is paused (and
// nothing happens) goes by in a moment. The simulator reads it; each agent
// reads it through its own agentClock, which may be off by a few
// milliseconds, as real clocks are.
type simClock struct {
	mu        sync.Mutex
	base      time.Time // simulated time at realStart
	realStart time.Time
	jumped    time.Duration
	waiters   map[*simWaiter]struct{}
}

type simWaiter struct {
	at    time.Time
	ch    chan time.Time
	timer *time.Timer
}

func newSimClock(start time.Time) *simClock {
	return &simClock{base: start, realStart: time.Now(), waiters: map[*simWaiter]struct{}{}}
}

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now()
}

func (c *simClock) now() time.Time { return c.base.Add(time.Since(c.realStart) + c.jumped) }

// After fires when the simulated time has moved d on: after d of real time,
// or sooner if a Jump passes it.
func (c *simClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if d <= 0 {
		ch <- c.now()
		return ch
	}
	w := &simWaiter{at: c.now().Add(d), ch: ch}
	c.waiters[w] = struct{}{}
	w.timer = time.AfterFunc(d, func() { c.fire(w) })
	return ch
}

func (c *simClock) fire(w *simWaiter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.waiters[w]; ok {
		delete(c.waiters, w)
		w.ch <- c.now()
	}
}

// Jump moves the simulated time d forward and fires every timer it passes.
func (c *simClock) Jump(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.jumped += d
	now := c.now()
	for w := range c.waiters {
		if !w.at.After(now) {
			delete(c.waiters, w)
			w.timer.Stop()
			w.ch <- now
			continue
		}
		// Still ahead: due in less real time now. (A timer already
		// firing finds it here and fires it late, never early.)
		w.timer.Reset(w.at.Sub(now))
	}
}

// agentClock is one agent's view of the shared clock: off ahead of it
// (behind when negative). It is the forwarder's Clock and the TongDun
// client's.
type agentClock struct {
	c   *simClock
	off time.Duration
}

func (a agentClock) Now() time.Time                         { return a.c.Now().Add(a.off) }
func (a agentClock) After(d time.Duration) <-chan time.Time { return a.c.After(d) }
