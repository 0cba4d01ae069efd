package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// scriptRun runs one maintainer script with stub commands (systemctl,
// getent, groupadd, useradd, chgrp) that only record how they were called,
// and returns those calls. systemdUp makes the script believe systemd is
// PID 1 (/run/systemd/system exists); userExists makes getent find the user.
func scriptRun(t *testing.T, script string, systemdUp, userExists bool, args ...string) []string {
	t.Helper()
	sh := tool(t, "sh", "dash")
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "calls")
	for _, name := range []string{"systemctl", "getent", "groupadd", "useradd", "chgrp"} {
		stub := "#!/bin/sh\necho \"" + name + " $*\" >> \"$STUB_LOG\"\n"
		if name == "getent" {
			stub += "exit \"$GETENT_RC\"\n"
		}
		if err := os.WriteFile(filepath.Join(bin, name), []byte(stub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := filepath.Join(dir, "run-systemd-system")
	if systemdUp {
		if err := os.Mkdir(run, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src := mustRead(t, filepath.Join("scripts", script))
	body := strings.ReplaceAll(string(src), "/run/systemd/system", run)
	if body == string(src) && strings.Contains(body, "systemctl") {
		t.Fatalf("%s calls systemctl without testing /run/systemd/system", script)
	}
	path := filepath.Join(dir, script)
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	rc := "2" // getent: not found
	if userExists {
		rc = "0"
	}
	cmd := exec.Command(sh, append([]string{path}, args...)...)
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "STUB_LOG=" + log, "GETENT_RC=" + rc}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %q: %v\n%s", script, args, err, out)
	}
	b, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// getent lookups and the chgrp of /etc/outpost (which exists only on
		// a real install) are not what these tests are about.
		if !strings.HasPrefix(l, "getent ") && !strings.HasPrefix(l, "chgrp ") {
			calls = append(calls, l)
		}
	}
	return calls
}

const unit = "outpost-agent.service"

func TestMaintainerScripts(t *testing.T) {
	useradd := "useradd --system --gid outpost --no-create-home --home-dir /var/lib/outpost --shell "
	cases := []struct {
		name       string
		script     string
		args       []string
		systemdUp  bool
		userExists bool
		want       []string
	}{
		// preinstall: the user and group, once.
		{"deb install, no user", "preinstall.sh", []string{"install"}, true, false, []string{"groupadd --system outpost", useradd}},
		{"rpm install, no user", "preinstall.sh", []string{"1"}, true, false, []string{"groupadd --system outpost", useradd}},
		{"deb upgrade, user exists", "preinstall.sh", []string{"upgrade", "1.2.3"}, true, true, nil},

		// postinstall: enable (not start) on a first install; restart a running
		// agent on upgrade, leaving the enablement as the admin set it.
		{"deb first install", "postinstall.sh", []string{"configure", ""}, true, true, []string{"systemctl daemon-reload", "systemctl enable " + unit}},
		{"rpm first install", "postinstall.sh", []string{"1"}, true, true, []string{"systemctl daemon-reload", "systemctl enable " + unit}},
		{"deb upgrade", "postinstall.sh", []string{"configure", "1.2.3"}, true, true, []string{"systemctl daemon-reload", "systemctl try-restart " + unit}},
		{"rpm upgrade", "postinstall.sh", []string{"2"}, true, true, []string{"systemctl daemon-reload", "systemctl try-restart " + unit}},
		{"install without systemd running (container, chroot)", "postinstall.sh", []string{"configure", ""}, false, true, []string{"systemctl enable " + unit}},
		{"upgrade without systemd running", "postinstall.sh", []string{"configure", "1.2.3"}, false, true, nil},
		{"deb abort-upgrade", "postinstall.sh", []string{"abort-upgrade", "1.2.4"}, true, true, []string{"systemctl daemon-reload", "systemctl try-restart " + unit}},

		// preremove: stop and disable on removal, nothing on upgrade.
		{"deb remove", "preremove.sh", []string{"remove"}, true, true, []string{"systemctl stop " + unit, "systemctl disable " + unit}},
		{"rpm erase", "preremove.sh", []string{"0"}, true, true, []string{"systemctl stop " + unit, "systemctl disable " + unit}},
		{"deb upgrade", "preremove.sh", []string{"upgrade", "1.2.4"}, true, true, nil},
		{"rpm upgrade", "preremove.sh", []string{"1"}, true, true, nil},
		{"remove without systemd running", "preremove.sh", []string{"remove"}, false, true, []string{"systemctl disable " + unit}},

		// postremove: reload systemd after removal; never touch the data.
		{"deb remove", "postremove.sh", []string{"remove"}, true, true, []string{"systemctl daemon-reload"}},
		{"deb purge", "postremove.sh", []string{"purge"}, true, true, []string{"systemctl daemon-reload"}},
		{"rpm erase", "postremove.sh", []string{"0"}, true, true, []string{"systemctl daemon-reload"}},
		{"deb upgrade", "postremove.sh", []string{"upgrade", "1.2.4"}, true, true, nil},
		{"rpm upgrade", "postremove.sh", []string{"1"}, true, true, nil},
	}
	for _, c := range cases {
		t.Run(c.script+"/"+c.name, func(t *testing.T) {
			got := scriptRun(t, c.script, c.systemdUp, c.userExists, c.args...)
			if len(c.want) > 0 && c.want[len(c.want)-1] == useradd {
				// The shell is /usr/sbin/nologin or /sbin/nologin, whichever exists.
				if n := len(got); n == len(c.want) && strings.HasPrefix(got[n-1], useradd) {
					got[n-1] = useradd
				}
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("calls:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(c.want, "\n  "))
			}
		})
	}
}

// forbidden matches commands no maintainer script may run: deleting data,
// the user or the group, or starting the agent (the operator does that, once
// the env file and the encryption key are in place).
var forbidden = regexp.MustCompile(`^\s*((rm|userdel|groupdel|deluser|delgroup)\s|systemctl\s+(start|restart|enable\s+--now)\b)`)

// TestScriptsNeverDeleteData: no script may remove the spool, the key or the user.
func TestScriptsNeverDeleteData(t *testing.T) {
	for _, s := range []string{"preinstall.sh", "postinstall.sh", "preremove.sh", "postremove.sh"} {
		b := string(mustRead(t, filepath.Join("scripts", s)))
		for i, line := range strings.Split(b, "\n") {
			if m := forbidden.FindString(line); m != "" {
				t.Errorf("%s:%d runs %q: %s", s, i+1, m, line)
			}
		}
		if !strings.HasPrefix(b, "#!/bin/sh\n") || !strings.Contains(b, "\nset -e\n") {
			t.Errorf("%s: want #!/bin/sh and set -e", s)
		}
		fi, err := os.Stat(filepath.Join("scripts", s))
		if err != nil || fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable", s)
		}
	}
}
