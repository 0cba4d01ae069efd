// Package fleet is fleet mode on Kafka: branch agents produce their action
// queue, their decisions' audit records and their status to the bank's
// Kafka, and relays (`agent relay`, a consumer group) deliver the actions to
// Tencent with the forwarder. With fleet velocity, every agent also
// publishes the increments of its counters shared with the fleet and reads
// everyone's back (Velocity, velocity.go).
//
// The contract is the record, version 1 (record.go):
//
//   - topics: <prefix>.actions.v1, <prefix>.decisions.v1,
//     <prefix>.deadletters.v1, <prefix>.agents.v1 (compacted),
//     <prefix>.velocity.v1 (an Increment as payload, keyed by its subject);
//   - key: for actions, the hex HMAC-SHA256 under the fleet secret of the
//     account's canonical identity (Identity), so one account's actions stay
//     in one partition, in order, and the key reveals nothing; for
//     decisions and status, the agent id;
//   - value: JSON with "v":1, the event id, the agent id, the spool queue,
//     the caller's id, the time it was queued and the payload exactly as the
//     spool stores it (already masked or hashed);
//   - headers: event-id (<agent id>:<spool sequence>), agent-id and schema
//     (outpost.actions.v1 and so on).
//
// The guarantees are the spool's: the producer (Sender) reports an item
// delivered only once the broker acknowledged it (acks from all in-sync
// replicas, idempotent, unlimited retries, no delivery timeout), so the
// spool's cursor moves only past acknowledged records; the relay (Relay)
// commits an offset only once every record below it has a final verdict.
package fleet

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Version is the record format this package writes and reads.
const Version = 1

// Topic kinds; Topic joins them to the prefix.
const (
	KindActions     = "actions"
	KindDecisions   = "decisions"
	KindDeadLetters = "deadletters"
	KindAgents      = "agents"
)

// Topic is the topic of a kind under prefix: "outpost.actions.v1".
func Topic(prefix, kind string) string { return prefix + "." + kind + ".v" + strconv.Itoa(Version) }

// Schema is the value of the schema header for a kind: "outpost.actions.v1"
// whatever the deployment's topic prefix (the schema is ours, the topic the
// bank's).
func Schema(kind string) string { return Topic("outpost", kind) }

// Header names.
const (
	HeaderEventID = "event-id"
	HeaderAgentID = "agent-id"
	HeaderSchema  = "schema"
	// HeaderReason is set on dead letters: why the relay set it aside.
	HeaderReason = "reason"
)

// Errors of Decode and the identity helpers.
var (
	// ErrVersion: the record is of another format version.
	ErrVersion = errors.New("unsupported record version")
	// ErrMalformed: the record is not a well-formed v1 record.
	ErrMalformed = errors.New("malformed record")
)

// Record is one spool entry as it travels on Kafka.
type Record struct {
	V int `json:"v"`
	// EventID is "<agent id>:<spool sequence>": unique per agent and queue
	// entry, the relay's de-duplication key.
	EventID string `json:"event_id"`
	AgentID string `json:"agent_id"`
	// Queue is the spool queue the entry came from ("tencent",
	// "decisions-audit").
	Queue string `json:"queue"`
	// ID is the caller's id: the action's id (Tencent's outer_action_id) or
	// the decision id.
	ID         string    `json:"id"`
	EnqueuedAt time.Time `json:"enqueued_at"`
	// Payload is the entry's payload exactly as the spool stores it.
	Payload json.RawMessage `json:"payload"`
}

// EventID is the event id of a spool entry.
func EventID(agentID string, seq uint64) string {
	return agentID + ":" + strconv.FormatUint(seq, 10)
}

// ParseEventID splits an event id.
func ParseEventID(s string) (agentID string, seq uint64, err error) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return "", 0, fmt.Errorf("%w: event id %q is not <agent id>:<sequence>", ErrMalformed, s)
	}
	seq, err = strconv.ParseUint(s[i+1:], 10, 64)
	if err != nil || s[i+1] == '+' {
		return "", 0, fmt.Errorf("%w: event id %q has no sequence number", ErrMalformed, s)
	}
	if err := ValidAgentID(s[:i]); err != nil {
		return "", 0, fmt.Errorf("%w: event id %q: %v", ErrMalformed, s, err)
	}
	return s[:i], seq, nil
}

// ValidAgentID checks an agent id: 1-64 of [A-Za-z0-9._-] (no ':', which
// separates it from the sequence in an event id).
func ValidAgentID(id string) error {
	if id == "" || len(id) > 64 {
		return errors.New("agent id must be 1-64 characters")
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("agent id %q may hold only letters, digits, '.', '_' and '-'", id)
		}
	}
	return nil
}

// Encode is the record's value: compact JSON, fields in a fixed order.
func Encode(r Record) ([]byte, error) {
	r.V = Version
	if !json.Valid(r.Payload) {
		return nil, fmt.Errorf("encode %s: %w: payload is not JSON", r.EventID, ErrMalformed)
	}
	var buf bytes.Buffer
	buf.Grow(len(r.Payload) + 160)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("encode %s: %w", r.EventID, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Decode reads a record value and checks it: version 1, an event id of the
// agent it names, a queue, an id, a time and a JSON object as payload.
// Unknown fields are ignored (a v1 writer may add some).
func Decode(b []byte) (Record, error) {
	var probe struct {
		V *int `json:"v"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if probe.V == nil {
		return Record{}, fmt.Errorf("%w: no version field", ErrMalformed)
	}
	if *probe.V != Version {
		return Record{}, fmt.Errorf("%w %d (this agent reads %d)", ErrVersion, *probe.V, Version)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	agent, _, err := ParseEventID(r.EventID)
	if err != nil {
		return Record{}, err
	}
	switch {
	case agent != r.AgentID:
		return Record{}, fmt.Errorf("%w: event id %q is not of agent %q", ErrMalformed, r.EventID, r.AgentID)
	case r.Queue == "":
		return Record{}, fmt.Errorf("%w: no queue", ErrMalformed)
	case r.ID == "":
		return Record{}, fmt.Errorf("%w: no id", ErrMalformed)
	case r.EnqueuedAt.IsZero():
		return Record{}, fmt.Errorf("%w: no enqueued_at", ErrMalformed)
	}
	p := bytes.TrimSpace(r.Payload)
	if len(p) == 0 || p[0] != '{' {
		return Record{}, fmt.Errorf("%w: payload is not a JSON object", ErrMalformed)
	}
	return r, nil
}

// identityFields are the stored action's account identifiers, most stable
// first: the identity of an action is the first one it has. An app that
// names a user the same way every time keeps that user's actions in one
// partition, in order.
var identityFields = []string{"hash_phone", "sha256_phone", "wechat_unionid", "wechat_openid",
	"hash_imei", "hash_idfa", "hash_oaid", "hash_android_id", "md5_sha256_imei", "md5_sha256_idfa", "md5_sha256_oaid", "caid"}

// Identity is the canonical account identity of a stored action (the
// spool's payload: user_id already hashed): "<field>:<value>" of the first
// identifier in identityFields (a WeChat openid with its app id:
// "wechat_openid:<app id>/<openid>"), else "click_id:<trace.click_id>",
// else "id:<action id>" (an action without an account: it is ordered with
// nothing else).
func Identity(payload []byte) (string, error) {
	var a struct {
		ID     string         `json:"id"`
		UserID map[string]any `json:"user_id"`
		Trace  map[string]any `json:"trace"`
	}
	if err := json.Unmarshal(payload, &a); err != nil {
		return "", fmt.Errorf("identity: %w: %v", ErrMalformed, err)
	}
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	for _, f := range identityFields {
		v := str(a.UserID, f)
		if v == "" {
			continue
		}
		if f == "wechat_openid" {
			v = str(a.UserID, "wechat_app_id") + "/" + v
		}
		return f + ":" + v, nil
	}
	if c := str(a.Trace, "click_id"); c != "" {
		return "click_id:" + c, nil
	}
	if a.ID == "" {
		return "", fmt.Errorf("identity: %w: an action with no id and no account", ErrMalformed)
	}
	return "id:" + a.ID, nil
}

// AccountKey is the record key of an action: the hex HMAC-SHA256 of its
// identity under the fleet secret, domain-separated from the agent's other
// uses of HMAC.
func AccountKey(secret []byte, identity string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("outpost.actions.v1 account\x00"))
	m.Write([]byte(identity))
	return hex.EncodeToString(m.Sum(nil))
}
