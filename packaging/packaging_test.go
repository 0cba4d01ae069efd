package packaging

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/outpost-agent/outpost/internal/agenttest"
	"github.com/outpost-agent/outpost/systemd"
)

// root is the repository root, seen from this package's directory.
const root = ".."

// The packages are built once for all tests: the agent binary (static, as
// shipped) and a .deb and .rpm of two versions (for the upgrade tests). They
// are built by cmd/mkpkg in its own process: under -race, compressing 16 MB
// four times in this test binary would take minutes.
var built struct {
	once sync.Once
	dir  string
	bin  string
	pkgs map[string]string // "deb 1.2.3" -> path
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// artifacts builds (once) and returns the agent binary and the packages.
func artifacts(t *testing.T) (bin string, pkgs map[string]string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: building the agent and its packages takes a while")
	}
	built.once.Do(func() { built.err = buildArtifacts() })
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin, built.pkgs
}

func buildArtifacts() error {
	var err error
	if built.dir, err = os.MkdirTemp("", "outpost-pkg"); err != nil {
		return err
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	built.bin = filepath.Join(built.dir, "outpost-agent")
	if err := BuildAgent(abs, built.bin, "1.2.3", ""); err != nil {
		return err
	}
	mkpkg := filepath.Join(built.dir, "mkpkg")
	cmd := exec.Command("go", "build", "-o", mkpkg, "./packaging/cmd/mkpkg")
	cmd.Dir = abs
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./packaging/cmd/mkpkg: %v\n%s", err, out)
	}
	built.pkgs = map[string]string{}
	for _, v := range []string{"1.2.3", "1.2.4"} {
		cmd := exec.Command(mkpkg, "-version", v, "-binary", built.bin, "-out", filepath.Join(built.dir, v))
		cmd.Dir = abs
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("mkpkg -version %s: %v\n%s", v, err, out)
		}
		for _, p := range strings.Fields(string(out)) {
			built.pkgs[strings.TrimPrefix(filepath.Ext(p), ".")+" "+v] = p
		}
	}
	if len(built.pkgs) != 4 {
		return fmt.Errorf("mkpkg made %v, want a deb and an rpm of each version", built.pkgs)
	}
	return nil
}

// tool returns the path of a command the tests need; without it the test
// skips naming the Debian package, or fails in CI (agenttest.NeedTool).
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	return agenttest.NeedTool(t, name, pkg)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// entry is one file of a package: its mode string ("-rw-r-----"), owner and group.
type entry struct{ mode, owner, group string }

func TestBinaryIsStatic(t *testing.T) {
	bin, _ := artifacts(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the agent binary has a dynamic loader (PT_INTERP): build it with CGO_ENABLED=0")
		}
	}
	if out := run(t, bin, "version"); !strings.Contains(out, "outpost agent 1.2.3") {
		t.Fatalf("version: %q", out)
	}
}

func TestDeb(t *testing.T) {
	dpkgDeb := tool(t, "dpkg-deb", "dpkg")
	bin, pkgs := artifacts(t)
	deb := pkgs["deb 1.2.3"]

	for field, want := range map[string]string{
		"Package": "outpost-agent", "Version": "1.2.3", "Architecture": debArch(t), "Depends": "passwd",
	} {
		if got := strings.TrimSpace(run(t, dpkgDeb, "-f", deb, field)); got != want {
			t.Errorf("%s: %q, want %q", field, got, want)
		}
	}

	// The file list: modes and owners as installed.
	files := map[string]entry{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, dpkgDeb, "-c", deb)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c line %q", line)
		}
		owner, group, _ := strings.Cut(f[1], "/")
		files[strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")] = entry{f[0], owner, group}
	}
	want := map[string]entry{
		"/usr/bin/outpost-agent":                    {"-rwxr-xr-x", "root", "root"},
		"/lib/systemd/system/outpost-agent.service": {"-rw-r--r--", "root", "root"},
		"/etc/outpost":                              {"drwxr-x---", "root", "outpost"},
		"/etc/outpost/agent.env":                    {"-rw-r-----", "root", "outpost"},
	}
	for path, w := range want {
		if got, ok := files[path]; !ok || got != w {
			t.Errorf("%s: %+v (present: %v), want %+v", path, got, ok, w)
		}
	}
	for path := range files {
		if strings.HasPrefix(path, "/var/lib/outpost") {
			t.Errorf("%s is in the package: the data directory must never be owned by it (purge would delete the spool)", path)
		}
	}

	// Control area: conffiles and the four maintainer scripts, as written.
	info := run(t, dpkgDeb, "-I", deb)
	for _, s := range []string{"conffiles", "preinst", "postinst", "prerm", "postrm"} {
		if !strings.Contains(info, " "+s+" ") {
			t.Errorf("dpkg-deb -I lists no %s:\n%s", s, info)
		}
	}
	ctrl := t.TempDir()
	run(t, dpkgDeb, "-e", deb, ctrl)
	if b, _ := os.ReadFile(filepath.Join(ctrl, "conffiles")); strings.TrimSpace(string(b)) != "/etc/outpost/agent.env" {
		t.Errorf("conffiles: %q", b)
	}
	for deb, src := range map[string]string{"preinst": "preinstall.sh", "postinst": "postinstall.sh", "prerm": "preremove.sh", "postrm": "postremove.sh"} {
		got, err := os.ReadFile(filepath.Join(ctrl, deb))
		wantB, _ := os.ReadFile(filepath.Join("scripts", src))
		if err != nil || !bytes.Equal(got, wantB) {
			t.Errorf("%s differs from scripts/%s (%v)", deb, src, err)
		}
		if fi, err := os.Stat(filepath.Join(ctrl, deb)); err != nil || fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable", deb)
		}
	}

	// The data: the same unit, env file and binary, and the binary runs.
	data := t.TempDir()
	run(t, dpkgDeb, "-x", deb, data)
	same(t, filepath.Join(data, "lib/systemd/system/outpost-agent.service"), systemd.UnitFile)
	same(t, filepath.Join(data, "etc/outpost/agent.env"), systemd.EnvFile)
	binBytes, _ := os.ReadFile(bin)
	same(t, filepath.Join(data, "usr/bin/outpost-agent"), binBytes)
	if out := run(t, filepath.Join(data, "usr/bin/outpost-agent"), "version"); !strings.Contains(out, "1.2.3") {
		t.Errorf("extracted binary: version %q", out)
	}
}

func TestRPM(t *testing.T) {
	rpm := tool(t, "rpm", "rpm")
	bin, pkgs := artifacts(t)
	p := pkgs["rpm 1.2.3"]

	if got := run(t, rpm, "-qp", "--qf", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}", p); got != "outpost-agent 1.2.3 1 "+rpmArch(t) {
		t.Errorf("NAME VERSION RELEASE ARCH: %q", got)
	}
	if got := run(t, rpm, "-qp", "--qf", "%{LICENSE}", p); got != "Proprietary" {
		t.Errorf("LICENSE %q, want nfpm.yaml's license: Proprietary", got)
	}
	if got := run(t, rpm, "-qpR", p); !strings.Contains(got, "shadow-utils") {
		t.Errorf("requires: %q, want shadow-utils (useradd)", got)
	}

	// --dump: path size mtime digest mode owner group isconfig isdoc rdev symlink
	sum := sha256.Sum256(mustRead(t, bin))
	files := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, rpm, "-qp", "--dump", p)), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			t.Fatalf("rpm --dump line %q", line)
		}
		files[f[0]] = f
	}
	want := map[string][3]string{ // mode owner group
		"/usr/bin/outpost-agent":                        {"0100755", "root", "root"},
		"/usr/lib/systemd/system/outpost-agent.service": {"0100644", "root", "root"},
		"/etc/outpost":                                  {"040750", "root", "outpost"},
		"/etc/outpost/agent.env":                        {"0100640", "root", "outpost"},
	}
	for path, w := range want {
		f, ok := files[path]
		if !ok || f[4] != w[0] || f[5] != w[1] || f[6] != w[2] {
			t.Errorf("%s: %v, want mode %s %s:%s", path, f, w[0], w[1], w[2])
		}
	}
	if len(files) != len(want) {
		t.Errorf("rpm holds %d files, want %d: %v", len(files), len(want), files)
	}
	if f := files["/usr/bin/outpost-agent"]; f == nil || f[3] != hex.EncodeToString(sum[:]) {
		t.Errorf("the rpm's binary is not the one built")
	}
	// %config(noreplace): flags c (config) and n (noreplace).
	flags := run(t, rpm, "-qp", "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]", p)
	if !strings.Contains(flags, "cn /etc/outpost/agent.env\n") {
		t.Errorf("agent.env is not %%config(noreplace):\n%s", flags)
	}
	scripts := run(t, rpm, "-qp", "--scripts", p)
	for label, src := range map[string]string{"preinstall": "preinstall.sh", "postinstall": "postinstall.sh", "preuninstall": "preremove.sh", "postuninstall": "postremove.sh"} {
		body := mustRead(t, filepath.Join("scripts", src))
		if !strings.Contains(scripts, label+" scriptlet") || !strings.Contains(scripts, strings.TrimSpace(string(body))) {
			t.Errorf("%s scriptlet is not scripts/%s", label, src)
		}
	}
}

// TestBuildInProcess runs the library itself (mkpkg runs it for the other
// tests) on a small stand-in binary.
func TestBuildInProcess(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "outpost-agent")
	writeFile(t, bin, "#!/bin/sh\necho stand-in\n", 0o755)
	paths, err := Build(Options{Root: root, Binary: bin, Version: "v2.0.0-rc1", Arch: "arm64", OutDir: filepath.Join(dir, "out")})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	if got := strings.Join(names, " "); got != "outpost-agent_2.0.0~rc1_arm64.deb outpost-agent-2.0.0~rc1-1.aarch64.rpm" {
		t.Errorf("packages %q", got)
	}
}

func TestBuildRefusesBadVersions(t *testing.T) {
	for _, v := range []string{"", "dev", "vx"} {
		if _, err := Build(Options{Root: root, Binary: "x", Version: v, OutDir: t.TempDir()}); err == nil {
			t.Errorf("version %q accepted", v)
		}
	}
}

func same(t *testing.T, path string, want []byte) {
	t.Helper()
	if got := mustRead(t, path); !bytes.Equal(got, want) {
		t.Errorf("%s differs from the source (%d vs %d bytes)", path, len(got), len(want))
	}
}

func writeFile(t *testing.T, path, s string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), mode); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// debArch is the package architecture: deb uses GOARCH names for amd64 and arm64.
func debArch(*testing.T) string { return runtime.GOARCH }

func rpmArch(t *testing.T) string {
	switch a := debArch(t); a {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	default:
		return a
	}
}
