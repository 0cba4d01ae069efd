package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/outpost-agent/outpost/config"
	"github.com/outpost-agent/outpost/forwarder"
	"github.com/outpost-agent/outpost/localapi"
	"github.com/outpost-agent/outpost/spool"
)

// queues are the spool's queues, one per upstream.
var queues = []string{"tencent", "tongdun", "unionpay"}

func serve(ctx context.Context) error {
	cfg, err := config.Load()
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	log := newLogger(cfg)
	if cfg.MemoryLimit > 0 {
		debug.SetMemoryLimit(int64(cfg.MemoryLimit))
	}
	var key []byte
	if cfg.EncryptionKeyFile != "" {
		if key, err = config.ReadKeyFile(cfg.EncryptionKeyFile); err != nil {
			return fmt.Errorf("AGENT_ENCRYPTION_KEY_FILE: %w", err)
		}
	} else {
		log.Warn("encryption at rest is off: the spool is stored in clear; set AGENT_ENCRYPTION_KEY_FILE to encrypt it")
	}

	sp, err := spool.Open(spool.Options{
		Dir:           filepath.Join(cfg.DataDir, "spool"),
		QuarantineDir: filepath.Join(cfg.DataDir, "quarantine"),
		Queues:        queues,
		MaxBytes:      int64(cfg.SpoolMaxBytes),
		EncryptionKey: key,
		DedupeWindow:  cfg.DedupeWindow,
		GCInterval:    cfg.StoreGCInterval,
		Logger:        log.With("component", "spool"),
	})
	if err != nil {
		return err
	}
	closeSpool := func() {
		cctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		if err := sp.Close(cctx); err != nil {
			log.Error("closing the store", "err", err)
		}
	}

	ws, err := forwarders(cfg, sp, log)
	if err != nil {
		closeSpool()
		return err
	}
	var notes []string
	if !cfg.TencentConfigured() && !cfg.TongdunConfigured() && !cfg.UnionpayConfigured() {
		notes = append(notes, "no upstream configured: events are queued, not forwarded")
		log.Info("no upstream configured: events are queued, not forwarded")
	} else {
		for _, name := range queues {
			if st := ws[name].Status(); st.State == forwarder.StateNotConfigured {
				log.Info("upstream not configured: its queue is kept, nothing is sent", "upstream", name)
			}
		}
	}
	for _, w := range ws {
		w.Start()
	}
	stopForwarders := func() {
		cctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		closeForwarders(cctx, ws, log)
	}
	api := localapi.New(localapi.Config{
		Upstreams:     upstreamStatus(ws),
		Store:         sp,
		Logger:        log,
		MaxBodyBytes:  int64(cfg.MaxBodyBytes),
		MaxConcurrent: cfg.MaxConcurrent,
		AuthToken:     cfg.AuthToken,
		Notes:         notes,
	})
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		stopForwarders()
		closeSpool()
		return fmt.Errorf("AGENT_LISTEN_ADDR: %w", err)
	}
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("agent ready", "listen", ln.Addr().String(), "data_dir", cfg.DataDir,
		"encrypted", key != nil, "version", version)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	select {
	case sig := <-sigs:
		log.Info("shutting down: finishing in-flight requests", "signal", sig.String())
	case err := <-served:
		stopForwarders()
		closeSpool()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// A second signal aborts the drain.
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	go func() {
		select {
		case sig := <-sigs:
			log.Warn("second signal: aborting the drain", "signal", sig.String())
			cancel()
		case <-sctx.Done():
		}
	}()
	err = srv.Shutdown(sctx)
	stopForwarders()
	closeSpool()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped cleanly")
	return nil
}

func newLogger(cfg config.Config) *slog.Logger {
	level, _ := config.ParseLevel(cfg.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	format := cfg.LogFormat
	if format == "auto" {
		format = "json"
		if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}
