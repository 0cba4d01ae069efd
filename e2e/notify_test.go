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
	// a few hundred ms here), which a 1 s window once did not. The third
	// ping ends the wait: the rest of the window would prove no more.
	pings := 0
	deadline := time.Now().Add(2 * time.Second)
	for pings < 3 && time.Now().Before(deadline) {
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
	// The agent has exited: all it sent is in the socket, ahead of a
	// datagram of the test's own, which ends the reading.
	const end = "TEST_END=1"
	w, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(end)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	stopping := false
	for m := next(5 * time.Second); m != end; m = next(5 * time.Second) {
		if m == "" {
			t.Fatalf("the socket's messages did not end with the test's own: %q", got)
		}
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
