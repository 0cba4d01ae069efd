// Package unionpay is the client for UnionPay FireEye (火眼): transaction
// authentication (does this card transaction exist) and the credit model
// score (300-1000).
//
// Requests carry a card number, an ID number and a mobile number, and the
// appKey (a password): none of them ever reaches a log line, an error or a
// Verdict. Logs show cards only through MaskCard.
package unionpay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/outpost-agent/outpost/upstream"
)

// DefaultURL is FireEye's production base URL.
const DefaultURL = "https://risktech.unionpay.com/fireeye/creditScore"

// DefaultTimeout bounds one HTTP attempt.
const DefaultTimeout = 3 * time.Second

// maxAnswer bounds how much of an answer we read: answers are a few bytes.
const maxAnswer = 1 << 20

// Config configures a Client. Without ID and AppKey the client is not
// Configured.
type Config struct {
	// URL is the base URL (default DefaultURL); the call names are appended.
	URL string
	// ID is the institution id UnionPay assigned ("id" in the request).
	ID string
	// AppKey is the password ("appKey"): a secret.
	AppKey string
	// Timeout bounds one HTTP attempt (default 3s).
	Timeout time.Duration
	// RetryMax is how many times a call is retried on a transport error or
	// 5xx (default 1; negative means never).
	RetryMax int
	// RetryWait is the first wait before a retry (default 100ms).
	RetryWait  time.Duration
	Clock      func() time.Time
	Logger     *slog.Logger
	HTTPClient *http.Client
}

// Client calls FireEye. It is safe for concurrent use.
type Client struct {
	cfg   Config
	base  string
	http  *retryablehttp.Client
	log   *slog.Logger
	clock func() time.Time
}

// New checks cfg and builds a client.
func New(cfg Config) (*Client, error) {
	if cfg.URL == "" {
		cfg.URL = DefaultURL
	}
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
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return nil, errors.New("unionpay: URL must be an absolute http(s) base URL without a query")
	}
	if (cfg.ID == "") != (cfg.AppKey == "") {
		return nil, errors.New("unionpay: ID and AppKey go together")
	}
	c := &Client{cfg: cfg, base: strings.TrimRight(cfg.URL, "/"), log: cfg.Logger, clock: cfg.Clock}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("upstream", "unionpay")
	if c.clock == nil {
		c.clock = time.Now
	}

	c.http = upstream.NewRetryClient(cfg.HTTPClient, cfg.Timeout, cfg.RetryMax, cfg.RetryWait, c.log)
	return c, nil
}

// Configured reports whether FireEye credentials are set.
func (c *Client) Configured() bool { return c != nil && c.cfg.ID != "" && c.cfg.AppKey != "" }

// TransactionAuth asks whether the transaction exists. 0003 (no such
// transaction) is an answer: Delivered with match false.
func (c *Client) TransactionAuth(ctx context.Context, q TransactionQuery) (bool, upstream.Verdict) {
	if !c.Configured() {
		return false, notConfigured()
	}
	if err := q.Validate(); err != nil {
		return false, invalidQuery(err)
	}
	start := time.Now()
	code, data, v := c.call(ctx, PathTransactionAuth, q)
	var match bool
	if v.Outcome == upstream.Delivered {
		switch {
		case code == CodeNoTransaction:
			v.Message = "unionpay 0003: no such transaction"
		case data == nil || (*data != 0 && *data != 1):
			v = badAnswer("transationAuthentication data is not 0 or 1")
		default:
			match = *data == 1
			v.Message = "unionpay: transaction does not match"
			if match {
				v.Message = "unionpay: transaction matches"
			}
		}
	}
	c.logVerdict(v, KindTransactionAuth, q.CardNo, start)
	return match, v
}

// ModelScore asks for the credit model score (300-1000).
func (c *Client) ModelScore(ctx context.Context, q ScoreQuery) (int, upstream.Verdict) {
	if !c.Configured() {
		return 0, notConfigured()
	}
	if err := q.Validate(); err != nil {
		return 0, invalidQuery(err)
	}
	start := time.Now()
	code, data, v := c.call(ctx, PathModelScore, q)
	score := 0
	if v.Outcome == upstream.Delivered {
		switch {
		case code == CodeNoTransaction:
			// The seed defines 0003 for transactions only; for a score it
			// can only mean UnionPay has nothing on this customer, which
			// asking again will not change.
			v = upstream.Verdict{Outcome: upstream.Permanent, Code: code, Message: "unionpay 0003: no match for this customer"}
		case data == nil || *data < MinScore || *data > MaxScore:
			v = badAnswer("UnionPayModelScore data is outside 300-1000")
		default:
			score = *data
			v.Message = "unionpay: score " + strconv.Itoa(score)
		}
	}
	c.logVerdict(v, KindModelScore, q.CardNo, start)
	return score, v
}

// Send runs spooled Checks, one request each, in order. Once FireEye is
// unavailable (Pause or RetryLater) the rest are not sent and get the same
// verdict.
func (c *Client) Send(ctx context.Context, items []upstream.Item) []upstream.Result {
	out := make([]upstream.Result, 0, len(items))
	for i, it := range items {
		if err := ctx.Err(); err != nil {
			return fillRest(out, items[i:], upstream.TransportVerdict("unionpay", err, c.cfg.Timeout, nil))
		}
		res := upstream.Result{ID: it.ID}
		var ch Check
		if err := json.Unmarshal(it.Payload, &ch); err != nil {
			res.Verdict = badPayload("payload is not a Check")
			out = append(out, res)
			continue
		}
		switch ch.Kind {
		case KindModelScore:
			var q ScoreQuery
			if err := json.Unmarshal(ch.Query, &q); err != nil {
				res.Verdict = badPayload("model_score query does not decode")
				break
			}
			score, v := c.ModelScore(ctx, q)
			res.Verdict = v
			if v.Outcome == upstream.Delivered {
				res.Answer, _ = json.Marshal(Answer{Score: &score})
			}
		case KindTransactionAuth:
			var q TransactionQuery
			if err := json.Unmarshal(ch.Query, &q); err != nil {
				res.Verdict = badPayload("transaction_auth query does not decode")
				break
			}
			match, v := c.TransactionAuth(ctx, q)
			res.Verdict = v
			if v.Outcome == upstream.Delivered {
				res.Answer, _ = json.Marshal(Answer{Match: &match})
			}
		default:
			res.Verdict = badPayload("unknown check kind")
		}
		out = append(out, res)
		if o := res.Verdict.Outcome; o == upstream.Pause || o == upstream.RetryLater {
			c.log.Info("upstream unavailable, holding the rest", "code", res.Verdict.Code, "held", len(items)-i-1)
			return fillRest(out, items[i+1:], res.Verdict)
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

// envelope is the JSON inside the data= form field.
type envelope struct {
	ID     string `json:"id"`
	AppKey string `json:"appKey"`
	Data   any    `json:"data"`
}

// call posts one request and classifies the answer's code. For 0000 and 0003
// the verdict is Delivered and the caller checks data.
func (c *Client) call(ctx context.Context, path string, query any) (string, *int, upstream.Verdict) {
	js, err := json.Marshal(envelope{ID: c.cfg.ID, AppKey: c.cfg.AppKey, Data: query})
	if err != nil {
		// Only a NaN/Inf amount can get here, and Validate rules it out;
		// the error text names no value.
		return "", nil, badPayload("cannot encode request")
	}
	form := url.Values{"data": {string(js)}}.Encode()
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, c.base+"/"+path, []byte(form))
	if err != nil {
		return "", nil, upstream.Verdict{Outcome: upstream.Pause, Code: "bad_config", Message: "unionpay: cannot build request"}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")

	hresp, err := c.http.Do(req)
	if err != nil {
		if hresp != nil {
			hresp.Body.Close()
		}
		return "", nil, upstream.TransportVerdict("unionpay", err, c.cfg.Timeout, nil)
	}
	defer hresp.Body.Close()
	raw, rerr := io.ReadAll(io.LimitReader(hresp.Body, maxAnswer))

	status := hresp.StatusCode
	retryAfter := upstream.RetryAfter(hresp.Header.Get("Retry-After"), c.clock())
	switch {
	case status == http.StatusTooManyRequests:
		return "", nil, upstream.Verdict{Outcome: upstream.RetryLater, Code: "http_429", Throttled: true, RetryAfter: retryAfter,
			Message: "unionpay: throttled (HTTP 429)"}
	case status >= 500:
		return "", nil, upstream.Verdict{Outcome: upstream.RetryLater, Code: "http_" + strconv.Itoa(status), RetryAfter: retryAfter,
			Message: fmt.Sprintf("unionpay: server error (HTTP %d)", status)}
	case rerr != nil:
		v := upstream.TransportVerdict("unionpay", rerr, c.cfg.Timeout, nil)
		v.Message = "unionpay: answer cut short: " + v.Message
		return "", nil, v
	}

	code, data, perr := parseAnswer(raw)
	if perr != nil {
		if status >= 400 {
			return "", nil, upstream.Verdict{Outcome: upstream.Pause, Code: "http_" + strconv.Itoa(status),
				Message: fmt.Sprintf("unionpay: HTTP %d without a FireEye answer; check the URL", status)}
		}
		// perr describes the shape only, never the body.
		return "", nil, badAnswer(perr.Error())
	}
	switch code {
	case CodeOK:
		return code, data, upstream.Verdict{Outcome: upstream.Delivered, Code: code}
	case CodeNoTransaction:
		return code, data, upstream.Verdict{Outcome: upstream.Delivered, Code: code}
	case CodeNotEnabled:
		return code, nil, upstream.Verdict{Outcome: upstream.Pause, Code: code,
			Message: "unionpay 0001: institution not enabled for this service (check ID)"}
	case CodeWrongPassword:
		return code, nil, upstream.Verdict{Outcome: upstream.Pause, Code: code,
			Message: "unionpay 0002: wrong password (check AppKey)"}
	case CodeProcessing:
		return code, nil, upstream.Verdict{Outcome: upstream.RetryLater, Code: code, RetryAfter: retryAfter,
			Message: "unionpay 0004: processing error"}
	}
	// An undocumented code: keep the item and try again rather than drop it
	// on a guess. The code is a short token from UnionPay, safe to show.
	return code, nil, upstream.Verdict{Outcome: upstream.RetryLater, Code: code, RetryAfter: retryAfter,
		Message: "unionpay " + code + ": undocumented code"}
}

// wireAnswer holds the answer's fields raw: the code comes as respCd in one
// of the seed's samples and resp in the other, and may be a string or a
// number.
type wireAnswer struct {
	RespCd json.RawMessage `json:"respCd"`
	Resp   json.RawMessage `json:"resp"`
	Msg    string          `json:"msg"`
	Data   json.RawMessage `json:"data"`
}

// parseAnswer reads the code (respCd, else resp) and data. Its errors say
// what is wrong with the shape, never what the body held.
func parseAnswer(raw []byte) (code string, data *int, err error) {
	var w wireAnswer
	if err := json.Unmarshal(raw, &w); err != nil {
		return "", nil, errors.New("unionpay: malformed or truncated answer")
	}
	field := w.RespCd
	if isNull(field) {
		field = w.Resp
	}
	if isNull(field) {
		return "", nil, errors.New("unionpay: answer has neither respCd nor resp")
	}
	code, ok := codeOf(field)
	if !ok {
		return "", nil, errors.New("unionpay: answer code is not a 4-digit code")
	}
	if !isNull(w.Data) {
		n, ok := intOf(w.Data)
		if !ok {
			return "", nil, errors.New("unionpay: answer data is not an integer")
		}
		data = &n
	}
	return code, data, nil
}

func isNull(r json.RawMessage) bool {
	s := strings.TrimSpace(string(r))
	return s == "" || s == "null"
}

func codeOf(r json.RawMessage) (string, bool) {
	var s string
	if err := json.Unmarshal(r, &s); err == nil {
		s = strings.TrimSpace(s)
		return s, len(s) == 4 && isDigits(s)
	}
	// Tolerate a numeric code: 4 arrives as 4, meaning "0004".
	var n int
	if err := json.Unmarshal(r, &n); err == nil && n >= 0 && n <= 9999 {
		return fmt.Sprintf("%04d", n), true
	}
	return "", false
}

func intOf(r json.RawMessage) (int, bool) {
	var n int
	if err := json.Unmarshal(r, &n); err == nil {
		return n, true
	}
	var s string
	if err := json.Unmarshal(r, &s); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
			return n, true
		}
	}
	return 0, false
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func (c *Client) logVerdict(v upstream.Verdict, kind, card string, start time.Time) {
	// Pause needs a person (credentials, contract, quota): say it loudly.
	level := slog.LevelDebug
	switch v.Outcome {
	case upstream.Pause:
		level = slog.LevelError
	case upstream.RetryLater, upstream.Permanent:
		level = slog.LevelWarn
	}
	c.log.Log(context.Background(), level, "unionpay call", "kind", kind, "card", MaskCard(card),
		"outcome", v.Outcome.String(), "code", v.Code, "message", v.Message, "elapsed", time.Since(start))
}

func notConfigured() upstream.Verdict {
	return upstream.Verdict{Outcome: upstream.Pause, Code: "not_configured", Message: "unionpay: not configured"}
}

func invalidQuery(err error) upstream.Verdict {
	// Validate's errors name fields only.
	return upstream.Verdict{Outcome: upstream.Permanent, Code: "invalid_query",
		Message: "unionpay: " + strings.ReplaceAll(err.Error(), "\n", "; ")}
}

func badPayload(why string) upstream.Verdict {
	return upstream.Verdict{Outcome: upstream.Permanent, Code: "bad_payload", Message: "unionpay: " + why}
}

// badAnswer is a well-formed answer with an impossible value: treated like a
// malformed one (RetryLater), since a broken upstream may well recover.
func badAnswer(why string) upstream.Verdict {
	if !strings.HasPrefix(why, "unionpay") {
		why = "unionpay: " + why
	}
	return upstream.Verdict{Outcome: upstream.RetryLater, Code: "bad_answer", Message: why}
}
