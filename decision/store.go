package decision

import (
	"context"
	"time"

	"github.com/outpost-agent/outpost/spool"
)

// Store keeps what decisions write and read back: decision records, the
// late verdicts attached to them, velocity events and score-cache
// entries. It is all the engine knows of storage; how these are laid out
// is the implementation's (SpoolStore on the agent's spool, MemStore in
// memory), and TestStoreContract holds both to what is written here.
type Store interface {
	// Commit writes c in one atomic, durable commit: when it returns nil
	// all of c is stored, otherwise none of it. When c.Queue cannot be
	// taken because the store is full the error matches spool.ErrFull;
	// the same commit without Queue is still taken (what a decision
	// records is not held to the queues' cap). c, and what it holds, are
	// the caller's again when Commit returns.
	Commit(ctx context.Context, c *Commit) error
	// Decision returns the stored record of decision id; ok is false when
	// there is none (never written, or past its TTL).
	Decision(id string) (record []byte, ok bool, err error)
	// LateVerdicts calls fn with each late verdict stored for decision id
	// (and for no other decision), in order of kind, until fn returns
	// false.
	LateVerdicts(id string, fn func(kind string, verdict []byte) bool) error
	// VelocityEvents returns the times, in unix nanoseconds, of the stored
	// events of counter for subject at or after since, in no set order.
	VelocityEvents(counter, subject string, since time.Time) ([]int64, error)
	// Score returns the score-cache entry stored under key; ok is false
	// when there is none (never written, or past its TTL).
	Score(key string) (entry []byte, ok bool, err error)
}

// Commit is one atomic write to a Store: what one decision records (its
// record, its velocity events, the scores its live calls brought, the
// checks and fleet increments it queues), or what a late verdict or a
// score refresh brings. Any part may be empty. A TTL is how long the
// store keeps what it goes with; 0 keeps it for ever.
type Commit struct {
	// Record, when its ID is set, is a decision record.
	Record DecisionRecord
	// Scores are score-cache entries, written over what their keys held.
	Scores []ScoreEntry
	// Velocity are counted events.
	Velocity []VelocityEvent
	// Late are late verdicts of decisions, written over what the same
	// (decision, kind) held.
	Late []LateVerdict
	// Queue are the records queued with the commit (checks for the
	// forwarder, the fleet's increments).
	Queue []spool.Record
}

// DecisionRecord is a decision as stored (Result in JSON).
type DecisionRecord struct {
	ID     string
	Record []byte
	TTL    time.Duration
}

// ScoreEntry is a score-cache entry (cached in JSON) under the engine's
// cache key (tdKey, modelKey).
type ScoreEntry struct {
	Key   string
	Entry []byte
	TTL   time.Duration
}

// VelocityEvent is one event counted by counter for subject at At, by
// decision DecisionID (the same event written again is one event).
type VelocityEvent struct {
	Counter, Subject string
	At               time.Time
	DecisionID       string
	TTL              time.Duration
}

// LateVerdict is an upstream's verdict (Late in JSON) on a check of
// decision DecisionID; Kind is the signal (tongdun, unionpay_model...).
type LateVerdict struct {
	DecisionID, Kind string
	Verdict          []byte
	TTL              time.Duration
}
