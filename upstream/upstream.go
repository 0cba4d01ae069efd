// Package upstream holds what every upstream client shares: the classification
// of an upstream's answer into a Verdict the forwarder can act on.
//
// Each upstream lives in its own sub-package (tencent, tongdun, unionpay) with
// a client built on the shared HTTP shape of httpx.go (go-retryablehttp
// underneath) and a simulator (a real HTTP server that
// speaks the same protocol, error codes and quirks included) used by tests and
// demos.
package upstream

import (
	"encoding/json"
	"time"
)

// The upstreams' names: each one's queue in the spool, its worker, and
// the name its status and metrics go by. One home for them.
const (
	Tencent  = "tencent"
	TongDun  = "tongdun"
	UnionPay = "unionpay"
)

// Names are the three, in the order the agent lists them.
var Names = []string{Tencent, TongDun, UnionPay}

// Outcome is what the forwarder should do with an item after an attempt.
type Outcome int

const (
	// Delivered: the upstream confirmed the item; it may leave the spool.
	Delivered Outcome = iota
	// RetryLater: a transient failure (5xx, time-out, system error,
	// throttling); try again after RetryAfter (or the forwarder's back-off).
	RetryLater
	// Pause: the whole upstream cannot take anything until PauseUntil (zero
	// means until an operator acts; the forwarder probes every few minutes).
	// Token expired, service not bought, daily cap reached, wrong password...
	Pause
	// Permanent: this item will never be accepted; dead-letter it with Code
	// and Message.
	Permanent
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case RetryLater:
		return "retry_later"
	case Pause:
		return "pause"
	case Permanent:
		return "permanent"
	}
	return "unknown"
}

// Verdict classifies one answer (or failure to get one).
type Verdict struct {
	Outcome Outcome
	// Code is the upstream's own code as a string ("0", "11008", "305",
	// "0002"), or "http_503", "timeout", "network", "bad_answer".
	Code string
	// Message is safe to log and show: it never holds a credential or a
	// personal field.
	Message string
	// RetryAfter is a hint for RetryLater (Retry-After, throttling).
	RetryAfter time.Duration
	// Throttled is set when the upstream said "slow down".
	Throttled bool
	// PauseUntil is set for Pause; zero means until an operator acts.
	PauseUntil time.Time
}

// Item is one spooled entry handed to a client: its caller id (the
// de-duplication key upstream, where the protocol has one) and the payload
// exactly as stored in the spool.
type Item struct {
	ID      string
	Payload json.RawMessage
	// Seq and EnqueuedAt are the spool entry's sequence number and time
	// (the Kafka sender's event id and record; HTTP upstreams ignore them).
	Seq        uint64
	EnqueuedAt time.Time
}

// Result is the verdict for one Item. Answer carries the upstream's answer
// for that item when it was delivered (TongDun score/result/reasons,
// UnionPay score or match), as JSON, for the score cache and late verdicts.
type Result struct {
	ID      string
	Verdict Verdict
	Answer  json.RawMessage
}
