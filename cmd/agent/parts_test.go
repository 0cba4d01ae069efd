package main

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPartsStopInReverse: every drain runs before any stop, both newest
// first; a failed start-up (abort) drains nothing and stops a part that
// only has a drain by its drain; drain errors name their part.
func TestPartsStopInReverse(t *testing.T) {
	var got []string
	rec := func(what string, err error) func(context.Context) error {
		return func(context.Context) error { got = append(got, what); return err }
	}
	build := func() *parts {
		p := &parts{log: slog.New(slog.DiscardHandler)}
		p.add("store", nil, rec("stop store", nil))
		p.add("forwarders", rec("drain forwarders", errors.New("3 left")), rec("stop forwarders", nil))
		p.add("api", rec("drain api", nil), nil)
		p.add("watchdog", nil, rec("stop watchdog", errors.New("logged, not returned")))
		return p
	}

	p := build()
	err := p.drain(context.Background())
	p.stop(context.Background())
	want := []string{"drain api", "drain forwarders", "stop watchdog", "stop forwarders", "stop store"}
	if !slices.Equal(got, want) {
		t.Errorf("SIGTERM order %q, want %q", got, want)
	}
	if err == nil || !strings.Contains(err.Error(), "forwarders: 3 left") {
		t.Errorf("drain error %v, want it to name the forwarders", err)
	}
	if len(p.list) != 0 {
		t.Errorf("%d parts left after stop: a second stop would run them again", len(p.list))
	}

	got = nil
	build().abort(time.Second)
	want = []string{"stop watchdog", "drain api", "stop forwarders", "stop store"}
	if !slices.Equal(got, want) {
		t.Errorf("abort order %q, want %q", got, want)
	}
}
