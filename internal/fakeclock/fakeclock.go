// Package fakeclock is a clock that tests move by hand, for code that takes
// its time and its waits from an injected clock (forwarder.Clock, the
// decision engine's): Now, After, and the test's Advance, Set and Jump.
//
// BlockUntil waits until n waits are pending: the code under test has done
// all it can at the current instant and sleeps. A test then asserts what
// happened (or did not) at that instant, and moves time on, instead of
// sleeping a while and hoping the code has run (which passes vacuously on a
// slow machine) or advancing time from a goroutine on a real-time ticker
// (which races the code it drives).
//
// jonboulle/clockwork has the same BlockUntil, and k8s.io/utils/clock's
// testing.FakeClock is already in the module graph (HasWaiters, no count);
// neither steps the wall clock without moving pending timers (Jump: an NTP
// correction, which Go's monotonic timers ignore), which the forwarder's
// clock-jump tests need, and this is a hundred lines.
package fakeclock

import (
	"context"
	"sync"
	"time"
)

// Clock is a fake clock. The zero value is not usable: call New.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*waiter
	// changed is closed, and replaced, whenever a wait starts.
	changed chan struct{}
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

// New returns a clock reading now.
func New(now time.Time) *Clock {
	return &Clock{now: now, changed: make(chan struct{})}
}

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Since is Now().Sub(t).
func (c *Clock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// After fires once the clock has been moved d on; at once for d <= 0.
// A wait counts for BlockUntil until it fires, even if its caller stopped
// listening (selected on something else).
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, &waiter{at: c.now.Add(d), ch: ch})
	close(c.changed)
	c.changed = make(chan struct{})
	return ch
}

// Waiters is the number of pending waits.
func (c *Clock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// BlockUntil returns once at least n waits are pending, or ctx's error.
func (c *Clock) BlockUntil(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		if len(c.waiters) >= n {
			c.mu.Unlock()
			return nil
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Next is the instant the earliest pending wait fires, if any.
func (c *Clock) Next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.waiters) == 0 {
		return time.Time{}, false
	}
	next := c.waiters[0].at
	for _, w := range c.waiters[1:] {
		if w.at.Before(next) {
			next = w.at
		}
	}
	return next, true
}

// Pending reports whether a wait is pending that fires d or more from now.
func (c *Clock) Pending(d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.waiters {
		if !w.at.Before(c.now.Add(d)) {
			return true
		}
	}
	return false
}

// Advance moves the clock d on and fires the waits that are due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	clear(c.waiters[len(kept):])
	c.waiters = kept
}

// Set moves the clock to t (forward, or back as Advance with a negative d).
func (c *Clock) Set(t time.Time) { c.Advance(t.Sub(c.Now())) }

// AdvanceToNext moves the clock to the earliest pending wait, firing it
// (and any due with it); it reports false when none is pending.
func (c *Clock) AdvanceToNext() bool {
	next, ok := c.Next()
	if ok {
		c.Set(next)
	}
	return ok
}

// Jump steps the wall clock, as an NTP correction does, without time
// passing: pending waits keep their remaining durations (Go's timers run
// on the monotonic clock).
func (c *Clock) Jump(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, w := range c.waiters {
		w.at = w.at.Add(d)
	}
}
