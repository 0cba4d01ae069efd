package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/outpost-agent/outpost/config"
	"github.com/outpost-agent/outpost/decision"
	"github.com/outpost-agent/outpost/forwarder"
	"github.com/outpost-agent/outpost/localapi"
	"github.com/outpost-agent/outpost/spool"
	"github.com/outpost-agent/outpost/upstream"
	"github.com/outpost-agent/outpost/upstream/tencent"
	"github.com/outpost-agent/outpost/upstream/tongdun"
	"github.com/outpost-agent/outpost/upstream/unionpay"
)

// clients are the configured upstream clients (nil when not configured).
type clients struct {
	tencent  *tencent.Client
	tongdun  *tongdun.Client
	unionpay *unionpay.Client
}

func newClients(cfg config.Config, log *slog.Logger) (clients, error) {
	var cs clients
	if cfg.TencentConfigured() {
		c, err := tencent.New(tencent.Config{
			BaseURL: cfg.TencentURL, AccountID: cfg.TencentAccountID, UserActionSetID: cfg.TencentUserActionSetID,
			AccessToken: cfg.TencentAccessToken, RequestsPerMinute: cfg.TencentRequestsPerMin,
			Logger: log.With("component", "upstream", "upstream", upstream.Tencent),
		})
		if err != nil {
			return cs, fmt.Errorf("tencent: %w", err)
		}
		cs.tencent = c
	}
	if cfg.TongdunConfigured() {
		c, err := tongdun.New(tongdun.Config{
			URL: cfg.TongdunURL, PartnerCode: cfg.TongdunPartnerCode, PartnerKey: cfg.TongdunPartnerKey,
			Channel: cfg.TongdunChannel, Logger: log.With("component", "upstream", "upstream", upstream.TongDun),
		})
		if err != nil {
			return cs, fmt.Errorf("tongdun: %w", err)
		}
		cs.tongdun = c
	}
	if cfg.UnionpayConfigured() {
		c, err := unionpay.New(unionpay.Config{
			URL: cfg.UnionpayURL, ID: cfg.UnionpayID, AppKey: cfg.UnionpayAppKey,
			Shape: unionpay.Shape(cfg.UnionpayAPIShape), ScoreURL: cfg.UnionpayScoreURL,
			Logger: log.With("component", "upstream", "upstream", upstream.UnionPay),
		})
		if err != nil {
			return cs, fmt.Errorf("unionpay: %w", err)
		}
		cs.unionpay = c
	}
	return cs, nil
}

// forwarders builds one worker per upstream, not started. An upstream
// without credentials gets a worker with no Sender: it reports
// not_configured and its queue is kept.
func forwarders(cfg config.Config, cs clients, sp *spool.Spool, log *slog.Logger, wake wakes) map[string]*forwarder.Worker {
	senders := map[string]forwarder.Sender{}
	if cs.tencent != nil {
		senders[upstream.Tencent] = cs.tencent
	}
	if cs.tongdun != nil {
		senders[upstream.TongDun] = cs.tongdun
	}
	if cs.unionpay != nil {
		senders[upstream.UnionPay] = cs.unionpay
	}
	ws := map[string]*forwarder.Worker{}
	for _, name := range queues {
		wc := forwarder.Config{
			Name: name, Queue: sp, Logger: log, Wake: wake[name],
			BatchSize: cfg.ForwardBatchSize, FlushInterval: cfg.ForwardFlushInterval,
			MaxAttempts: cfg.ForwardMaxAttempts, MaxAge: cfg.ForwardMaxAge,
			BackoffMax: cfg.ForwardBackoffMax, ProbeInterval: cfg.ForwardProbeInterval,
			Concurrency: cfg.ForwardConcurrency,
			BreakerOpen: cfg.ForwardBreakerOpen, BreakerMaxOpen: max(cfg.ForwardBreakerOpen, cfg.ForwardBackoffMax),
		}
		if s, ok := senders[name]; ok {
			wc.Sender = s
		}
		switch name {
		case upstream.TongDun:
			wc.ItemsPerSecond = cfg.TongdunRatePerSec
		case upstream.UnionPay:
			wc.ItemsPerSecond = cfg.UnionpayRatePerSec
		}
		if name != upstream.Tencent {
			wc.BatchSize = 10 // one event per request upstream; the batch only bounds a lease
		}
		ws[name] = forwarder.New(wc)
	}
	return ws
}

// The loop between decisions and forwarders (forwarder's package doc):
// each package declares what it needs of the other, and this is where
// they meet.
var (
	_ forwarder.ResultSink = (*decision.Engine)(nil)
	_ decision.Health      = (*forwarder.Worker)(nil)
)

// startForwarders starts the workers. What TongDun and UnionPay answered
// for queued checks goes to the decision engine (late verdicts, the score
// cache); each action delivered (to Tencent, or to Kafka) is counted in
// hist for the status page's charts; the fleet's queues have no sink.
func startForwarders(ws map[string]*forwarder.Worker, eng *decision.Engine, hist *localapi.History) {
	actions := forwarder.ResultFunc(func(string, spool.Entry, upstream.Result) { hist.Delivered(1) })
	for name, w := range ws {
		switch name {
		case upstream.TongDun, upstream.UnionPay:
			w.Start(eng)
		case upstream.Tencent:
			w.Start(actions)
		default:
			w.Start(nil)
		}
	}
}

func upstreamStatus(ws map[string]*forwarder.Worker) func() map[string]localapi.UpstreamStatus {
	return func() map[string]localapi.UpstreamStatus {
		out := make(map[string]localapi.UpstreamStatus, len(ws))
		for name, w := range ws {
			st := w.Status()
			out[name] = localapi.UpstreamStatus{
				State: string(st.State), PausedUntil: st.PausedUntil, Reason: st.Reason, InFlight: st.InFlight,
				DeliveredTotal: st.DeliveredTotal, FailedTotal: st.FailedTotal, LastSuccessAt: st.LastSuccessAt, LastError: st.LastError,
			}
		}
		return out
	}
}

// closeForwarders stops the workers within ctx (each returns its error,
// which names it).
func closeForwarders(ctx context.Context, ws map[string]*forwarder.Worker) error {
	var errs []error
	for _, w := range ws {
		errs = append(errs, w.Close(ctx))
	}
	return errors.Join(errs...)
}

// wakes are the delivery workers' wake-up calls, one per queue: the spool
// signals a queue's after a commit gives it new entries (Options.OnAppend),
// so an idle worker starts at once instead of at its next poll.
type wakes map[string]chan struct{}

func newWakes(queues []string) wakes {
	w := wakes{}
	for _, q := range queues {
		w[q] = make(chan struct{}, 1)
	}
	return w
}

// signal wakes q's worker, never blocking (the committer calls it): one
// pending wake-up is as good as many.
func (w wakes) signal(q string) {
	select {
	case w[q] <- struct{}{}:
	default:
	}
}
