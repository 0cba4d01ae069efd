package e2e

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSystemdNotifyOrder runs the binary as systemd would with Type=notify
// and a watchdog: READY=1 once it serves, WATCHDOG=1 pings while it runs,
// STOPPING=1 at shutdown, in that order.
func TestSystemdNotifyOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	a := startAgent(t, t.TempDir(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=200000")
	var got []string
	next := func(within time.Duration) string {
		select {
		case m := <-msgs:
			got = append(got, m)
			return m
		case <-time.After(within):
			return ""
		}
	}
	if m := next(5 * time.Second); !strings.Contains(m, "READY=1") {
		t.Fatalf("first message %q, want READY=1", m)
	}
	// Every 100 ms while the store answers its synced probe; a window of
	// 2 s for 3 pings leaves room for the shared disk's own stalls (up to
	// a few hundred ms here), which a 1 s window once did not.
	pings := 0
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(next(300*time.Millisecond), "WATCHDOG=1") {
			pings++
		}
	}
	if pings < 3 {
		t.Fatalf("%d watchdog pings in 2s with WATCHDOG_USEC=200ms; messages %q", pings, got)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	stopping := false
	for m := next(2 * time.Second); m != ""; m = next(500 * time.Millisecond) {
		if strings.Contains(m, "STOPPING=1") {
			stopping = true
		}
		if strings.Contains(m, "READY=1") {
			t.Fatalf("READY=1 sent again: %q", got)
		}
	}
	if !stopping {
		t.Fatalf("no STOPPING=1 at shutdown: %q", got)
	}
}
