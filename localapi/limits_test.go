package localapi

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawConn is a connection to the API for requests written by hand.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, h *harness) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) write(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// read reads one answer and its body.
func (r *rawConn) read() (*http.Response, string) {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil {
		r.t.Fatalf("no answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// closed reports whether the server closed the connection (end of stream
// or reset before anything more arrives).
func (r *rawConn) closed() bool {
	r.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := r.br.ReadByte()
	return err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func postHeader(path, extra string) string {
	return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + extra
}

// TestTokenCheckedBeforeBody: a request without the token is answered
// 401 on its headers, before its body arrives (here: it never does), and
// the connection is closed, so the body is neither buffered nor read as a
// request. With Expect: 100-continue the caller is not invited to send it.
func TestTokenCheckedBeforeBody(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AuthToken = "0123456789abcdef-token"; c.AdminToken = "admin-0123456789abcdef" })
	for _, tt := range []struct{ name, path, hdr, status string }{
		{"no token", "/v1/actions", "", "401"},
		{"wrong token", "/v1/decisions", "Authorization: Bearer nope\r\n", "401"},
		{"browser", "/v1/actions", "Authorization: Bearer 0123456789abcdef-token\r\nOrigin: https://evil.example\r\n", "403"},
		{"app token on replay", "/v1/deadletters/replay", "Authorization: Bearer 0123456789abcdef-token\r\n", "403"},
		{"expect continue", "/v1/actions", "Expect: 100-continue\r\n", "401"},
		{"chunked", "/v1/actions", "Transfer-Encoding: chunked\r\n", "401"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, h)
			framing := "Content-Length: 1048576\r\n"
			if strings.Contains(tt.hdr, "chunked") {
				framing = ""
			}
			c.write(postHeader(tt.path, tt.hdr+framing) + "\r\n" + "{\"actions\":[")
			start := time.Now()
			resp, b := c.read()
			if fmt.Sprint(resp.StatusCode) != tt.status || time.Since(start) > 2*time.Second {
				t.Fatalf("got %d %s after %v", resp.StatusCode, b, time.Since(start))
			}
			if !c.closed() {
				t.Fatal("the connection stays open with the refused body on its way")
			}
		})
	}
	if h.sp.Stats()["tencent"].Depth != 0 {
		t.Fatal("stored")
	}
}

// TestBodyBudget: bodies take their Content-Length of the process's
// budget before they are read; one that does not fit is answered 503
// overloaded with Retry-After at once, without its body being read, and
// the budget comes back once a request is answered.
func TestBodyBudget(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxBodyBytes = 40000; c.BodyBytesInFlight = 50000 })
	// A caller declares 40,000 bytes and sends the first 10,000: it holds
	// 40,000. (fasthttp reads up to 8 KiB of a body with the headers,
	// before the handler, whatever the budget: that much a connection
	// holds on its own.)
	slow := dialRaw(t, h)
	slow.write(postHeader("/v1/actions", "Content-Length: 40000\r\n") + "\r\n" + strings.Repeat(" ", 10000))
	time.Sleep(200 * time.Millisecond)

	big := string(body(act("budget-big", `,"trace":{"click_id":"`+strings.Repeat("c", 60)+`"}`)))
	big += strings.Repeat(" ", 20000-len(big))
	c := dialRaw(t, h)
	c.write(postHeader("/v1/actions", fmt.Sprintf("Content-Length: %d\r\n", len(big))) + "\r\n" + big[:prefetchBytes])
	resp, b := c.read()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(b, `"overloaded"`) {
		t.Fatalf("a body past the budget: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	if !c.closed() {
		t.Fatal("refused before its body was read, the connection stays open")
	}
	// A small one fits beside the slow one.
	if resp, b := h.do(t, "POST", "/v1/actions", "application/json", body(act("budget-small", ""))); resp.StatusCode != 202 {
		t.Fatalf("a small body beside: %d %s", resp.StatusCode, b)
	}
	// The slow caller finishes; its request is decoded (and refused: it is
	// not JSON) and its share comes back.
	slow.write(strings.Repeat(" ", 40000-10000))
	if resp, b := slow.read(); resp.StatusCode != 400 {
		t.Fatalf("the slow body: %d %s", resp.StatusCode, b)
	}
	c = dialRaw(t, h)
	c.write(postHeader("/v1/actions", fmt.Sprintf("Content-Length: %d\r\n", len(big))) + "\r\n" + big)
	if resp, b := c.read(); resp.StatusCode != 202 {
		t.Fatalf("the big body once the budget is back: %d %s", resp.StatusCode, b)
	}
	if n := h.api.budget.inUse(); n != 0 {
		t.Fatalf("%d bytes of the budget still taken with every request answered", n)
	}
}

// TestChunkedBodies: a chunked body is served like any other; past
// MaxBodyBytes it is 413, and past the budget 503, each with the
// connection closed.
func TestChunkedBodies(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxBodyBytes = 64 << 10; c.BodyBytesInFlight = 64 << 10 })
	chunk := func(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }
	b := string(body(act("chunk-1", "")))
	c := dialRaw(t, h)
	c.write(postHeader("/v1/actions", "Transfer-Encoding: chunked\r\n") + "\r\n" + chunk(b[:10]) + chunk(b[10:]) + "0\r\n\r\n")
	if resp, got := c.read(); resp.StatusCode != 202 {
		t.Fatalf("chunked: %d %s", resp.StatusCode, got)
	}
	// The connection serves the next request.
	c.write(postHeader("/v1/actions", "Transfer-Encoding: chunked\r\n") + "\r\n" + chunk(string(body(act("chunk-2", "")))) + "0\r\n\r\n")
	if resp, got := c.read(); resp.StatusCode != 202 {
		t.Fatalf("chunked, second on the connection: %d %s", resp.StatusCode, got)
	}

	// Exactly MaxBodyBytes, with a budget of exactly that: taken.
	exact := string(body(act("chunk-exact", "")))
	exact = strings.Repeat(" ", 64<<10-len(exact)) + exact
	c = dialRaw(t, h)
	c.write(postHeader("/v1/actions", "Transfer-Encoding: chunked\r\n") + "\r\n" + chunk(exact[:40000]) + chunk(exact[40000:]) + "0\r\n\r\n")
	if resp, got := c.read(); resp.StatusCode != 202 {
		t.Fatalf("chunked, exactly the cap: %d %s", resp.StatusCode, got)
	}

	c = dialRaw(t, h)
	c.write(postHeader("/v1/actions", "Transfer-Encoding: chunked\r\n") + "\r\n")
	for range 5 {
		c.write(chunk(strings.Repeat(" ", 16<<10)))
	}
	resp, got := c.read()
	if resp.StatusCode != 413 || !strings.Contains(got, "body_too_large") || !c.closed() {
		t.Fatalf("chunked past the cap: %d %s", resp.StatusCode, got)
	}

	// One caller holds 48 KiB of the budget; a chunked body then runs out.
	hold := dialRaw(t, h)
	hold.write(postHeader("/v1/actions", "Content-Length: 49152\r\n") + "\r\n" + strings.Repeat(" ", prefetchBytes))
	time.Sleep(200 * time.Millisecond)
	c = dialRaw(t, h)
	c.write(postHeader("/v1/actions", "Transfer-Encoding: chunked\r\n") + "\r\n")
	for range 3 {
		c.write(chunk(strings.Repeat(" ", 8<<10)))
	}
	resp, got = c.read()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !c.closed() {
		t.Fatalf("chunked past the budget: %d %s", resp.StatusCode, got)
	}
	hold.c.Close()
	deadline := time.Now().Add(2 * time.Second)
	for h.api.budget.inUse() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := h.api.budget.inUse(); n != 0 {
		t.Fatalf("%d bytes of the budget still taken after every caller went away", n)
	}
}

// TestSlowRequestsTimeOut: a caller that does not finish its headers
// within HeaderTimeout, or its body within BodyTimeout, is answered 408
// and the connection closed.
func TestSlowRequestsTimeOut(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.HeaderTimeout = 300 * time.Millisecond; c.BodyTimeout = 300 * time.Millisecond })
	c := dialRaw(t, h)
	c.write(postHeader("/v1/actions", "Content-Length: 100\r\n") + "\r\n{\"actions\":")
	start := time.Now()
	for range 3 { // a trickle does not extend the deadline
		time.Sleep(100 * time.Millisecond)
		c.c.Write([]byte(" "))
	}
	resp, b := c.read()
	if resp.StatusCode != 408 || !strings.Contains(b, `"timeout"`) || time.Since(start) > 2*time.Second || !c.closed() {
		t.Fatalf("slow body: %d %s after %v", resp.StatusCode, b, time.Since(start))
	}

	c = dialRaw(t, h)
	c.write("POST /v1/actions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
	start = time.Now()
	resp, b = c.read()
	if resp.StatusCode != 408 || time.Since(start) > 2*time.Second {
		t.Fatalf("slow headers: %d %s after %v", resp.StatusCode, b, time.Since(start))
	}

	// A connection that sends nothing at all is answered 408 and closed.
	c = dialRaw(t, h)
	start = time.Now()
	if resp, _ := c.read(); resp.StatusCode != 408 || time.Since(start) > 2*time.Second || !c.closed() {
		t.Fatalf("a silent connection: %d after %v", resp.StatusCode, time.Since(start))
	}
}

// TestConnectionCap: past MaxConnections a connection is answered 503
// overloaded with Retry-After and closed, without being read; a place
// comes back when a connection closes.
func TestConnectionCap(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxConnections = 2 })
	a, b := dialRaw(t, h), dialRaw(t, h)
	a.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	if resp, _ := a.read(); resp.StatusCode != 200 {
		t.Fatalf("first: %d", resp.StatusCode)
	}
	time.Sleep(100 * time.Millisecond)
	c := dialRaw(t, h)
	c.write(postHeader("/v1/actions", "Content-Length: 1048576\r\n") + "\r\n")
	resp, got := c.read()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(got, `"overloaded"`) || !c.closed() {
		t.Fatalf("past the cap: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), got)
	}
	b.c.Close()
	time.Sleep(100 * time.Millisecond)
	d := dialRaw(t, h)
	d.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	if resp, _ := d.read(); resp.StatusCode != 200 {
		t.Fatalf("after one closed: %d", resp.StatusCode)
	}
}
