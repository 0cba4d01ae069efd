package fleet

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// StatusConfig configures the periodic status record of an agent or a
// relay on <prefix>.agents.v1 (a compacted topic: the newest record per
// key is each one's current status).
type StatusConfig struct {
	Client   *kgo.Client
	Topic    string
	AgentID  string
	Role     string // "agent" or "relay"
	Version  string
	Interval time.Duration
	// Status is the body of each record (what /v1/status shows).
	Status func() any
	Logger *slog.Logger
}

// StatusRecord is the value on the agents topic.
type StatusRecord struct {
	V       int       `json:"v"`
	AgentID string    `json:"agent_id"`
	Role    string    `json:"role"`
	Version string    `json:"version"`
	At      time.Time `json:"at"`
	Status  any       `json:"status"`
}

// StatusPublisher produces the status every Interval. A status is a
// snapshot, so it is produced and forgotten: a lost one is replaced by
// the next.
type StatusPublisher struct {
	cfg    StatusConfig
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	lastErr  error
	failures int
}

// StartStatus starts publishing at once and then every Interval.
func StartStatus(cfg StatusConfig) *StatusPublisher {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &StatusPublisher{cfg: cfg, log: cfg.Logger.With("component", "kafka-status"), cancel: cancel}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(cfg.Interval)
		defer t.Stop()
		for {
			s.publish(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *StatusPublisher) publish(ctx context.Context) {
	v, err := json.Marshal(StatusRecord{V: Version, AgentID: s.cfg.AgentID, Role: s.cfg.Role, Version: s.cfg.Version, At: time.Now().UTC(), Status: s.cfg.Status()})
	if err != nil {
		s.log.Error("encode status", "err", err)
		return
	}
	rec := &kgo.Record{Topic: s.cfg.Topic, Key: []byte(s.cfg.AgentID), Value: v, Headers: []kgo.RecordHeader{
		{Key: HeaderAgentID, Value: []byte(s.cfg.AgentID)},
		{Key: HeaderSchema, Value: []byte(Schema(KindAgents))},
	}}
	s.cfg.Client.Produce(ctx, rec, func(_ *kgo.Record, err error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			// Logged once per run of failures, not every interval.
			if s.failures == 0 {
				s.log.Warn("publishing the status failed", "topic", s.cfg.Topic, "err", err)
			}
			s.failures++
		} else if err == nil {
			s.failures = 0
		}
		s.lastErr = err
	})
}

// Close stops publishing, within ctx.
func (s *StatusPublisher) Close(ctx context.Context) error {
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
