package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// listen opens a unixgram socket like systemd's notify socket and points
// NOTIFY_SOCKET at it. The path is kept short: sun_path holds 108 bytes.
func listen(t *testing.T) *net.UnixConn {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return listenAt(t, filepath.Join(dir, "notify"))
}

func listenAt(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return c
}

// recv reads one datagram, or fails after a second.
func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := c.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no datagram: %v", err)
	}
	return string(buf[:n])
}

// none checks that nothing arrives within d.
func none(t *testing.T, c *net.UnixConn, d time.Duration) {
	t.Helper()
	buf := make([]byte, 4096)
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("unexpected datagram %q", buf[:n])
	}
}

func TestLifecycleInOrder(t *testing.T) {
	c := listen(t)
	steps := []struct {
		send func() error
		want string
	}{
		{Ready, "READY=1"},
		{Watchdog, "WATCHDOG=1"},
		{func() error { return Status("draining\n3 requests") }, "STATUS=draining 3 requests"},
		{func() error { return ExtendTimeout(1500 * time.Millisecond) }, "EXTEND_TIMEOUT_USEC=1500000"},
		{Stopping, "STOPPING=1"},
	}
	for _, s := range steps {
		if err := s.send(); err != nil {
			t.Fatalf("%s: %v", s.want, err)
		}
	}
	for _, s := range steps {
		if got := recv(t, c); got != s.want {
			t.Fatalf("got %q, want %q", got, s.want)
		}
	}
}

func TestSendSeveralAssignmentsInOneDatagram(t *testing.T) {
	c := listen(t)
	if err := Send(StateReady, "STATUS=serving"); err != nil {
		t.Fatal(err)
	}
	if got, want := recv(t, c), "READY=1\nSTATUS=serving"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	for _, bad := range []string{"READY", "A=1\nB=2"} {
		if err := Send(bad); err == nil {
			t.Errorf("Send(%q) = nil, want an error", bad)
		}
	}
}

func TestAbstractSocket(t *testing.T) {
	name := fmt.Sprintf("@outpost-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	c := listenAt(t, name)
	if err := Ready(); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != "READY=1" {
		t.Fatalf("got %q", got)
	}
	// The name is abstract: no file was created.
	if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a file %q exists: %v", name, err)
	}
}

func TestUnsetIsANoOp(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	for name, f := range map[string]func() error{
		"Ready": Ready, "Stopping": Stopping, "Watchdog": Watchdog,
		"Status": func() error { return Status("x") },
	} {
		if err := f(); err != nil {
			t.Errorf("%s without NOTIFY_SOCKET: %v", name, err)
		}
	}
	if Enabled() {
		t.Error("Enabled() without NOTIFY_SOCKET")
	}
	// No watchdog loop either: it returns at once.
	t.Setenv("WATCHDOG_USEC", "1000000")
	done := make(chan error, 1)
	go func() { done <- RunWatchdog(context.Background(), nil) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		t.Fatal("RunWatchdog did not return without NOTIFY_SOCKET")
	}
}

func TestErrorsAreReported(t *testing.T) {
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	t.Setenv("NOTIFY_SOCKET", filepath.Join(dir, "nobody-listens"))
	if err := Ready(); err == nil {
		t.Error("Ready to a missing socket: nil error")
	}
	// systemd 254+ may hand a VM a vsock: address; the agent does not run
	// there, and the library takes it for a path that does not exist.
	t.Setenv("NOTIFY_SOCKET", "vsock:2:1234")
	if err := Ready(); err == nil || !strings.HasPrefix(err.Error(), "sdnotify: ") {
		t.Errorf("vsock address: %v", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	me := strconv.Itoa(os.Getpid())
	cases := []struct {
		usec, pid string
		want      time.Duration
		ok        bool
	}{
		{"", "", 0, false},
		{"30000000", "", 30 * time.Second, true},
		{"30000000", me, 30 * time.Second, true},
		{"30000000", "1", 0, false},         // set for another process (inherited)
		{"30000000", "not-a-pid", 0, false}, // malformed
		{"0", "", 0, false},                 // disabled
		{"-5", "", 0, false},                // malformed
		{"soon", "", 0, false},              // malformed
		{"500000", me, 500 * time.Millisecond, true},
	}
	for _, c := range cases {
		t.Setenv("WATCHDOG_USEC", c.usec)
		t.Setenv("WATCHDOG_PID", c.pid)
		got, ok := WatchdogInterval()
		if got != c.want || ok != c.ok {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: got %v %v, want %v %v", c.usec, c.pid, got, ok, c.want, c.ok)
		}
	}
}

func TestRunWatchdogPingsAtHalfTheInterval(t *testing.T) {
	c := listen(t)
	t.Setenv("WATCHDOG_USEC", "200000") // 200ms: pings every 100ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	var checks atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- RunWatchdog(ctx, func(context.Context) error { checks.Add(1); return nil })
	}()
	for i := 0; i < 4; i++ {
		if got := recv(t, c); got != "WATCHDOG=1" {
			t.Fatalf("ping %d: got %q", i, got)
		}
	}
	// The first ping is immediate, then one every 100ms: 4 pings take about 300ms.
	if el := time.Since(start); el < 250*time.Millisecond || el > 2*time.Second {
		t.Errorf("4 pings took %v, want about 300ms", el)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunWatchdog returned %v", err)
	}
	if checks.Load() < 4 {
		t.Errorf("check ran %d times for 4 pings", checks.Load())
	}
}

func TestRunWatchdogSkipsPingsWhileTheCheckFails(t *testing.T) {
	c := listen(t)
	t.Setenv("WATCHDOG_USEC", "100000") // pings every 50ms
	t.Setenv("WATCHDOG_PID", "")
	var healthy atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- RunWatchdog(ctx, func(cctx context.Context) error {
			if healthy.Load() {
				return nil
			}
			<-cctx.Done() // a hung store: the check runs into its deadline
			return cctx.Err()
		})
	}()
	none(t, c, 300*time.Millisecond)
	healthy.Store(true)
	if got := recv(t, c); got != "WATCHDOG=1" {
		t.Fatalf("got %q", got)
	}
	cancel()
	<-done
}

func TestRunWatchdogDisabledForAnotherPID(t *testing.T) {
	listen(t)
	t.Setenv("WATCHDOG_USEC", "100000")
	t.Setenv("WATCHDOG_PID", "1")
	if err := RunWatchdog(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}
