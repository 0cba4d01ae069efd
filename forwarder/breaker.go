package forwarder

import "time"

// breaker is a small circuit breaker on the injected clock. sony/gobreaker
// reads the wall clock itself, which would make "the network comes back
// after an hour" untestable without sleeping; this one is the same state
// machine (closed → open after N consecutive failures → half-open probe of
// one batch → closed or open again, with the open time doubling up to a
// ceiling) in a few lines.
type breaker struct {
	threshold int           // consecutive failures that open it
	base, max time.Duration // open time, doubling per re-open
	failures  int
	openFor   time.Duration
	openUntil time.Time
	// jitter spreads the open time, so agents whose circuits opened
	// together (one outage hits a whole fleet) do not probe together.
	jitter func(time.Duration) time.Duration
}

type breakerState int

const (
	breakerClosed breakerState = iota
	breakerOpen
	breakerHalfOpen
)

func (b *breaker) state(now time.Time) breakerState {
	switch {
	case b.openUntil.IsZero():
		return breakerClosed
	case now.Before(b.openUntil):
		return breakerOpen
	default:
		return breakerHalfOpen
	}
}

// success closes the breaker.
func (b *breaker) success() {
	b.failures, b.openFor, b.openUntil = 0, 0, time.Time{}
}

// failure counts a failure; it reports whether the breaker (re)opened.
func (b *breaker) failure(now time.Time) bool {
	b.failures++
	if !b.openUntil.IsZero() || b.failures >= b.threshold {
		if b.openFor == 0 {
			b.openFor = b.base
		} else {
			b.openFor = min(2*b.openFor, b.max)
		}
		d := b.openFor
		if b.jitter != nil {
			d = b.jitter(d)
		}
		b.openUntil = now.Add(d)
		return true
	}
	return false
}
