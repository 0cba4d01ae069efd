package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/outpost-agent/outpost/config"
	"github.com/outpost-agent/outpost/forwarder"
	"github.com/outpost-agent/outpost/localapi"
	"github.com/outpost-agent/outpost/spool"
	"github.com/outpost-agent/outpost/upstream/tencent"
	"github.com/outpost-agent/outpost/upstream/tongdun"
	"github.com/outpost-agent/outpost/upstream/unionpay"
)

// forwarders builds one worker per upstream. An upstream without
// credentials gets a worker with no Sender: it reports not_configured and
// its queue is kept.
func forwarders(cfg config.Config, sp *spool.Spool, log *slog.Logger) (map[string]*forwarder.Worker, error) {
	senders := map[string]forwarder.Sender{}
	if cfg.TencentConfigured() {
		c, err := tencent.New(tencent.Config{
			BaseURL: cfg.TencentURL, AccountID: cfg.TencentAccountID, UserActionSetID: cfg.TencentUserActionSetID,
			AccessToken: cfg.TencentAccessToken, RequestsPerMinute: cfg.TencentRequestsPerMin,
			Logger: log.With("component", "upstream", "upstream", "tencent"),
		})
		if err != nil {
			return nil, fmt.Errorf("tencent: %w", err)
		}
		senders["tencent"] = c
	}
	if cfg.TongdunConfigured() {
		c, err := tongdun.New(tongdun.Config{
			URL: cfg.TongdunURL, PartnerCode: cfg.TongdunPartnerCode, PartnerKey: cfg.TongdunPartnerKey,
			Channel: cfg.TongdunChannel, Logger: log.With("component", "upstream", "upstream", "tongdun"),
		})
		if err != nil {
			return nil, fmt.Errorf("tongdun: %w", err)
		}
		senders["tongdun"] = c
	}
	if cfg.UnionpayConfigured() {
		c, err := unionpay.New(unionpay.Config{
			URL: cfg.UnionpayURL, ID: cfg.UnionpayID, AppKey: cfg.UnionpayAppKey,
			Logger: log.With("component", "upstream", "upstream", "unionpay"),
		})
		if err != nil {
			return nil, fmt.Errorf("unionpay: %w", err)
		}
		senders["unionpay"] = c
	}
	ws := map[string]*forwarder.Worker{}
	for _, name := range queues {
		wc := forwarder.Config{
			Name: name, Queue: sp, Logger: log,
			BatchSize: cfg.ForwardBatchSize, FlushInterval: cfg.ForwardFlushInterval,
			MaxAttempts: cfg.ForwardMaxAttempts, MaxAge: cfg.ForwardMaxAge,
			BackoffMax: cfg.ForwardBackoffMax, ProbeInterval: cfg.ForwardProbeInterval,
			BreakerOpen: cfg.ForwardBreakerOpen, BreakerMaxOpen: max(cfg.ForwardBreakerOpen, cfg.ForwardBackoffMax),
		}
		if s, ok := senders[name]; ok {
			wc.Sender = s
		}
		if name != "tencent" {
			wc.BatchSize = 10 // one event per request upstream; the batch only bounds a lease
		}
		ws[name] = forwarder.New(wc)
	}
	return ws, nil
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
