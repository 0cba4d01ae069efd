package monitoring

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/outpost-agent/outpost/fleet"
	"github.com/outpost-agent/outpost/internal/agenttest"
	"github.com/outpost-agent/outpost/metrics"
)

// exposed returns the metric family names the agent really exposes, from
// a scrape of the metrics package with every source filled in.
func exposed(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.New("test")
	m.Read(metrics.Sources{
		Queues:      func() map[string]metrics.QueueStats { return map[string]metrics.QueueStats{"tencent": {}} },
		StoreBytes:  func() int64 { return 1 },
		Spool:       func() metrics.SpoolSize { return metrics.SpoolSize{StoredBytes: 1, MaxBytes: 2} },
		Quarantined: func() bool { return false },
		Upstreams: func() map[string]metrics.UpstreamStats {
			return map[string]metrics.UpstreamStats{"tencent": {State: "ok"}}
		},
		Policy:  func() metrics.PolicyStats { return metrics.PolicyStats{Version: "v"} },
		Journal: func() metrics.JournalStats { return metrics.JournalStats{} },
		Damage: func() metrics.DamageStats {
			return metrics.DamageStats{Lost: map[string]int64{"tencent": 0}}
		},
	})
	// Fleet mode's Kafka side (an agent's producer, a relay).
	m.Register(fleet.ProducerCollector(func() fleet.ProducerStatus {
		return fleet.ProducerStatus{Queues: map[string]fleet.QueueStatus{"tencent": {}}}
	}), fleet.RelayCollector(func() fleet.RelayStatus {
		return fleet.RelayStatus{Topic: "outpost.actions.v1", Partitions: []fleet.PartitionStatus{{Lag: 0}}}
	}), fleet.VelocityCollector(func() fleet.VelocityStatus {
		return fleet.VelocityStatus{Partitions: map[string]fleet.VelocityPartition{"0": {}}}
	}))
	m.Request("GET /v1/status", 200, 0)
	m.Actions("accepted", 1)
	m.Decision("accept", false)
	m.Commit(0, 1, nil)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	names := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "# TYPE ") {
			f := strings.Fields(line)
			names[f[2]] = true
			if f[3] == "histogram" {
				names[f[2]+"_bucket"], names[f[2]+"_sum"], names[f[2]+"_count"] = true, true, true
			}
		}
	}
	return names
}

var metricRef = regexp.MustCompile(`\boutpost_[a-z_]+`)

// scrapeJob is the job name the agent-down rules assume (alerts.yaml says
// so at its top, and so does packaging/README.md).
const scrapeJob = `up{job="outpost-agent"}`

func checkExpr(t *testing.T, where, expr string, names map[string]bool) {
	t.Helper()
	refs := metricRef.FindAllString(expr, -1)
	if len(refs) == 0 && strings.Contains(expr, scrapeJob) {
		return // Prometheus' own series of the scrape: the agent down or gone
	}
	if len(refs) == 0 {
		t.Errorf("%s: expression uses no outpost metric: %s", where, expr)
	}
	for _, r := range refs {
		if !names[r] {
			t.Errorf("%s: %s is not a metric the agent exposes", where, r)
		}
	}
	if strings.Count(expr, "(") != strings.Count(expr, ")") || strings.Count(expr, "{") != strings.Count(expr, "}") {
		t.Errorf("%s: unbalanced brackets: %s", where, expr)
	}
}

// TestAlertRules: the rules file decodes strictly, every rule has a name,
// an expression over metrics the agent really exposes, a severity and a
// summary.
func TestAlertRules(t *testing.T) {
	names := exposed(t)
	f, err := os.Open("alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var doc struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	runbook := mustRead(t, "../../docs/runbook.md")
	n := 0
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v lacks a name, severity or summary", r)
			}
			// The runbook link names a section of docs/runbook.md.
			const base = "https://github.com/outpost-agent/outpost/blob/main/docs/runbook.md#"
			if u := r.Annotations["runbook_url"]; u != base+strings.ToLower(r.Alert) {
				t.Errorf("%s: runbook_url %q, want %s%s", r.Alert, u, base, strings.ToLower(r.Alert))
			}
			if !strings.Contains(runbook, "\n## "+r.Alert+"\n") {
				t.Errorf("%s: docs/runbook.md has no section \"## %s\"", r.Alert, r.Alert)
			}
			checkExpr(t, r.Alert, r.Expr, names)
		}
	}
	for _, want := range []string{"OutpostQueueStale", "OutpostUpstreamPaused", "OutpostDeadLettersGrowing", "OutpostStoreQuarantined",
		"OutpostDown", "OutpostAbsent", "OutpostSpoolNearlyFull"} {
		if !strings.Contains(mustRead(t, "alerts.yaml"), want) {
			t.Errorf("no %s alert", want)
		}
	}
	if n < 5 {
		t.Fatalf("%d rules", n)
	}
}

// TestGrafanaDashboard: valid JSON, and every panel queries metrics the
// agent exposes.
func TestGrafanaDashboard(t *testing.T) {
	names := exposed(t)
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(mustRead(t, "grafana-dashboard.json")), &d); err != nil {
		t.Fatal(err)
	}
	if d.Title == "" || len(d.Panels) < 6 {
		t.Fatalf("dashboard %q with %d panels", d.Title, len(d.Panels))
	}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			checkExpr(t, p.Title, q.Expr, names)
		}
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPromtool checks the rules with Prometheus' own promtool (Debian's
// prometheus package; .ci/run installs it).
func TestPromtool(t *testing.T) {
	promtool := agenttest.NeedTool(t, "promtool", "prometheus")
	out, err := exec.Command(promtool, "check", "rules", "alerts.yaml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// TestPromtoolRuleTests runs the rules' unit tests (alerts_test.yaml) and
// checks that each rule has one in which it fires, labels and annotations
// (summary expanded, runbook link) spelt out.
func TestPromtoolRuleTests(t *testing.T) {
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal([]byte(mustRead(t, "alerts.yaml")), &rules); err != nil {
		t.Fatal(err)
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []struct {
					ExpAnnotations map[string]string `yaml:"exp_annotations"`
				} `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal([]byte(mustRead(t, "alerts_test.yaml")), &tests); err != nil {
		t.Fatal(err)
	}
	fires := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			for _, e := range a.ExpAlerts {
				if e.ExpAnnotations["summary"] != "" && e.ExpAnnotations["runbook_url"] != "" {
					fires[a.Alertname] = true
				}
			}
		}
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if !fires[r.Alert] {
				t.Errorf("%s has no test in alerts_test.yaml where it fires with its annotations", r.Alert)
			}
		}
	}
	promtool := agenttest.NeedTool(t, "promtool", "prometheus")
	out, err := exec.Command(promtool, "test", "rules", "alerts_test.yaml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
