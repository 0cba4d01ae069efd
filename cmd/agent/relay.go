package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/outpost-agent/outpost/config"
	"github.com/outpost-agent/outpost/fleet"
	"github.com/outpost-agent/outpost/forwarder"
	"github.com/outpost-agent/outpost/spool"
	"github.com/outpost-agent/outpost/upstream"
)

// relayCmd: agent relay. It consumes <prefix>.actions.v1 in the group
// AGENT_KAFKA_GROUP and delivers to Tencent with the forwarder, with the
// Tencent settings an agent has. It keeps delivered event ids in
// DATA_DIR/relay (de-duplication across restarts) and serves /healthz,
// /readyz, /metrics and /v1/status on AGENT_LISTEN_ADDR.
func relayCmd(ctx context.Context) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	cfg, err := config.Load()
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	if !cfg.KafkaConfigured() {
		return errors.New("configuration: AGENT_KAFKA_BROKERS: the relay needs the brokers")
	}
	if !cfg.TencentConfigured() {
		return errors.New("configuration: AGENT_TENCENT_ACCESS_TOKEN: the relay delivers to Tencent and needs its credentials")
	}
	log := newLogger(cfg).With("role", "relay")
	id, err := fleet.LoadAgentID(cfg.AgentID, cfg.DataDir)
	if err != nil {
		return fmt.Errorf("AGENT_ID: %w", err)
	}
	conn, err := kafkaConn(cfg, "relay", log)
	if err != nil {
		return err
	}
	cs, err := newClients(cfg, log)
	if err != nil {
		return err
	}
	// The parts start in order and stop in reverse (parts.go): the
	// forwarder finishes (or abandons) its batch, the status stops, and
	// the relay commits what is final and leaves the group (its partitions
	// go to the other relays at once), within AGENT_SHUTDOWN_TIMEOUT; then
	// the HTTP server, which answered through the drain, and the store
	// stop within config.StoreCloseTimeout.
	ps := parts{log: log}
	store, err := spool.Open(spool.Options{
		Dir: filepath.Join(cfg.DataDir, "relay"), QuarantineDir: filepath.Join(cfg.DataDir, "quarantine"),
		Queues: []string{"relay"}, DedupeWindow: cfg.DedupeWindow, GCInterval: cfg.StoreGCInterval,
		MinFreeBytes: int64(cfg.MinFreeDisk), Logger: log.With("component", "spool"),
	})
	if err != nil {
		return fmt.Errorf("open the relay's store: %w", err)
	}
	ps.add("the store", nil, store.Close)
	relay, err := fleet.NewRelay(fleet.RelayConfig{
		Conn: conn, Group: cfg.KafkaGroup, RelayID: id,
		Topic: fleet.Topic(cfg.KafkaTopicPrefix, fleet.KindActions), DeadLetterTopic: fleet.Topic(cfg.KafkaTopicPrefix, fleet.KindDeadLetters),
		Dedupe: fleet.SpoolDedupe{Store: store, TTL: cfg.DedupeWindow}, Logger: log,
	})
	if err != nil {
		ps.abort(config.StoreCloseTimeout)
		return fmt.Errorf("AGENT_KAFKA_BROKERS: %w", err)
	}
	ps.add("the relay (leaving the group)", relay.Close, nil)
	w := forwarder.New(forwarder.Config{
		Name: upstream.Tencent, Queue: relay, Sender: cs.tencent, Logger: log, Wake: relay.Wake(),
		BatchSize: cfg.ForwardBatchSize, FlushInterval: cfg.ForwardFlushInterval,
		MaxAttempts: cfg.ForwardMaxAttempts, MaxAge: cfg.ForwardMaxAge,
		BackoffMax: cfg.ForwardBackoffMax, ProbeInterval: cfg.ForwardProbeInterval,
		BreakerOpen: cfg.ForwardBreakerOpen, BreakerMaxOpen: max(cfg.ForwardBreakerOpen, cfg.ForwardBackoffMax),
	})
	status := func() any {
		return struct {
			Relay   fleet.RelayStatus `json:"relay"`
			Tencent forwarder.Status  `json:"tencent"`
		}{relay.Status(), w.Status()}
	}
	pub := fleet.StartStatus(fleet.StatusConfig{
		Client: relay.Client(), Topic: fleet.Topic(cfg.KafkaTopicPrefix, fleet.KindAgents), AgentID: id,
		Role: "relay", Version: version, Interval: cfg.KafkaStatusInterval, Status: status, Logger: log,
	})
	ps.add("the status", pub.Close, nil)
	w.Start(nil)
	ps.add("the forwarder", w.Close, nil)

	reg := prometheus.NewRegistry()
	reg.MustRegister(relay.Collector(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv := &http.Server{Handler: relayMux(cfg.AuthToken, status, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})),
		ReadHeaderTimeout: cfg.HeaderTimeout}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		ps.abort(config.StoreCloseTimeout)
		return fmt.Errorf("AGENT_LISTEN_ADDR: %w", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	ps.add("the HTTP server", nil, srv.Shutdown)
	log.Info("relay ready", "relay_id", id, "group", cfg.KafkaGroup, "topic", fleet.Topic(cfg.KafkaTopicPrefix, fleet.KindActions),
		"listen", ln.Addr().String(), "version", version)

	var serveErr error
	select {
	case sig := <-sigs:
		log.Info("shutting down: finishing the batch in flight, committing, leaving the group", "signal", sig.String())
	case serveErr = <-served:
	case <-ctx.Done():
	}
	// A second signal aborts the drain.
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	go func() {
		select {
		case <-sigs:
			log.Warn("second signal: aborting the drain")
			cancel()
		case <-sctx.Done():
		}
	}()
	if err := ps.drain(sctx); err != nil {
		log.Error("draining", "err", err)
	}
	cctx, ccancel := context.WithTimeout(context.Background(), config.StoreCloseTimeout)
	defer ccancel()
	ps.stop(cctx)
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", serveErr)
	}
	log.Info("stopped cleanly")
	return nil
}

// relayMux: /healthz (open), and /readyz, /metrics, /v1/status (the app
// or admin token when AGENT_AUTH_TOKEN is set).
func relayMux(token string, status func() any, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if token != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+token)) != 1 {
				http.Error(w, `{"error":{"code":"unauthorized","message":"bearer token required"}}`, http.StatusUnauthorized)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /readyz", auth(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) }))
	mux.HandleFunc("GET /v1/status", auth(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(status())
	}))
	mux.Handle("GET /metrics", auth(metrics.ServeHTTP))
	return mux
}
