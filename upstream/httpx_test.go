package upstream

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
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
