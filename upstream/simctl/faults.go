package simctl

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Faults are the failures a simulator injects; the zero value injects
// nothing. One type for the three simulators (tencentsim, tdsim, upsim
// alias it), so that a fault means the same everywhere and the contract
// test (upstream/contract_test.go) sets the same fault on each.
//
// Transport faults come first, in this order, before the simulator looks
// at the request: Latency, Outage, HTTPStatus (with RetryAfter). Then each
// simulator's protocol faults; then the answer faults Truncate, Cut and
// Oversize on the answer written (Tencent's: on an accepted request only,
// the case where the delivery happened but its answer was lost).
//
// In JSON (POST /_sim/faults), durations are Go duration strings ("250ms",
// friendlier with curl) or numbers: nanoseconds for latency, seconds for
// retry_after (as a Retry-After header counts). Codes are numbers or
// strings of digits ("0004").
type Faults struct {
	// Latency delays every API answer; a client that gives up first
	// leaves the request unprocessed.
	Latency time.Duration `json:"latency,omitempty"`
	// Outage closes each connection without an answer (a reset).
	Outage bool `json:"outage,omitempty"`
	// HTTPStatus answers this status with a plain-text body, before any
	// check.
	HTTPStatus int `json:"http_status,omitempty"`
	// RetryAfter adds a Retry-After header to HTTPStatus answers and to
	// Tencent's throttling answers: whole seconds, rounded up, or with
	// RetryAfterDate the HTTP date that far ahead of the simulator's clock.
	RetryAfter     time.Duration `json:"retry_after,omitempty"`
	RetryAfterDate bool          `json:"retry_after_date,omitempty"`

	// Truncate answers the first half of the answer as if it were whole:
	// a malformed answer.
	Truncate bool `json:"truncate,omitempty"`
	// Cut announces the whole answer (Content-Length), sends half of it
	// and drops the connection: an answer cut mid-body.
	Cut bool `json:"cut,omitempty"`
	// Oversize pads the answer with leading white space to this many
	// bytes: valid JSON, larger than any client reads.
	Oversize int `json:"oversize,omitempty"`

	// ErrorRate (0..1) of authenticated requests answer ErrorCode instead
	// of their answer (default: the upstream's system error: Tencent 10000,
	// TongDun 9200, UnionPay 0004). Tencent's is deterministic, an
	// accumulator (0.25 fails every 4th); the others draw from Options.Seed.
	ErrorRate float64 `json:"error_rate,omitempty"`
	ErrorCode int     `json:"error_code,omitempty"`
	// Code answers this code to every authenticated request (TongDun 301,
	// 9200...; UnionPay 1 for 0001...).
	Code int `json:"code,omitempty"`

	// Tencent only.
	//
	// TokenExpired answers 11003.
	TokenExpired bool `json:"token_expired,omitempty"`
	// Throttle answers 11008 (the application's request limit).
	Throttle bool `json:"throttle,omitempty"`
	// ThrottleCode answers this throttling code to every request: 11008,
	// 11016 (per second), 11017 (per minute), 11018 (per day) or 11019
	// (much too frequent). Any other value is answered as given.
	ThrottleCode int `json:"throttle_code,omitempty"`
	// BadActionIDs make a request holding any of these outer_action_ids
	// fail whole with 31001.
	BadActionIDs []string `json:"bad_action_ids,omitempty"`
	// QuotaPerSecond and QuotaPerMinute are the token's quotas shared by
	// all clients; requests over one in a clock second get 11016, in a
	// clock minute 11017.
	QuotaPerSecond int `json:"quota_per_second,omitempty"`
	QuotaPerMinute int `json:"quota_per_minute,omitempty"`

	// TongDun only: DailyCap accepts this many events per Shanghai day,
	// then answers 305.
	DailyCap int `json:"daily_cap,omitempty"`

	// UnionPay only: Data, when set, replaces data in every 0000 answer
	// (to send impossible values: a score of 1200, a match of 2).
	Data *int `json:"data,omitempty"`
}

// faultsJSON is Faults as written: durations as strings.
type faultsJSON Faults

// MarshalJSON writes durations as Go duration strings ("150ms").
func (f Faults) MarshalJSON() ([]byte, error) {
	w := struct {
		faultsJSON
		Latency    string `json:"latency,omitempty"`
		RetryAfter string `json:"retry_after,omitempty"`
	}{faultsJSON: faultsJSON(f)}
	if f.Latency != 0 {
		w.Latency = f.Latency.String()
	}
	if f.RetryAfter != 0 {
		w.RetryAfter = f.RetryAfter.String()
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads durations and codes as the type's doc says.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var w struct {
		faultsJSON
		Latency    json.RawMessage `json:"latency"`
		RetryAfter json.RawMessage `json:"retry_after"`
		ErrorCode  json.RawMessage `json:"error_code"`
		Code       json.RawMessage `json:"code"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*f = Faults(w.faultsJSON)
	var err error
	if f.Latency, err = ParseDuration(w.Latency); err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	if f.RetryAfter, err = parseSeconds(w.RetryAfter); err != nil {
		return fmt.Errorf("retry_after: %w", err)
	}
	if f.ErrorCode, err = parseCode(w.ErrorCode); err != nil {
		return fmt.Errorf("error_code: %w", err)
	}
	if f.Code, err = parseCode(w.Code); err != nil {
		return fmt.Errorf("code: %w", err)
	}
	return nil
}

// ParseDuration reads a fault's duration from JSON: a Go duration string
// ("250ms", friendlier with curl) or nanoseconds; absent or null is zero.
func ParseDuration(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return time.ParseDuration(s)
	}
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, errors.New("want a duration string or nanoseconds")
	}
	return time.Duration(n), nil
}

// parseSeconds is ParseDuration with numbers counted in seconds.
func parseSeconds(raw json.RawMessage) (time.Duration, error) {
	var n int64
	if json.Unmarshal(raw, &n) == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := ParseDuration(raw)
	if err != nil {
		return 0, errors.New("want a duration string or seconds")
	}
	return d, nil
}

func parseCode(raw json.RawMessage) (int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var n int
	if json.Unmarshal(raw, &n) == nil {
		return n, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n >= 0 {
			return n, nil
		}
	}
	return 0, errors.New("want a number or a string of digits")
}

// Before injects the transport faults, in order: Latency (cut short when
// the client gives up), Outage, HTTPStatus. It reports whether the request
// was answered (or abandoned) and the simulator must stop there. count
// (nil for none) is told "outage" or "http_NNN". Read the request's body
// first: net/http only notices a client that hung up once the body is
// consumed.
func (f Faults) Before(w http.ResponseWriter, r *http.Request, now time.Time, count func(string)) bool {
	if count == nil {
		count = func(string) {}
	}
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return true // the client gave up; the gateway drops the request
		}
	}
	if f.Outage {
		count("outage")
		Reset(w)
		return true
	}
	if f.HTTPStatus != 0 {
		count("http_" + strconv.Itoa(f.HTTPStatus))
		f.SetRetryAfter(w.Header(), now)
		http.Error(w, http.StatusText(f.HTTPStatus), f.HTTPStatus)
		return true
	}
	return false
}

// SetRetryAfter sets Retry-After from RetryAfter (nothing when zero).
func (f Faults) SetRetryAfter(h http.Header, now time.Time) {
	switch {
	case f.RetryAfter <= 0:
	case f.RetryAfterDate:
		h.Set("Retry-After", now.Add(f.RetryAfter).UTC().Format(http.TimeFormat))
	default:
		h.Set("Retry-After", strconv.Itoa(int((f.RetryAfter+time.Second-1)/time.Second)))
	}
}

// Write writes the answer b with status, as the answer faults make it:
// Truncate, Cut, Oversize. The caller sets the headers.
func (f Faults) Write(w http.ResponseWriter, status int, b []byte) {
	switch {
	case f.Truncate:
		b = b[:len(b)/2]
	case f.Oversize > len(b):
		b = append([]byte(strings.Repeat(" ", f.Oversize-len(b))), b...)
	case f.Cut:
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(status)
		_, _ = w.Write(b[:len(b)/2])
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		if conn, buf, err := rc.Hijack(); err == nil {
			// A plain close, not a reset: a reset may overtake the
			// headers, and the client would see no answer at all.
			_ = flush(buf)
			_ = conn.Close()
		}
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func flush(buf *bufio.ReadWriter) error {
	if buf == nil {
		return nil
	}
	return buf.Flush()
}
