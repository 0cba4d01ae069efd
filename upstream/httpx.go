package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// What the one-event-per-request clients (TongDun, UnionPay) share about
// HTTP: their own transport, which retries are worth making at once, how a
// transport failure is reported, and Retry-After.

// NewTransport returns a transport of the client's own: retryablehttp
// closes idle connections after a failed call, which must not hit other
// clients sharing http.DefaultTransport.
func NewTransport() http.RoundTripper {
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		return t.Clone()
	}
	return http.DefaultTransport
}

// NewRetryClient builds the retryablehttp client of a one-event-per-request
// upstream: its own transport (or a copy of base, for tests) with a
// per-attempt timeout; retryMax quick retries of what CheckRetryTransient
// allows, waiting retryWait to 10×retryWait; no logging of its own (it
// would print URLs, which carry credentials), only the attempt number at
// debug level; and the last answer or error handed back untouched (its
// default handler wraps the error with the URL).
func NewRetryClient(base *http.Client, timeout time.Duration, retryMax int, retryWait time.Duration, log *slog.Logger) *retryablehttp.Client {
	hc := &http.Client{Timeout: timeout, Transport: NewTransport()}
	if base != nil {
		cp := *base
		if cp.Timeout == 0 {
			cp.Timeout = timeout
		}
		hc = &cp
	}
	// Never follow a redirect: the request carries the partner's key and,
	// for UnionPay, card, ID and mobile numbers; a 3xx would send them on
	// to whatever host Location names (and take that host's answer). The
	// 3xx itself is the answer, classified like any other.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	rc := retryablehttp.NewClient()
	rc.HTTPClient = hc
	rc.Logger = nil
	rc.RequestLogHook = func(_ retryablehttp.Logger, _ *http.Request, attempt int) {
		if attempt > 0 {
			log.Debug("retrying request", "attempt", attempt+1)
		}
	}
	rc.RetryMax = retryMax
	rc.RetryWaitMin = retryWait
	rc.RetryWaitMax = 10 * retryWait
	rc.CheckRetry = CheckRetryTransient
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	return rc
}

// CheckRetryTransient is a retryablehttp.CheckRetry that retries only what a
// second attempt may fix at once: transport errors, and 5xx without a
// Retry-After. Any answer of the upstream's own is final for this call: the
// forwarder decides when to come back, honouring Retry-After.
func CheckRetryTransient(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return true, nil
	}
	if resp.StatusCode >= 500 && resp.Header.Get("Retry-After") == "" {
		return true, nil
	}
	return false, nil
}

// TransportVerdict classifies a failure to get an answer: canceled,
// timed out, or a network error. net/http's messages embed the request URL,
// which may carry credentials: only the innermost error is kept, and mask
// (nil for none) is applied to it.
func TransportVerdict(name string, err error, timeout time.Duration, mask func(string) string) Verdict {
	inner := err
	var ue *url.Error
	if errors.As(err, &ue) {
		inner = ue.Err
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return Verdict{Outcome: RetryLater, Code: "canceled", Message: name + ": call canceled"}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return Verdict{Outcome: RetryLater, Code: "timeout",
			Message: fmt.Sprintf("%s: no answer in time (per-attempt limit %s)", name, timeout)}
	}
	detail := "connection failed"
	if inner != nil && (ue != nil || !strings.Contains(inner.Error(), "://")) {
		detail = inner.Error()
	}
	if mask != nil {
		detail = mask(detail)
	}
	return Verdict{Outcome: RetryLater, Code: "network", Message: name + ": " + detail}
}

// MaxRetryAfter caps the wait a Retry-After can ask for. The longest an
// upstream of ours documents is a day (the daily quotas reset at
// midnight); a longer one is a broken header, which must not hold a queue
// for years, nor, past 292 years of seconds, overflow into a negative wait.
const MaxRetryAfter = 24 * time.Hour

// RetryAfter reads a Retry-After header: seconds or an HTTP date, at most
// MaxRetryAfter.
func RetryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(min(s, int(MaxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, MaxRetryAfter)
		}
	}
	return 0
}
