package forwarder

import "time"

// Clock is the time source of a worker. Waiting goes through it too, so a
// test can pause an upstream "until tomorrow" and advance past it without
// sleeping.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
