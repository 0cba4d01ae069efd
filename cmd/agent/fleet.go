package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/outpost-agent/outpost/config"
	"github.com/outpost-agent/outpost/decision"
	"github.com/outpost-agent/outpost/fleet"
	"github.com/outpost-agent/outpost/forwarder"
	"github.com/outpost-agent/outpost/metrics"
	"github.com/outpost-agent/outpost/spool"
	"github.com/outpost-agent/outpost/upstream"
)

// auditQueue holds each decision's audit record (as stored, masked) until
// the broker has it: the same durable path as the actions.
const auditQueue = "decisions-audit"

// fleetQueues are the spool queues fleet mode adds: the audit, and with
// fleet velocity this agent's increments.
func fleetQueues(cfg config.Config) []string {
	if !cfg.KafkaConfigured() {
		return nil
	}
	if cfg.FleetVelocityOn() {
		return []string{auditQueue, fleet.VelocityQueue}
	}
	return []string{auditQueue}
}

// fleetAgent is an agent's Kafka side: one client for its queues and its
// status. nil when AGENT_KAFKA_BROKERS is empty.
type fleetAgent struct {
	cfg    config.Config
	id     string
	prod   *fleet.Producer
	status *fleet.StatusPublisher
	// vel is the fleet's velocity view (AGENT_FLEET_VELOCITY); nil when off.
	vel *fleet.Velocity
	// auditNotQueued counts audit records that could not be queued (a
	// full spool: the decision itself is still recorded and answered).
	auditNotQueued atomic.Int64
}

func kafkaConn(cfg config.Config, role string, log *slog.Logger) (fleet.Conn, error) {
	c := fleet.Conn{
		Brokers: cfg.Brokers(), TLS: cfg.KafkaTLS, CAFile: cfg.KafkaTLSCAFile, CertFile: cfg.KafkaTLSCertFile,
		KeyFile: cfg.KafkaTLSKeyFile, ServerName: cfg.KafkaTLSServerName,
		SASLMechanism: cfg.KafkaSASLMechanism, SASLUser: cfg.KafkaSASLUser, ClientID: "outpost-" + role, Logger: log,
	}
	if cfg.KafkaSASLPassFile != "" {
		p, err := config.ReadSecretFile(cfg.KafkaSASLPassFile)
		if err != nil {
			return c, fmt.Errorf("AGENT_KAFKA_SASL_PASSWORD_FILE: %w", err)
		}
		c.SASLPassword = p
	}
	return c, nil
}

func newFleetAgent(cfg config.Config, log *slog.Logger) (*fleetAgent, error) {
	if !cfg.KafkaConfigured() {
		return nil, nil
	}
	id, err := fleet.LoadAgentID(cfg.AgentID, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("AGENT_ID: %w", err)
	}
	conn, err := kafkaConn(cfg, "agent", log)
	if err != nil {
		return nil, err
	}
	p, err := fleet.NewProducer(fleet.ProducerConfig{Conn: conn, AgentID: id, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("AGENT_KAFKA_BROKERS: %w", err)
	}
	log.Info("fleet mode: Kafka configured", "agent_id", id, "brokers", strings.Join(cfg.Brokers(), ","),
		"topic_prefix", cfg.KafkaTopicPrefix, "forward_via", cfg.ForwardVia)
	return &fleetAgent{cfg: cfg, id: id, prod: p}, nil
}

// openVelocity opens the fleet's velocity view on the agent's store (its
// counts and offsets live there, beside the decisions that count).
func (f *fleetAgent) openVelocity(sp *spool.Spool, log *slog.Logger) error {
	if f == nil || !f.cfg.FleetVelocityOn() {
		return nil
	}
	secret, err := config.ReadKeyFile(f.cfg.KafkaKeyFile)
	if err != nil {
		return fmt.Errorf("AGENT_KAFKA_KEY_FILE: %w", err)
	}
	conn, err := kafkaConn(f.cfg, "agent-velocity", log)
	if err != nil {
		return err
	}
	f.vel, err = fleet.OpenVelocity(fleet.VelocityConfig{
		Conn: conn, Topic: fleet.Topic(f.cfg.KafkaTopicPrefix, fleet.KindVelocity), AgentID: f.id, Secret: secret, Store: sp,
		MaxEntries: f.cfg.FleetVelocityMaxEntries, MaxAge: f.cfg.FleetVelocityMaxAge, Lookback: f.cfg.FleetVelocityLookback, Logger: log,
	})
	if err != nil {
		return fmt.Errorf("AGENT_FLEET_VELOCITY: %w", err)
	}
	st := f.vel.Status()
	log.Info("fleet velocity: the fleet's counters are shared", "topic", st.Topic, "loaded_entries", st.LoadedEntries,
		"partitions_stored", len(st.Partitions), "max_entries", st.MaxEntries)
	if need := fleetMemoryNeed(f.cfg.FleetVelocityMaxEntries); f.cfg.MemoryLimit != 0 && f.cfg.MemoryLimit < need {
		log.Warn("AGENT_MEMORY_LIMIT leaves little room for the fleet's counts: raise it by AGENT_FLEET_VELOCITY_MAX_ENTRIES x 100 bytes",
			"memory_limit", mibs(int64(f.cfg.MemoryLimit)), "suggested", mibs(int64(need)))
	}
	return nil
}

// fleetMemoryNeed is the Go memory limit an agent with a fleet view of at
// most entries counts needs: the default limit and the counts on top.
func fleetMemoryNeed(entries int) config.ByteSize {
	return config.ByteSize(config.DefaultMemoryLimit + int64(entries)*fleet.BytesPerEntry)
}

// velocityOn says whether the fleet's velocity view is open.
func (f *fleetAgent) velocityOn() bool { return f != nil && f.vel != nil }

// decisionFleet is the engine's Fleet: nil (not a nil *Velocity) when off.
func (f *fleetAgent) decisionFleet() decision.Fleet {
	if f == nil || f.vel == nil {
		return nil
	}
	return f.vel
}

var _ decision.Fleet = (*fleet.Velocity)(nil)

// velocityStatus is the fleet view in /v1/status; nil when off.
func (f *fleetAgent) velocityStatus() func() any {
	if f == nil || f.vel == nil {
		return nil
	}
	return func() any { return f.vel.Status() }
}

// workers replaces the tencent queue's worker by one that delivers to
// <prefix>.actions.v1 (AGENT_FORWARD_VIA=kafka) and adds the audit
// queue's worker. Kafka takes batches far larger than Tencent's 50, and a
// partial batch need not wait for company: the client batches by itself.
func (f *fleetAgent) workers(sp *spool.Spool, log *slog.Logger, ws map[string]*forwarder.Worker, wake wakes) error {
	if f == nil {
		return nil
	}
	var key []byte
	if f.cfg.ForwardViaKafka() {
		var err error
		if key, err = config.ReadKeyFile(f.cfg.KafkaKeyFile); err != nil {
			return fmt.Errorf("AGENT_KAFKA_KEY_FILE: %w", err)
		}
	}
	worker := func(queue string, s forwarder.Sender) *forwarder.Worker {
		cfg := f.cfg
		return forwarder.New(forwarder.Config{
			Name: queue, Queue: sp, Logger: log, Sender: s, Wake: wake[queue],
			BatchSize: 1000, MaxBatchBytes: 1 << 20, FlushInterval: kafkaFlush,
			MaxAttempts: cfg.ForwardMaxAttempts, MaxAge: cfg.ForwardMaxAge,
			BackoffMax: cfg.ForwardBackoffMax, ProbeInterval: cfg.ForwardProbeInterval,
			BreakerOpen: cfg.ForwardBreakerOpen, BreakerMaxOpen: max(cfg.ForwardBreakerOpen, cfg.ForwardBackoffMax),
		})
	}
	if f.cfg.ForwardViaKafka() {
		// The status page counts an action delivered when it is on Kafka:
		// from this agent's side, it is.
		ws[upstream.Tencent] = worker(upstream.Tencent, f.prod.Sender(fleet.SenderConfig{
			Queue: upstream.Tencent, Topic: fleet.Topic(f.cfg.KafkaTopicPrefix, fleet.KindActions), Kind: fleet.KindActions,
			Key: func(p []byte) (string, error) {
				id, err := fleet.Identity(p)
				if err != nil {
					return "", err
				}
				return fleet.AccountKey(key, id), nil
			},
		}))
	}
	if f.vel != nil {
		// Keyed by subject: one subject's increments in one partition, in
		// this agent's order (the readers' de-duplication relies on it).
		ws[fleet.VelocityQueue] = worker(fleet.VelocityQueue, f.prod.Sender(fleet.SenderConfig{
			Queue: fleet.VelocityQueue, Topic: fleet.Topic(f.cfg.KafkaTopicPrefix, fleet.KindVelocity), Kind: fleet.KindVelocity,
			Key: fleet.VelocityKey,
		}))
	}
	agentKey := f.id
	ws[auditQueue] = worker(auditQueue, f.prod.Sender(fleet.SenderConfig{
		Queue: auditQueue, Topic: fleet.Topic(f.cfg.KafkaTopicPrefix, fleet.KindDecisions), Kind: fleet.KindDecisions,
		// One agent's audit stays in order in one partition; the agent id
		// is in the headers anyway.
		Key: func([]byte) (string, error) { return agentKey, nil },
	}))
	return nil
}

// kafkaFlush is how long a partial batch bound for Kafka waits for
// company. An idle worker is woken by the spool when its queue gets an
// entry (wakes), not by polling: the forwarder's 250 ms poll alone was the
// p99 from 202 to the broker at 1,000 actions/s.
const kafkaFlush = 2 * time.Millisecond

// start publishes the agent's status to <prefix>.agents.v1 and starts
// reading the fleet's velocity.
func (f *fleetAgent) start(status func() any) {
	if f == nil {
		return
	}
	if f.vel != nil {
		f.vel.Start()
	}
	f.status = fleet.StartStatus(fleet.StatusConfig{
		Client: f.prod.Client(), Topic: fleet.Topic(f.cfg.KafkaTopicPrefix, fleet.KindAgents), AgentID: f.id,
		Role: "agent", Version: version, Interval: f.cfg.KafkaStatusInterval, Status: status,
	})
}

func (f *fleetAgent) register(m *metrics.Metrics) {
	if f != nil {
		m.Register(f.prod.Collector())
	}
	if f != nil && f.vel != nil {
		m.Register(f.vel.Collector())
	}
}

// kafkaStatus is the Kafka side in /v1/status; nil without Kafka.
func (f *fleetAgent) kafkaStatus() func() any {
	if f == nil {
		return nil
	}
	return func() any {
		st := f.prod.Status()
		return struct {
			fleet.ProducerStatus
			ForwardVia     string `json:"forward_via"`
			AuditNotQueued int64  `json:"audit_not_queued_total"`
		}{st, f.cfg.ForwardVia, f.auditNotQueued.Load()}
	}
}

// store is the decision engine's store on sp: with Kafka, each decision
// record is also queued, in the same commit, on the audit queue.
func (f *fleetAgent) store(sp *spool.Spool) *decision.SpoolStore {
	st := decision.NewSpoolStore(sp)
	if f == nil {
		return st
	}
	return st.AuditTo(auditQueue, func(n int) { f.auditNotQueued.Add(int64(n)) })
}

// kafkaDoc is the Kafka side as `agent status` reads it.
type kafkaDoc struct {
	AgentID              string  `json:"agent_id"`
	ForwardVia           string  `json:"forward_via"`
	State                string  `json:"state"`
	Reason               string  `json:"reason"`
	Pending              int     `json:"pending"`
	OldestPendingSeconds float64 `json:"oldest_pending_seconds"`
	LastBrokerError      string  `json:"last_broker_error"`
	Queues               map[string]struct {
		Topic        string `json:"topic"`
		Acknowledged int64  `json:"acknowledged_total"`
		Watermark    uint64 `json:"acknowledged_watermark"`
		LastError    string `json:"last_error"`
	} `json:"queues"`
}

// velocityDoc is the fleet view as `agent status` reads it.
type velocityDoc struct {
	State      string   `json:"state"`
	AgeSeconds *float64 `json:"age_seconds"`
	Reason     string   `json:"reason"`
	Topic      string   `json:"topic"`
	Partitions map[string]struct {
		Lag int64 `json:"lag"`
	} `json:"partitions"`
	Entries      int   `json:"entries"`
	MaxEntries   int   `json:"max_entries"`
	ApproxBytes  int64 `json:"approx_bytes"`
	Merged       int64 `json:"merged_total"`
	Duplicates   int64 `json:"duplicates_total"`
	OverCapacity int64 `json:"over_capacity_total"`
	NotQueued    int64 `json:"not_queued_total"`
	Expired      int64 `json:"expired_unread_total"`
}

func printVelocity(out io.Writer, v *velocityDoc) {
	if v == nil {
		return
	}
	var lag int64
	for _, p := range v.Partitions {
		lag += p.Lag
	}
	fmt.Fprintf(out, "fleet velocity: %s", strings.ToUpper(v.State))
	if v.AgeSeconds != nil {
		fmt.Fprintf(out, " (%s old)", age(*v.AgeSeconds))
	}
	if v.State != "live" {
		fmt.Fprint(out, ", decisions use the local view")
	}
	if v.Reason != "" {
		fmt.Fprintf(out, ": %s", truncate(v.Reason, 200))
	}
	fmt.Fprintf(out, "\n  %s: %d records behind in %d partitions; %d counts held of %d (%s); merged %d, duplicates skipped %d\n",
		v.Topic, lag, len(v.Partitions), v.Entries, v.MaxEntries, humanBytes(v.ApproxBytes), v.Merged, v.Duplicates)
	if v.OverCapacity > 0 || v.NotQueued > 0 {
		fmt.Fprintf(out, "  not kept for AGENT_FLEET_VELOCITY_MAX_ENTRIES: %d; own increments not queued (spool full): %d\n", v.OverCapacity, v.NotQueued)
	}
	if v.Expired > 0 {
		fmt.Fprintf(out, "  NOT COUNTED: %d increments left Kafka before this agent read them (the topic's retention, or a deletion): fleet counts are short\n", v.Expired)
	}
}

func printKafka(out io.Writer, k *kafkaDoc) {
	if k == nil {
		return
	}
	fmt.Fprintf(out, "kafka: agent %s, forward via %s, %s", k.AgentID, k.ForwardVia, strings.ToUpper(k.State))
	if k.Reason != "" {
		fmt.Fprintf(out, ": %s", truncate(k.Reason, 200))
	}
	fmt.Fprintf(out, "; %d unacknowledged (oldest %s)\n", k.Pending, age(k.OldestPendingSeconds))
	for _, q := range sortedKeys(k.Queues) {
		s := k.Queues[q]
		fmt.Fprintf(out, "  %s -> %s: %d acknowledged, watermark %d", q, s.Topic, s.Acknowledged, s.Watermark)
		if s.LastError != "" {
			fmt.Fprintf(out, ", last error %s", truncate(s.LastError, 120))
		}
		fmt.Fprintln(out)
	}
	if k.LastBrokerError != "" {
		fmt.Fprintf(out, "  last broker error: %s\n", truncate(k.LastBrokerError, 200))
	}
}

// fleetStatus is the body of the agent's record on the agents topic: its
// queues, its upstreams' states and its Kafka side (no personal data:
// counts, states and reasons, as /v1/status).
func fleetStatus(sp *spool.Spool, ws map[string]*forwarder.Worker, f *fleetAgent) any {
	type q struct {
		Depth            int64   `json:"depth"`
		OldestAgeSeconds float64 `json:"oldest_age_seconds"`
		DeadLetters      int64   `json:"dead_letters"`
	}
	out := struct {
		Queues        map[string]q      `json:"queues"`
		Upstreams     map[string]string `json:"upstreams"`
		Kafka         any               `json:"kafka"`
		FleetVelocity any               `json:"fleet_velocity,omitempty"`
	}{Queues: map[string]q{}, Upstreams: map[string]string{}, Kafka: f.kafkaStatus()()}
	if vs := f.velocityStatus(); vs != nil {
		out.FleetVelocity = vs()
	}
	for name, st := range sp.Stats() {
		out.Queues[name] = q{st.Depth, st.OldestAgeSeconds, st.DeadLetters}
	}
	for name, w := range ws {
		out.Upstreams[name] = string(w.Status().State)
	}
	return out
}
