package tongdun_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/outpost-agent/outpost/upstream"
	"github.com/outpost-agent/outpost/upstream/tongdun"
)

// answerTransport answers every request with one fixed HTTP answer, so a
// fuzz input is exactly what TD sends back.
type answerTransport struct {
	status int
	header http.Header
	body   []byte
}

func (a *answerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: a.status, Header: a.header.Clone(), Request: r,
		Body: io.NopCloser(bytes.NewReader(a.body)), ContentLength: int64(len(a.body))}, nil
}

// sendAnswer runs Send on one request against a TD that answers status,
// Retry-After and body; it returns the result and the client's log.
func sendAnswer(t *testing.T, status int, retryAfter string, body []byte) (upstream.Result, string) {
	t.Helper()
	h := http.Header{"Content-Type": {"application/json;charset=UTF-8"}}
	if retryAfter != "" {
		h.Set("Retry-After", retryAfter)
	}
	var logs bytes.Buffer
	c, err := tongdun.New(tongdun.Config{
		URL: "https://td.example/riskService/v1.1", PartnerCode: partnerCode, PartnerKey: partnerKey, Channel: channel,
		RetryMax:   -1,
		Clock:      func() time.Time { return time.Date(2026, 11, 23, 15, 0, 0, 0, cst) },
		Logger:     slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		HTTPClient: &http.Client{Transport: &answerTransport{status: status, header: h, body: body}},
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(request("acct-1", "sess-1"))
	if err != nil {
		t.Fatal(err)
	}
	rs := c.Send(context.Background(), []upstream.Item{{ID: "a1", Payload: p}})
	if len(rs) != 1 || rs[0].ID != "a1" {
		t.Fatalf("one item, results %+v", rs)
	}
	return rs[0], logs.String()
}

// FuzzAnswer: any HTTP answer (status, Retry-After, body) gets exactly one
// classification, the same every time; Delivered only with a usable score
// and result; the partner key, in any spelling it travels in, never shows
// in the verdict, the stored answer or the log; messages stay short.
func FuzzAnswer(f *testing.F) {
	files, err := filepath.Glob("testdata/answers/*")
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed answers: %v", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(200, "", b)
	}
	f.Add(429, "30", []byte("too many requests"))
	f.Add(503, "Mon, 23 Nov 2026 07:01:00 GMT", []byte("busy"))
	f.Add(404, "", []byte("<html>not found</html>"))
	f.Add(200, "", []byte(`{"code":9002,"message":"partner_key=`+url.QueryEscape(partnerKey)+` is bad"}`))
	f.Add(200, "", []byte(`{"code":12345678901234567890}`))
	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte) {
		status = 100 + int(uint(status)%500)
		res, logs := sendAnswer(t, status, retryAfter, body)
		v := res.Verdict
		if v.Outcome < upstream.Delivered || v.Outcome > upstream.Permanent || v.Code == "" {
			t.Fatalf("no classification: %+v", v)
		}
		if again, _ := sendAnswer(t, status, retryAfter, body); !reflect.DeepEqual(again, res) {
			t.Fatalf("classified twice differently:\n%+v\n%+v", res, again)
		}
		switch {
		case status == http.StatusTooManyRequests && (v.Outcome != upstream.RetryLater || !v.Throttled):
			t.Fatalf("429: %+v", v)
		case status >= 500 && v.Outcome != upstream.RetryLater:
			t.Fatalf("HTTP %d: %+v", status, v)
		case v.RetryAfter < 0 || v.RetryAfter > 24*time.Hour:
			t.Fatalf("Retry-After %q: wait %s", retryAfter, v.RetryAfter)
		case len(v.Message) > 1024 || !utf8.ValidString(v.Message):
			t.Fatalf("message of %d bytes (valid UTF-8: %v)", len(v.Message), utf8.ValidString(v.Message))
		}
		if v.Outcome == upstream.Delivered {
			var r tongdun.Response
			if err := json.Unmarshal(res.Answer, &r); err != nil || r.Code != tongdun.CodeOK ||
				r.Score < 0 || r.Score > 100 || (r.Result != tongdun.ResultAccept && r.Result != tongdun.ResultReview && r.Result != tongdun.ResultDecline) {
				t.Fatalf("delivered without a usable answer: %s, %v", res.Answer, err)
			}
		} else if res.Answer != nil {
			t.Fatalf("%s with an answer: %s", v.Outcome, res.Answer)
		}
		jsonKey, _ := json.Marshal(partnerKey)
		for _, secret := range []string{partnerKey, url.QueryEscape(partnerKey), string(jsonKey[1 : len(jsonKey)-1])} {
			for what, s := range map[string]string{"message": v.Message, "code": v.Code, "answer": string(res.Answer), "log": logs} {
				if strings.Contains(s, secret) {
					t.Fatalf("the partner key shows in the %s: %s", what, s)
				}
			}
		}
	})
}
