package fleet

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Fleet velocity (velocity.go): every agent publishes the increments of
// its counters declared fleet: true to <prefix>.velocity.v1 and reads the
// whole topic back. The record is the v1 envelope (Record: event id, agent
// id, queue "velocity", id <decision id>/<counter>) around an Increment.

// KindVelocity is the topic kind of velocity increments:
// <prefix>.velocity.v1.
const KindVelocity = "velocity"

// VelocityQueue is the spool queue of an agent's own increments, forwarded
// to <prefix>.velocity.v1 by a Sender like the other queues.
const VelocityQueue = "velocity"

// Increment is one counted event of a counter shared with the fleet: the
// payload of a velocity record.
type Increment struct {
	// Counter is the policy's counter name; with WindowMS it names the
	// series an agent merges it into (agents share the counters whose
	// name and window agree).
	Counter string `json:"counter"`
	// WindowMS is the counter's window in milliseconds.
	WindowMS int64 `json:"window_ms"`
	// Key is what the counter counts by: account, device, ip, card, phone.
	Key string `json:"key"`
	// Subject is SubjectHash of the key's value under the fleet secret:
	// 32 hex digits, the same on every agent, revealing nothing.
	Subject string `json:"subject"`
	// Count is what the event adds (1 for a counted event).
	Count int64 `json:"count"`
	// EventTime is when the event was counted, by the producing agent's
	// clock: it decides the bucket, whenever the record arrives.
	EventTime time.Time `json:"event_time"`
	// Epoch names the producing agent's store: the time its velocity
	// queue began. A store rebuilt from nothing numbers its events from 1
	// again under a new epoch (see Velocity's de-duplication).
	Epoch int64 `json:"epoch"`
}

// maxIncrementCount bounds one increment's count (a count is 1 today; a
// sum counter would add more, never billions).
const maxIncrementCount = 1 << 30

// SubjectHash is a counter subject's fleet-wide key: the first 16 bytes of
// an HMAC-SHA256 under the fleet secret (AGENT_KAFKA_KEY_FILE, the same on
// every agent) of the key kind and value, in hex. Domain-separated from
// AccountKey.
func SubjectHash(secret []byte, kind, value string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("outpost.velocity.v1 subject\x00"))
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// EncodeIncrement is an increment's JSON, as the spool stores it and the
// record carries it.
func EncodeIncrement(inc Increment) ([]byte, error) {
	if err := inc.check(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(inc); err != nil {
		return nil, fmt.Errorf("encode increment: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// DecodeIncrement reads and checks an increment (a record's payload).
// Unknown fields are ignored: a v1 writer may add some.
func DecodeIncrement(b []byte) (Increment, error) {
	var inc Increment
	if err := json.Unmarshal(b, &inc); err != nil {
		return Increment{}, fmt.Errorf("%w: increment: %v", ErrMalformed, err)
	}
	if err := inc.check(); err != nil {
		return Increment{}, err
	}
	return inc, nil
}

// VelocityKey is the record key of an increment: its subject, so that one
// subject's increments stay in one partition, in order.
func VelocityKey(payload []byte) (string, error) {
	var inc struct {
		Subject string `json:"subject"`
	}
	if err := json.Unmarshal(payload, &inc); err != nil || !validSubject(inc.Subject) {
		return "", fmt.Errorf("%w: increment without a subject", ErrMalformed)
	}
	return inc.Subject, nil
}

func (inc Increment) check() error {
	bad := func(what string) error { return fmt.Errorf("%w: increment: %s", ErrMalformed, what) }
	switch {
	case inc.Counter == "" || len(inc.Counter) > 64:
		return bad("counter must be 1-64 characters")
	case inc.WindowMS <= 0 || inc.WindowMS > 366*24*3600*1000:
		return bad("window_ms must be positive, at most a year")
	case inc.Key == "" || len(inc.Key) > 32:
		return bad("key must be 1-32 characters")
	case !validSubject(inc.Subject):
		return bad("subject must be 32 hex digits")
	case inc.Count < 1 || inc.Count > maxIncrementCount:
		return bad("count must be 1 to 2^30")
	case inc.EventTime.IsZero() || inc.EventTime.Year() < 2000 || inc.EventTime.Year() > 9999:
		return bad("event_time must be a time after 2000")
	case inc.Epoch <= 0:
		return bad("epoch must be positive")
	}
	return nil
}

func validSubject(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// subject is a SubjectHash in its 16 bytes: the fleet view's map key.
type subject [16]byte

func parseSubject(s string) (subject, bool) {
	var sub subject
	if !validSubject(s) {
		return sub, false
	}
	_, err := hex.Decode(sub[:], []byte(s))
	return sub, err == nil
}
