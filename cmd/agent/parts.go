package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// parts are the agent's running components in the order they started.
// Each is added as soon as it runs; they stop in reverse, so nothing stops
// before what uses it, and a start-up that fails half-way stops what it
// had started the same way, with no undo written by hand. It is ours, not
// oklog/run: run's actors are goroutines that all stop at once when one
// returns, while the agent's stop is ordered and in two phases (the drain,
// then the stop) under two budgets.
type parts struct {
	log  *slog.Logger
	list []part
}

// part is one running component.
type part struct {
	name string
	// drain, when set, finishes the part's work on SIGTERM within the
	// drain's budget, AGENT_SHUTDOWN_TIMEOUT: the local API its requests
	// in flight, the forwarders the queues. Every drain runs before any
	// stop.
	drain func(ctx context.Context) error
	// stop releases the part, within config.StoreCloseTimeout. A part with
	// a drain and no stop is stopped by its drain when start-up fails.
	stop func(ctx context.Context) error
}

// add records a started part; drain and stop may be nil.
func (p *parts) add(name string, drain, stop func(context.Context) error) {
	p.list = append(p.list, part{name: name, drain: drain, stop: stop})
}

// drain runs the parts' drains, last started first, and returns their
// errors joined.
func (p *parts) drain(ctx context.Context) error {
	var errs []error
	for _, pt := range slices.Backward(p.list) {
		if pt.drain == nil {
			continue
		}
		if err := pt.drain(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", pt.name, err))
		}
	}
	return errors.Join(errs...)
}

// stop stops the parts, last started first, logging what fails.
func (p *parts) stop(ctx context.Context) {
	for _, pt := range slices.Backward(p.list) {
		if pt.stop == nil {
			continue
		}
		if err := pt.stop(ctx); err != nil {
			p.log.Error("stopping "+pt.name, "err", err)
		}
	}
	p.list = nil
}

// abort stops the parts after a start-up that failed, or a listener that
// did, within timeout: nothing is drained, and a part that only has a
// drain is stopped by it.
func (p *parts) abort(timeout time.Duration) {
	for i, pt := range p.list {
		if pt.stop == nil {
			p.list[i].stop = pt.drain
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	p.stop(ctx)
}

// stopFunc is f as a part's stop.
func stopFunc(f func()) func(context.Context) error {
	return func(context.Context) error { f(); return nil }
}
