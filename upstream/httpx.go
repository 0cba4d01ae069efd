package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// What the three HTTP clients (Tencent, TongDun, UnionPay) share about HTTP,
// so that they fail in one shape: their own transport, which retries are
// worth making at once, how a transport failure, a cut or oversized answer,
// throttling and a 5xx are reported, and Retry-After. Each client keeps only
// what its protocol says: its codes, its throttle windows, its body limits.
// upstream/contract_test.go holds all three to this shape against their
// simulators.

// NewTransport returns a transport of the client's own: retryablehttp
// closes idle connections after a failed call, which must not hit other
// clients sharing http.DefaultTransport.
func NewTransport() http.RoundTripper {
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		return t.Clone()
	}
	return http.DefaultTransport
}

// RetryConfig configures NewRetryClient.
type RetryConfig struct {
	// HTTPClient is copied (tests, TLS settings, proxies); nil gives a
	// client with a transport of its own. Its Timeout is replaced by
	// Timeout when zero; redirects are never followed.
	HTTPClient *http.Client
	// Timeout bounds one attempt.
	Timeout time.Duration
	// RetryMax is how many quick retries CheckRetryTransient allows.
	RetryMax int
	// RetryWaitMin is the first wait before a retry; RetryWaitMax the
	// longest (default 10 × RetryWaitMin).
	RetryWaitMin, RetryWaitMax time.Duration
	// Logger gets the attempt number of each retry at debug level, nothing
	// else: retryablehttp's own messages carry the URL, and so credentials.
	Logger *slog.Logger
	// PrepareRetry, when set, is called before each retry (Tencent signs
	// every attempt afresh and makes it wait for its rate limiter).
	PrepareRetry func(*http.Request) error
}

// NewRetryClient builds the retryablehttp client every upstream client
// uses: a per-attempt timeout; cfg.RetryMax quick retries of what
// CheckRetryTransient allows; no redirect followed; no logging of its own;
// and the last answer or error handed back untouched (its default handler
// wraps the error with the URL).
func NewRetryClient(cfg RetryConfig) *retryablehttp.Client {
	hc := &http.Client{Timeout: cfg.Timeout, Transport: NewTransport()}
	if cfg.HTTPClient != nil {
		cp := *cfg.HTTPClient
		if cp.Timeout == 0 {
			cp.Timeout = cfg.Timeout
		}
		hc = &cp
	}
	// Never follow a redirect: the request carries the access token or the
	// partner's key and, for UnionPay, card, ID and mobile numbers; a 3xx
	// would send them on to whatever host Location names (and take that
	// host's answer). The 3xx itself is the answer, classified like any
	// other.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.RetryWaitMax == 0 {
		cfg.RetryWaitMax = 10 * cfg.RetryWaitMin
	}
	rc := retryablehttp.NewClient()
	rc.HTTPClient = hc
	rc.Logger = nil
	rc.RequestLogHook = func(_ retryablehttp.Logger, _ *http.Request, attempt int) {
		if attempt > 0 {
			log.Debug("retrying request", "attempt", attempt+1)
		}
	}
	rc.RetryMax = max(cfg.RetryMax, 0)
	rc.RetryWaitMin = cfg.RetryWaitMin
	rc.RetryWaitMax = cfg.RetryWaitMax
	rc.CheckRetry = CheckRetryTransient
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	rc.PrepareRetry = cfg.PrepareRetry
	return rc
}

// CheckRetryTransient is a retryablehttp.CheckRetry that retries only what a
// second attempt may fix at once: a connection that failed (refused, reset),
// and a 5xx other than 501 without a Retry-After. It does not retry a
// time-out (an upstream that slow needs the forwarder's back-off, not more
// attempts of a full timeout each, which would also outlast a live
// decision's budget), nor any answer of the upstream's own, nor a 429 or a
// 5xx that names its wait: the forwarder decides when to come back,
// honouring Retry-After.
func CheckRetryTransient(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			return false, nil
		}
		return true, nil
	}
	if resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented && resp.Header.Get("Retry-After") == "" {
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

// ErrAnswerTooLarge is ReadAnswer's error for an answer over its limit.
var ErrAnswerTooLarge = errors.New("answer too large")

// ReadAnswer reads an answer's body, at most limit bytes: a larger one is
// ErrAnswerTooLarge (a broken upstream or proxy, not an answer: cutting it
// to the limit could leave a parsable prefix). The body is closed.
func ReadAnswer(resp *http.Response, limit int64) ([]byte, error) {
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return raw, err
	}
	if int64(len(raw)) > limit {
		return raw[:limit], fmt.Errorf("%w: over %d bytes", ErrAnswerTooLarge, limit)
	}
	return raw, nil
}

// HTTPAnswer is an answer read by Read, for the client to parse.
type HTTPAnswer struct {
	Status int
	Header http.Header
	Body   []byte
	// RetryAfter is the Retry-After header's wait, and RetryAfterSet
	// whether it named one (see ParseRetryAfter).
	RetryAfter    time.Duration
	RetryAfterSet bool
}

// Answers reads and classifies what every upstream answers alike, in one
// order. Read returns final with its verdict for: a 429 (RetryLater,
// Throttled, with Retry-After); a 5xx (RetryLater "http_NNN", with
// Retry-After); an answer cut short (the transport's verdict: "network" or
// "timeout"); an answer over limit bytes (RetryLater "bad_answer").
// Otherwise the client parses a.Body, and calls NotAnswer when it holds no
// answer of the upstream's.
type Answers struct {
	// Name starts every message ("tencent", "tongdun", "unionpay").
	Name string
	// Limit is the most bytes an answer may have.
	Limit int64
	// Timeout is the per-attempt limit, for messages.
	Timeout time.Duration
	// Mask (nil for none) masks credentials in error texts.
	Mask func(string) string
}

// Read reads resp (closing its body) at now.
func (s Answers) Read(resp *http.Response, now time.Time) (a HTTPAnswer, v Verdict, final bool) {
	a = HTTPAnswer{Status: resp.StatusCode, Header: resp.Header}
	a.RetryAfter, a.RetryAfterSet = ParseRetryAfter(resp.Header.Get("Retry-After"), now)
	raw, err := ReadAnswer(resp, s.Limit)
	a.Body = raw
	status := resp.StatusCode
	switch {
	case status == http.StatusTooManyRequests:
		return a, Verdict{Outcome: RetryLater, Code: "http_429", Throttled: true, RetryAfter: a.RetryAfter,
			Message: s.Name + ": throttled (HTTP 429)"}, true
	case status >= 500:
		return a, Verdict{Outcome: RetryLater, Code: "http_" + strconv.Itoa(status), RetryAfter: a.RetryAfter,
			Message: fmt.Sprintf("%s: server error (HTTP %d)", s.Name, status)}, true
	case errors.Is(err, ErrAnswerTooLarge):
		// The upstream may have acted on the request: like a malformed
		// answer, it is sent again (every protocol of ours de-duplicates).
		return a, Verdict{Outcome: RetryLater, Code: "bad_answer",
			Message: fmt.Sprintf("%s: answer over %d bytes", s.Name, s.Limit)}, true
	case err != nil:
		// A reset or time-out half-way through the body.
		v := TransportVerdict(s.Name, err, s.Timeout, s.Mask)
		v.Message = s.Name + ": answer cut short: " + strings.TrimPrefix(v.Message, s.Name+": ")
		return a, v, true
	}
	return a, Verdict{}, false
}

// NotAnswer is the verdict for a body that holds no answer of the
// upstream's: a 2xx is a broken answer (RetryLater "bad_answer"); any other
// status (a redirect, a 4xx from a proxy or a wrong URL) is not the upstream
// speaking, which retrying will not change: Pause "http_NNN" until an
// operator looks.
func (s Answers) NotAnswer(a HTTPAnswer, why string) Verdict {
	if a.Status >= 200 && a.Status < 300 {
		if why == "" {
			why = "malformed or truncated answer"
		}
		return Verdict{Outcome: RetryLater, Code: "bad_answer", RetryAfter: a.RetryAfter, Message: s.Name + ": " + why}
	}
	return Verdict{Outcome: Pause, Code: "http_" + strconv.Itoa(a.Status),
		Message: fmt.Sprintf("%s: HTTP %d without an answer of its own; check the URL and the network path", s.Name, a.Status)}
}

// MaxRetryAfter caps the wait a Retry-After can ask for. The longest an
// upstream of ours documents is a day (the daily quotas reset at
// midnight); a longer one is a broken header, which must not hold a queue
// for years, nor, past 292 years of seconds, overflow into a negative wait.
const MaxRetryAfter = 24 * time.Hour

// RetryAfter reads a Retry-After header: seconds or an HTTP date, at most
// MaxRetryAfter; zero when absent, unreadable or past.
func RetryAfter(h string, now time.Time) time.Duration {
	d, _ := ParseRetryAfter(h, now)
	return d
}

// ParseRetryAfter reads a Retry-After header like RetryAfter, and reports
// whether it named a wait at all: a date already past names a wait of zero
// (come back now), which is not the same as no header (Tencent then uses
// the window its throttling code names).
func ParseRetryAfter(h string, now time.Time) (time.Duration, bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(h); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(min(s, int(MaxRetryAfter/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return min(max(t.Sub(now), 0), MaxRetryAfter), true
	}
	return 0, false
}
