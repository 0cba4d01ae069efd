package localapi

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/spool"
	"github.com/valyala/fasthttp"
)

// benchStore accepts every batch at once without keeping it: it isolates
// the handler's own cost from the spool's commit.
type benchStore struct{ Store }

func (benchStore) Append(_ context.Context, recs []spool.Record) (spool.AppendResult, error) {
	return spool.AppendResult{Accepted: len(recs)}, nil
}

// benchAction is one typical action; the 8 zeros of the id are rewritten
// on every request so that the real spool never sees a duplicate.
const benchAction = `{"actions":[{"id":"loan-app-00000000","track":"personal_loan","action_type":"WITHDRAW_DEPOSITS",` +
	`"action_time":"2026-11-23T10:15:00+08:00","user_id":{"phone":"+86 138-0013-8000"},` +
	`"trace":{"click_id":"wx0ck00000001"},"action_param":{"withdraw_deposits_level":1,"risk_overdue":1}}]}`

var benchNow = time.Date(2026, 11, 23, 2, 16, 0, 0, time.UTC)

// BenchmarkServeFastActions drives the one path single actions take
// (fasthttp's handler, the defences, serveFast, fastActions) with a store
// that keeps nothing, the connection left out: a request copied into a
// RequestCtx and handled.
func BenchmarkServeFastActions(b *testing.B) {
	srv := New(Config{Store: benchStore{}, Clock: func() time.Time { return benchNow }})
	handle := srv.hs.Handler
	data := []byte(benchAction)
	idAt := bytes.Index(data, []byte("00000000"))
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI("/v1/actions")
	req.Header.SetHost("127.0.0.1:8470")
	req.Header.SetContentType("application/json")
	var c fasthttp.RequestCtx
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		n++
		setID(data[idAt:idAt+8], n)
		req.SetBody(data)
		c.Init(&req, nil, nil)
		handle(&c)
		if c.Response.StatusCode() != http.StatusAccepted {
			b.Fatalf("status %d: %s", c.Response.StatusCode(), c.Response.Body())
		}
	}
}

// setID writes n's last len(b) decimal digits into b, zero-padded, so each
// request of a benchmark carries a new action id.
func setID(b []byte, n int) {
	for j := len(b) - 1; j >= 0; j, n = j-1, n/10 {
		b[j] = byte('0' + n%10)
	}
}

// BenchmarkServeActionsLoopback is the path the agent serves, connection
// included: single actions posted over loopback to Serve (fasthttp, the
// header check, the body read), the store left out. Parallel callers on
// keep-alive connections.
func BenchmarkServeActionsLoopback(b *testing.B) {
	srv := New(Config{Store: benchStore{}, Clock: func() time.Time { return benchNow }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	hc := &fasthttp.HostClient{Addr: ln.Addr().String(), MaxConns: 64}
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		data := []byte(benchAction)
		idAt := bytes.Index(data, []byte("00000000"))
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.Header.SetMethod("POST")
		req.SetRequestURI("http://" + ln.Addr().String() + "/v1/actions")
		req.Header.SetContentType("application/json")
		for pb.Next() {
			setID(data[idAt:idAt+8], int(n.Add(1)))
			req.SetBody(data)
			if err := hc.Do(req, resp); err != nil || resp.StatusCode() != http.StatusAccepted {
				b.Fatalf("%v %d %s", err, resp.StatusCode(), resp.Body())
			}
		}
	})
}
