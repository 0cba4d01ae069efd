// Package tencent forwards spooled banking user actions to the Tencent Ads
// Marketing API (POST /v3.0/user_actions/add) and classifies each answer
// into an upstream.Verdict for the forwarder.
//
// The access token travels in the query string, as Tencent requires, so the
// request URL is a secret: it is never logged, and every error text that may
// hold it (net/http wraps errors with the URL) is masked before it reaches a
// log line or a Verdict.Message.
package tencent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-retryablehttp"
	"golang.org/x/time/rate"

	"github.com/outpost-agent/outpost/action"
	"github.com/outpost-agent/outpost/upstream"
)

// Tencent's documented limits for user_actions/add.
const (
	DefaultBaseURL           = "https://api.e.qq.com"
	DefaultRequestsPerMinute = 4000
	DefaultTimeout           = 10 * time.Second
	MaxActionsPerRequest     = 50
	MaxBodyBytes             = 50 * 1024

	// Path is the endpoint, relative to BaseURL.
	Path = "/v3.0/user_actions/add"
)

const (
	// maxAnswerBytes bounds how much of an answer we read: Tencent's answers
	// are a few hundred bytes; anything far larger is not an API answer.
	maxAnswerBytes = 64 * 1024
	// maxMessageLen keeps Verdict.Message short enough for logs and UIs.
	maxMessageLen = 300
	// bisectBudget bounds the extra requests spent isolating bad actions in
	// one top-level request. Isolating one bad action in 50 costs about
	// 2*log2(50) ≈ 12 requests, so this finds ~4 bad actions per batch; the
	// rest are handed back as RetryLater and isolated on the next attempt.
	bisectBudget = 48
	// maxClockSkew is Tencent's timestamp window. An unknown error code
	// answered while our clock is further off than this is blamed on the
	// clock (Pause) rather than on the actions (which bisection would
	// dead-letter one by one).
	maxClockSkew = 300 * time.Second
)

// Config configures a Client. Zero values take the documented defaults.
type Config struct {
	BaseURL         string // default https://api.e.qq.com
	AccountID       int64
	UserActionSetID int64
	// AccessToken is a secret: it never appears in logs, errors, metrics
	// or Verdict.Message.
	AccessToken string
	// RequestsPerMinute is the client-side rate limit (Tencent's documented
	// per-token default is 4000). Retries count against it too.
	RequestsPerMinute int
	Timeout           time.Duration // per attempt, default 10s
	// RetryMax is how many times one request is retried at once on a
	// connection error or a 5xx (default 2; negative means never), and
	// RetryWait the first wait before a retry (default 200ms, at most 10
	// times that). Few, short retries: they only smooth over a blip; the
	// forwarder above owns the long back-off and the spool keeps the items.
	RetryMax  int
	RetryWait time.Duration
	MaxBatch  int // actions per request, default and max 50
	MaxBytes  int // body bytes per request, default and max 50 KiB
	Clock     func() time.Time
	// After waits for the rate limiter (default a real timer): with Clock,
	// a test's fake clock.
	After  func(time.Duration) <-chan time.Time
	Logger *slog.Logger
	// HTTPClient overrides the transport (tests). It is copied: its Timeout
	// is replaced by Timeout when zero and redirects are never followed,
	// because a followed redirect would carry the token to another host.
	HTTPClient *http.Client
}

// Client sends actions to Tencent. It is safe for concurrent use.
type Client struct {
	cfg      Config
	endpoint *url.URL
	rc       *retryablehttp.Client
	limiter  *rate.Limiter
	answers  upstream.Answers
	log      *slog.Logger
	redactor *strings.Replacer
	envelope int // bytes of a request body with an empty actions array
}

// New checks cfg, fills in defaults and builds a Client. A Client without a
// token or ids can be built (Configured reports false); its Send pauses.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	base, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("tencent: parse base url: %w", err)
	}
	if base.Scheme != "http" && base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("tencent: base url %q must be http(s)://host", cfg.BaseURL)
	}
	if base.RawQuery != "" || base.User != nil {
		return nil, errors.New("tencent: base url must not carry a query or credentials")
	}
	switch {
	case cfg.RequestsPerMinute < 0, cfg.Timeout < 0, cfg.MaxBatch < 0, cfg.MaxBytes < 0:
		return nil, errors.New("tencent: negative limit in config")
	case cfg.MaxBatch > MaxActionsPerRequest:
		return nil, fmt.Errorf("tencent: max batch %d exceeds tencent's limit of %d", cfg.MaxBatch, MaxActionsPerRequest)
	case cfg.MaxBytes > MaxBodyBytes:
		return nil, fmt.Errorf("tencent: max bytes %d exceeds tencent's limit of %d", cfg.MaxBytes, MaxBodyBytes)
	}
	if cfg.RequestsPerMinute == 0 {
		cfg.RequestsPerMinute = DefaultRequestsPerMinute
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	switch {
	case cfg.RetryMax == 0:
		cfg.RetryMax = 2
	case cfg.RetryMax < 0:
		cfg.RetryMax = 0
	}
	if cfg.RetryWait <= 0 {
		cfg.RetryWait = 200 * time.Millisecond
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = MaxActionsPerRequest
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = MaxBodyBytes
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}

	c := &Client{
		cfg:      cfg,
		endpoint: base.JoinPath(Path),
		log:      cfg.Logger.With("upstream", "tencent"),
		redactor: newRedactor(cfg.AccessToken),
		envelope: len(envelope(cfg.AccountID, cfg.UserActionSetID)) + 2, // + "]}"
	}
	if cfg.MaxBytes <= c.envelope {
		return nil, fmt.Errorf("tencent: max bytes %d leaves no room for an action", cfg.MaxBytes)
	}
	// Burst 1: the quota is shared per token (often by a whole fleet), so
	// requests are paced evenly rather than fired in bursts into 11008.
	c.limiter = rate.NewLimiter(rate.Limit(float64(cfg.RequestsPerMinute)/60), 1)

	c.rc = upstream.NewRetryClient(upstream.RetryConfig{HTTPClient: cfg.HTTPClient, Timeout: cfg.Timeout,
		RetryMax: cfg.RetryMax, RetryWaitMin: cfg.RetryWait, Logger: c.log, PrepareRetry: c.prepareRetry})
	c.answers = upstream.Answers{Name: "tencent", Limit: maxAnswerBytes, Timeout: cfg.Timeout, Mask: c.redact}
	return c, nil
}

// Configured reports whether the client has what Tencent needs to accept
// anything: a token, an account and a user action set.
func (c *Client) Configured() bool {
	return c.cfg.AccessToken != "" && c.cfg.AccountID != 0 && c.cfg.UserActionSetID != 0
}

// wireAction is one action as Tencent takes it. Our internal track is not
// sent; outer_action_id is Tencent's de-duplication key, so re-sending after
// a crash or a lost answer does not count the action twice. It is the
// action id mapped to Tencent's alphabet (action.OuterActionID): the same
// id always gives the same key.
type wireAction struct {
	OuterActionID string                `json:"outer_action_id"`
	ActionTime    int64                 `json:"action_time"`
	UserID        *action.UserID        `json:"user_id,omitempty"`
	ActionType    string                `json:"action_type"`
	ActionParam   map[string]int        `json:"action_param,omitempty"`
	Trace         *action.Trace         `json:"trace,omitempty"`
	URL           string                `json:"url,omitempty"`
	Channel       string                `json:"channel,omitempty"`
	CustomAction  string                `json:"custom_action,omitempty"`
	ProductInform *action.ProductInform `json:"product_inform,omitempty"`
}

// entry is one item on its way: its index in Send's input and its encoding.
type entry struct {
	idx  int
	json []byte
	// personal holds this action's identifiers so that they can be cut
	// out of Tencent's messages, which may echo a field value.
	personal []string
}

// sendState is shared by the requests of one Send call.
type sendState struct {
	results []upstream.Result
	// stop, once set (Pause, throttling, cancellation), is given to every
	// item not yet settled without sending anything more: more requests
	// would only fail the same way or deepen the throttling.
	stop *upstream.Verdict
}

// Send delivers items and returns one Result per item, in the same order.
// It splits the input into requests of at most MaxBatch actions and
// MaxBytes bytes, and bisects a rejected request to find the bad actions.
func (c *Client) Send(ctx context.Context, items []upstream.Item) []upstream.Result {
	st := &sendState{results: make([]upstream.Result, len(items))}
	for i, it := range items {
		st.results[i].ID = it.ID
	}
	if !c.Configured() {
		v := upstream.Verdict{Outcome: upstream.Pause, Code: "not_configured",
			Message: "tencent upstream is not configured: access token, account_id and user_action_set_id are required"}
		for i := range st.results {
			st.results[i].Verdict = v
		}
		return st.results
	}

	pending := make([]entry, 0, len(items))
	maxAction := c.cfg.MaxBytes - c.envelope
	for i, it := range items {
		e, err := encodeItem(i, it)
		if err != nil {
			st.results[i].Verdict = upstream.Verdict{Outcome: upstream.Permanent, Code: "bad_payload",
				Message: "stored payload is not a valid action: " + c.redact(err.Error())}
			continue
		}
		if len(e.json) > maxAction {
			st.results[i].Verdict = upstream.Verdict{Outcome: upstream.Permanent, Code: "too_large",
				Message: fmt.Sprintf("action is %d bytes; a request holds at most %d", len(e.json), c.cfg.MaxBytes)}
			continue
		}
		pending = append(pending, e)
	}

	for _, chunk := range c.chunks(pending) {
		budget := bisectBudget
		c.deliver(ctx, st, chunk, &budget)
	}
	return st.results
}

func encodeItem(i int, it upstream.Item) (entry, error) {
	var a action.Action
	if err := json.Unmarshal(it.Payload, &a); err != nil {
		return entry{}, fmt.Errorf("decode action: %w", err)
	}
	id := a.ID
	if id == "" {
		id = it.ID
	}
	if id == "" {
		return entry{}, errors.New("action has no id")
	}
	w := wireAction{
		OuterActionID: action.OuterActionID(id),
		ActionTime:    a.ActionTime,
		UserID:        a.UserID,
		ActionType:    a.ActionType,
		ActionParam:   a.ActionParam,
		URL:           a.URL,
		Channel:       a.Channel,
		CustomAction:  a.CustomAction,
		ProductInform: a.ProductInform,
	}
	if a.Trace != nil && a.Trace.ClickID != "" {
		w.Trace = a.Trace
	}
	b, err := json.Marshal(w)
	if err != nil {
		return entry{}, fmt.Errorf("encode action: %w", err)
	}
	e := entry{idx: i, json: b}
	if u := a.UserID; u != nil {
		e.personal = append(e.personal, u.HashPhone, u.SHA256Phone, u.WechatOpenID,
			u.WechatUnionID, u.HashIMEI, u.HashIDFA, u.HashOAID, u.HashAndroidID,
			u.MD5SHA256IMEI, u.MD5SHA256IDFA, u.MD5SHA256OAID, u.CAID)
	}
	if w.Trace != nil {
		e.personal = append(e.personal, w.Trace.ClickID)
	}
	return e, nil
}

// chunks packs entries, in order, into requests within both limits.
func (c *Client) chunks(es []entry) [][]entry {
	var out [][]entry
	var cur []entry
	size := c.envelope
	for _, e := range es {
		add := len(e.json)
		if len(cur) > 0 {
			add++ // comma
		}
		if len(cur) == c.cfg.MaxBatch || size+add > c.cfg.MaxBytes {
			out = append(out, cur)
			cur, size, add = nil, c.envelope, len(e.json)
		}
		cur = append(cur, e)
		size += add
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// deliver sends es as one request and settles every entry, bisecting when
// Tencent rejects the request for its content.
func (c *Client) deliver(ctx context.Context, st *sendState, es []entry, budget *int) {
	v, reject := c.attempt(ctx, st, es)
	if !reject {
		c.settle(st, es, v)
		return
	}
	c.bisect(ctx, st, es, v, budget)
}

// bisect isolates the bad actions of es, which Tencent rejected with v.
func (c *Client) bisect(ctx context.Context, st *sendState, es []entry, v upstream.Verdict, budget *int) {
	if len(es) == 1 {
		v.Outcome = upstream.Permanent
		c.settle(st, es, v)
		return
	}
	if *budget < 2 {
		v.Outcome = upstream.RetryLater
		v.Message = "not yet isolated (bisection budget spent; retry to continue): " + v.Message
		c.settle(st, es, v)
		return
	}
	*budget -= 2
	mid := len(es) / 2
	left, right := es[:mid], es[mid:]
	lv, lreject := c.attempt(ctx, st, left)
	if lreject {
		c.bisect(ctx, st, left, lv, budget)
	} else {
		c.settle(st, left, lv)
		if lv.Outcome == upstream.Delivered && len(right) > 1 {
			// The whole was rejected and its left half taken, so the bad
			// action is on the right: split it without sending it whole.
			*budget++
			c.bisect(ctx, st, right, v, budget)
			return
		}
	}
	rv, rreject := c.attempt(ctx, st, right)
	if rreject {
		c.bisect(ctx, st, right, rv, budget)
		return
	}
	c.settle(st, right, rv)
}

func (c *Client) settle(st *sendState, es []entry, v upstream.Verdict) {
	for _, e := range es {
		st.results[e.idx].Verdict = v
	}
	if v.Outcome == upstream.Delivered {
		return
	}
	if st.stop == nil && (v.Outcome == upstream.Pause || v.Throttled || v.Code == "canceled" || v.Code == "rate_limited") {
		st.stop = &v
	}
}

// attempt sends es once (plus retryablehttp's few retries) and classifies
// the answer. reject reports that Tencent refused the request for its
// content, which bisection can narrow down to actions.
func (c *Client) attempt(ctx context.Context, st *sendState, es []entry) (v upstream.Verdict, reject bool) {
	if st.stop != nil {
		return *st.stop, false
	}
	if err := ctx.Err(); err != nil {
		return c.errVerdict(err), false
	}
	if err := c.waitTurn(ctx); err != nil {
		if ctx.Err() != nil {
			return c.errVerdict(ctx.Err()), false
		}
		// The limiter knows the wait would outlast ctx's deadline.
		return upstream.Verdict{Outcome: upstream.RetryLater, Code: "rate_limited",
			Message: "local rate limit (requests per minute) would outlast the send deadline"}, false
	}
	body := c.body(es)
	u, err := c.requestURL()
	if err != nil {
		return upstream.Verdict{Outcome: upstream.RetryLater, Code: "network", Message: c.redact(err.Error())}, false
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, u, body)
	if err != nil {
		return upstream.Verdict{Outcome: upstream.RetryLater, Code: "network", Message: c.redact(err.Error())}, false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")

	start := time.Now()
	resp, err := c.rc.Do(req)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		v = c.errVerdict(err)
	} else {
		v, reject = c.classifyResponse(resp)
	}
	v.Message = scrub(v.Message, es)
	c.log.Debug("tencent request", "actions", len(es), "bytes", len(body),
		"outcome", v.Outcome.String(), "code", v.Code, "elapsed", time.Since(start))
	if v.Outcome == upstream.Pause {
		c.log.Warn("tencent upstream paused", "code", v.Code, "message", v.Message)
	}
	return v, reject
}

func envelope(account, set int64) string {
	return `{"account_id":` + strconv.FormatInt(account, 10) +
		`,"user_action_set_id":` + strconv.FormatInt(set, 10) + `,"actions":[`
}

func (c *Client) body(es []entry) []byte {
	var b bytes.Buffer
	b.WriteString(envelope(c.cfg.AccountID, c.cfg.UserActionSetID))
	for i, e := range es {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(e.json)
	}
	b.WriteString("]}")
	return b.Bytes()
}

// requestURL builds the URL with the token and a fresh timestamp and nonce.
func (c *Client) requestURL() (string, error) {
	q, err := c.signQuery(nil)
	if err != nil {
		return "", err
	}
	u := *c.endpoint
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func (c *Client) signQuery(q url.Values) (url.Values, error) {
	var n [16]byte
	if _, err := rand.Read(n[:]); err != nil {
		return nil, fmt.Errorf("make nonce: %w", err)
	}
	if q == nil {
		q = url.Values{}
	}
	q.Set("access_token", c.cfg.AccessToken)
	q.Set("timestamp", strconv.FormatInt(c.cfg.Clock().Unix(), 10))
	q.Set("nonce", hex.EncodeToString(n[:])) // 32 chars, Tencent's maximum
	return q, nil
}

// errRateWait is waitTurn's answer when the wait would outlast ctx.
var errRateWait = errors.New("tencent: rate limit wait would outlast the deadline")

// waitTurn waits for the rate limiter, on the injected clock: a request
// per 60/RequestsPerMinute seconds. A wait that would outlast ctx's
// deadline is not started.
func (c *Client) waitTurn(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := c.cfg.Clock()
	r := c.limiter.ReserveN(now, 1)
	d := r.DelayFrom(now)
	if d == 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		r.CancelAt(now)
		return errRateWait
	}
	var wake <-chan time.Time
	if c.cfg.After != nil {
		wake = c.cfg.After(d)
	} else {
		t := time.NewTimer(d)
		defer t.Stop()
		wake = t.C
	}
	select {
	case <-wake:
		return nil
	case <-ctx.Done():
		r.CancelAt(c.cfg.Clock())
		return ctx.Err()
	}
}

// prepareRetry gives every retry its own timestamp and nonce (Tencent
// refuses a nonce it has seen) and makes it wait for the rate limiter.
func (c *Client) prepareRetry(r *http.Request) error {
	if err := c.waitTurn(r.Context()); err != nil {
		return err
	}
	q, err := c.signQuery(r.URL.Query())
	if err != nil {
		return err
	}
	u := *r.URL // the previous attempt may still hold the old URL
	u.RawQuery = q.Encode()
	r.URL = &u
	return nil
}

// answer is Tencent's reply. Code is a pointer so that a body without one
// is not mistaken for success.
type answer struct {
	Code      *int   `json:"code"`
	Message   string `json:"message"`
	MessageCN string `json:"message_cn"`
}

func (c *Client) classifyResponse(resp *http.Response) (upstream.Verdict, bool) {
	now := c.cfg.Clock()
	ans, v, final := c.answers.Read(resp, now)
	if final {
		// A 429 without Retry-After names no window: RetryAfter stays zero
		// and the forwarder backs off from about a second (see
		// throttleWindow).
		return v, false
	}
	var a answer
	if json.Unmarshal(ans.Body, &a) != nil || a.Code == nil {
		return c.answers.NotAnswer(ans, fmt.Sprintf("answer is not the expected JSON (%d bytes)", len(ans.Body))), false
	}
	if *a.Code == 0 {
		if ans.Status != http.StatusOK {
			return c.answers.NotAnswer(ans, ""), false
		}
		return upstream.Verdict{Outcome: upstream.Delivered, Code: "0"}, false
	}
	return c.classifyCode(*a.Code, a.Message, ans, now)
}

// classifyCode maps a non-zero Tencent code. reject reports a rejection of
// the request's content, to be bisected.
func (c *Client) classifyCode(code int, msg string, ans upstream.HTTPAnswer, now time.Time) (upstream.Verdict, bool) {
	v := upstream.Verdict{Code: strconv.Itoa(code)}
	detail := fmt.Sprintf("code %d: %s", code, c.redact(msg))
	switch {
	case code == 10000 || code == 10001:
		// System busy / temporary maintenance (10001 is documented too).
		v.Outcome = upstream.RetryLater
		v.Message = "tencent system error, retry later (" + detail + ")"
	case code >= 11000 && code <= 11005:
		v.Outcome = upstream.Pause
		v.Message = "tencent rejected the access token (" + detail + "); renew it in the configuration"
	case isThrottle(code):
		v.Outcome = upstream.RetryLater
		v.Throttled = true
		v.RetryAfter = ans.RetryAfter
		if !ans.RetryAfterSet {
			v.RetryAfter = throttleWindow(code, now)
		}
		v.Message = "tencent throttled the request (" + detail + ")"
	case code >= 11000 && code <= 11999:
		// The rest of the 11xxx family is about the app and its grant
		// (client_id invalid, out of the token's scope, ...): no action is
		// at fault and only an operator can fix it.
		v.Outcome = upstream.Pause
		v.Message = "tencent refused the app's authorisation (" + detail + "); check the token's account and scope"
	case code == 12000:
		v.Outcome = upstream.Pause
		v.Message = "tencent says an authentication parameter is missing (" + detail + ")"
	default:
		if skew, ok := clockSkew(ans.Header, now); ok && skew > maxClockSkew {
			v.Outcome = upstream.Pause
			v.Message = fmt.Sprintf("local clock is %s off tencent's; fix time sync (%s)", skew.Round(time.Second), detail)
			return v, false
		}
		v.Outcome = upstream.Permanent
		v.Message = "tencent rejected the action (" + detail + ")"
		return v, true
	}
	return v, false
}

func isThrottle(code int) bool {
	return code == 11008 || (code >= 11016 && code <= 11019) || code == 11022
}

// throttleWindow is how long a throttling code answered without a
// Retry-After tells us to wait, from Tencent's error table: until the
// window it names is over. Codes that name no window (11008, the
// application's request limit; 11019, "much too frequent", the body's or
// developer's frequency control; 11022, the real-name token's limit) give
// zero: the forwarder then backs off exponentially from about a second
// with jitter, up to a minute (forwarder.Config.ThrottleBackoffMax). The
// forwarder adds jitter to a window too, so that a fleet told to come back
// at the same instant does not.
func throttleWindow(code int, now time.Time) time.Duration {
	switch code {
	case 11016:
		// The per-second limit: back at the next second. Waiting a
		// minute, as for every throttle before, cost a branch with a
		// backlog a minute of delivery each time it touched the limit.
		return untilNextSecond(now)
	case 11017:
		// The per-minute quota: back at the next minute. Waiting a whole
		// minute from the refusal made each refused agent of a fleet come
		// back later into every window, and the fleet drained at half the
		// shared quota (bench/fleet, docs/fleet.md). Should Tencent's
		// window slide instead, this costs one more refusal a minute, not
		// a storm.
		return untilNextMinute(now)
	case 11018: // the per-day quota resets at midnight, Beijing time
		return untilBeijingMidnight(now)
	}
	return 0
}

// untilNextSecond is the wait until the next second starts.
func untilNextSecond(now time.Time) time.Duration {
	return now.Truncate(time.Second).Add(time.Second).Sub(now)
}

// untilNextMinute is the wait until the next minute starts, at least a
// second (so a refusal in a minute's last instant is not retried in it).
func untilNextMinute(now time.Time) time.Duration {
	return max(now.Truncate(time.Minute).Add(time.Minute).Sub(now), time.Second)
}

func untilBeijingMidnight(now time.Time) time.Duration {
	bj := now.In(time.FixedZone("CST", 8*3600))
	next := time.Date(bj.Year(), bj.Month(), bj.Day()+1, 0, 0, 0, 0, bj.Location())
	return next.Sub(bj)
}

// clockSkew compares the answer's Date header with our clock.
func clockSkew(h http.Header, now time.Time) (time.Duration, bool) {
	d := h.Get("Date")
	if d == "" {
		return 0, false
	}
	t, err := http.ParseTime(d)
	if err != nil {
		return 0, false
	}
	skew := now.Sub(t)
	if skew < 0 {
		skew = -skew
	}
	return skew, true
}

// errVerdict classifies a failure to get an answer, as every client does
// (upstream.TransportVerdict). The error text is masked: net/http puts the
// URL, token included, into its errors.
func (c *Client) errVerdict(err error) upstream.Verdict {
	return upstream.TransportVerdict("tencent", err, c.cfg.Timeout, c.redact)
}

// newRedactor masks the token in every form it can take in a text: raw,
// query-escaped and path-escaped.
func newRedactor(token string) *strings.Replacer {
	if token == "" {
		return strings.NewReplacer()
	}
	var pairs []string
	seen := map[string]bool{}
	for _, f := range []string{token, url.QueryEscape(token), url.PathEscape(token)} {
		if !seen[f] {
			seen[f] = true
			pairs = append(pairs, f, "[REDACTED]")
		}
	}
	return strings.NewReplacer(pairs...)
}

// redact masks the token, then anything still following "access_token=",
// then bounds the length.
func (c *Client) redact(s string) string {
	s = c.redactor.Replace(s)
	for off := 0; ; {
		i := strings.Index(s[off:], "access_token=")
		if i < 0 {
			break
		}
		start := off + i + len("access_token=")
		end := start
		for end < len(s) && !strings.ContainsRune("&\"' \t\r\n", rune(s[end])) {
			end++
		}
		if s[start:end] != "[REDACTED]" {
			s = s[:start] + "[REDACTED]" + s[end:]
		}
		off = start + len("[REDACTED]")
	}
	if len(s) > maxMessageLen {
		n := maxMessageLen
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n] + "…"
	}
	return s
}

// scrub cuts the request's personal identifiers out of a message from
// Tencent, which may echo a field value back.
func scrub(msg string, es []entry) string {
	for _, e := range es {
		for _, p := range e.personal {
			if len(p) >= 4 {
				msg = strings.ReplaceAll(msg, p, "[personal]")
			}
		}
	}
	return msg
}
