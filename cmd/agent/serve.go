package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"syscall"

	"github.com/outpost-agent/outpost/action"
	"github.com/outpost-agent/outpost/codepages"
	"github.com/outpost-agent/outpost/config"
	"github.com/outpost-agent/outpost/decision"
	"github.com/outpost-agent/outpost/forwarder"
	"github.com/outpost-agent/outpost/localapi"
	"github.com/outpost-agent/outpost/metrics"
	"github.com/outpost-agent/outpost/sdnotify"
	"github.com/outpost-agent/outpost/spool"
	"github.com/outpost-agent/outpost/upstream"
	"github.com/outpost-agent/outpost/upstream/tongdun"
)

// hashKey keys the HMAC of card, ID and mobile numbers. With an encryption
// key it is derived from it; otherwise a random key is made once and kept
// in the store, so hashes stay stable across restarts.
func hashKey(sp *spool.Spool, encKey []byte) ([]byte, error) {
	if encKey != nil {
		m := hmac.New(sha256.New, encKey)
		m.Write([]byte("outpost personal-data hash key v1"))
		return m.Sum(nil), nil
	}
	const name = "meta/hash-key"
	k, ok, err := sp.Get(name)
	if err != nil {
		return nil, fmt.Errorf("read hash key: %w", err)
	}
	if ok && len(k) == 32 {
		return k, nil
	}
	k = make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	if _, err := sp.Write(context.Background(), []spool.KV{{Key: name, Value: k}}, nil); err != nil {
		return nil, fmt.Errorf("store hash key: %w", err)
	}
	return k, nil
}

// queues are the spool's queues, one per upstream.
var queues = upstream.Names

// defaultGCPercent is the garbage collector's setting when GOGC is not set
// and AGENT_MEMORY_LIMIT is on.
const defaultGCPercent = 400

func serve(ctx context.Context) error {
	// Signals are caught before anything starts: a SIGTERM that arrives the
	// moment the agent says it is ready must drain, not kill it.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cfg, err := config.Load()
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	log := newLogger(cfg)
	setUpProcess(cfg, log)
	key, err := encryptionKey(cfg, log)
	if err != nil {
		return err
	}
	a, err := startAgent(cfg, key, log)
	if err != nil {
		return err
	}
	for {
		select {
		case <-hup:
			a.pols.reload("SIGHUP")
		case sig := <-sigs:
			log.Info("shutting down: finishing in-flight requests, then forwarding the queues",
				"signal", sig.String(), "drain_timeout", cfg.ShutdownTimeout.String(), "stop_budget", cfg.StopBudget().String())
			return a.stop(sigs)
		case err := <-a.served:
			a.parts.abort(config.StoreCloseTimeout)
			return fmt.Errorf("serve: %w", err)
		case <-ctx.Done():
			return a.stop(sigs)
		}
	}
}

// agent is the running agent: its parts, and what its wait loop and its
// stop use of them.
type agent struct {
	cfg   config.Config
	log   *slog.Logger
	parts parts
	pols  *policyHolder
	// served gets the local API's Serve error (one per listener).
	served chan error
	// left is what the queues held when the store closed: the last line.
	left map[string]spool.QueueStats
}

// startAgent starts the agent's parts in order (agent.start); if one
// fails, those already started are stopped in reverse.
func startAgent(cfg config.Config, key []byte, log *slog.Logger) (*agent, error) {
	a := &agent{cfg: cfg, log: log, parts: parts{log: log}, served: make(chan error, 2)}
	if err := a.start(key); err != nil {
		a.parts.abort(config.StoreCloseTimeout)
		return nil, err
	}
	return a, nil
}

// start starts the agent's parts, top to bottom, adding each to a.parts
// as it runs: they stop in reverse. Its loop with the forwarders is the
// decision engine's: built after the workers (it asks them Healthy), it
// gets the late verdicts once they start (forwarder's package doc).
func (a *agent) start(key []byte) error {
	cfg, log := a.cfg, a.log
	mets := metrics.New(version)
	allQueues := append(slices.Clone(queues), fleetQueues(cfg)...)
	wake := newWakes(allQueues)

	sp, err := openStore(cfg, key, allQueues, wake, mets, log)
	if err != nil {
		return err
	}
	a.parts.add("the store", nil, func(ctx context.Context) error {
		a.left = sp.Stats()
		return sp.Close(ctx)
	})
	if a.pols, err = newPolicyHolder(cfg.PolicyFile, log); err != nil {
		return fmt.Errorf("AGENT_POLICY_FILE: %w", err)
	}
	cs, err := newClients(cfg, log)
	if err != nil {
		return err
	}
	hk, err := hashKey(sp, key)
	if err != nil {
		return diskLowHint(cfg, sp, err)
	}

	// Fleet mode: the Kafka producer and the fleet's velocity view, which
	// merges into the store (stopped before it).
	fl, err := newFleetAgent(cfg, log)
	if err != nil {
		return err
	}
	if fl != nil {
		// Closed, what the client still holds is failed, and stays in
		// the spool for the next start.
		a.parts.add("the Kafka producer", nil, stopFunc(fl.prod.Close))
	}
	if err := fl.openVelocity(sp, log); err != nil {
		return err
	}
	if fl.velocityOn() {
		a.parts.add("the fleet velocity view", nil, fl.vel.Close)
	}
	fl.register(mets)

	// The forwarders, built now, started below.
	ws := forwarders(cfg, cs, sp, log, wake)
	if err := fl.workers(sp, log, ws, wake); err != nil {
		return err
	}
	mets.Read(metricSources(cfg, sp, ws, a.pols))

	dc := decision.Config{
		Store: fl.store(sp), Policies: a.pols, Timeout: cfg.DecisionTimeout, HashKey: hk,
		QueueUnionPay: key != nil, Retention: cfg.DecisionRetention, Logger: log,
		TongDunCache:  decision.SourcePolicy{TTL: cfg.TongdunCacheTTL, MaxStale: cfg.TongdunCacheMaxStale, NegativeTTL: cfg.CacheNegativeTTL},
		UnionPayCache: decision.SourcePolicy{TTL: cfg.UnionpayCacheTTL, MaxStale: cfg.UnionpayCacheMaxStale, NegativeTTL: cfg.CacheNegativeTTL},
		TongDunHealth: ws[upstream.TongDun], UnionPayHealth: ws[upstream.UnionPay], Fleet: fl.decisionFleet(),
	}
	if cs.tongdun != nil {
		dc.TongDun = cs.tongdun
	}
	if cs.unionpay != nil {
		dc.UnionPay = cs.unionpay
	}
	eng := decision.New(dc)
	a.parts.add("the decision engine", nil, stopFunc(eng.Close))
	notes := upstreamNotes(cfg, cs, key, ws, log)
	if cfg.DecisionSyncWithin > 0 {
		n := fmt.Sprintf("decisions that queue nothing are answered before their record is synced (AGENT_DECISION_SYNC_WITHIN=%s): a power cut can lose those answered in the last %s; a crash of the agent loses none",
			cfg.DecisionSyncWithin, cfg.DecisionSyncWithin)
		notes = append(notes, n)
		log.Warn(n)
	}

	hist := localapi.NewHistory(nil)
	startForwarders(ws, eng, hist)
	a.parts.add("the forwarders",
		func(ctx context.Context) error { drainQueues(ctx, sp, ws, log); return nil },
		func(ctx context.Context) error { return closeForwarders(ctx, ws) })
	if fl != nil {
		fl.start(func() any { return fleetStatus(sp, ws, fl) })
		a.parts.add("the fleet status", nil, fl.status.Close)
	}
	wctx, stopWatch := context.WithCancel(context.Background())
	go a.pols.watch(wctx, cfg.PolicyPollInterval)
	a.parts.add("the policy file's watch", nil, stopFunc(stopWatch))

	api := localapi.New(localapi.Config{
		Decider:           eng,
		Observer:          mets,
		Pprof:             cfg.Pprof,
		Metrics:           mets.Handler(),
		DefaultChannel:    cfg.TongdunChannel,
		NoTongDun:         !cfg.TongdunConfigured(),
		TongDunAPIVersion: tongdun.APIVersion(cfg.TongdunAPIVersion),
		Actions:           action.Options{DataSource: cfg.TencentDataSourceType},
		Policy:            func() any { return a.pols.status() },
		Upstreams:         upstreamStatus(ws),
		Store:             sp,
		Logger:            log,
		MaxBodyBytes:      int64(cfg.MaxBodyBytes),
		MaxConcurrent:     cfg.MaxConcurrent,
		MaxConnections:    cfg.MaxConnections,
		HeaderTimeout:     cfg.HeaderTimeout,
		BodyTimeout:       cfg.BodyTimeout,
		BodyBytesInFlight: int64(cfg.BodyBytesInFlight),
		AuthToken:         cfg.AuthToken,
		AdminToken:        cfg.AdminToken,
		Notes:             notes,
		Version:           version,
		History:           hist,
		Kafka:             fl.kafkaStatus(),
		FleetVelocity:     fl.velocityStatus(),
	})
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("AGENT_LISTEN_ADDR: %w", err)
	}
	go func() { a.served <- api.Serve(ln) }()
	a.parts.add("the local API", api.Shutdown, nil)
	if cfg.ListenUnix != "" {
		uln, err := listenUnix(cfg.ListenUnix)
		if err != nil {
			return fmt.Errorf("AGENT_LISTEN_UNIX: %w", err)
		}
		go func() { a.served <- api.Serve(uln) }()
		log.Info("also listening on a unix socket", "path", cfg.ListenUnix, "mode", "0660")
	}

	log.Info("agent ready", "listen", ln.Addr().String(), "data_dir", cfg.DataDir,
		"encrypted", key != nil, "version", version)
	// systemd (Type=notify): ready now that the store is open and the API
	// listens; the watchdog is fed while the store answers a synced probe,
	// so a wedged agent is restarted, through the drain too (every drain
	// runs before any stop). Both are no-ops outside systemd.
	if err := sdnotify.Ready(); err != nil {
		log.Warn("sd_notify READY failed", "err", err)
	}
	wdCtx, stopWD := context.WithCancel(context.Background())
	// RunWatchdog only ends when stopWD cancels it: its error says so.
	go func() { _ = sdnotify.RunWatchdog(wdCtx, probe(sp)) }()
	a.parts.add("the watchdog", nil, stopFunc(stopWD))
	// Most of the code and read-only data that start-up touched is not
	// used again, but stays resident until released (codepages).
	pages := codepages.Start(codepages.Config{Logger: log.With("component", "codepages")})
	a.parts.add("codepages", nil, stopFunc(pages.Close))
	return nil
}

// stop is the agent's stop, on SIGTERM, with one budget, config.StopBudget,
// which the unit's TimeoutStopSec, the image's and the pods' grace periods
// are sized from: the drain (the local API's requests in flight, then the
// queues) within AGENT_SHUTDOWN_TIMEOUT, then the parts stopped in reverse
// within config.StoreCloseTimeout, then the last line: what could not be
// forwarded. The forwarders are stopped (a send in flight is abandoned:
// its items stay queued) and the store is closed even past the drain's
// deadline: a clean close is what makes the next start fast, and
// acknowledged data is on disk anyway. A second signal aborts the drain.
func (a *agent) stop(sigs <-chan os.Signal) error {
	_ = sdnotify.Stopping()
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	aborted := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			a.log.Warn("second signal: aborting the drain", "signal", sig.String())
			close(aborted)
			cancel()
		case <-sctx.Done():
		}
	}()
	err := a.parts.drain(sctx)
	cctx, ccancel := context.WithTimeout(context.Background(), config.StoreCloseTimeout)
	defer ccancel()
	a.parts.stop(cctx)
	select {
	case <-aborted:
		stoppedLine(a.log, a.left, a.cfg.DataDir, " (drain aborted by a second signal)")
		return errors.New("drain aborted by a second signal")
	default:
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		stoppedLine(a.log, a.left, a.cfg.DataDir, " (in-flight requests cut off)")
		return fmt.Errorf("shutdown: %w", err)
	}
	stoppedLine(a.log, a.left, a.cfg.DataDir, "")
	return nil
}

// setUpProcess sets what the process needs before anything starts: the
// umask, and the garbage collector under AGENT_MEMORY_LIMIT.
func setUpProcess(cfg config.Config, log *slog.Logger) {
	// Whatever the umask the agent was started with (systemd's unit sets
	// 0077, a shell or a container usually 0022), what it writes in the data
	// directory is for its own user only: badger creates its tables and
	// value logs 0666 less the umask. The unix socket sets its own mode.
	syscall.Umask(0o077)
	if cfg.MemoryLimit > 0 {
		debug.SetMemoryLimit(int64(cfg.MemoryLimit))
		if os.Getenv("GOGC") == "" {
			// The memory limit bounds the heap; below it, collect at five
			// times the live heap instead of twice: fewer collections cut
			// the decisions' p99 by about 15% (BENCHMARKS.md).
			debug.SetGCPercent(defaultGCPercent)
		}
	}
	if cfg.MinFreeDisk == 0 {
		log.Warn("AGENT_MIN_FREE_DISK=0: no free-space minimum; on a full data disk the store may crash (SIGBUS) instead of refusing new data")
	}
}

// encryptionKey reads AGENT_ENCRYPTION_KEY_FILE; nil when unset.
func encryptionKey(cfg config.Config, log *slog.Logger) ([]byte, error) {
	if cfg.EncryptionKeyFile == "" {
		log.Warn("encryption at rest is off: the spool is stored in clear; set AGENT_ENCRYPTION_KEY_FILE to encrypt it")
		return nil, nil
	}
	key, err := config.ReadKeyFile(cfg.EncryptionKeyFile)
	if err != nil {
		return nil, fmt.Errorf("AGENT_ENCRYPTION_KEY_FILE: %w", err)
	}
	return key, nil
}

// openStore opens the spool in AGENT_DATA_DIR: a commit wakes its queue's
// worker and is timed in the metrics.
func openStore(cfg config.Config, key []byte, allQueues []string, wake wakes, mets *metrics.Metrics, log *slog.Logger) (*spool.Spool, error) {
	sp, err := spool.Open(spool.Options{
		OnAppend:      wake.signal,
		OnCommit:      mets.Commit,
		MinFreeBytes:  int64(cfg.MinFreeDisk),
		Dir:           filepath.Join(cfg.DataDir, "spool"),
		QuarantineDir: filepath.Join(cfg.DataDir, "quarantine"),
		Queues:        allQueues,
		MaxBytes:      int64(cfg.SpoolMaxBytes),
		EncryptionKey: key,
		DedupeWindow:  cfg.DedupeWindow,
		GCInterval:    cfg.StoreGCInterval,
		PutSyncWithin: cfg.DecisionSyncWithin,
		Logger:        log.With("component", "spool"),
	})
	if errors.Is(err, spool.ErrDiskLow) {
		return nil, fmt.Errorf("%w\nfree space on the disk of AGENT_DATA_DIR=%s, or set AGENT_MIN_FREE_DISK=0 to start anyway (a full disk may then crash the agent)", err, cfg.DataDir)
	}
	return sp, err
}

// diskLowHint explains a hash key that could not be stored on a disk
// under AGENT_MIN_FREE_DISK.
func diskLowHint(cfg config.Config, sp *spool.Spool, err error) error {
	if in := sp.Intake(); errors.Is(err, spool.ErrFull) && in.Reason == "disk_low" {
		return fmt.Errorf("the disk of AGENT_DATA_DIR=%s has %s free, under AGENT_MIN_FREE_DISK=%s, and a new store must record its hash key before it serves: free space there, or lower AGENT_MIN_FREE_DISK to at most %s (%w)",
			cfg.DataDir, mibs(in.FreeBytes), mibs(in.MinFreeBytes), mibs(in.FreeBytes), err)
	}
	return err
}

// upstreamNotes logs how the upstreams stand at start-up and returns what
// the status page should say of it.
func upstreamNotes(cfg config.Config, cs clients, key []byte, ws map[string]*forwarder.Worker, log *slog.Logger) []string {
	var notes []string
	if cs.unionpay != nil && key == nil {
		n := "UnionPay checks are not queued for later: they carry card and ID numbers and the spool is not encrypted (set AGENT_ENCRYPTION_KEY_FILE); decisions needing them while UnionPay is unreachable are decided degraded"
		notes = append(notes, n)
		log.Warn(n)
	}
	if !cfg.TencentConfigured() && !cfg.TongdunConfigured() && !cfg.UnionpayConfigured() && !cfg.ForwardViaKafka() {
		notes = append(notes, "no upstream configured: events are queued, not forwarded")
		log.Info("no upstream configured: events are queued, not forwarded")
		return notes
	}
	for _, name := range queues {
		if st := ws[name].Status(); st.State == forwarder.StateNotConfigured {
			log.Info("upstream not configured: its queue is kept, nothing is sent", "upstream", name)
		}
	}
	return notes
}

// probe is the watchdog's check: a store that answers with an error (disk
// full) is not wedged; one that does not answer in time is.
func probe(sp *spool.Spool) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := sp.Probe(ctx); errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return nil
	}
}

// metricSources are the figures /metrics reads at scrape time.
func metricSources(cfg config.Config, sp *spool.Spool, ws map[string]*forwarder.Worker, pols *policyHolder) metrics.Sources {
	return metrics.Sources{
		Queues: func() map[string]metrics.QueueStats {
			out := map[string]metrics.QueueStats{}
			for q, st := range sp.Stats() {
				out[q] = metrics.QueueStats{Depth: st.Depth, Bytes: st.Bytes, DeadLetters: st.DeadLetters, OldestAgeSeconds: st.OldestAgeSeconds}
			}
			return out
		},
		StoreBytes: func() int64 { return sp.StoreBytes() },
		Spool: func() metrics.SpoolSize {
			return metrics.SpoolSize{StoredBytes: sp.TotalBytes(), MaxBytes: int64(cfg.SpoolMaxBytes)}
		},
		Journal: func() metrics.JournalStats {
			j := sp.JournalStats()
			return metrics.JournalStats{Replayed: int64(j.Replayed), Pending: int64(j.Pending), Checkpoints: j.Checkpoints, CheckpointErrors: j.CheckpointErrors}
		},
		Quarantined: func() bool { return sp.Quarantine() != nil },
		Damage: func() metrics.DamageStats {
			d := metrics.DamageStats{Lost: map[string]int64{}}
			for _, q := range queues {
				d.Lost[q] = 0 // every queue has a series from the start
			}
			for _, r := range sp.Damage() {
				d.Reports++
				for q, n := range r.EntriesLost {
					d.Lost[q] += n
				}
			}
			return d
		},
		Upstreams: func() map[string]metrics.UpstreamStats {
			out := map[string]metrics.UpstreamStats{}
			for name, w := range ws {
				st := w.Status()
				out[name] = metrics.UpstreamStats{State: string(st.State), Delivered: st.DeliveredTotal, Failed: st.FailedTotal, DeadLettered: st.DeadLettered, Sent: st.Requests}
			}
			return out
		},
		Policy: func() metrics.PolicyStats {
			st := pols.status()
			return metrics.PolicyStats{Version: st.Version, SHA256: st.SHA256, Reloads: st.Reloads, Refusals: st.Refusals}
		},
	}
}

// mibs is n in whole MiB (rounded down), as AGENT_* sizes are written.
func mibs(n int64) string { return fmt.Sprintf("%dMiB", n>>20) }

// listenUnix listens on a unix socket readable and writable by the
// agent's user and group only (0660): apps in the agent's group reach it,
// nobody else does. A stale socket file from a previous run is replaced.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		os.Remove(path)
	}
	old := syscall.Umask(0o117)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
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
