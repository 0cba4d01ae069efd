package client

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Error is an answer other than success. Code is the API's machine-readable
// code (invalid_request, spool_full, ...; empty when the answer was not
// the API's JSON), Details the fields at fault.
type Error struct {
	Method, Path string // the call: "POST", "/v1/actions"
	StatusCode   int
	Code         string
	Message      string
	Details      []FieldError
	// RetryAfter is the answer's Retry-After (0 without one).
	RetryAfter time.Duration
	// RequestID is the answer's X-Request-Id, which the agent's log lines
	// about the request carry.
	RequestID string
	// Body is the answer as it came.
	Body []byte
}

// FieldError is one problem with one field of the request:
// actions[2].action_param.credit_level, terminal.ip, body, ...
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("outpost: ")
	b.WriteString(e.Method + " " + e.Path + ": " + strconv.Itoa(e.StatusCode))
	if e.Code != "" {
		b.WriteString(" " + e.Code + ": " + e.Message)
	} else {
		b.WriteString(" " + http.StatusText(e.StatusCode))
	}
	if n := len(e.Details); n > 0 {
		parts := make([]string, 0, min(n, 4))
		for i, d := range e.Details {
			if i == 3 {
				parts = append(parts, strconv.Itoa(n-i)+" more")
				break
			}
			parts = append(parts, d.Field+": "+d.Reason)
		}
		b.WriteString(" (" + strings.Join(parts, "; ") + ")")
	}
	return b.String()
}

// Retryable reports whether the agent said that nothing was done and the
// same call may be made again later: 503 spool_full, overloaded,
// shutting_down or store_unavailable.
func (e *Error) Retryable() bool {
	if e.StatusCode != http.StatusServiceUnavailable {
		return false
	}
	switch e.Code {
	case "spool_full", "overloaded", "shutting_down", "store_unavailable":
		return true
	}
	return false
}

func newError(method, path string, resp *http.Response, body []byte) *Error {
	e := &Error{Method: method, Path: path, StatusCode: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id"), Body: body}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	var eb struct {
		Error *struct {
			Code    string       `json:"code"`
			Message string       `json:"message"`
			Details []FieldError `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &eb) == nil && eb.Error != nil {
		e.Code, e.Message, e.Details = eb.Error.Code, eb.Error.Message, eb.Error.Details
	}
	return e
}
