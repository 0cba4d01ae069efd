package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outpost-agent/outpost/upstream"
)

// ProducerConfig configures the agent's one Kafka client.
type ProducerConfig struct {
	Conn    Conn
	AgentID string
	// Options are added last (tests: shorter time-outs).
	Options []kgo.Opt
	Logger  *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Producer is the agent's Kafka client: Senders for its queues and the
// status publisher share it.
//
// It produces with the settings the spool's guarantee needs: acks from all
// in-sync replicas, the idempotent producer, unlimited retries and no
// delivery time-out. A broker outage of any length leaves records buffered
// and retried; the spool keeps them until the broker acknowledges, so the
// outage is a backlog, not a loss.
type Producer struct {
	cl      *kgo.Client
	agentID string
	log     *slog.Logger
	now     func() time.Time

	mu        sync.Mutex
	pending   map[string]*pending // queue NUL event id -> record in the client's buffer
	lastConn  error               // last failure to reach a broker
	connAt    time.Time
	connPause *upstream.Verdict // set while the brokers refuse our credentials
	queues    map[string]*queueStats
}

// pending is one record given to the client and not yet answered.
type pending struct {
	done  chan struct{}
	err   error
	start time.Time
}

type queueStats struct {
	topic                    string
	produced, failed         int64
	watermark                uint64 // highest spool seq below which all is acknowledged
	watermarkEnqueued, ackAt time.Time
	lastErr                  string
	paused                   string
}

// NewProducer returns a producer; it does not wait for the brokers.
func NewProducer(cfg ProducerConfig) (*Producer, error) {
	if err := ValidAgentID(cfg.AgentID); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Producer{agentID: cfg.AgentID, log: cfg.Logger.With("component", "kafka-producer"), now: cfg.Now,
		pending: map[string]*pending{}, queues: map[string]*queueStats{}}
	opts, err := cfg.Conn.options()
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		// The guarantee (see the type's doc). These are franz-go's
		// defaults but one (linger), stated so that no upgrade and no
		// option added later changes them unnoticed.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordRetries(int(^uint(0)>>1)), // unlimited
		kgo.RecordDeliveryTimeout(0),        // never give up on a record
		kgo.ProduceRequestTimeout(10*time.Second),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.WithHooks(connHook{set: p.setConnErr}),
	)
	opts = append(opts, cfg.Options...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	p.cl = cl
	return p, nil
}

// Close fails what is still buffered (it stays in the spool, and is sent
// again after the restart) and closes the client.
func (p *Producer) Close() { p.cl.Close() }

// Client is the underlying client (the status publisher produces with it).
func (p *Producer) Client() *kgo.Client { return p.cl }

func (p *Producer) setConnErr(err error, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		p.connPause = nil
		return
	}
	p.lastConn, p.connAt = err, at
	if v := classifyConn(err); v.Outcome == upstream.Pause {
		p.connPause = &v
	}
}

// classifyConn: a broker that refuses our credentials or certificate will
// refuse them again (the client retries them without end, so Send stops
// waiting on its own and pauses the queue: an operator must act).
func classifyConn(err error) upstream.Verdict {
	var ce *tls.CertificateVerificationError
	var ue x509.UnknownAuthorityError
	var he x509.HostnameError
	if errors.As(err, &ce) || errors.As(err, &ue) || errors.As(err, &he) {
		return upstream.Verdict{Outcome: upstream.Pause, Code: "tls", Message: "kafka: " + err.Error() + " (check AGENT_KAFKA_TLS_*)"}
	}
	if v := Classify(err); v.Outcome == upstream.Pause {
		return v
	}
	return upstream.Verdict{Outcome: upstream.RetryLater}
}

// SenderConfig is one queue's topic and key.
type SenderConfig struct {
	// Queue is the spool queue ("tencent", "decisions-audit").
	Queue string
	Topic string
	// Kind names the schema header (KindActions, KindDecisions).
	Kind string
	// Key is the record key of a payload.
	Key func(payload []byte) (string, error)
}

// Sender returns a forwarder.Sender delivering one spool queue to its topic.
func (p *Producer) Sender(cfg SenderConfig) *Sender {
	p.mu.Lock()
	p.queues[cfg.Queue] = &queueStats{topic: cfg.Topic}
	p.mu.Unlock()
	return &Sender{p: p, cfg: cfg}
}

// Sender delivers a queue's items to a topic. Send answers Delivered only
// for records the broker acknowledged.
type Sender struct {
	p   *Producer
	cfg SenderConfig
}

// Send produces the items and waits for every answer (or ctx): the client
// retries what can be retried without end, so an answer is either an
// acknowledgement or an error the broker will say again (too large, not
// authorised). An item already in the client's buffer from an earlier Send
// (the forwarder gave up waiting when it was stopped) is not produced
// twice: its answer is awaited.
func (s *Sender) Send(ctx context.Context, items []upstream.Item) []upstream.Result {
	p := s.p
	out := make([]upstream.Result, len(items))
	pds := make([]*pending, len(items))
	for i, it := range items {
		out[i].ID = it.ID
		eid := EventID(p.agentID, it.Seq)
		// Each queue numbers its entries: the audit's entry 7 and the
		// actions' entry 7 have the same event id, and are two records.
		key := s.cfg.Queue + "\x00" + eid
		p.mu.Lock()
		pd := p.pending[key]
		p.mu.Unlock()
		if pd == nil {
			rec, err := s.record(eid, it)
			if err != nil {
				out[i].Verdict = upstream.Verdict{Outcome: upstream.Permanent, Code: "bad_record", Message: err.Error()}
				continue
			}
			pd = &pending{done: make(chan struct{}), start: p.now()}
			p.mu.Lock()
			p.pending[key] = pd
			p.mu.Unlock()
			p.cl.Produce(context.Background(), rec, func(_ *kgo.Record, err error) {
				p.mu.Lock()
				delete(p.pending, key)
				p.mu.Unlock()
				pd.err = err
				close(pd.done)
			})
		}
		pds[i] = pd
	}
	contiguous := true
	for i, pd := range pds {
		if pd == nil {
			contiguous = false
			continue
		}
		out[i].Verdict = s.await(ctx, pd)
		s.note(items[i], out[i].Verdict, &contiguous)
	}
	return out
}

// note keeps the queue's figures: the acknowledged watermark moves over
// the contiguous prefix of acknowledged items (the forwarder sends a
// queue's items in order, one batch at a time).
func (s *Sender) note(it upstream.Item, v upstream.Verdict, contiguous *bool) {
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.queues[s.cfg.Queue]
	if v.Outcome != upstream.Delivered {
		*contiguous = false
		q.failed++
		q.lastErr = v.Code + ": " + v.Message
		if v.Outcome == upstream.Pause {
			q.paused = v.Message
		}
		return
	}
	q.produced++
	q.paused, q.ackAt = "", p.now()
	if *contiguous && it.Seq > q.watermark {
		q.watermark, q.watermarkEnqueued = it.Seq, it.EnqueuedAt
	}
}

func (s *Sender) record(eid string, it upstream.Item) (*kgo.Record, error) {
	key, err := s.cfg.Key(it.Payload)
	if err != nil {
		return nil, err
	}
	v, err := Encode(Record{EventID: eid, AgentID: s.p.agentID, Queue: s.cfg.Queue, ID: it.ID, EnqueuedAt: it.EnqueuedAt, Payload: it.Payload})
	if err != nil {
		return nil, err
	}
	return &kgo.Record{
		Topic: s.cfg.Topic, Key: []byte(key), Value: v,
		Headers: []kgo.RecordHeader{
			{Key: HeaderEventID, Value: []byte(eid)},
			{Key: HeaderAgentID, Value: []byte(s.p.agentID)},
			{Key: HeaderSchema, Value: []byte(Schema(s.cfg.Kind))},
		},
	}, nil
}

// Verdicts of the broker's errors. Never: the broker will refuse the
// record whatever happens (dead letter). Pause: nothing will go until an
// operator acts (credentials, ACLs, a missing topic). Anything else is
// retried.
var (
	neverErrors = []error{kerr.MessageTooLarge, kerr.InvalidRecord, kerr.CorruptMessage, kerr.RecordListTooLarge}
	pauseErrors = []error{
		kerr.TopicAuthorizationFailed, kerr.ClusterAuthorizationFailed, kerr.TransactionalIDAuthorizationFailed,
		kerr.SaslAuthenticationFailed, kerr.UnsupportedSaslMechanism, kerr.IllegalSaslState,
		kerr.UnknownTopicOrPartition, kerr.UnknownTopicID, kerr.InvalidTopicException, kerr.InvalidRequiredAcks,
		kerr.PolicyViolation,
	}
)

// Classify maps a produce error to a verdict (nil: delivered).
func Classify(err error) upstream.Verdict {
	if err == nil {
		return upstream.Verdict{Outcome: upstream.Delivered, Code: "0"}
	}
	code := "kafka"
	var ke *kerr.Error
	if errors.As(err, &ke) {
		code = ke.Message
	}
	for _, e := range neverErrors {
		if errors.Is(err, e) {
			return upstream.Verdict{Outcome: upstream.Permanent, Code: code, Message: "the broker refuses this record: " + err.Error()}
		}
	}
	for _, e := range pauseErrors {
		if errors.Is(err, e) {
			return upstream.Verdict{Outcome: upstream.Pause, Code: code, Message: "kafka: " + err.Error() + " (check the topic, ACLs and AGENT_KAFKA_SASL_* settings)"}
		}
	}
	if errors.Is(err, kgo.ErrClientClosed) || errors.Is(err, context.Canceled) {
		code = "shutting_down"
	}
	return upstream.Verdict{Outcome: upstream.RetryLater, Code: code, Message: err.Error()}
}

// await is a record's answer, or a pause while the brokers refuse our
// credentials, or a retry when ctx ends (the forwarder is stopping).
func (s *Sender) await(ctx context.Context, pd *pending) upstream.Verdict {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-pd.done:
			return Classify(pd.err)
		case <-ctx.Done():
			return upstream.Verdict{Outcome: upstream.RetryLater, Code: "shutting_down", Message: "stopped before the broker answered"}
		case <-tick.C:
			s.p.mu.Lock()
			v := s.p.connPause
			s.p.mu.Unlock()
			if v != nil {
				return *v
			}
		}
	}
}

// ProducerStatus is the Kafka side of an agent, for /v1/status, metrics
// and the agents topic.
type ProducerStatus struct {
	AgentID string `json:"agent_id"`
	// State: "ok", "waiting" (records unanswered for over 30 s: the
	// brokers are unreachable or slow), "paused" (an error only an
	// operator can fix).
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Pending records are in the client's buffer, unanswered; the oldest
	// was produced OldestPendingSeconds ago (the produce lag).
	Pending              int                    `json:"pending"`
	OldestPendingSeconds float64                `json:"oldest_pending_seconds"`
	LastBrokerError      string                 `json:"last_broker_error,omitempty"`
	LastBrokerErrorAt    *time.Time             `json:"last_broker_error_at,omitempty"`
	Queues               map[string]QueueStatus `json:"queues"`
}

// QueueStatus is one queue's side.
type QueueStatus struct {
	Topic        string `json:"topic"`
	Acknowledged int64  `json:"acknowledged_total"`
	Failed       int64  `json:"failed_total"`
	// Watermark is the spool sequence up to which every entry is on the
	// broker; WatermarkAgeSeconds how old that entry was when acknowledged
	// last moved.
	Watermark           uint64     `json:"acknowledged_watermark"`
	LastAckAt           *time.Time `json:"last_acknowledged_at,omitempty"`
	LastError           string     `json:"last_error,omitempty"`
	PausedReason        string     `json:"paused_reason,omitempty"`
	WatermarkEnqueuedAt time.Time  `json:"watermark_enqueued_at"`
}

// StalledAfter is how long an unanswered record makes the state "waiting".
const StalledAfter = 30 * time.Second

// Status is a snapshot.
func (p *Producer) Status() ProducerStatus {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	st := ProducerStatus{AgentID: p.agentID, State: "ok", Pending: len(p.pending), Queues: map[string]QueueStatus{}}
	var oldest time.Time
	for _, pd := range p.pending {
		if oldest.IsZero() || pd.start.Before(oldest) {
			oldest = pd.start
		}
	}
	if !oldest.IsZero() {
		st.OldestPendingSeconds = now.Sub(oldest).Seconds()
	}
	if p.lastConn != nil {
		st.LastBrokerError = p.lastConn.Error()
		t := p.connAt
		st.LastBrokerErrorAt = &t
	}
	names := make([]string, 0, len(p.queues))
	for n := range p.queues {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		q := p.queues[n]
		qs := QueueStatus{Topic: q.topic, Acknowledged: q.produced, Failed: q.failed, Watermark: q.watermark,
			LastError: q.lastErr, PausedReason: q.paused, WatermarkEnqueuedAt: q.watermarkEnqueued}
		if !q.ackAt.IsZero() {
			t := q.ackAt
			qs.LastAckAt = &t
		}
		if q.paused != "" {
			st.State, st.Reason = "paused", n+": "+q.paused
		}
		st.Queues[n] = qs
	}
	if st.State == "ok" && st.OldestPendingSeconds > StalledAfter.Seconds() {
		st.State = "waiting"
		st.Reason = fmt.Sprintf("%d records unacknowledged for %.0fs", st.Pending, st.OldestPendingSeconds)
		if st.LastBrokerError != "" {
			st.Reason += "; last broker error: " + st.LastBrokerError
		}
	}
	return st
}
