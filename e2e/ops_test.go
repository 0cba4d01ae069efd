package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/action"
	"github.com/outpost-agent/outpost/internal/agenttest"
	"github.com/outpost-agent/outpost/upstream/tencent/tencentsim"
)

func runCLI(t *testing.T, a *agent, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(agentBinary(t), args...)
	cmd.Env = append(os.Environ(), "AGENT_LISTEN_ADDR="+a.Addr)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestAdminCLI drives `agent status`, `agent deadletters list|replay` and
// `agent drain` against a running agent whose Tencent upstream rejects one
// action and is then fixed.
func TestAdminCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	t.Parallel() // see agent_test.go
	sim, env := tencentSim(t)
	sim.SetFaults(tencentsim.Faults{BadActionIDs: []string{action.OuterActionID("cli-000003")}})
	a := startAgent(t, t.TempDir(), env...)
	acked := sendActions(t, a, "cli", 10, 10)
	waitFor(t, "settled", 20*time.Second, func() bool {
		st, _ := getStatus(t, a)
		return st.Queues["tencent"].Depth == 0 && st.Queues["tencent"].DeadLetters == 1
	})

	out, err := runCLI(t, a, "status")
	if err != nil || !strings.Contains(out, "UPSTREAM") || !strings.Contains(out, "tencent") || !strings.Contains(out, "not_configured") {
		t.Fatalf("agent status: %v\n%s", err, out)
	}
	if out, err := runCLI(t, a, "status", "--json"); err != nil || !strings.HasPrefix(strings.TrimSpace(out), "{") {
		t.Fatalf("agent status --json: %v\n%s", err, out)
	}
	out, err = runCLI(t, a, "deadletters", "list", "tencent")
	if err != nil || !strings.Contains(out, "cli-000003") || !strings.Contains(out, "31001") ||
		!strings.Contains(out, "OUTER_ACTION_ID") || !strings.Contains(out, action.OuterActionID("cli-000003")) {
		t.Fatalf("deadletters list: %v\n%s", err, out)
	}
	out, err = runCLI(t, a, "drain", "--timeout", "2s")
	if err == nil || !strings.Contains(out, "dead letters") {
		t.Fatalf("drain with a dead letter must fail and say why: %v\n%s", err, out)
	}
	sim.SetFaults(tencentsim.Faults{})
	out, err = runCLI(t, a, "deadletters", "replay", "tencent", "--all")
	if err != nil || !strings.Contains(out, "replayed 1") {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	out, err = runCLI(t, a, "drain", "--timeout", "20s")
	if err != nil || !strings.Contains(out, "drained") {
		t.Fatalf("drain: %v\n%s", err, out)
	}
	checkAllDelivered(t, sim, acked)
	if out, err := runCLI(t, a, "deadletters", "replay", "tencent"); err == nil {
		t.Fatalf("replay without ids or --all accepted:\n%s", out)
	}
	a.Stop()
	if out, err := runCLI(t, a, "status"); err == nil || !strings.Contains(out, "is the agent running") {
		t.Fatalf("status against a stopped agent: %v\n%s", err, out)
	}
}

// TestStatusPageInChromium loads GET / in headless Chromium (Debian's
// chromium; .ci/run installs it) and checks what a person sees: the
// version and when the page last refreshed, accepted and refused action
// counts, a row per upstream with its state and queue, the "failed" column
// labelled as attempts, the decision counts, and the last hour's charts. A
// screenshot must show the charts' bars in their colours.
func TestStatusPageInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	chromium := agenttest.NeedTool(t, "chromium", "chromium")
	sim, env := tencentSim(t)
	_, _, denv := decisionSims(t)
	a := startAgent(t, t.TempDir(), append(env, denv[:7]...)...)
	sendActions(t, a, "page", 30, 10)
	waitFor(t, "delivered", 20*time.Second, func() bool {
		st, _ := getStatus(t, a)
		return st.Queues["tencent"].Depth == 0
	})
	if code, _, err := postJSON(context.Background(), http.DefaultClient, a.URL("/v1/actions"), []byte(`{"actions":[{"id":"x"}]}`)); err != nil || code != 400 {
		t.Fatalf("an invalid request: %d %v", code, err)
	}
	for i, amount := range []float64{100, 200, 20000, 50} {
		postDecision(t, a, decisionBody(fmt.Sprintf("page-d-%d", i), fmt.Sprintf("acct-page-%d", i), amount, false))
	}
	sim.SetFaults(tencentsim.Faults{TokenExpired: true})
	sendActions(t, a, "page2", 20, 10)
	waitFor(t, "tencent paused", 20*time.Second, func() bool {
		st, _ := getStatus(t, a)
		return st.Upstreams["tencent"].State == "paused"
	})
	profile := t.TempDir()
	shot := filepath.Join(t.TempDir(), "status.png")
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
		"--force-color-profile=srgb", "--force-device-scale-factor=1",
		"--user-data-dir=" + profile, "--virtual-time-budget=5000", "--window-size=1200,1000"}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dom, err := exec.CommandContext(ctx, chromium, append(args, "--dump-dom", a.URL("/"))...).Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	page := string(dom)
	for _, want := range []string{`data-upstream="tencent"`, `data-state="paused"`, `data-upstream="tongdun"`,
		`data-result="accept"`, "Outpost agent", "Failed attempts", `data-chart="Actions queued"`, `data-chart="Decisions"`,
		`data-actions="accepted"><b>50</b>`, `data-actions="refused"><b>1</b>`, `<b id="version">` + agentVersion(t) + `</b>`,
		"Actions queued: 50<", "Actions delivered: 30<", "Decisions: 4<"} {
		if !strings.Contains(page, want) {
			t.Fatalf("the page as Chromium rendered it lacks %s:\n%s", want, page)
		}
	}
	if strings.Contains(page, `<b id="updated">never</b>`) {
		t.Fatalf("the page does not say when it refreshed:\n%s", page)
	}
	if !strings.Contains(page, `<span id="err"></span>`) {
		t.Fatalf("the page could not fetch the status:\n%s", page)
	}
	if strings.Contains(page, simToken) {
		t.Fatal("the access token is on the page")
	}

	// What a person sees: the charts' bars, in their colours.
	if out, err := exec.CommandContext(ctx, chromium, append(args, "--screenshot="+shot, a.URL("/"))...).CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, out)
	}
	b, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	if dst := os.Getenv("OUTPOST_SCREENSHOT"); dst != "" {
		os.WriteFile(dst, b, 0o644)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the screenshot is no PNG: %v", err)
	}
	if r := img.Bounds(); r.Dx() != 1200 || r.Dy() != 1000 {
		t.Fatalf("screenshot %v, want 1200x1000", r)
	}
	counts := colourCounts(img, map[string][3]uint8{
		"queued": {0x25, 0x63, 0xeb}, "delivered": {0x16, 0xa3, 0x4a}, "refused": {0xdc, 0x26, 0x26},
		"accept": {0x0d, 0x94, 0x88}, "review": {0xd9, 0x77, 0x06}, "decline": {0x7c, 0x3a, 0xed},
	})
	t.Logf("screenshot: %s (%d bytes); pixels by chart colour: %v", shot, len(b), counts)
	for _, c := range []string{"queued", "delivered", "refused"} {
		if counts[c] < 100 {
			t.Errorf("the %s bars are not on the screenshot: %d pixels of their colour", c, counts[c])
		}
	}
	if counts["accept"]+counts["review"]+counts["decline"] < 100 {
		t.Errorf("the decisions' bars are not on the screenshot: %v", counts)
	}
	// The page is self-contained: no external asset.
	resp, err := http.Get(a.URL("/"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("CSP %q", csp)
	}
	a.Stop()
}

// colourCounts counts the pixels within a small distance of each colour
// (Chromium's rendering may round a channel by a step or two).
func colourCounts(img image.Image, colours map[string][3]uint8) map[string]int {
	out := map[string]int{}
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			for name, c := range colours {
				if near(cr>>8, c[0]) && near(cg>>8, c[1]) && near(cb>>8, c[2]) {
					out[name]++
				}
			}
		}
	}
	return out
}

func near(v uint32, want uint8) bool { d := int(v) - int(want); return d >= -10 && d <= 10 }

// agentVersion is what the test binary says its version is.
func agentVersion(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(agentBinary(t), "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out)) // outpost agent VERSION [REV] GOVERSION
	if len(f) < 3 {
		t.Fatalf("agent version: %q", out)
	}
	return f[2]
}

// TestAdminTokenCLI: with both tokens set, the CLI reads the dead letters
// with AGENT_ADMIN_TOKEN from its environment, and the app token is turned
// away there (403 admin_required) while it still serves status.
func TestAdminTokenCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	t.Parallel() // see agent_test.go
	const app, admin = "app-token-e2e-0123456789", "admin-token-e2e-0123456789"
	a := startAgent(t, t.TempDir(), "AGENT_AUTH_TOKEN="+app, "AGENT_ADMIN_TOKEN="+admin)
	cli := func(env string, args ...string) (string, error) {
		cmd := exec.Command(agentBinary(t), args...)
		cmd.Env = append(os.Environ(), "AGENT_LISTEN_ADDR="+a.Addr, "AGENT_AUTH_TOKEN=", "AGENT_ADMIN_TOKEN=", env)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := cli("AGENT_ADMIN_TOKEN="+admin, "deadletters", "list", "tencent"); err != nil || !strings.Contains(out, "SEQ") {
		t.Fatalf("deadletters list with the admin token: %v\n%s", err, out)
	}
	if out, err := cli("AGENT_ADMIN_TOKEN="+admin, "deadletters", "replay", "tencent", "--all"); err != nil || !strings.Contains(out, "replayed 0") {
		t.Fatalf("replay with the admin token: %v\n%s", err, out)
	}
	if out, err := cli("AGENT_AUTH_TOKEN="+app, "deadletters", "list", "tencent"); err == nil || !strings.Contains(out, "403 admin_required") {
		t.Fatalf("deadletters list with the app token: %v\n%s", err, out)
	}
	for _, env := range []string{"AGENT_AUTH_TOKEN=" + app, "AGENT_ADMIN_TOKEN=" + admin} {
		if out, err := cli(env, "status"); err != nil || !strings.Contains(out, "UPSTREAM") {
			t.Fatalf("status with %s: %v\n%s", env[:strings.IndexByte(env, '=')], err, out)
		}
	}
	if strings.Contains(a.Logs.String(), app) || strings.Contains(a.Logs.String(), admin) {
		t.Fatal("a token in the agent's log")
	}
	a.Stop()
}

// TestDataDirFilesPrivate: started with the usual shell umask (0022), the
// agent still creates everything in its data directory for its own user
// only: files 0600, directories 0700 (badger's tables and value logs were
// 0644).
func TestDataDirFilesPrivate(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "data")
	a := startAgent(t, dir)
	sendActions(t, a, "perm", 20, 10)
	if err := a.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, a.Logs)
	}
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n++
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, want nothing for group or others", strings.TrimPrefix(p, dir), fi.Mode().Perm())
		}
		return nil
	})
	if err != nil || n < 5 {
		t.Fatalf("walked %d entries: %v", n, err)
	}
}

// cliEnv is the test's environment without any AGENT_ variable: what an
// operator's shell has on a host where the agent runs under systemd.
func cliEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AGENT_") {
			env = append(env, kv)
		}
	}
	return env
}

// TestCLIReadsTheEnvFile: the operator exports nothing and passes no
// token: the CLI takes the address and the admin token from the agent's
// env file (/etc/outpost/agent.env, here --env-file). And `agent drain`
// with actions queued for an upstream that is not configured fails at
// once, saying so, instead of waiting out --timeout.
func TestCLIReadsTheEnvFile(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	const app, admin = "app-token-envfile-0123456789", "admin-token-envfile-0123456789"
	a := startAgent(t, t.TempDir(), "AGENT_AUTH_TOKEN="+app, "AGENT_ADMIN_TOKEN="+admin)
	envFile := filepath.Join(t.TempDir(), "agent.env")
	if err := os.WriteFile(envFile, []byte("# as the package ships it, filled in\nAGENT_LISTEN_ADDR="+a.Addr+
		"\nAGENT_AUTH_TOKEN="+app+"\nAGENT_ADMIN_TOKEN=\""+admin+"\"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) (string, error) {
		cmd := exec.Command(agentBinary(t), args...)
		cmd.Env = cliEnv()
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := cli("deadletters", "list", "tencent", "--env-file", envFile); err != nil || !strings.Contains(out, "SEQ") {
		t.Fatalf("deadletters list with the env file's admin token: %v\n%s", err, out)
	}
	if out, err := cli("deadletters", "list", "tencent", "--env-file", envFile, "--addr", a.Addr, "--token", app); err == nil || !strings.Contains(out, "admin_required") {
		t.Fatalf("--token must win over the env file: %v\n%s", err, out)
	}
	if out, err := cli("status", "--env-file", filepath.Join(t.TempDir(), "missing.env")); err == nil || !strings.Contains(out, "--env-file") {
		t.Fatalf("a missing --env-file: %v\n%s", err, out)
	}

	req, _ := http.NewRequest(http.MethodPost, a.URL("/v1/actions"), bytes.NewReader(batchJSON([]string{"nocfg-1", "nocfg-2", "nocfg-3", "nocfg-4", "nocfg-5"}, time.Now())))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+app)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("post: %v %v", err, resp)
	}
	resp.Body.Close()
	start := time.Now()
	out, err := cli("drain", "--timeout", "1m", "--env-file", envFile)
	if err == nil || !strings.Contains(out, "tencent has 5 queued and is not configured") {
		t.Fatalf("drain with tencent not configured: %v\n%s", err, out)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("drain took %v to say tencent is not configured: it must fail at once", d)
	}
	a.Stop()
}
