// Package client is the Go client of the Outpost agent's local API, for
// apps on the agent's host and for the agent's own CLI. It imports nothing
// but the standard library.
//
// Every call takes a context and honours its deadline. Calls that are safe
// to repeat are retried on the answers that say nothing was done (503
// spool_full, overloaded, shutting_down, store_unavailable) and on
// connection errors: after the answer's Retry-After, else after a capped,
// jittered back-off, never past the context's deadline. Actions are safe to
// repeat (the agent de-duplicates them by ID), reads are, and a decision is
// when it carries an ID; a decision without one is tried once.
//
// An answer other than success is an *Error carrying the API's code and
// the fields at fault:
//
//	var e *client.Error
//	if errors.As(err, &e) && e.Code == "invalid_request" { ... e.Details ... }
//
// The API is described by the agent's GET /openapi.json (localapi/openapi.json).
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultAddr is where the agent listens unless AGENT_LISTEN_ADDR says
// otherwise.
const DefaultAddr = "127.0.0.1:8470"

// Config configures a Client.
type Config struct {
	// Addr is the agent: host:port (DefaultAddr when empty), a URL
	// (http://127.0.0.1:8470), or unix:///path/to/agent.sock for the
	// agent's AGENT_LISTEN_UNIX socket.
	Addr string
	// Token is the bearer token: the app token (AGENT_AUTH_TOKEN) for apps,
	// the admin token (AGENT_ADMIN_TOKEN) for the admin calls. Empty sends
	// none (an agent with no token set).
	Token string
	// HTTPClient carries the requests. Default: a client whose attempts
	// time out after 30 s. Its Transport is replaced for a unix socket.
	HTTPClient *http.Client
	// MaxAttempts caps the tries of a call that may be retried (default 4;
	// 1 turns retries off).
	MaxAttempts int
	// MaxBackoff caps the back-off between tries when the agent gave no
	// Retry-After (default 2 s; it starts at 100 ms and doubles, with full
	// jitter).
	MaxBackoff time.Duration
	// MaxRetryAfter is the longest Retry-After the client waits for
	// (default 30 s, the agent's longest); past it, or past the context's
	// deadline, the call returns the *Error and its RetryAfter instead.
	MaxRetryAfter time.Duration
	// UserAgent is sent with every request (default outpost-client-go).
	UserAgent string
}

// Client calls one agent. It is safe for concurrent use.
type Client struct {
	cfg  Config
	base string // scheme://host, no trailing slash
	hc   *http.Client
	// sleep waits d or until ctx ends; jitter gives a number in [0, n).
	// Tests replace them.
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func(n int64) int64
}

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 4
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 2 * time.Second
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = 30 * time.Second
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "outpost-client-go"
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	c := &Client{cfg: cfg, hc: hc, sleep: sleepCtx, jitter: rand.Int64N}
	switch {
	case strings.HasPrefix(cfg.Addr, "unix://"):
		path := strings.TrimPrefix(cfg.Addr, "unix://")
		if path == "" {
			return nil, errors.New("client: unix:// needs a socket path")
		}
		var d net.Dialer
		h := *hc
		h.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		}}
		c.hc, c.base = &h, "http://localhost"
	case strings.Contains(cfg.Addr, "://"):
		u, err := url.Parse(cfg.Addr)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("client: Addr %q is not an http URL", cfg.Addr)
		}
		c.base = strings.TrimRight(cfg.Addr, "/")
	default:
		if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
			return nil, fmt.Errorf("client: Addr %q: %w", cfg.Addr, err)
		}
		c.base = "http://" + cfg.Addr
	}
	return c, nil
}

// Addr is the agent's base URL, as the client calls it.
func (c *Client) Addr() string { return c.base }

// PostActions stores 1-1000 actions. It returns once they are on disk. It
// is retried as needed: the agent counts an action it already has as a
// duplicate.
func (c *Client) PostActions(ctx context.Context, actions []Action) (*ActionsResult, error) {
	var out ActionsResult
	if err := c.call(ctx, http.MethodPost, "/v1/actions", map[string][]Action{"actions": actions}, true, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Decide asks for a decision. It is retried only when req carries an ID
// (the agent answers a repeated ID with the stored decision); without one a
// retry would be a second decision.
func (c *Client) Decide(ctx context.Context, req *DecisionRequest) (*Decision, error) {
	var out Decision
	if err := c.call(ctx, http.MethodPost, "/v1/decisions", req, req.ID != "", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Decision reads a stored decision (admin).
func (c *Client) Decision(ctx context.Context, id string) (*DecisionRecord, error) {
	var out DecisionRecord
	if err := c.call(ctx, http.MethodGet, "/v1/decisions/"+url.PathEscape(id), nil, true, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Status reads the agent's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var out Status
	if err := c.call(ctx, http.MethodGet, "/v1/status", nil, true, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Health reports whether the agent's process is up (GET /healthz).
func (c *Client) Health(ctx context.Context) error {
	return c.call(ctx, http.MethodGet, "/healthz", nil, true, nil)
}

// Ready reads GET /readyz. An agent that is up but not ready answers a
// Readiness whose Status is not_ready, with no error.
func (c *Client) Ready(ctx context.Context) (*Readiness, error) {
	var out Readiness
	err := c.call(ctx, http.MethodGet, "/readyz", nil, true, &out)
	var e *Error
	if errors.As(err, &e) && e.StatusCode == http.StatusServiceUnavailable && e.Code == "" && json.Unmarshal(e.Body, &out) == nil && out.Status != "" {
		return &out, nil
	}
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// DeadLetters lists an upstream's dead letters after seq after (0 for the
// first), at most limit (0 for the agent's default, 100; at most 1000), oldest first
// (admin).
func (c *Client) DeadLetters(ctx context.Context, upstream string, after uint64, limit int) ([]DeadLetter, error) {
	q := url.Values{"upstream": {upstream}}
	if after > 0 {
		q.Set("after", strconv.FormatUint(after, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		DeadLetters []DeadLetter `json:"dead_letters"`
	}
	if err := c.call(ctx, http.MethodGet, "/v1/deadletters?"+q.Encode(), nil, true, &out); err != nil {
		return nil, err
	}
	return out.DeadLetters, nil
}

// ReplayDeadLetters puts dead letters back in their queue and returns how
// many were (admin). It is not retried: an operator sees the outcome.
func (c *Client) ReplayDeadLetters(ctx context.Context, r Replay) (int, error) {
	var out struct {
		Replayed int `json:"replayed"`
	}
	if err := c.call(ctx, http.MethodPost, "/v1/deadletters/replay", r, false, &out); err != nil {
		return 0, err
	}
	return out.Replayed, nil
}

// call sends one API call, retrying it when retry allows and the answer
// says nothing was done, and decodes a success into out (nil: ignore it).
func (c *Client) call(ctx context.Context, method, path string, in any, retry bool, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("client: %s %s: encode request: %w", method, path, err)
		}
	}
	for attempt := 1; ; attempt++ {
		b, err := c.once(ctx, method, path, body)
		if err == nil {
			if out == nil {
				return nil
			}
			if err := json.Unmarshal(b, out); err != nil {
				return fmt.Errorf("client: %s %s: decode answer: %w", method, path, err)
			}
			return nil
		}
		if !retry || attempt >= c.cfg.MaxAttempts || ctx.Err() != nil {
			return err
		}
		wait, ok := c.backoff(attempt, err)
		if !ok {
			return err
		}
		if dl, has := ctx.Deadline(); has && time.Until(dl) < wait {
			return err // the next try would come after the caller stopped waiting
		}
		if c.sleep(ctx, wait) != nil {
			return err
		}
	}
}

// backoff says how long to wait before trying again after err, and
// whether to try again at all: after the answers that say nothing was done
// (503 with spool_full, overloaded, shutting_down or store_unavailable)
// and after connection errors; not after anything else.
func (c *Client) backoff(attempt int, err error) (time.Duration, bool) {
	var e *Error
	if errors.As(err, &e) {
		if !e.Retryable() {
			return 0, false
		}
		if e.RetryAfter > 0 {
			if e.RetryAfter > c.cfg.MaxRetryAfter {
				return 0, false
			}
			// At least what the agent asked, plus up to a tenth more, so
			// that callers refused together do not come back together.
			return e.RetryAfter + time.Duration(c.jitter(int64(e.RetryAfter)/10+1)), true
		}
	}
	ceiling := min(c.cfg.MaxBackoff, 100*time.Millisecond<<min(attempt-1, 20))
	return time.Duration(c.jitter(int64(ceiling)) + 1), true
}

// once sends one request and returns a success's body, or the error: an
// *Error for an answer other than 2xx, else the transport's.
func (c *Client) once(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err // *url.Error: names the method and URL
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return b, nil
	}
	return nil, newError(method, path, resp, b)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
