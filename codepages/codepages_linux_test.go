//go:build linux

package codepages

import (
	"bufio"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseSmaps(t *testing.T) {
	f, err := os.Open("testdata/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := parseSmaps(f, "/opt/outpost/bin/outpost agent")
	if err != nil {
		t.Fatal(err)
	}
	// Text and rodata only: not the writable data, not the read-only
	// mapping with a page copied on write, not another file's mapping, not
	// a shared mapping, not anonymous memory.
	want := []span{{0x00400000, 0x00c05000}, {0x00c05000, 0x0152f000}}
	if len(got) != len(want) {
		t.Fatalf("got %d spans %x, want %x", len(got), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("span %d: got %x, want %x", i, got[i], want[i])
		}
	}

	// A replaced executable shows as "(deleted)": its mappings still are
	// the running code.
	f.Seek(0, 0)
	got, err = parseSmaps(f, "/opt/outpost/bin/outpost agent.old")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != (span{0x7f0000000000, 0x7f0000100000}) {
		t.Errorf("deleted executable: got %x", got)
	}
}

// residentKB sums Rss over the mappings of process pid that start at the
// spans' starts.
func residentKB(t *testing.T, pid int, spans []span) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps")
	if err != nil {
		t.Fatal(err)
	}
	starts := map[uint64]bool{}
	for _, s := range spans {
		starts[uint64(s.start)] = true
	}
	total, in := 0, false
	for line := range strings.Lines(string(b)) {
		first, _, _ := strings.Cut(line, " ")
		if lo, _, ok := strings.Cut(first, "-"); ok && !strings.HasSuffix(first, ":") {
			v, err := strconv.ParseUint(lo, 16, 64)
			in = err == nil && starts[v]
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			total += n
		}
	}
	return total
}

const childEnv = "CODEPAGES_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		runChild()
		return
	}
	os.Exit(m.Run())
}

// runChild is the process TestReleaseDropsResidentPages measures from
// outside: it says "ready", releases its pages when told to, says
// "released", and then waits for its stdin to close, running as little
// code as it can meanwhile.
func runChild() {
	// No collection between the release and the measuring: one runs code
	// (and reads tables) that nothing else here would fault back in.
	debug.SetGCPercent(-1)
	in := bufio.NewReader(os.Stdin)
	// Fault every page of the mappings in first, so that "before" is all
	// of them and not whatever start-up happened to touch: the pages the
	// child runs on between the release and the measuring (writing
	// "released", the runtime's own threads) come back either way, and
	// against a start-up's 3 MB they were once more than half.
	// MADV_POPULATE_READ (Linux 5.14) maps the pages in; older kernels
	// refuse it, and the test measures start-up's pages.
	if spans, err := findRanges(); err == nil {
		_ = advise(spans, unix.MADV_POPULATE_READ)
	}
	os.Stdout.WriteString("ready\n")
	if _, err := in.ReadString('\n'); err != nil {
		os.Exit(2)
	}
	spans, err := findRanges()
	if err == nil {
		err = release(spans)
	}
	if err != nil {
		os.Stdout.WriteString("error: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("released\n")
	in.ReadString('\n')
	os.Exit(0)
}

// TestReleaseDropsResidentPages runs this test binary again as a child,
// has it release its code and read-only data, and reads the child's
// resident set from outside, so the measuring does not fault anything
// back in.
func TestReleaseDropsResidentPages(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	out := bufio.NewReader(stdout)
	expect := func(want string) {
		t.Helper()
		line, err := out.ReadString('\n')
		if err != nil || line != want+"\n" {
			t.Fatalf("child said %q (%v), want %q", line, err, want)
		}
	}
	expect("ready")
	f, err := os.Open("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/smaps")
	if err != nil {
		t.Fatal(err)
	}
	spans, err := parseSmaps(f, exe)
	f.Close()
	if err != nil || len(spans) == 0 {
		t.Fatalf("child's executable mappings: %x, %v", spans, err)
	}
	before := residentKB(t, cmd.Process.Pid, spans)
	stdin.Write([]byte("go\n"))
	expect("released")
	after := residentKB(t, cmd.Process.Pid, spans)
	t.Logf("child's read-only executable mappings: %d kB resident before the release, %d kB after", before, after)
	if after > before/2 {
		t.Errorf("resident after release %d kB, before %d kB: want at most half", after, before)
	}
}

func TestReleaserStartClose(t *testing.T) {
	r := Start(Config{Interval: time.Millisecond})
	time.Sleep(20 * time.Millisecond)
	done := make(chan struct{})
	go func() { r.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
}
