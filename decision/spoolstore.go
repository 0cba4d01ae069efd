package decision

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-agent/outpost/spool"
)

// Spool is what SpoolStore needs of the agent's spool (*spool.Spool).
type Spool interface {
	Write(ctx context.Context, kvs []spool.KV, recs []spool.Record) (spool.AppendResult, error)
	Get(key string) ([]byte, bool, error)
	Scan(prefix, start string, fn func(key string, value []byte) bool) error
}

// SpoolStore is the Store on the agent's spool (badger): each thing kept
// is one key of the spool's small state, with the spool's TTL, and a
// Commit is one spool.Write, so a decision's record, its velocity events,
// its scores and the records it queues share one synced commit. The keys,
// which stored data directories hold and must stay readable:
//
//	dec/<decision id>                      a decision record
//	late/<decision id>/<kind>              a late verdict
//	vel/<counter>/<subject>/<time>-<decision id>
//	                                       a velocity event (value 0x01); time
//	                                       is unix nanoseconds as %020d, so
//	                                       keys sort by time
//	sc/<cache key>                         a score-cache entry (td/..., up/...)
type SpoolStore struct {
	sp Spool
	// auditQueue, when set, gets a copy of each decision record in the
	// record's own commit (AuditTo).
	auditQueue     string
	auditNotQueued func(n int)
}

// NewSpoolStore returns the Store over sp.
func NewSpoolStore(sp Spool) *SpoolStore { return &SpoolStore{sp: sp} }

// AuditTo makes every decision record committed also a record on the
// spool queue named queue, in the same commit (fleet mode forwards that
// queue to Kafka as the decisions' audit). A full spool still keeps the
// decision record, as it always does, without its audit copy: notQueued
// (may be nil) counts each copy dropped so, once. It returns s.
func (s *SpoolStore) AuditTo(queue string, notQueued func(n int)) *SpoolStore {
	s.auditQueue, s.auditNotQueued = queue, notQueued
	return s
}

var _ Store = (*SpoolStore)(nil)

// Key prefixes of SpoolStore's layout.
const (
	recordPrefix   = "dec/"
	latePrefix     = "late/"
	velocityPrefix = "vel/"
	scorePrefix    = "sc/"
)

// velocityValue is what a velocity event's key holds: the key is the
// event. Shared: the spool only reads it.
var velocityValue = []byte{1}

// Commit is one spool.Write of c's keys and queued records.
func (s *SpoolStore) Commit(ctx context.Context, c *Commit) error {
	n := len(c.Scores) + len(c.Velocity) + len(c.Late)
	if c.Record.ID != "" {
		n++
	}
	kvs := make([]spool.KV, 0, n)
	for _, e := range c.Scores {
		kvs = append(kvs, spool.KV{Key: scorePrefix + e.Key, Value: e.Entry, TTL: e.TTL})
	}
	for _, v := range c.Velocity {
		kvs = append(kvs, spool.KV{Key: velocityKey(v.Counter, v.Subject, v.At, v.DecisionID), Value: velocityValue, TTL: v.TTL})
	}
	for _, l := range c.Late {
		kvs = append(kvs, spool.KV{Key: latePrefix + l.DecisionID + "/" + l.Kind, Value: l.Verdict, TTL: l.TTL})
	}
	if c.Record.ID != "" {
		// Last: a wrapper that copies records finds it here.
		kvs = append(kvs, spool.KV{Key: recordPrefix + c.Record.ID, Value: c.Record.Record, TTL: c.Record.TTL})
	}
	if s.auditQueue != "" && c.Record.ID != "" && len(c.Record.Record) > 0 {
		recs := append(c.Queue[:len(c.Queue):len(c.Queue)], spool.Record{Queue: s.auditQueue, ID: c.Record.ID, Payload: c.Record.Record})
		_, err := s.sp.Write(ctx, kvs, recs)
		if !errors.Is(err, spool.ErrFull) {
			return err
		}
		// Full: the same commit without the copy. Counted only when that
		// one is taken: a refusal goes back to the engine, which commits
		// again without its own queued records, and the copy with them.
		if _, err = s.sp.Write(ctx, kvs, c.Queue); err == nil && s.auditNotQueued != nil {
			s.auditNotQueued(1)
		}
		return err
	}
	_, err := s.sp.Write(ctx, kvs, c.Queue)
	return err
}

// Decision reads dec/<id>.
func (s *SpoolStore) Decision(id string) ([]byte, bool, error) {
	return s.sp.Get(recordPrefix + id)
}

// LateVerdicts scans late/<id>/.
func (s *SpoolStore) LateVerdicts(id string, fn func(kind string, verdict []byte) bool) error {
	prefix := latePrefix + id + "/"
	return s.sp.Scan(prefix, "", func(k string, v []byte) bool {
		kind := k[len(prefix):]
		if strings.IndexByte(kind, '/') >= 0 {
			return true // another decision's, whose id goes on with "/"
		}
		return fn(kind, v)
	})
}

// VelocityEvents scans vel/<counter>/<subject>/ from since: each event is
// a key (time, decision id) with a TTL of its window.
func (s *SpoolStore) VelocityEvents(counter, subject string, since time.Time) ([]int64, error) {
	prefix := velocityPrefix + counter + "/" + subject + "/"
	start := string(appendTime20(append(make([]byte, 0, len(prefix)+20), prefix...), since))
	var ts []int64
	err := s.sp.Scan(prefix, start, func(k string, _ []byte) bool {
		if len(k) >= len(prefix)+20 {
			if n, err := strconv.ParseInt(k[len(prefix):len(prefix)+20], 10, 64); err == nil {
				ts = append(ts, n)
			}
		}
		return true
	})
	return ts, err
}

// Score reads sc/<key>.
func (s *SpoolStore) Score(key string) ([]byte, bool, error) {
	return s.sp.Get(scorePrefix + key)
}

// velocityKey is the key of one velocity event: the counter, the subject,
// the time, the decision (one allocation).
func velocityKey(counter, subject string, at time.Time, id string) string {
	var d [20]byte
	var b strings.Builder
	b.Grow(len(velocityPrefix) + len(counter) + 1 + len(subject) + 1 + 20 + 1 + len(id))
	b.WriteString(velocityPrefix)
	b.WriteString(counter)
	b.WriteByte('/')
	b.WriteString(subject)
	b.WriteByte('/')
	b.Write(appendTime20(d[:0], at))
	b.WriteByte('-')
	b.WriteString(id)
	return b.String()
}

// appendTime20 appends t's unix nanoseconds as fmt's %020d does: sorted
// as strings as they are as numbers (from 1970 on).
func appendTime20(b []byte, t time.Time) []byte {
	n := t.UnixNano()
	if n < 0 {
		return fmt.Appendf(b, "%020d", n)
	}
	var d [20]byte
	for i := len(d) - 1; i >= 0; i-- {
		d[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, d[:]...)
}
