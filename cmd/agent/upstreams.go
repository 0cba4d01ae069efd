package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/outpost-agent/outpost/config"
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

// forwarders builds one worker per upstream. An upstream without
// credentials gets a worker with no Sender: it reports not_configured and
// its queue is kept. onResult sees what TongDun and UnionPay answered for
// queued checks (late verdicts, cache refresh); hist counts the actions
// Tencent confirmed, for the status page's charts.
func forwarders(cfg config.Config, cs clients, sp *spool.Spool, log *slog.Logger, hist *localapi.History, wake wakes, onResult func(queue string, e spool.Entry, r upstream.Result)) map[string]*forwarder.Worker {
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
			q := name
			wc.OnResult = func(e spool.Entry, r upstream.Result) { onResult(q, e, r) }
		} else {
			wc.OnResult = func(spool.Entry, upstream.Result) { hist.Delivered(1) }
		}
		ws[name] = forwarder.New(wc)
	}
	return ws
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

func closeForwarders(ctx context.Context, ws map[string]*forwarder.Worker, log *slog.Logger) {
	for name, w := range ws {
		if err := w.Close(ctx); err != nil {
			log.Error("stopping forwarder", "upstream", name, "err", err)
		}
	}
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
