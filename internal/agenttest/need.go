package agenttest

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// InCI reports whether the tests run in CI: CI set to a true value (1,
// t, true, TRUE, ...), as CI services and .ci/run set it.
func InCI() bool {
	v, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && v
}

// NeedTool returns the path of the command name. When it is not installed,
// the test skips, saying which Debian package provides it ("apt-get
// install pkg"), so `go test ./...` passes on a fresh machine with Go
// alone; in CI (CI=true) it fails instead, so CI keeps proving everything.
func NeedTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "%s is not installed (Debian/Ubuntu: apt-get install -y %s; .ci/run installs it)", name, pkg)
	}
	return p
}

// Unavailable ends a test that cannot run here for want of something the
// machine lacks (a tool, /dev/fuse, the right to mount): a skip with the
// reason outside CI, a failure with it in CI.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s\n(CI=true: a test that cannot run fails instead of skipping)", msg)
	}
	t.Skip(msg)
}
