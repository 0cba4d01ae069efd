package packaging

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/config"
)

// Docker cannot run here; these checks read the Dockerfile as text.

type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
	line int
}

// parseDockerfile joins continuation lines and drops comments and blanks.
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, raw := range strings.Split(string(mustRead(t, path)), "\n") {
		line := strings.TrimSpace(raw)
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(line, "#") {
			continue // comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args), start})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatalf("%s ends inside a continued instruction", path)
	}
	return out
}

// imageUID is the numeric user the image runs as; the Kubernetes manifests
// must use the same.
const imageUID = 65532

var urlRE = regexp.MustCompile(`(?i)\bhttps?://`)

func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, "Dockerfile")
	stages := map[string]bool{}
	var froms []string
	var user, entrypoint string
	env := map[string]string{}
	var volumes, runs []string
	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			f := strings.Fields(in.args)
			froms = append(froms, f[0])
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				stages[f[2]] = true
			}
			env = map[string]string{} // ENV and USER are per stage
			user = ""
		case "ADD":
			t.Errorf("line %d: ADD %s: use COPY (ADD fetches URLs and unpacks archives)", in.line, in.args)
			if urlRE.MatchString(in.args) {
				t.Errorf("line %d: ADD of a URL: nothing may be fetched unpinned at build time", in.line)
			}
		case "COPY":
			for _, f := range strings.Fields(in.args) {
				if v, ok := strings.CutPrefix(f, "--from="); ok && !stages[v] {
					t.Errorf("line %d: COPY --from=%s: no such stage", in.line, v)
				}
				if v, ok := strings.CutPrefix(f, "--chown="); ok && v != strconv.Itoa(imageUID)+":"+strconv.Itoa(imageUID) {
					t.Errorf("line %d: COPY --chown=%s, want the runtime user %d", in.line, v, imageUID)
				}
			}
		case "USER":
			user = in.args
		case "ENV":
			for _, kv := range strings.Fields(in.args) {
				if k, v, ok := strings.Cut(kv, "="); ok {
					env[k] = v
				}
			}
		case "VOLUME":
			var vs []string
			if err := json.Unmarshal([]byte(in.args), &vs); err != nil {
				vs = strings.Fields(in.args)
			}
			volumes = append(volumes, vs...)
		case "RUN":
			runs = append(runs, in.args)
			if urlRE.MatchString(in.args) {
				t.Errorf("line %d: RUN fetches a URL: %s", in.line, in.args)
			}
		case "ENTRYPOINT":
			entrypoint = in.args
		case "HEALTHCHECK":
			t.Errorf("line %d: HEALTHCHECK: Kubernetes ignores it; the manifests probe with outpost-probe", in.line)
		}
	}

	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, got FROM %v", froms)
	}
	if final := froms[len(froms)-1]; !strings.HasPrefix(final, "gcr.io/distroless/static") && final != "scratch" {
		t.Errorf("final stage FROM %s: want distroless/static or scratch (no shell, no libc)", final)
	}
	// USER: numeric (Kubernetes' runAsNonRoot cannot resolve names) and not root.
	u, g, _ := strings.Cut(user, ":")
	uid, err := strconv.Atoi(u)
	if err != nil || uid == 0 {
		t.Errorf("USER %q: want a numeric, non-zero uid", user)
	}
	if uid != imageUID || (g != "" && g != strconv.Itoa(imageUID)) {
		t.Errorf("USER %q: want %d:%d (the manifests' runAsUser)", user, imageUID, imageUID)
	}
	if env["AGENT_DATA_DIR"] != "/var/lib/outpost" {
		t.Errorf("ENV AGENT_DATA_DIR=%q, want /var/lib/outpost", env["AGENT_DATA_DIR"])
	}
	if v, ok := env["AGENT_LISTEN_ADDR"]; ok {
		t.Errorf("ENV AGENT_LISTEN_ADDR=%q: the image keeps the loopback default (the app is in the same pod)", v)
	}
	if !contains(volumes, "/var/lib/outpost") {
		t.Errorf("VOLUME %v: want /var/lib/outpost", volumes)
	}
	var ep []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || len(ep) == 0 || ep[0] != "/usr/bin/outpost-agent" {
		t.Errorf("ENTRYPOINT %s: want the exec form [\"/usr/bin/outpost-agent\"] (signals reach the agent, no shell)", entrypoint)
	}
	build := strings.Join(runs, "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/agent", "./packaging/cmd/outpost-probe", "-o /out/usr/bin/outpost-probe"} {
		if !strings.Contains(build, want) {
			t.Errorf("the build stage does not contain %q", want)
		}
	}
	// What the build compiles exists.
	for _, dir := range []string{"cmd/agent", "packaging/cmd/outpost-probe"} {
		if _, err := os.Stat(filepath.Join(root, dir)); err != nil {
			t.Errorf("%s: %v", dir, err)
		}
	}
	// The build context never carries a local spool.
	ignore := strings.Fields(string(mustRead(t, "Dockerfile.dockerignore")))
	for _, want := range []string{"data", ".git"} {
		if !contains(ignore, want) {
			t.Errorf("Dockerfile.dockerignore does not exclude %s", want)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestDockerStopTimeout: a Dockerfile cannot set the stop timeout (Docker's
// default is 10s), so its comment says what to give `docker stop -t`: at
// least the stop budget of the default AGENT_SHUTDOWN_TIMEOUT, and the
// image stops on SIGTERM, which starts the drain.
func TestDockerStopTimeout(t *testing.T) {
	text := string(mustRead(t, "Dockerfile"))
	m := regexp.MustCompile("`docker stop -t ([0-9]+)`").FindStringSubmatch(text)
	if m == nil {
		t.Fatal("the Dockerfile does not say what to give `docker stop -t`")
	}
	secs, _ := strconv.Atoi(m[1])
	def, err := time.ParseDuration(reflect.TypeOf(config.Config{}).Field(fieldIndex(t, "ShutdownTimeout")).Tag.Get("default"))
	if err != nil {
		t.Fatal(err)
	}
	budget := config.Config{ShutdownTimeout: def}.StopBudget()
	if got := time.Duration(secs) * time.Second; got < budget+5*time.Second {
		t.Errorf("docker stop -t %d: want at least the stop budget %v + 5s", secs, budget)
	}
	var stop string
	for _, in := range parseDockerfile(t, "Dockerfile") {
		if in.cmd == "STOPSIGNAL" {
			stop = in.args
		}
	}
	if stop != "SIGTERM" {
		t.Errorf("STOPSIGNAL %q, want SIGTERM (the drain)", stop)
	}
}

func fieldIndex(t *testing.T, name string) int {
	t.Helper()
	f, ok := reflect.TypeOf(config.Config{}).FieldByName(name)
	if !ok {
		t.Fatalf("config.Config has no %s", name)
	}
	return f.Index[0]
}
