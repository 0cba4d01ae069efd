package decision

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-agent/outpost/spool"
)

// Spool is what SpoolStore needs of the agent's spool: *spool.Spool, or a
// wrapper of it (cmd/agent's, which queues an audit copy of each decision
// record in the same commit).
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
type SpoolStore struct{ sp Spool }

// NewSpoolStore returns the Store over sp.
func NewSpoolStore(sp Spool) *SpoolStore { return &SpoolStore{sp: sp} }

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
