//go:build linux

package chaos

// The memory cases: local clients that send big bodies all at once, or
// send them slowly, or send them without the token, must not grow the
// agent past its memory budget (the documented Kubernetes limit is 256
// MiB; the target here is half of it), and an ordinary client beside them
// must keep getting answers.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/internal/agenttest"
)

// memoryCeiling is the peak resident set (VmHWM) the agent must stay under.
const memoryCeiling = 128 << 20

// TestMemoryBoundedUnderBigAndSlowBodies: 1,000 connections each send a
// 1 MiB body at once (half with Content-Length, half chunked), 200 more
// send theirs slowly, and an ordinary client posts single actions the
// whole time. The agent's peak RSS stays under 128 MiB, the ordinary
// client is answered (202, or 503 with Retry-After), and the agent is
// healthy afterwards.
func TestMemoryBoundedUnderBigAndSlowBodies(t *testing.T) {
	skipShort(t)
	a := startAgentBin(t, agenttest.PlainBinary(t), t.TempDir())
	r := hostile(t, a, hostileLoad{flood: 1000, slow: 200})
	r.check(t, a)
}

// TestMemoryBoundedWithoutToken: with AGENT_AUTH_TOKEN set, 300
// connections without the token each send a 1 MiB body, all of it but the
// last piece at once, the rest 3 s later. They are refused on their
// headers, their bodies are never buffered, and the ordinary client (with
// the token) is served beside them.
func TestMemoryBoundedWithoutToken(t *testing.T) {
	skipShort(t)
	const token = "memory-test-token-0123456789"
	a := startAgentBin(t, agenttest.PlainBinary(t), t.TempDir(), "AGENT_AUTH_TOKEN="+token)
	r := hostile(t, a, hostileLoad{flood: 300, floodNoToken: true, floodHold: 3 * time.Second, token: token})
	r.check(t, a)
	if strings.Contains(a.Logs.String(), token) {
		t.Error("the token in the agent's log")
	}
	if r.flood[401] == 0 {
		t.Fatalf("no token-less request was answered 401: %v", r.flood)
	}
	for code := range r.flood {
		if code >= 0 && code != 401 && code != 503 {
			t.Fatalf("a token-less request was answered %d: %v", code, r.flood)
		}
	}
}

// startAgentBin is startAgent with the binary to run.
func startAgentBin(t *testing.T, bin, dataDir string, env ...string) *agent {
	t.Helper()
	a, ready, err := spawnAgentBin(t, bin, dataDir, env...)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case a.Addr = <-ready:
		return a
	case <-a.Done():
		t.Fatalf("agent exited before ready: %v\n%s", a.Err(), a.Crash(30))
	case <-time.After(30 * time.Second):
		t.Fatalf("agent not ready\n%s", a.Tail(30))
	}
	return nil
}

type hostileLoad struct {
	flood        int           // connections sending a 1 MiB body at once
	floodNoToken bool          // the flood sends no token
	floodHold    time.Duration // the flood waits this long before its last piece
	slow         int           // connections sending a 1 MiB body slowly
	token        string        // the ordinary client's token
}

// hostileResult counts outcomes by status code; -1 is a connection closed
// or reset without an answer, -2 a client-side time-out.
type hostileResult struct {
	hwm        int64
	ordinary   map[int]int
	noRetry    int // ordinary 503s without Retry-After
	flood      map[int]int
	slow       map[int]int
	took       time.Duration
	timeline   []string
	healthyErr error
}

// bigBody is a 1 MiB actions batch: valid JSON with more actions than a
// request may carry, the costliest thing to decode.
func bigBody() []byte {
	var b strings.Builder
	b.WriteString(`{"actions":[`)
	for i := 0; b.Len() < 1<<20-400; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"big-%07d","track":"payment","action_type":"REGISTER","action_time":%d,"user_id":{"phone":"13800138000"}}`, i, time.Now().Unix())
	}
	b.WriteString(`]}`)
	return []byte(strings.Repeat(" ", 1<<20-b.Len()) + b.String())
}

func hostile(t *testing.T, a *agent, load hostileLoad) *hostileResult {
	t.Helper()
	pid := a.Cmd.Process.Pid
	body := bigBody()
	res := &hostileResult{ordinary: map[int]int{}, flood: map[int]int{}, slow: map[int]int{}}
	var mu sync.Mutex
	count := func(m map[int]int, code int) {
		mu.Lock()
		m[code]++
		mu.Unlock()
	}
	start := time.Now()

	// The resident set, sampled, for the log: its peak in each second.
	sampleCtx, stopSample := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var peak int64
		sec := 0
		for sampleCtx.Err() == nil {
			peak = max(peak, procStatus(pid, "VmRSS"))
			if s := int(time.Since(start) / time.Second); s > sec {
				res.timeline = append(res.timeline, fmt.Sprintf("%ds %dMiB", s, peak>>20))
				sec, peak = s, 0
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	// The ordinary client: one keep-alive connection, single actions.
	ordCtx, stopOrdinary := context.WithCancel(context.Background())
	ordDone := make(chan struct{})
	go func() {
		defer close(ordDone)
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
		for i := 0; ordCtx.Err() == nil; i++ {
			b := fmt.Sprintf(`{"actions":[{"id":"ordinary-%06d","track":"payment","action_type":"REGISTER","action_time":%d,"user_id":{"phone":"13800138000"}}]}`, i, time.Now().Unix())
			req, _ := http.NewRequest("POST", a.URL("/v1/actions"), strings.NewReader(b))
			req.Header.Set("Content-Type", "application/json")
			if load.token != "" {
				req.Header.Set("Authorization", "Bearer "+load.token)
			}
			resp, err := c.Do(req)
			if err != nil {
				count(res.ordinary, -1)
				time.Sleep(50 * time.Millisecond)
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			count(res.ordinary, resp.StatusCode)
			if resp.StatusCode == 503 {
				if resp.Header.Get("Retry-After") == "" {
					mu.Lock()
					res.noRetry++
					mu.Unlock()
				}
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(300 * time.Millisecond) // the ordinary client is connected first

	hdr := "POST /v1/actions HTTP/1.1\r\nHost: " + a.Addr + "\r\nContent-Type: application/json\r\n"
	if load.token != "" && !load.floodNoToken {
		hdr += "Authorization: Bearer " + load.token + "\r\n"
	}
	var wg sync.WaitGroup
	for i := range load.slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			count(res.slow, rawPost(a.Addr, hdr, body, i%2 == 1, 512, 250*time.Millisecond, 0, 40*time.Second))
		}()
	}
	for i := range load.flood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			count(res.flood, rawPost(a.Addr, hdr, body, i%2 == 1, 64<<10, 0, load.floodHold, 40*time.Second))
		}()
	}
	wg.Wait()
	time.Sleep(time.Second) // the ordinary client goes on a little after
	stopOrdinary()
	<-ordDone
	res.took = time.Since(start)

	// Healthy afterwards: alive, /healthz, and a fresh action stored.
	res.healthyErr = func() error {
		if a.Exited() {
			return fmt.Errorf("the agent exited: %v\n%s", a.Err(), a.Crash(30))
		}
		var last string
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			req, _ := http.NewRequest("POST", a.URL("/v1/actions"), strings.NewReader(fmt.Sprintf(
				`{"actions":[{"id":"after-1","track":"payment","action_type":"REGISTER","action_time":%d,"user_id":{"phone":"13800138000"}}]}`, time.Now().Unix())))
			req.Header.Set("Content-Type", "application/json")
			if load.token != "" {
				req.Header.Set("Authorization", "Bearer "+load.token)
			}
			resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
			if err != nil {
				last = err.Error()
				continue
			}
			resp.Body.Close()
			if resp.StatusCode == 202 {
				return nil
			}
			last = resp.Status
		}
		return fmt.Errorf("no fresh action stored after the load: %s", last)
	}()
	stopSample()
	<-sampled
	res.hwm = procStatus(pid, "VmHWM")
	return res
}

// check asserts the bound and the ordinary client's answers, and logs the
// figures.
func (r *hostileResult) check(t *testing.T, a *agent) {
	t.Helper()
	t.Logf("VmHWM %.1f MiB in %.1f s; ordinary client %s; flood %s; slow %s",
		float64(r.hwm)/(1<<20), r.took.Seconds(), codes(r.ordinary), codes(r.flood), codes(r.slow))
	t.Logf("RSS peak by second: %s", strings.Join(r.timeline, ", "))
	if r.healthyErr != nil {
		t.Fatal(r.healthyErr)
	}
	if r.hwm >= memoryCeiling {
		t.Errorf("peak RSS (VmHWM) %.1f MiB, want under %d MiB", float64(r.hwm)/(1<<20), memoryCeiling>>20)
	}
	if r.ordinary[202] == 0 {
		t.Errorf("the ordinary client never got a 202: %v", r.ordinary)
	}
	answered := 0
	for code, n := range r.ordinary {
		switch code {
		case 202, 503:
			answered += n
		default:
			t.Errorf("the ordinary client got %d %d times", code, n)
		}
	}
	if r.noRetry > 0 {
		t.Errorf("%d of the ordinary client's 503s had no Retry-After", r.noRetry)
	}
	// The big bodies are refused one way or another, never served, and
	// never a server error but 503.
	for name, m := range map[string]map[int]int{"flood": r.flood, "slow": r.slow} {
		for code := range m {
			switch code {
			case -1, 400, 401, 408, 503:
			default:
				t.Errorf("a %s connection got %d: %s", name, code, codes(m))
			}
		}
	}
	if strings.Contains(a.Logs.String(), "13800138000") {
		t.Error("a phone number in the agent's log")
	}
}

func codes(m map[int]int) string {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	var parts []string
	for _, k := range ks {
		name := strconv.Itoa(k)
		switch k {
		case -1:
			name = "closed"
		case -2:
			name = "client-timeout"
		}
		parts = append(parts, fmt.Sprintf("%s:%d", name, m[k]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// rawPost sends body on a connection of its own, chunked or with a
// Content-Length, in pieces of piece bytes with pace between them, and
// returns the status of the answer; -1 when the connection was closed or
// reset without one, -2 when none came within limit. With holdLast, it
// waits that long (or until it is answered) before the last piece.
func rawPost(addr, hdr string, body []byte, chunked bool, piece int, pace, holdLast, limit time.Duration) int {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return -1
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(limit))
	got := make(chan int, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				got <- -2
			} else {
				got <- -1
			}
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	h := hdr
	if chunked {
		h += "Transfer-Encoding: chunked\r\n\r\n"
	} else {
		h += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	}
	w := bufio.NewWriterSize(c, piece+64)
	w.WriteString(h)
	for off := 0; off < len(body); off += piece {
		p := body[off:min(off+piece, len(body))]
		if holdLast > 0 && off+piece >= len(body) {
			// All but the last piece is sent: a server that buffers
			// bodies before answering holds this one now.
			select {
			case code := <-got:
				return code
			case <-time.After(holdLast):
			}
		}
		if chunked {
			fmt.Fprintf(w, "%x\r\n", len(p))
		}
		w.Write(p)
		if chunked {
			w.WriteString("\r\n")
		}
		if err := w.Flush(); err != nil {
			break
		}
		if pace > 0 {
			select {
			case code := <-got:
				return code
			case <-time.After(pace):
			}
		}
	}
	if chunked {
		w.WriteString("0\r\n\r\n")
		w.Flush()
	}
	return <-got
}

// procStatus is a field of /proc/PID/status in bytes (0 if unreadable).
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n << 10
		}
	}
	return 0
}
