package tencent

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/outpost-agent/outpost/upstream"
)

// FuzzClassifyResponse: any HTTP answer (status, Retry-After, Date, body)
// gets exactly one classification, the same every time. Delivered needs
// HTTP 200 and code 0; only a Permanent verdict asks for bisection (which
// dead-letters actions one by one); the token, in every form it travels
// in, never shows in the verdict; waits are never negative and never
// longer than a day; messages stay short.
//
// The target calls classifyResponse itself rather than Send: Send retries
// a 5xx after real waits, and its bisection would send one answer many
// times over.
func FuzzClassifyResponse(f *testing.F) {
	files, err := filepath.Glob("testdata/answers/*")
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed answers: %v", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(200, "", "", b)
	}
	f.Add(429, "30", "", []byte("too many requests"))
	f.Add(503, "Mon, 23 Nov 2026 07:01:00 GMT", "", []byte("busy"))
	f.Add(200, "", "Mon, 23 Nov 2026 07:10:00 GMT", []byte(`{"code":31001,"message":"bad"}`))
	f.Add(404, "", "", []byte("<html>not found</html>"))
	f.Add(200, "", "", []byte(`{"code":31001,"message":"bad request /v3.0/user_actions/add?access_token=`+url.QueryEscape(testToken)+`&nonce=1"}`))
	f.Add(200, "", "", []byte(`{"code":11018,"message":"`+strings.Repeat("é", 400)+`"}`))

	c, err := New(Config{AccountID: account, UserActionSetID: set, AccessToken: testToken,
		Clock: func() time.Time { return time.Date(2026, 11, 23, 7, 0, 0, 0, time.UTC) }})
	if err != nil {
		f.Fatal(err)
	}
	jsonToken, _ := json.Marshal(testToken)
	secrets := []string{testToken, url.QueryEscape(testToken), url.PathEscape(testToken), string(jsonToken[1 : len(jsonToken)-1])}
	classify := func(status int, retryAfter, date string, body []byte) (upstream.Verdict, bool) {
		h := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		if date != "" {
			h.Set("Date", date)
		}
		return c.classifyResponse(&http.Response{StatusCode: status, Header: h,
			Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))})
	}
	f.Fuzz(func(t *testing.T, status int, retryAfter, date string, body []byte) {
		status = 100 + int(uint(status)%500)
		v, reject := classify(status, retryAfter, date, body)
		if v.Outcome < upstream.Delivered || v.Outcome > upstream.Permanent || v.Code == "" {
			t.Fatalf("no classification: %+v", v)
		}
		if again, r := classify(status, retryAfter, date, body); again != v || r != reject {
			t.Fatalf("classified twice differently:\n%+v %v\n%+v %v", v, reject, again, r)
		}
		switch {
		case reject && v.Outcome != upstream.Permanent:
			t.Fatalf("bisection asked for a %s verdict: %+v", v.Outcome, v)
		case v.Outcome == upstream.Delivered && (status != http.StatusOK || v.Code != "0"):
			t.Fatalf("delivered on HTTP %d: %+v", status, v)
		case status == http.StatusTooManyRequests && (v.Outcome != upstream.RetryLater || !v.Throttled):
			t.Fatalf("429: %+v", v)
		case status >= 500 && v.Outcome != upstream.RetryLater:
			t.Fatalf("HTTP %d: %+v", status, v)
		case v.RetryAfter < 0 || v.RetryAfter > 24*time.Hour:
			t.Fatalf("Retry-After %q: wait %s", retryAfter, v.RetryAfter)
		case len(v.Message) > maxMessageLen+200 || !utf8.ValidString(v.Message):
			t.Fatalf("message of %d bytes (valid UTF-8: %v)", len(v.Message), utf8.ValidString(v.Message))
		}
		for _, secret := range secrets {
			if strings.Contains(v.Message, secret) || strings.Contains(v.Code, secret) {
				t.Fatalf("the token (%q) shows in the verdict: %+v", secret, v)
			}
		}
	})
}
