package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/action"
	"github.com/outpost-agent/outpost/decision"
)

// Every generated body is accepted by the agent's own decoder, with the
// current time: ids, tracks, action types, params, user ids, action_time.
func TestBodiesDecode(t *testing.T) {
	seen := map[action.TrackAction]bool{}
	users := map[string]int{}
	now := time.Now()
	for _, batch := range []int{1, 7, 100, action.MaxActions} {
		g := newGenerator("testrun1", batch, 40, 0, uint64(batch), false, 0)
		rng := rand.New(rand.NewPCG(1, 2))
		var buf []byte
		var first uint64
		for i := range g.pool {
			tm := &g.pool[i]
			buf, _ = g.render(buf, tm, first, now.Unix(), rng, nil)
			acts, err := action.Decode(buf, now)
			if err != nil {
				t.Fatalf("batch %d body %d refused: %v\n%s", batch, i, err, buf)
			}
			if len(acts) != batch || tm.actions != batch {
				t.Fatalf("batch %d: decoded %d actions (template says %d)", batch, len(acts), tm.actions)
			}
			for j, a := range acts {
				want := g.prefix + strings.Repeat("0", seqWidth-len(itoa(first+uint64(j)))) + itoa(first+uint64(j))
				if a.ID != want {
					t.Fatalf("id %q, want %q", a.ID, want)
				}
				if a.ActionTime != now.Unix() {
					t.Fatalf("action_time %d, want now %d", a.ActionTime, now.Unix())
				}
				seen[action.TrackAction{Track: a.Track, ActionType: a.ActionType}] = true
				checkParams(t, a)
				switch u := a.UserID; {
				case u == nil:
					t.Fatalf("action without user_id: %+v", a)
				case u.WechatOpenID != "":
					users["wechat_openid"]++
				case u.HashPhone != "":
					users["hash_phone"]++ // raw phones arrive hashed too
				default:
					t.Fatalf("unexpected user_id %+v", u)
				}
			}
			first += uint64(batch)
		}
	}
	// The mix covers every (track, action_type) pair the rules allow.
	for tr, types := range action.Tracks() {
		for _, at := range types {
			if !seen[action.TrackAction{Track: tr, ActionType: at}] {
				t.Errorf("never generated %s/%s", tr, at)
			}
		}
	}
	if users["wechat_openid"] == 0 || users["hash_phone"] == 0 {
		t.Errorf("user id kinds: %v", users)
	}
}

func itoa(v uint64) string { return string(appendUint(nil, v)) }

// checkParams: an action carries exactly the action_params that apply to
// its (track, action_type), within range (Decode already refused any that
// do not apply).
func checkParams(t *testing.T, a action.Action) {
	t.Helper()
	var want []string
	for _, r := range action.Params() {
		if slices.Contains(r.Applies, action.TrackAction{Track: a.Track, ActionType: a.ActionType}) {
			want = append(want, r.Name)
			v, ok := a.ActionParam[r.Name]
			if !ok || v < r.Min || v > r.Max {
				t.Fatalf("%s/%s: %s = %d (present %v), want %d-%d", a.Track, a.ActionType, r.Name, v, ok, r.Min, r.Max)
			}
		}
	}
	if len(a.ActionParam) != len(want) {
		t.Fatalf("%s/%s: params %v, want exactly %v", a.Track, a.ActionType, a.ActionParam, want)
	}
}

// The brief's parameter cases are all in the mix.
func TestMixParams(t *testing.T) {
	want := map[[2]string][]string{
		{"enterprise_loan", "CONFIRM_EFFECTIVE_LEADS"}: {"credit_level"},
		{"enterprise_loan", "CREDIT"}:                  {"credit_level"},
		{"personal_loan", "CREDIT"}:                    {"credit_level"},
		{"personal_loan", "WITHDRAW_DEPOSITS"}:         {"withdraw_deposits_level", "risk_overdue"},
		{"wealth_management", "COMPLETE_ORDER"}:        {"complete_order_level"},
	}
	n := 0
	for _, ks := range mix() {
		for _, k := range ks {
			var names []string
			for _, p := range k.params {
				names = append(names, p.Name)
			}
			if w := want[[2]string{k.track, k.actionType}]; !slices.Equal(names, w) {
				t.Errorf("%s/%s: params %v, want %v", k.track, k.actionType, names, w)
			}
			n++
		}
	}
	if n != 30 {
		t.Errorf("%d (track, action_type) pairs, want 30", n)
	}
}

// With -dup-rate, some ids repeat earlier ones but never within one body
// (which the agent would refuse whole).
func TestBodiesDuplicates(t *testing.T) {
	g := newGenerator("dups", 200, 4, 0.3, 7, false, 0)
	rng := rand.New(rand.NewPCG(3, 4))
	now := time.Now()
	var buf []byte
	var scratch []uint64
	dups := 0
	first := uint64(1000)
	for i := range 50 {
		buf, scratch = g.render(buf, &g.pool[i%len(g.pool)], first, now.Unix(), rng, scratch)
		acts, err := action.Decode(buf, now)
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		for _, a := range acts {
			seq, _ := strconv.ParseUint(strings.TrimPrefix(a.ID, g.prefix), 10, 64)
			if seq < first {
				dups++
			}
		}
		first += 200
	}
	if frac := float64(dups) / (50 * 200); frac < 0.2 || frac > 0.4 {
		t.Errorf("duplicate fraction %.3f, want about 0.3", frac)
	}
}

func TestHistogramPercentiles(t *testing.T) {
	h := newHistogram()
	for v := int64(1); v <= 10000; v++ {
		h.record(v)
	}
	s := h.summary()
	near := func(name string, got, want int64) {
		t.Helper()
		if math.Abs(float64(got-want)) > 0.001*float64(want)+1 {
			t.Errorf("%s = %d, want %d (±0.1%%)", name, got, want)
		}
	}
	if s.Count != 10000 || s.Min != 1 || s.Max != 10000 {
		t.Errorf("count/min/max = %d/%d/%d", s.Count, s.Min, s.Max)
	}
	near("p50", s.P50, 5000)
	near("p90", s.P90, 9000)
	near("p99", s.P99, 9900)
	near("p99.9", s.P999, 9990)
	if math.Abs(s.Mean-5000.5) > 5 {
		t.Errorf("mean %.1f", s.Mean)
	}

	// A tail: 990 fast answers and 10 slow ones.
	h = newHistogram()
	for range 990 {
		h.record(100)
	}
	for range 10 {
		h.record(250_000)
	}
	s = h.summary()
	near("p50", s.P50, 100)
	near("p99", s.P99, 100)
	near("p99.9", s.P999, 250_000)
	if s.Max != 250_000 {
		t.Errorf("max %d", s.Max)
	}
	// Out of range values are clamped, the exact max is kept.
	h.record(0)
	h.record(2 * histHighest)
	if s := h.summary(); s.Min != 0 || s.Max != 2*histHighest || s.Count != 1002 {
		t.Errorf("clamped: %+v", s)
	}
	if got := (&histogram{h: newHistogram().h}).summary(); got.Count != 0 {
		t.Errorf("empty: %+v", got)
	}

	for us, want := range map[int64]string{850: "850µs", 1234: "1.23ms", 45_600: "45.6ms", 2_500_000: "2.50s"} {
		if got := fmtMicros(us); got != want {
			t.Errorf("fmtMicros(%d) = %q, want %q", us, got, want)
		}
	}
}

func TestLoopbackOnly(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:8470", "http://localhost:8470/", "http://[::1]:8470", "http://LOCALHOST:1"} {
		if _, err := loopbackURL(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"http://example.com:8470", "http://10.0.0.5:8470", "http://0.0.0.0:8470", "http://127.0.0.2:8470",
		"http://127.0.0.1.example.com", "http://localhost@example.com", "http://localhost.:8470",
		"https://127.0.0.1:8470", "ftp://localhost", "127.0.0.1:8470", "http://[::ffff:127.0.0.1]:8470",
		"http://user:pw@127.0.0.1:8470", "http://127.0.0.1:8470/v1/actions",
	} {
		if _, err := loopbackURL(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	// The command line refuses it before anything starts.
	var stderr bytes.Buffer
	_, err := run(context.Background(), []string{"-url", "http://example.com:8470"}, io.Discard, &stderr)
	if !errors.Is(err, errUsage) || !strings.Contains(stderr.String(), "not loopback") {
		t.Errorf("run -url example.com: %v\n%s", err, &stderr)
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{}, // no target
		{"-agent-bin", "x", "-url", "http://127.0.0.1:1"},        // two targets
		{"-agent-bin", "x", "-mode", "decisions", "-batch", "5"}, // one decision per request
		{"-agent-bin", "x", "-mode", "nope"},
		{"-agent-bin", "x", "-batch", "1001"},
		{"-agent-bin", "x", "-rate", "10", "-sweep", "1,2"},
		{"-agent-bin", "x", "-chart", "c.svg"},
		{"-agent-bin", "x", "-sweep", "1,x"},
		{"-agent-bin", "x", "-extra-env", "novalue"},
		{"-agent-bin", "x", "-pid", "1"},
	} {
		if _, err := parseFlags(args, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
	c, err := parseFlags([]string{"-agent-bin", "x", "-fill", "10", "-extra-env", "AGENT_AUTH_TOKEN=0123456789abcdef", "-sweep", ""}, io.Discard)
	if err != nil || c.batch != 500 || c.token != "0123456789abcdef" || c.concurrency != 64 || c.duration != 10*time.Second {
		t.Errorf("fill defaults: %+v %v", c, err)
	}
	var help bytes.Buffer
	if _, err := parseFlags([]string{"-h"}, &help); !errors.Is(err, flag.ErrHelp) || !strings.Contains(help.String(), "-agent-bin") {
		t.Errorf("-h: %v\n%s", err, &help)
	}
}

func TestParseStatCPU(t *testing.T) {
	line := "1234 (my (odd) agent) S 1 1234 1234 0 -1 4194560 2770 0 0 0 250 130 0 0 20 0 9 0 3003 1000 200 18446744073709551615\n"
	d, err := parseStatCPU([]byte(line))
	if err != nil || d != 3800*time.Millisecond {
		t.Errorf("cpu %v %v, want 3.8s", d, err)
	}
	if _, err := parseStatCPU([]byte("garbage")); err == nil {
		t.Error("garbage accepted")
	}
	// Our own process can be read.
	s, err := readProc(os.Getpid())
	if err != nil || s.VmRSS <= 0 || s.VmHWM < s.VmRSS || s.RssAnon <= 0 {
		t.Errorf("self: %+v %v", s, err)
	}
}

func TestAnswerParsing(t *testing.T) {
	b := []byte(`{"accepted":17,"duplicates":3}` + "\n")
	if a, d := jsonInt(b, `"accepted":`), jsonInt(b, `"duplicates":`); a != 17 || d != 3 {
		t.Errorf("%d %d", a, d)
	}
	e := []byte(`{"error":{"code":"spool_full","message":"the spool is full"}}`)
	if got := jsonString(e, `"code":`); got != "spool_full" {
		t.Errorf("code %q", got)
	}
	if got := jsonString([]byte("400 Bad Request"), `"code":`); got != "" {
		t.Errorf("code %q", got)
	}
}

// The SVG is well-formed XML with the axes, series and escaped labels.
func TestSVG(t *testing.T) {
	c := chart{
		Title: `latency <p50> & "p99"`, Subtitle: "batch 1", XLabel: "offered load (requests/s)", YLabel: "latency",
		Notes: []string{"2 CPUs & shared"},
		Series: []chartSeries{
			{Name: "agent p50", Color: "#1f77b4", Labels: true, Points: []chartPoint{{1000, 0.4, false}, {2000, 0.6, false}, {5000, 3, false}, {10000, 950, true}}},
			{Name: "agent p99", Color: "#d62728", Labels: true, Points: []chartPoint{{1000, 2, false}, {2000, 3, false}, {5000, 20, false}, {10000, 2400, true}}},
			{Name: "loopback p99", Color: "#7f7f7f", Dashed: true, Points: []chartPoint{{1000, 0.3, false}, {2000, 0.3, false}}},
			{Name: "one point", Color: "#000", Points: []chartPoint{{3000, 1, false}}},
		},
	}
	var buf bytes.Buffer
	if err := writeSVG(&buf, c); err != nil {
		t.Fatal(err)
	}
	counts, texts := map[string]int{}, ""
	dec := xml.NewDecoder(&buf)
	var root string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not valid XML: %v\n%s", err, buf.String())
		}
		switch v := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = v.Name.Local
				if v.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("namespace %q", v.Name.Space)
				}
			}
			counts[v.Name.Local]++
		case xml.CharData:
			texts += string(v) + "|"
		}
	}
	if root != "svg" {
		t.Errorf("root %q", root)
	}
	if counts["polyline"] != 3 || counts["circle"] < 11 || counts["text"] < 15 {
		t.Errorf("elements %v", counts)
	}
	for _, want := range []string{`latency <p50> & "p99"`, "offered load (requests/s)", "10k", "1 s", "0.1 ms", "agent p99", "2 CPUs & shared"} {
		if !strings.Contains(texts, want) {
			t.Errorf("no text %q in %s", want, texts)
		}
	}
	// No data at all still draws a valid chart.
	buf.Reset()
	if err := writeSVG(&buf, chart{Title: "empty"}); err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(buf.Bytes(), new(struct{})); err != nil {
		t.Errorf("empty chart: %v", err)
	}
}

// noop returns a local server answering 202 after handler (may be nil).
func noop(t *testing.T, handler func(n int64)) *url.URL {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if handler != nil {
			handler(n.Add(1))
		}
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"accepted":1,"duplicates":0}`)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL + "/v1/actions")
	return u
}

func spec(u *url.URL, c int) runSpec {
	return runSpec{url: u, client: newClient(c, 5*time.Second), gen: newGenerator("unit", 1, 16, 0, 1, false, 0),
		seq: new(seqCounter), concurrency: c, duration: 5 * time.Second, seed: 1}
}

// -requests stops a closed-loop run at exactly that many measured requests.
func TestClosedLoopRequests(t *testing.T) {
	s := spec(noop(t, nil), 8)
	s.requests = 500
	s.warmup = 50 * time.Millisecond
	r := runLoad(context.Background(), s)
	if r.Requests != 500 || r.count(202) != 500 || r.Accepted != 500 || r.Latency.Count != 500 || r.Total.Requests < 500 {
		t.Errorf("%+v", r)
	}
	if got := s.seq.Load(); got != uint64(r.Total.Actions) {
		t.Errorf("ids handed out %d, actions sent %d", got, r.Total.Actions)
	}
}

// The open loop sends on schedule and measures from the intended send
// time: one 300 ms stall with one worker delays the ~30 requests queued
// behind it, and their latency shows it (no coordinated omission).
func TestOpenLoopCoordinatedOmission(t *testing.T) {
	u := noop(t, func(n int64) {
		if n == 20 {
			time.Sleep(300 * time.Millisecond)
		}
	})
	s := spec(u, 1)
	s.rate = 100
	s.duration = time.Second
	r := runLoad(context.Background(), s)
	if r.Requests != 100 || r.Unsent != 0 || r.Loop != "open" {
		t.Fatalf("requests %d unsent %d loop %s", r.Requests, r.Unsent, r.Loop)
	}
	if r.Latency.P90 < 50_000 || r.Latency.Max < 290_000 {
		t.Errorf("stall hidden: %+v", r.Latency)
	}
	if r.ReqPerSec < 80 || r.ReqPerSec > 110 {
		t.Errorf("achieved %.1f req/s at 100 offered", r.ReqPerSec)
	}
	// The requests sent on time by an idle worker report how late its
	// timer woke it; the ones queued behind the stall were sent late
	// without sleeping and do not.
	if l := r.PacingLag; l == nil || l.Count == 0 || l.Count > r.Requests-10 {
		t.Errorf("pacing lag %+v of %d requests", l, r.Requests)
	}
}

// TestDecisionBodiesAreValid: every generated decision body passes the
// agent's own request validation.
func TestDecisionBodiesAreValid(t *testing.T) {
	g := newGenerator("dec", 1, 50, 0, 3, true, 10)
	for i, tpl := range g.pool {
		if _, err := decision.ParseRequest(tpl.body, "lg"); err != nil {
			t.Fatalf("body %d refused: %v\n%s", i, err, tpl.body)
		}
	}
}

// The own-process ceiling starts a real child server, loads it, samples its
// CPU, and leaves no process behind.
func TestLoopbackProcCeiling(t *testing.T) {
	g := newGenerator("t", 1, 16, 0, 1, false, 0)
	base := runSpec{gen: g, seq: new(seqCounter), concurrency: 4}
	pc, err := loopbackProcRun(context.Background(), base, 0, 400*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r := pc.Load; r.ReqPerSec <= 0 || r.count(202) == 0 || r.Errors != 0 {
		t.Fatalf("req/s %.0f, 202s %d, errors %d, status %v", r.ReqPerSec, r.count(202), r.Errors, r.Status)
	}
	if pc.ServerCores <= 0 {
		t.Errorf("server CPU not sampled: %v cores", pc.ServerCores)
	}
	out, _ := exec.Command("pgrep", "-f", "--", serveNoopFlag).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, _ := strconv.Atoi(f); pid > 0 {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(b), os.Args[0]) {
				t.Errorf("the no-op server (pid %d) outlived the measurement", pid)
			}
		}
	}
}

// countingConn counts the writes a connection is given.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// Each request goes out in one write, headers and body together, as a
// client of a small request sends it: with a body reader net/http does
// not know, it flushes the headers first, and every request cost the
// client two writes and the server a second read.
func TestOneWritePerRequest(t *testing.T) {
	for _, batch := range []int{1, 100} {
		t.Run(strconv.Itoa(batch), func(t *testing.T) {
			s := spec(noop(t, nil), 1)
			s.gen = newGenerator("unit", batch, 4, 0, 1, false, 0)
			var writes atomic.Int64
			tr := s.client.Transport.(*http.Transport)
			dial := tr.DialContext
			tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := dial(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return countingConn{c, &writes}, nil
			}
			s.requests = 50
			r := runLoad(context.Background(), s)
			if r.count(202) != 50 {
				t.Fatalf("%+v", r)
			}
			if r.AvgBodySize < float64(batch)*100 {
				t.Fatalf("bodies of %.0f bytes for %d actions", r.AvgBodySize, batch)
			}
			if got := writes.Load(); got != r.Total.Requests {
				t.Errorf("%d writes for %d requests", got, r.Total.Requests)
			}
		})
	}
}
