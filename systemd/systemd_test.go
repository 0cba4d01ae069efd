package systemd

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/config"
	"github.com/outpost-agent/outpost/internal/agenttest"
)

// systemdAnalyze returns the path of systemd-analyze; without it the test
// skips naming the Debian package, or fails in CI (.ci/run installs it).
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	return agenttest.NeedTool(t, "systemd-analyze", "systemd")
}

// unitCopy writes the unit to a temp dir with ExecStart pointing at an
// executable that exists here (verify checks it), and returns its path.
func unitCopy(t *testing.T, unit []byte) string {
	t.Helper()
	self, err := os.Executable() // any executable will do: verify only checks it is one
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Replace(unit, []byte("\nExecStart=/usr/bin/outpost-agent\n"), []byte("\nExecStart="+self+"\n"), 1)
	if bytes.Equal(b, unit) {
		t.Fatal("ExecStart=/usr/bin/outpost-agent not found in the unit")
	}
	p := filepath.Join(t.TempDir(), UnitName)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// verify runs systemd-analyze verify; it exits 0 even for unknown keys and
// unparsable values (they are "ignored" with a warning), so anything on its
// output counts as a failure.
func verify(t *testing.T, path string) (string, error) {
	t.Helper()
	cmd := exec.Command(systemdAnalyze(t), "verify", path)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_PAGER=")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func TestUnitVerifies(t *testing.T) {
	out, err := verify(t, unitCopy(t, UnitFile))
	if err != nil || out != "" {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", UnitName, err, out)
	}
}

// TestVerifyCatchesMistakes proves the harness above would notice a broken
// unit: systemd-analyze only warns about these.
func TestVerifyCatchesMistakes(t *testing.T) {
	for _, bad := range []string{"WatchdogSec=thirty", "NoSuchSetting=yes"} {
		b := bytes.Replace(UnitFile, []byte("\nType=notify\n"), []byte("\nType=notify\n"+bad+"\n"), 1)
		out, err := verify(t, unitCopy(t, b))
		if err == nil && out == "" {
			t.Errorf("verify said nothing about %q", bad)
		}
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for ` + regexp.QuoteMeta(UnitName) + `: ([0-9.]+) ([A-Z]+)`)

// maxExposure ratchets the score: it is 1.0 with systemd 252. Levels from
// systemd-analyze: 0.0 PERFECT, 0.1-0.9 SAFE, 1.0-4.9 OK, 5.0-7.4 MEDIUM,
// 7.5-8.9 EXPOSED, 9.0+ UNSAFE.
const maxExposure = 2.0

func TestSecurityExposure(t *testing.T) {
	cmd := exec.Command(systemdAnalyze(t), "security", "--offline=yes", "--no-pager", unitCopy(t, UnitFile))
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security --offline=yes: %v\n%s", err, out)
	}
	m := exposureRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure line in:\n%s", out)
	}
	score, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	level := string(m[2])
	t.Logf("exposure %.1f %s", score, level)
	switch level {
	case "PERFECT", "SAFE", "OK":
	default:
		t.Fatalf("exposure level %s (%.1f), want OK or better:\n%s", level, score, out)
	}
	if score > maxExposure {
		t.Fatalf("exposure %.1f went above %.1f: a hardening setting was lost?\n%s", score, maxExposure, out)
	}
}

// agentDefaults maps AGENT_* names to their defaults, from config.Config's tags.
func agentDefaults(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	ty := reflect.TypeOf(config.Config{})
	for i := 0; i < ty.NumField(); i++ {
		f := ty.Field(i)
		if name := f.Tag.Get("envconfig"); name != "" {
			m[config.Prefix+"_"+name] = f.Tag.Get("default")
		}
	}
	if len(m) < 10 {
		t.Fatalf("found only %d AGENT_* settings in config.Config", len(m))
	}
	return m
}

func duration(t *testing.T, what, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s=%q: %v", what, s, err)
	}
	return d
}

// prose is a file's text with comment marks and line breaks gone, so a
// sentence of a comment reads whole.
func prose(b []byte) string {
	var words []string
	for _, line := range strings.Split(string(b), "\n") {
		words = append(words, strings.Fields(strings.TrimLeft(strings.TrimSpace(line), "#"))...)
	}
	return strings.Join(words, " ")
}

// short writes d as the unit and env file do: 75s, not 1m15s.
func short(d time.Duration) string { return fmt.Sprintf("%ds", int(d.Seconds())) }

func TestUnitSettings(t *testing.T) {
	u, err := ParseUnit(UnitFile)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30s",
		"Restart": "on-failure", "RestartSec": "2s",
		"ExecStart": "/usr/bin/outpost-agent", "EnvironmentFile": "-/etc/outpost/agent.env",
		"User": "outpost", "Group": "outpost",
		"StateDirectory": "outpost", "StateDirectoryMode": "0700", "UMask": "0077",
		"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
		"NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"SystemCallArchitectures": "native", "MemoryDenyWriteExecute": "yes", "LockPersonality": "yes",
		"ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
		"ProtectControlGroups": "yes", "ProtectClock": "yes", "ProtectHostname": "yes",
		"RestrictNamespaces": "yes", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes",
		"RemoveIPC": "yes", "MemoryMax": "256M", "LimitNOFILE": "65536",
	}
	for k, v := range want {
		got, ok := u.Value("Service", k)
		if !ok || got != v {
			t.Errorf("[Service] %s=%q (set: %v), want %q", k, got, ok, v)
		}
	}
	if got := strings.Join(u.Values("Service", "SystemCallFilter"), " | "); got != "@system-service | ~@privileged @resources" {
		t.Errorf("SystemCallFilter: %q", got)
	}
	env := map[string]string{}
	for _, e := range u.Values("Service", "Environment") {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
	}
	if env["AGENT_DATA_DIR"] != "/var/lib/outpost" {
		t.Errorf("Environment=AGENT_DATA_DIR=%q, want /var/lib/outpost (StateDirectory)", env["AGENT_DATA_DIR"])
	}
	if got, _ := u.Value("Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("WantedBy=%q", got)
	}

	// The stop: SIGTERM drains within AGENT_SHUTDOWN_TIMEOUT, then closes
	// the store within config.StoreCloseTimeout (config.StopBudget). systemd
	// must not SIGKILL before both could run out; the comments above the
	// directive and in agent.env say the same figures.
	cfg := config.Config{ShutdownTimeout: duration(t, "AGENT_SHUTDOWN_TIMEOUT default", agentDefaults(t)["AGENT_SHUTDOWN_TIMEOUT"])}
	if v, ok := env["AGENT_SHUTDOWN_TIMEOUT"]; ok {
		cfg.ShutdownTimeout = duration(t, "AGENT_SHUTDOWN_TIMEOUT", v)
	}
	stop, _ := u.Value("Service", "TimeoutStopSec")
	stopD := duration(t, "TimeoutStopSec", stop)
	if stopD < cfg.StopBudget()+5*time.Second {
		t.Errorf("TimeoutStopSec=%s: want at least the stop budget %v (AGENT_SHUTDOWN_TIMEOUT + %v) + 5s", stop, cfg.StopBudget(), config.StoreCloseTimeout)
	}
	// What the comments promise: the default's budget, and the largest
	// AGENT_SHUTDOWN_TIMEOUT the unit allows without a drop-in.
	most := stopD - config.StoreCloseTimeout - 5*time.Second
	unit := prose(UnitFile)
	for _, want := range []string{
		fmt.Sprintf("AGENT_SHUTDOWN_TIMEOUT (%s)", short(cfg.ShutdownTimeout)),
		fmt.Sprintf("within %s more: %s at worst", short(config.StoreCloseTimeout), short(cfg.StopBudget())),
		fmt.Sprintf("up to %s (+%s, +5s margin)", short(most), short(config.StoreCloseTimeout)),
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("the unit's comment on TimeoutStopSec does not say %q", want)
		}
	}
	envFile := prose(EnvFile)
	for _, want := range []string{
		fmt.Sprintf("TimeoutStopSec (%s) allows up to %s here", stop, short(most)),
		fmt.Sprintf("takes up to %s more", short(config.StoreCloseTimeout)),
	} {
		if !strings.Contains(envFile, want) {
			t.Errorf("agent.env's comment on AGENT_SHUTDOWN_TIMEOUT does not say %q", want)
		}
	}
	wd, _ := u.Value("Service", "WatchdogSec")
	if d := duration(t, "WatchdogSec", wd); d < 10*time.Second {
		t.Errorf("WatchdogSec=%s is too tight for a ping every %v", wd, d/2)
	}

	// Every directive says why, in a comment above it (directives grouped
	// under one comment share it).
	for _, d := range u {
		if d.Section == "Service" && !d.Commented {
			t.Errorf("line %d %s=%s has no comment saying why", d.Line, d.Key, d.Value)
		}
	}
}

var envLineRE = regexp.MustCompile(`^#?(AGENT_[A-Z0-9_]+)=(.*)$`)

func TestEnvFile(t *testing.T) {
	defaults := agentDefaults(t)
	u, err := ParseUnit(UnitFile)
	if err != nil {
		t.Fatal(err)
	}
	setByUnit := map[string]string{}
	for _, e := range u.Values("Service", "Environment") {
		k, v, _ := strings.Cut(e, "=")
		setByUnit[k] = v
	}
	seen := map[string]bool{}
	for i, line := range strings.Split(string(EnvFile), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || (strings.HasPrefix(line, "#") && !envLineRE.MatchString(line)) {
			continue
		}
		if !strings.HasPrefix(line, "#") {
			t.Errorf("line %d %q is set: the shipped file sets nothing (no secrets, no surprises)", i+1, line)
			continue
		}
		m := envLineRE.FindStringSubmatch(line)
		name, val := m[1], m[2]
		def, ok := defaults[name]
		switch {
		case !ok:
			t.Errorf("line %d: %s is not a setting of config.Config", i+1, name)
		case name == "AGENT_DATA_DIR":
			t.Errorf("line %d: AGENT_DATA_DIR belongs to the unit (StateDirectory), not the env file", i+1)
		case setByUnit[name] != "" && val != setByUnit[name]:
			t.Errorf("line %d: %s=%q, but the unit sets %q", i+1, name, val, setByUnit[name])
		case setByUnit[name] == "" && def != "" && val != def:
			t.Errorf("line %d: %s=%q, but the default is %q", i+1, name, val, def)
		}
		seen[name] = true
	}
	for name := range defaults {
		if !seen[name] && name != "AGENT_DATA_DIR" {
			t.Errorf("%s (default %q) is missing from agent.env", name, defaults[name])
		}
	}
}

func TestParseUnit(t *testing.T) {
	u, err := ParseUnit([]byte("[Unit]\nDescription=x\n\n[Service]\n# why\nA=1\nA=2\n\nB=\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := u.Value("Service", "A"); v != "2" {
		t.Errorf("A=%q", v)
	}
	if vs := u.Values("Service", "A"); len(vs) != 2 || !u[1].Commented || !u[2].Commented {
		t.Errorf("A: %q %+v", vs, u)
	}
	if v, ok := u.Value("Service", "B"); !ok || v != "" || u[3].Commented {
		t.Errorf("B: %q %v %+v", v, ok, u[3])
	}
	for _, bad := range []string{"A=1\n", "[Service\n", "[Service]\nA\n", "[Service]\nA=1 \\\n"} {
		if _, err := ParseUnit([]byte(bad)); err == nil {
			t.Errorf("ParseUnit(%q) accepted", bad)
		}
	}
}
