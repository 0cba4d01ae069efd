//go:build linux

package packaging

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/outpost-agent/outpost/internal/agenttest"
	"github.com/outpost-agent/outpost/systemd"
)

// The install tests run the real package managers on a scratch root
// (dpkg --root, rpm --root): the maintainer scripts run chrooted into it with
// copies of the few host programs they call, so nothing on the host changes.
// Needs root (chroot, mknod); skipped otherwise.

// scratchRoot makes a minimal root: /bin/sh, getent, groupadd, useradd, cat,
// chgrp, systemctl (if the host has it) with their libraries, /dev/null, and
// an /etc with only root in it. It reports whether systemctl is there.
func scratchRoot(t *testing.T) (string, bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		agenttest.Unavailable(t, "installing into a scratch root needs root (chroot, mknod)")
	}
	r := t.TempDir()
	for _, d := range []string{"dev", "etc", "tmp", "var/tmp", "var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/rpm"} {
		if err := os.MkdirAll(filepath.Join(r, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mknod(filepath.Join(r, "dev/null"), syscall.S_IFCHR|0o666, int(unixMkdev(1, 3))); err != nil {
		agenttest.Unavailable(t, "cannot make /dev/null in the scratch root: %v", err)
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		writeFile(t, filepath.Join(r, f), "", 0o644)
	}
	writeFile(t, filepath.Join(r, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n", 0o644)
	writeFile(t, filepath.Join(r, "etc/group"), "root:x:0:\n", 0o644)
	writeFile(t, filepath.Join(r, "etc/shadow"), "root:*:19000:0:99999:7:::\n", 0o640)
	writeFile(t, filepath.Join(r, "etc/gshadow"), "root:*::\n", 0o640)
	if b, err := os.ReadFile("/etc/login.defs"); err == nil {
		writeFile(t, filepath.Join(r, "etc/login.defs"), string(b), 0o644)
	}
	withSystemctl := false
	// The Debian package of each, for the message when one is missing.
	debPkg := map[string]string{"sh": "dash", "getent": "libc-bin", "groupadd": "passwd", "useradd": "passwd",
		"cat": "coreutils", "chgrp": "coreutils"}
	for _, name := range []string{"sh", "getent", "groupadd", "useradd", "cat", "chgrp", "nologin", "systemctl"} {
		p, err := exec.LookPath(name)
		if err != nil {
			for _, d := range []string{"/usr/sbin", "/sbin"} {
				if _, e := os.Stat(filepath.Join(d, name)); e == nil {
					p, err = filepath.Join(d, name), nil
				}
			}
		}
		if err != nil {
			if name == "systemctl" || name == "nologin" {
				continue
			}
			agenttest.Unavailable(t, "%s is not installed (Debian/Ubuntu: apt-get install -y %s)", name, debPkg[name])
		}
		copyWithLibs(t, r, p)
		if name == "sh" && p != "/bin/sh" {
			copyFile(t, p, filepath.Join(r, "bin/sh"))
		}
		if name == "systemctl" {
			withSystemctl = true
		}
	}
	return r, withSystemctl
}

func unixMkdev(major, minor uint32) uint64 {
	return uint64(major)<<8 | uint64(minor) // small numbers: the old encoding is exact
}

var lddPath = regexp.MustCompile(`(/[^ \t]+) \(0x`)

// copyWithLibs copies a program and the shared libraries ldd lists into r,
// at the same paths.
func copyWithLibs(t *testing.T, r, prog string) {
	t.Helper()
	copyFile(t, prog, filepath.Join(r, prog))
	out, err := exec.Command("ldd", prog).Output()
	if err != nil {
		return // static, or no ldd: nothing more to copy
	}
	for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
		if _, err := os.Stat(filepath.Join(r, m[1])); err == nil {
			continue
		}
		copyFile(t, m[1], filepath.Join(r, m[1]))
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src) // follows symlinks
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

// idOf finds name's numeric id in the scratch root's passwd or group file.
func idOf(t *testing.T, r, file, name string) int {
	t.Helper()
	f, err := os.Open(filepath.Join(r, "etc", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if fields[0] == name && len(fields) > 3 {
			id, _ := strconv.Atoi(fields[2])
			return id
		}
	}
	t.Fatalf("no %s in the scratch root's /etc/%s", name, file)
	return -1
}

// checkInstalled checks what every install must leave behind.
func checkInstalled(t *testing.T, r, unitPath string, withSystemctl bool, version string) {
	t.Helper()
	passwd := string(mustRead(t, filepath.Join(r, "etc/passwd")))
	if !regexp.MustCompile(`(?m)^outpost:x:\d+:\d+:[^:]*:/var/lib/outpost:(/usr)?/sbin/nologin$`).MatchString(passwd) {
		t.Errorf("no outpost system user with a nologin shell:\n%s", passwd)
	}
	gid := idOf(t, r, "group", "outpost")
	for path, mode := range map[string]os.FileMode{"etc/outpost": os.ModeDir | 0o750, "etc/outpost/agent.env": 0o640} {
		fi, err := os.Stat(filepath.Join(r, path))
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode() != mode || st.Uid != 0 || int(st.Gid) != gid {
			t.Errorf("/%s: %v %d:%d, want %v root:outpost (0:%d)", path, fi.Mode(), st.Uid, st.Gid, mode, gid)
		}
	}
	same(t, filepath.Join(r, unitPath), systemd.UnitFile)
	if out := run(t, filepath.Join(r, "usr/bin/outpost-agent"), "version"); !strings.Contains(out, "outpost agent") {
		t.Errorf("installed binary: %q", out)
	}
	if withSystemctl {
		if _, err := os.Lstat(filepath.Join(r, "etc/systemd/system/multi-user.target.wants", systemd.UnitName)); err != nil {
			t.Errorf("the unit is not enabled: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(r, "var/lib/outpost")); err == nil && version == "1.2.3" {
		t.Errorf("/var/lib/outpost exists after install: systemd's StateDirectory should create it")
	}
}

// checkRemoved checks what removal leaves: the data, the user, no binary.
func checkRemoved(t *testing.T, r, unitPath string) {
	t.Helper()
	for _, gone := range []string{"usr/bin/outpost-agent", unitPath, "etc/systemd/system/multi-user.target.wants/" + systemd.UnitName} {
		if _, err := os.Lstat(filepath.Join(r, gone)); err == nil {
			t.Errorf("/%s is still there after removal", gone)
		}
	}
	if got := string(mustRead(t, filepath.Join(r, "var/lib/outpost/spool/MANIFEST"))); got != "queued events" {
		t.Errorf("the spool was touched: %q", got)
	}
	if !strings.Contains(string(mustRead(t, filepath.Join(r, "etc/passwd"))), "\noutpost:") {
		t.Error("the outpost user was deleted: it owns the kept spool")
	}
}

// fakeSpool stands in for the data an agent would have written.
func fakeSpool(t *testing.T, r string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(r, "var/lib/outpost/spool"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(r, "var/lib/outpost/spool/MANIFEST"), "queued events", 0o600)
}

const localEdit = "AGENT_LOG_LEVEL=debug # local edit\n"

func editEnv(t *testing.T, r string) {
	t.Helper()
	p := filepath.Join(r, "etc/outpost/agent.env")
	writeFile(t, p, string(mustRead(t, p))+localEdit, 0o640)
}

func hasEdit(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	return err == nil && strings.HasSuffix(string(b), localEdit)
}

func TestDebInstallUpgradeRemovePurge(t *testing.T) {
	dpkg := tool(t, "dpkg", "dpkg")
	r, withSystemctl := scratchRoot(t) // before the build: what it lacks is said at once
	_, pkgs := artifacts(t)
	const unitPath = "lib/systemd/system/outpost-agent.service"
	// --force-depends: the scratch root's dpkg database knows no "passwd".
	d := func(args ...string) string {
		return run(t, dpkg, append([]string{"--root=" + r, "--force-depends", "--force-confold"}, args...)...)
	}

	out := d("-i", pkgs["deb 1.2.3"])
	if !strings.Contains(out, "enabled but not started") {
		t.Errorf("first install did not explain that the agent is not started:\n%s", out)
	}
	checkInstalled(t, r, unitPath, withSystemctl, "1.2.3")

	editEnv(t, r)
	fakeSpool(t, r)
	d("-i", pkgs["deb 1.2.4"])
	if st := d("-s", "outpost-agent"); !strings.Contains(st, "Version: 1.2.4") || !strings.Contains(st, "Status: install ok installed") {
		t.Errorf("after the upgrade:\n%s", st)
	}
	checkInstalled(t, r, unitPath, withSystemctl, "1.2.4")
	if !hasEdit(t, filepath.Join(r, "etc/outpost/agent.env")) {
		t.Error("the upgrade replaced the edited /etc/outpost/agent.env")
	}

	d("-r", "outpost-agent")
	checkRemoved(t, r, unitPath)
	if !hasEdit(t, filepath.Join(r, "etc/outpost/agent.env")) {
		t.Error("remove (not purge) deleted the edited conffile")
	}

	out = d("-P", "outpost-agent")
	checkRemoved(t, r, unitPath)
	if _, err := os.Stat(filepath.Join(r, "etc/outpost/agent.env")); err == nil {
		t.Error("purge left /etc/outpost/agent.env")
	}
	if !strings.Contains(out, "kept /var/lib/outpost") {
		t.Errorf("purge did not say the spool was kept:\n%s", out)
	}
}

func TestRPMInstallUpgradeErase(t *testing.T) {
	rpm := tool(t, "rpm", "rpm")
	r, withSystemctl := scratchRoot(t) // before the build: what it lacks is said at once
	_, pkgs := artifacts(t)
	const unitPath = "usr/lib/systemd/system/outpost-agent.service"
	// --nodeps: the scratch root's rpm database knows no shadow-utils.
	rp := func(args ...string) string {
		return run(t, rpm, append([]string{"--root", r}, args...)...)
	}
	rp("--initdb")

	rp("-i", "--nodeps", pkgs["rpm 1.2.3"])
	checkInstalled(t, r, unitPath, withSystemctl, "1.2.3")

	editEnv(t, r)
	fakeSpool(t, r)
	rp("-U", "--nodeps", pkgs["rpm 1.2.4"])
	if got := rp("-q", "outpost-agent"); !strings.HasPrefix(got, "outpost-agent-1.2.4-1") {
		t.Errorf("after the upgrade: %q", got)
	}
	checkInstalled(t, r, unitPath, withSystemctl, "1.2.4")
	if !hasEdit(t, filepath.Join(r, "etc/outpost/agent.env")) {
		t.Error("the upgrade replaced the edited /etc/outpost/agent.env")
	}

	rp("-e", "--nodeps", "outpost-agent")
	checkRemoved(t, r, unitPath)
	// %config(noreplace): an edited file is kept as .rpmsave on erase.
	if !hasEdit(t, filepath.Join(r, "etc/outpost/agent.env.rpmsave")) {
		t.Error("erase did not keep the edited agent.env as agent.env.rpmsave")
	}
}
