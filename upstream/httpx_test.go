package upstream

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{
		"":                              0,
		"30":                            30 * time.Second,
		" 5 ":                           5 * time.Second,
		"-3":                            0,
		"Mon, 23 Nov 2026 12:01:00 GMT": time.Minute,
		"Mon, 23 Nov 2026 11:00:00 GMT": 0, // in the past
		"soon":                          0,
		"86400":                         MaxRetryAfter,
		"86401":                         MaxRetryAfter,
		"9223372037":                    MaxRetryAfter, // seconds past time.Duration: once a negative wait
		"99999999999999999999":          0,             // not an int: not a number of seconds
		"Fri, 31 Dec 9999 23:59:59 GMT": MaxRetryAfter,
	} {
		if got := RetryAfter(h, now); got != want {
			t.Errorf("RetryAfter(%q) = %s, want %s", h, got, want)
		}
	}
}

func TestTransportVerdictHidesTheURL(t *testing.T) {
	secret := "partner_key=SECRET123"
	err := &url.Error{Op: "Post", URL: "https://td.example/api?" + secret, Err: errors.New("connection refused by " + secret)}
	v := TransportVerdict("tongdun", err, time.Second, func(s string) string { return strings.ReplaceAll(s, "SECRET123", "***") })
	if v.Outcome != RetryLater || v.Code != "network" || strings.Contains(v.Message, "SECRET123") || strings.Contains(v.Message, "td.example") {
		t.Fatalf("%+v", v)
	}
	if v := TransportVerdict("x", context.DeadlineExceeded, time.Second, nil); v.Code != "timeout" {
		t.Fatalf("deadline: %+v", v)
	}
	if v := TransportVerdict("x", context.Canceled, time.Second, nil); v.Code != "canceled" {
		t.Fatalf("canceled: %+v", v)
	}
}

// A redirect is never followed: the body (keys, card numbers) must not
// reach the host a Location header names.
func TestRetryClientDoesNotFollowRedirects(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		w.Write([]byte(`{"code":200}`))
	}))
	defer other.Close()
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/steal", code)
		}))
		rc := NewRetryClient(RetryConfig{Timeout: time.Second, RetryWaitMin: time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
		req, err := retryablehttp.NewRequest(http.MethodPost, up.URL, []byte(`{"partner_key":"secret","card":"6222021234567890128"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := rc.Do(req)
		up.Close()
		if err != nil {
			t.Fatalf("%d: %v", code, err)
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("%d: the client answered %d, want the redirect itself", code, resp.StatusCode)
		}
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
}

// A past date names a wait of zero; no header names none (Tencent then
// waits for the window its throttling code names).
func TestParseRetryAfterSaysWhetherAWaitWasNamed(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for h, want := range map[string]bool{
		"": false, "soon": false, "-3": false, "0": true, "30": true,
		"Mon, 23 Nov 2026 11:00:00 GMT": true, "Mon, 23 Nov 2026 12:01:00 GMT": true,
	} {
		if _, ok := ParseRetryAfter(h, now); ok != want {
			t.Errorf("ParseRetryAfter(%q) named a wait: %v, want %v", h, ok, want)
		}
	}
}

// Only what a second attempt at once may fix is retried: not a time-out,
// not a 501, not a 5xx that names its wait, not a 4xx.
func TestCheckRetryTransient(t *testing.T) {
	ctx := context.Background()
	answer := func(code int, retryAfter string) *http.Response {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return &http.Response{StatusCode: code, Header: h}
	}
	timeout := &url.Error{Op: "Post", URL: "http://x", Err: context.DeadlineExceeded}
	for _, tc := range []struct {
		name string
		resp *http.Response
		err  error
		want bool
	}{
		{"refused", nil, errors.New("connection refused"), true},
		{"time-out", nil, timeout, false},
		{"500", answer(500, ""), nil, true},
		{"503 with Retry-After", answer(503, "7"), nil, false},
		{"501", answer(501, ""), nil, false},
		{"429", answer(429, ""), nil, false},
		{"400", answer(400, ""), nil, false},
		{"200", answer(200, ""), nil, false},
	} {
		if got, _ := CheckRetryTransient(ctx, tc.resp, tc.err); got != tc.want {
			t.Errorf("%s: retry %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestReadAnswerRefusesWhatIsOverTheLimit(t *testing.T) {
	body := func(s string) *http.Response {
		return &http.Response{Body: io.NopCloser(strings.NewReader(s))}
	}
	if raw, err := ReadAnswer(body("12345"), 5); err != nil || string(raw) != "12345" {
		t.Fatalf("at the limit: %q, %v", raw, err)
	}
	if _, err := ReadAnswer(body("123456"), 5); !errors.Is(err, ErrAnswerTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
}
