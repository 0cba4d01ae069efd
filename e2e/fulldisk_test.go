package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/internal/agenttest"
)

// smallDisk mounts a tmpfs of size bytes for the test and fills it until
// free bytes are left; it returns the mount point. It skips the test where
// mounting is not allowed.
func smallDisk(t *testing.T, size, free int64) string {
	t.Helper()
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10), "tmpfs", mnt).CombinedOutput(); err != nil {
		agenttest.Unavailable(t, "cannot mount a tmpfs for the data directory (needs root or CAP_SYS_ADMIN): %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	if fill := int64(st.Bavail)*st.Bsize - free; fill > 0 {
		if err := os.WriteFile(filepath.Join(mnt, "filler"), make([]byte, fill), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return mnt
}

// runToExit runs the agent and waits for it to exit on its own; it returns
// what it wrote to stderr and the exit error.
func runToExit(t *testing.T, dataDir string, env ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, agentBinary(t))
	cmd.Env = append(os.Environ(), "AGENT_DATA_DIR="+dataDir, "AGENT_LISTEN_ADDR=127.0.0.1:0", "AGENT_LOG_FORMAT=json")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestFullDiskStartSaysWhatToDo: a start on a disk too full names the
// directory, the setting and the space: a new store below the minimum
// (it cannot record its hash key), and any store without room to open.
func TestFullDiskStartSaysWhatToDo(t *testing.T) {
	t.Run("new store under the minimum", func(t *testing.T) {
		mnt := smallDisk(t, 160<<20, 90<<20)
		out, err := runToExit(t, filepath.Join(mnt, "data"))
		if err == nil {
			t.Fatalf("the agent started on a disk under AGENT_MIN_FREE_DISK with a new store:\n%s", out)
		}
		for _, want := range []string{"AGENT_DATA_DIR=" + filepath.Join(mnt, "data"), "MiB free, under AGENT_MIN_FREE_DISK=128MiB", "lower AGENT_MIN_FREE_DISK to at most"} {
			if !strings.Contains(out, want) {
				t.Errorf("the error does not say %q:\n%s", want, out)
			}
		}
	})
	t.Run("no room to open", func(t *testing.T) {
		mnt := smallDisk(t, 64<<20, 20<<20)
		out, err := runToExit(t, filepath.Join(mnt, "data"))
		if err == nil {
			t.Fatalf("the agent started with 20 MiB free:\n%s", out)
		}
		// The need: a 16 MiB journal segment and two 4 MiB memtables.
		for _, want := range []string{"MiB free; opening the store needs 24.0 MiB", "AGENT_DATA_DIR=" + filepath.Join(mnt, "data"), "AGENT_MIN_FREE_DISK=0"} {
			if !strings.Contains(out, want) {
				t.Errorf("the error does not say %q:\n%s", want, out)
			}
		}
	})
}

// TestMinFreeDiskZeroIsNoMinimum: AGENT_MIN_FREE_DISK=0 turns the
// free-space minimum off (with a warning), where it used to mean 128 MiB.
func TestMinFreeDiskZeroIsNoMinimum(t *testing.T) {
	mnt := smallDisk(t, 160<<20, 90<<20)
	a := startAgent(t, filepath.Join(mnt, "data"), "AGENT_MIN_FREE_DISK=0")
	code, body, err := postJSON(context.Background(), http.DefaultClient, a.URL("/v1/actions"), batchJSON([]string{"zero-min-1"}, time.Now()))
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("post with no free-space minimum: %d %s %v", code, body, err)
	}
	if !strings.Contains(a.Logs.String(), "AGENT_MIN_FREE_DISK=0: no free-space minimum") {
		t.Errorf("no warning about the missing minimum:\n%s", a.Logs)
	}
	if err := a.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
}
