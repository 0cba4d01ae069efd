// Package unionpay is the client for UnionPay FireEye (火眼): transaction
// authentication (does this card transaction exist) and the credit model
// score (300-1000).
//
// The seed describes the requests twice, differently: in its tables and in
// its sample code. Config.Shape chooses which the client speaks (Shape has
// both); the answers of both shapes are read the same way, the code under
// respCd or resp.
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
	// Shape is which of the seed's two descriptions of the API to speak
	// (default ShapeTable).
	Shape Shape
	// ScoreURL is the model score's full URL. By default it is
	// URL/UnionPayModelScore in the table shape, and DefaultSampleScoreURL
	// in the sample shape, whose sample code posts the score to another
	// host than the transaction authentication.
	ScoreURL string
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
	cfg      Config
	authURL  string
	scoreURL string
	http     *retryablehttp.Client
	answers  upstream.Answers
	log      *slog.Logger
	clock    func() time.Time
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
	shape, err := ParseShape(string(cfg.Shape))
	if err != nil {
		return nil, err
	}
	cfg.Shape = shape
	if !isBaseURL(cfg.URL) {
		return nil, errors.New("unionpay: URL must be an absolute http(s) base URL without a query")
	}
	base := strings.TrimRight(cfg.URL, "/")
	if cfg.ScoreURL == "" {
		cfg.ScoreURL = base + "/" + PathModelScore
		if shape == ShapeSample {
			cfg.ScoreURL = DefaultSampleScoreURL
		}
	}
	if !isBaseURL(cfg.ScoreURL) {
		return nil, errors.New("unionpay: ScoreURL must be an absolute http(s) URL without a query")
	}
	if (cfg.ID == "") != (cfg.AppKey == "") {
		return nil, errors.New("unionpay: ID and AppKey go together")
	}
	c := &Client{cfg: cfg, authURL: base + "/" + PathTransactionAuth, scoreURL: cfg.ScoreURL, log: cfg.Logger, clock: cfg.Clock}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("upstream", "unionpay")
	if c.clock == nil {
		c.clock = time.Now
	}

	c.http = upstream.NewRetryClient(upstream.RetryConfig{HTTPClient: cfg.HTTPClient, Timeout: cfg.Timeout,
		RetryMax: cfg.RetryMax, RetryWaitMin: cfg.RetryWait, Logger: c.log})
	c.answers = upstream.Answers{Name: "unionpay", Limit: maxAnswer, Timeout: cfg.Timeout}
	return c, nil
}

func isBaseURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.RawQuery == "" && !u.ForceQuery
}

// Configured reports whether FireEye credentials are set. The sample
// shape's transaction authentication sends none, but its model score does:
// both shapes need them.
func (c *Client) Configured() bool { return c != nil && c.cfg.ID != "" && c.cfg.AppKey != "" }

// Shape is the shape the client speaks.
func (c *Client) Shape() Shape { return c.cfg.Shape }

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
	code, data, v := c.call(c.transactionRequest(ctx, q))
	var match bool
	if v.Outcome == upstream.Delivered {
		switch {
		case code == CodeNoTransaction:
			v.Message = "unionpay 0003: no such transaction"
		case data == nil || (*data != 0 && *data != 1):
			v = badAnswer("transaction authentication data is not 0 or 1")
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
	code, data, v := c.call(c.scoreRequest(ctx, q))
	score := 0
	if v.Outcome == upstream.Delivered {
		switch {
		case code == CodeNoTransaction:
			// The seed defines 0003 for transactions only; for a score it
			// can only mean UnionPay has nothing on this customer, which
			// asking again will not change.
			v = upstream.Verdict{Outcome: upstream.Permanent, Code: code, Message: "unionpay 0003: no match for this customer"}
		case data == nil || *data < MinScore || *data > MaxScore:
			v = badAnswer("model score data is outside 300-1000")
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

// envelope is the JSON in data= of every request but the sample shape's
// transaction authentication.
type envelope struct {
	ID     string `json:"id"`
	AppKey string `json:"appKey"`
	Data   any    `json:"data"`
}

// sampleTransaction is transationAuthentication's data in the sample shape:
// no envelope, transAmount a string, the fields in the sample's order (so
// the sample's values give the sample's bytes).
type sampleTransaction struct {
	TransDate     string `json:"transDate"`
	CardNo        string `json:"cardNo"`
	CertID        string `json:"certid,omitempty"`
	Mobile        string `json:"mobile,omitempty"`
	TransLocation string `json:"transLocation,omitempty"`
	TransAmount   string `json:"transAmount"`
}

// sampleScore is the model score's data in the sample shape, in the
// sample's order.
type sampleScore struct {
	Mobile string `json:"mobile"`
	CardNo string `json:"cardNo"`
	CertID string `json:"certid"`
}

const formType = "application/x-www-form-urlencoded"

// transactionRequest builds transaction authentication in the configured
// shape; a nil request comes with the verdict to give instead.
func (c *Client) transactionRequest(ctx context.Context, q TransactionQuery) (*retryablehttp.Request, upstream.Verdict) {
	if c.cfg.Shape != ShapeSample {
		return c.formPost(ctx, c.authURL, q)
	}
	js, err := json.Marshal(sampleTransaction{TransDate: q.TransDate, CardNo: q.CardNo, CertID: q.CertID, Mobile: q.Mobile,
		TransLocation: q.TransLocation, TransAmount: strconv.FormatFloat(q.TransAmount, 'f', -1, 64)})
	if err != nil {
		return nil, badPayload("cannot encode request")
	}
	// URL-encoded as the sample's URLEncoder.encode does: Go's client sends
	// a raw query as it is, and JSON is not a valid one (RFC 3986).
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, c.authURL+"?data="+url.QueryEscape(string(js)), nil)
	if err != nil {
		return nil, cannotBuild()
	}
	// The sample sets it on its GET too; it names no body, so it is harmless.
	req.Header.Set("Content-Type", formType)
	req.Header.Set("Accept", "application/json")
	return req, upstream.Verdict{}
}

// scoreRequest builds the model score in the configured shape.
func (c *Client) scoreRequest(ctx context.Context, q ScoreQuery) (*retryablehttp.Request, upstream.Verdict) {
	if c.cfg.Shape != ShapeSample {
		return c.formPost(ctx, c.scoreURL, q)
	}
	js, err := json.Marshal(envelope{ID: c.cfg.ID, AppKey: c.cfg.AppKey, Data: sampleScore{Mobile: q.Mobile, CardNo: q.CardNo, CertID: q.CertID}})
	if err != nil {
		return nil, badPayload("cannot encode request")
	}
	// "data=" + json.toString(), not URL-encoded, as the sample posts it.
	// The sample's ClientApp.httpPostWithJSON is not shown; its name says
	// JSON, so that is the type sent.
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, c.scoreURL, append([]byte("data="), js...))
	if err != nil {
		return nil, cannotBuild()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	return req, upstream.Verdict{}
}

// formPost builds the table shape's request: a POST of the form
// data=<envelope JSON>.
func (c *Client) formPost(ctx context.Context, u string, query any) (*retryablehttp.Request, upstream.Verdict) {
	js, err := json.Marshal(envelope{ID: c.cfg.ID, AppKey: c.cfg.AppKey, Data: query})
	if err != nil {
		// Only a NaN/Inf amount can get here, and Validate rules it out;
		// the error text names no value.
		return nil, badPayload("cannot encode request")
	}
	form := url.Values{"data": {string(js)}}.Encode()
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, u, []byte(form))
	if err != nil {
		return nil, cannotBuild()
	}
	req.Header.Set("Content-Type", formType)
	req.Header.Set("Accept", "application/json")
	return req, upstream.Verdict{}
}

// cannotBuild says nothing of the URL: in the sample shape it holds the
// card number.
func cannotBuild() upstream.Verdict {
	return upstream.Verdict{Outcome: upstream.Pause, Code: "bad_config", Message: "unionpay: cannot build request"}
}

// call sends one request and classifies the answer's code. For 0000 and 0003
// the verdict is Delivered and the caller checks data. A nil req means the
// request could not be built and v says why.
func (c *Client) call(req *retryablehttp.Request, v upstream.Verdict) (string, *int, upstream.Verdict) {
	if req == nil {
		return "", nil, v
	}
	hresp, err := c.http.Do(req)
	if err != nil {
		if hresp != nil {
			hresp.Body.Close()
		}
		return "", nil, upstream.TransportVerdict("unionpay", err, c.cfg.Timeout, nil)
	}
	a, v, final := c.answers.Read(hresp, c.clock())
	if final {
		return "", nil, v
	}
	retryAfter := a.RetryAfter
	code, data, perr := parseAnswer(a.Body)
	if perr != nil {
		// perr describes the shape only, never the body.
		return "", nil, c.answers.NotAnswer(a, strings.TrimPrefix(perr.Error(), "unionpay: "))
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
