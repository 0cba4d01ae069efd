// Package sdnotify is the agent's side of systemd's service notification
// protocol (sd_notify(3)): READY=1 once the store is open and the API
// listens, WATCHDOG=1 while a health check passes, STOPPING=1 when the
// drain starts. The protocol itself (one datagram of KEY=VALUE lines to the
// AF_UNIX socket named by $NOTIFY_SOCKET, '@' for the abstract namespace;
// WATCHDOG_USEC and WATCHDOG_PID) is github.com/coreos/go-systemd/v22/daemon,
// which replaced a hand-written copy of it; what is ours is RunWatchdog,
// which pings only while the store answers.
//
// Every function is a no-op returning nil when NOTIFY_SOCKET is unset, so the
// agent calls them unconditionally: under `Type=notify` systemd waits for
// READY=1, elsewhere (a terminal, a container, a test) nothing happens.
//
// With `WatchdogSec=` systemd sets WATCHDOG_USEC (and WATCHDOG_PID); the
// service must send WATCHDOG=1 more often than that, conventionally at half
// the interval: RunWatchdog does so while a health check passes.
package sdnotify

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// The assignments systemd understands that this package sends.
const (
	StateReady    = daemon.SdNotifyReady
	StateStopping = daemon.SdNotifyStopping
	StateWatchdog = daemon.SdNotifyWatchdog
)

// Ready tells systemd that start-up is finished: the store is open and the API
// listens. Units ordered after the agent start only then.
func Ready() error { return Send(StateReady) }

// Stopping tells systemd the agent is shutting down (draining).
func Stopping() error { return Send(StateStopping) }

// Watchdog pings the watchdog: the agent is alive.
func Watchdog() error { return Send(StateWatchdog) }

// Status sets the one-line status `systemctl status` shows. Newlines would end
// the assignment, so they are replaced by spaces.
func Status(s string) error {
	return Send("STATUS=" + strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s))
}

// ExtendTimeout asks systemd for d more before it gives up on the current
// start-up or shutdown (EXTEND_TIMEOUT_USEC): for a long store recovery.
func ExtendTimeout(d time.Duration) error {
	return Send("EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(d.Microseconds(), 10))
}

// Send sends the assignments (each "KEY=VALUE") in one datagram to
// $NOTIFY_SOCKET. It returns nil without doing anything when the variable is
// unset or empty.
func Send(states ...string) error {
	if !Enabled() || len(states) == 0 {
		return nil
	}
	for _, s := range states {
		if !strings.Contains(s, "=") || strings.ContainsAny(s, "\n") {
			return fmt.Errorf("sdnotify: %q is not one KEY=VALUE assignment", s)
		}
	}
	if _, err := daemon.SdNotify(false, strings.Join(states, "\n")); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}

// WatchdogInterval reports the watchdog time-out systemd expects this process
// to honour (WATCHDOG_USEC), and false when there is none: the variable is
// unset, not a positive number, or WATCHDOG_PID names another process (the
// variables were inherited from a parent). Ping at half the interval.
func WatchdogInterval() (time.Duration, bool) {
	d, err := daemon.SdWatchdogEnabled(false)
	return d, err == nil && d > 0
}

// RunWatchdog pings the watchdog every half interval until ctx is done, each
// time only after check(ctx) returned nil within that half interval (check
// may be nil: then the ping proves only that the process is scheduled). A
// failing or hanging check skips the ping, so systemd kills and restarts a
// hung agent once the interval passes. It returns nil at once when the
// watchdog is not enabled, and ctx.Err() when ctx ends.
func RunWatchdog(ctx context.Context, check func(context.Context) error) error {
	interval, ok := WatchdogInterval()
	if !ok || !Enabled() {
		return nil
	}
	period := interval / 2
	if period <= 0 {
		period = interval
	}
	ping := func() error {
		if check != nil {
			cctx, cancel := context.WithTimeout(ctx, period)
			err := check(cctx)
			cancel()
			if err != nil {
				return nil //nolint:nilerr // no ping: let the interval run out, and systemd restart us
			}
		}
		return Watchdog()
	}
	// Ping at once: start-up may have used part of the first interval. A
	// socket error is not fatal: the next tick tries again.
	_ = ping()
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			_ = ping()
		}
	}
}

// Enabled reports whether a service manager listens for notifications.
func Enabled() bool { return os.Getenv("NOTIFY_SOCKET") != "" }
