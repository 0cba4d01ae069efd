// Package tongdun is the client for TongDun's (TD) marketing anti-fraud risk
// verification API: one live call per business event, answering a score
// (0-100), a result (accept/review/decline) and reasons.
//
// The partner_key travels in the URL query (TD's design), so every error that
// could carry the URL is masked before it reaches a log line or a Verdict.
package tongdun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/outpost-agent/outpost/upstream"
)

// DefaultTimeout bounds one HTTP attempt.
const DefaultTimeout = 3 * time.Second

// pauseShortTraffic is how long to wait before probing again after 303
// (traffic insufficient): someone has to top the account up, which takes
// longer than a retry but should not need an operator to un-pause us.
const pauseShortTraffic = 30 * time.Minute

// maxAnswer bounds how much of an answer we read: TD answers are small, and a
// huge body is a broken upstream or proxy, not an answer.
const maxAnswer = 1 << 20

// Config configures a Client. The zero value is a disabled client.
type Config struct {
	// URL is the full API URL TD assigns (api-base-url in the seed), without
	// the partner_code/partner_key query.
	URL         string
	PartnerCode string
	// PartnerKey is a secret: it goes in the query string and is masked out
	// of every error and log line.
	PartnerKey string
	// Channel is the channel TD assigned; it fills Request.Channel when the
	// request leaves it empty.
	Channel string
	// Timeout bounds one HTTP attempt (default 3s).
	Timeout time.Duration
	// RetryMax is how many times one call is retried on a transport error or
	// 5xx (default 1; negative means never). Kept low: the forwarder has its
	// own back-off, and a live decision has a short deadline.
	RetryMax int
	// RetryWait is the first wait before a retry (default 100ms).
	RetryWait time.Duration
	// Clock gives the time for pauses (305 waits for the next Shanghai day).
	Clock  func() time.Time
	Logger *slog.Logger
	// HTTPClient is the transport to use (TLS settings, proxies); its Timeout
	// is replaced by Timeout when zero.
	HTTPClient *http.Client
}

// Client calls TD. It is safe for concurrent use.
type Client struct {
	cfg     Config
	base    *url.URL
	http    *retryablehttp.Client
	answers upstream.Answers
	log     *slog.Logger
	clock   func() time.Time
}

// New checks cfg and builds a client. An empty URL gives a client that is not
// Configured (TD is not used); its calls answer Pause "not_configured".
func New(cfg Config) (*Client, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 1
	}
	if cfg.RetryMax < 0 {
		cfg.RetryMax = 0
	}
	if cfg.RetryWait <= 0 {
		cfg.RetryWait = 100 * time.Millisecond
	}
	c := &Client{cfg: cfg, log: cfg.Logger, clock: cfg.Clock}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("upstream", "tongdun")
	if c.clock == nil {
		c.clock = time.Now
	}
	if cfg.URL != "" {
		u, err := url.Parse(cfg.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			// The parse error quotes the URL; the operator knows which one.
			return nil, errors.New("tongdun: URL must be an absolute http(s) URL")
		}
		if u.Query().Has("partner_key") || u.Query().Has("partner_code") {
			return nil, errors.New("tongdun: URL must not carry partner_code/partner_key: set PartnerCode/PartnerKey")
		}
		if cfg.PartnerCode == "" || cfg.PartnerKey == "" {
			return nil, errors.New("tongdun: PartnerCode and PartnerKey are required with URL")
		}
		c.base = u
	}

	c.http = upstream.NewRetryClient(upstream.RetryConfig{HTTPClient: cfg.HTTPClient, Timeout: cfg.Timeout,
		RetryMax: cfg.RetryMax, RetryWaitMin: cfg.RetryWait, Logger: c.log})
	c.answers = upstream.Answers{Name: "tongdun", Limit: maxAnswer, Timeout: cfg.Timeout, Mask: c.redact}
	return c, nil
}

// Configured reports whether TD is set up (URL and credentials).
func (c *Client) Configured() bool { return c != nil && c.base != nil }

// Verify asks TD about one business event. A nil *Response comes with a
// verdict other than Delivered when TD gave no well-formed answer.
func (c *Client) Verify(ctx context.Context, req *Request) (*Response, upstream.Verdict) {
	if !c.Configured() {
		return nil, notConfigured()
	}
	if req == nil {
		return nil, upstream.Verdict{Outcome: upstream.Permanent, Code: "bad_payload", Message: "tongdun: nil request"}
	}
	r := *req
	if r.Channel == "" {
		r.Channel = c.cfg.Channel
	}
	body, err := json.Marshal(&r)
	if err != nil {
		return nil, upstream.Verdict{Outcome: upstream.Permanent, Code: "bad_payload",
			Message: "tongdun: cannot encode request: " + c.redact(err.Error())}
	}
	return c.post(ctx, body, r.DecisionEvent)
}

// Send delivers spooled requests, one HTTP request each (TD takes one event
// per request), in order. Once TD is unavailable (Pause or RetryLater) the
// rest are not sent and get the same verdict: sending them would only burn
// traffic or time on an upstream that already said no.
func (c *Client) Send(ctx context.Context, items []upstream.Item) []upstream.Result {
	out := make([]upstream.Result, 0, len(items))
	for i, it := range items {
		if err := ctx.Err(); err != nil {
			v := upstream.TransportVerdict("tongdun", err, c.cfg.Timeout, c.redact)
			return fillRest(out, items[i:], v)
		}
		body, event, v, ok := c.prepare(it.Payload)
		if !ok {
			out = append(out, upstream.Result{ID: it.ID, Verdict: v})
			continue
		}
		resp, v := c.post(ctx, body, event)
		res := upstream.Result{ID: it.ID, Verdict: v}
		if v.Outcome == upstream.Delivered && resp != nil {
			// Response has only plain fields: Marshal cannot fail.
			res.Answer, _ = json.Marshal(resp)
		}
		out = append(out, res)
		if v.Outcome == upstream.Pause || v.Outcome == upstream.RetryLater {
			c.log.Info("upstream unavailable, holding the rest", "code", v.Code, "held", len(items)-i-1)
			return fillRest(out, items[i+1:], v)
		}
	}
	return out
}

func fillRest(out []upstream.Result, rest []upstream.Item, v upstream.Verdict) []upstream.Result {
	for _, it := range rest {
		out = append(out, upstream.Result{ID: it.ID, Verdict: v})
	}
	return out
}

// prepare checks a spooled payload is one Request and fills the channel. The
// payload is sent byte for byte when it already has a channel, so ext numbers
// and key order stay as the agent stored them.
func (c *Client) prepare(payload json.RawMessage) ([]byte, string, upstream.Verdict, bool) {
	bad := func(why string) upstream.Verdict {
		return upstream.Verdict{Outcome: upstream.Permanent, Code: "bad_payload", Message: "tongdun: " + why}
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var r Request
	if err := dec.Decode(&r); err != nil {
		return nil, "", bad("payload is not one TD request"), false
	}
	if dec.More() {
		return nil, "", bad("payload holds more than one event"), false
	}
	if r.Channel != "" {
		return payload, r.DecisionEvent, upstream.Verdict{}, true
	}
	r.Channel = c.cfg.Channel
	body, err := json.Marshal(&r)
	if err != nil {
		return nil, "", bad("cannot encode request"), false
	}
	return body, r.DecisionEvent, upstream.Verdict{}, true
}

func (c *Client) endpoint() string {
	u := *c.base
	q := u.Query()
	q.Set("partner_code", c.cfg.PartnerCode)
	q.Set("partner_key", c.cfg.PartnerKey)
	u.RawQuery = q.Encode()
	return u.String()
}

func (c *Client) post(ctx context.Context, body []byte, event string) (*Response, upstream.Verdict) {
	start := time.Now()
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, c.endpoint(), body)
	if err != nil {
		v := upstream.Verdict{Outcome: upstream.Pause, Code: "bad_config", Message: "tongdun: cannot build request: " + c.redact(err.Error())}
		c.logVerdict(v, 0, event, start)
		return nil, v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")

	hresp, err := c.http.Do(req)
	if err != nil {
		if hresp != nil {
			hresp.Body.Close()
		}
		v := upstream.TransportVerdict("tongdun", err, c.cfg.Timeout, c.redact)
		c.logVerdict(v, 0, event, start)
		return nil, v
	}
	resp, v := c.classify(hresp)
	c.logVerdict(v, hresp.StatusCode, event, start)
	return resp, v
}

func (c *Client) logVerdict(v upstream.Verdict, status int, event string, start time.Time) {
	// Pause needs a person (credentials, contract, quota): say it loudly.
	level := slog.LevelDebug
	switch v.Outcome {
	case upstream.Pause:
		level = slog.LevelError
	case upstream.RetryLater, upstream.Permanent:
		level = slog.LevelWarn
	}
	attrs := []any{"event", event, "outcome", v.Outcome.String(), "code", v.Code, "elapsed", time.Since(start)}
	if status != 0 {
		attrs = append(attrs, "status", status)
	}
	if v.Outcome != upstream.Delivered {
		attrs = append(attrs, "message", v.Message)
	}
	if !v.PauseUntil.IsZero() {
		attrs = append(attrs, "pause_until", v.PauseUntil)
	}
	c.log.Log(context.Background(), level, "tongdun call", attrs...)
}

// wireResponse tells a missing code from code 0.
type wireResponse struct {
	Code       *int     `json:"code"`
	Message    string   `json:"message"`
	SequenceID string   `json:"sequence_id"`
	Score      *int     `json:"score"`
	Result     string   `json:"result"`
	Reasons    []Reason `json:"reasons"`
}

// classify turns one HTTP answer into a verdict, closing its body.
func (c *Client) classify(hresp *http.Response) (*Response, upstream.Verdict) {
	a, v, final := c.answers.Read(hresp, c.clock())
	if final {
		return nil, v
	}
	retryAfter := a.RetryAfter
	var w wireResponse
	if err := json.Unmarshal(a.Body, &w); err != nil || w.Code == nil {
		return nil, c.answers.NotAnswer(a, "")
	}
	// The answer is kept (Result.Answer, the score cache, a decision's late
	// verdicts): the key is masked out of every text TD may echo it in.
	resp := &Response{Code: *w.Code, Message: c.redact(w.Message), SequenceID: c.redact(w.SequenceID), Result: w.Result, Reasons: w.Reasons}
	for i := range resp.Reasons {
		resp.Reasons[i].ID, resp.Reasons[i].Reason = c.redact(resp.Reasons[i].ID), c.redact(resp.Reasons[i].Reason)
	}
	if w.Score != nil {
		resp.Score = *w.Score
	}
	code := strconv.Itoa(resp.Code)
	msg := func(what string) string {
		m := "tongdun " + code + ": " + what
		if tm := c.redact(resp.Message); tm != "" {
			m += ": " + truncate(tm, 200)
		}
		return m
	}
	now := c.clock()
	switch resp.Code {
	case CodeOK:
		if w.Score == nil || resp.Score < 0 || resp.Score > 100 || !validResult(resp.Result) {
			// A 200 without a usable decision is as good as no answer.
			return nil, upstream.Verdict{Outcome: upstream.RetryLater, Code: "bad_answer",
				Message: "tongdun: 200 without a valid score (0-100) and result"}
		}
		return resp, upstream.Verdict{Outcome: upstream.Delivered, Code: code,
			Message: fmt.Sprintf("tongdun: %s (score %d)", resp.Result, resp.Score)}
	case CodeFieldEmpty, CodeFieldInvalid, CodeFieldTooLong, CodeTerminalMissing, CodeContentTypeInvalid:
		return resp, upstream.Verdict{Outcome: upstream.Permanent, Code: code, Message: msg("request rejected")}
	case CodeNotPurchased:
		return resp, upstream.Verdict{Outcome: upstream.Pause, Code: code, Message: msg("service not purchased (or wrong partner credentials)")}
	case CodeTrafficDisabled:
		return resp, upstream.Verdict{Outcome: upstream.Pause, Code: code, Message: msg("traffic disabled")}
	case CodeServiceExpired:
		return resp, upstream.Verdict{Outcome: upstream.Pause, Code: code, Message: msg("service expired")}
	case CodeTrafficShort:
		return resp, upstream.Verdict{Outcome: upstream.Pause, Code: code, PauseUntil: now.Add(pauseShortTraffic),
			Message: msg("traffic insufficient")}
	case CodeDailyCap:
		return resp, upstream.Verdict{Outcome: upstream.Pause, Code: code, PauseUntil: NextShanghaiDay(now),
			Message: msg("daily traffic cap reached")}
	case CodeSystemError, CodeUnknownError:
		return resp, upstream.Verdict{Outcome: upstream.RetryLater, Code: code, RetryAfter: retryAfter, Message: msg("TD error")}
	}
	// A code the seed does not list: keep the event and try again later
	// rather than drop it on a guess.
	return resp, upstream.Verdict{Outcome: upstream.RetryLater, Code: code, RetryAfter: retryAfter, Message: msg("undocumented code")}
}

// NextShanghaiDay is when TD's daily cap resets after t: 00:00 of the next
// day in Asia/Shanghai. A fixed +08:00 zone (China has no DST) works on hosts
// without tzdata.
func NextShanghaiDay(t time.Time) time.Time {
	cst := time.FixedZone("CST", 8*3600)
	y, m, d := t.In(cst).Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, cst)
}

func validResult(s string) bool {
	return s == ResultAccept || s == ResultReview || s == ResultDecline
}

func notConfigured() upstream.Verdict {
	return upstream.Verdict{Outcome: upstream.Pause, Code: "not_configured", Message: "tongdun: not configured"}
}

// redact masks the partner key in s, raw or query-escaped.
func (c *Client) redact(s string) string {
	k := c.cfg.PartnerKey
	if k == "" || s == "" {
		return s
	}
	s = strings.ReplaceAll(s, k, "***")
	if e := url.QueryEscape(k); e != k {
		s = strings.ReplaceAll(s, e, "***")
	}
	return s
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
