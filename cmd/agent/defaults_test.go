package main

import (
	"os"
	"strings"
	"testing"

	"github.com/outpost-agent/outpost/config"
	"github.com/outpost-agent/outpost/decision"
	"github.com/outpost-agent/outpost/fleet"
	"github.com/outpost-agent/outpost/forwarder"
	"github.com/outpost-agent/outpost/localapi"
	"github.com/outpost-agent/outpost/spool"
	"github.com/outpost-agent/outpost/upstream/tencent"
	"github.com/outpost-agent/outpost/upstream/tongdun"
	"github.com/outpost-agent/outpost/upstream/unionpay"
)

// TestDefaultsHaveOneValue: a setting the agent's configuration has and a
// package also falls back to when it is zero has one default. config's
// tags are the documented ones (README, config's TestDefaults), and config
// imports nothing of ours, so the packages export theirs as constants and
// this holds the two equal: a default changed on one side only fails here.
func TestDefaultsHaveOneValue(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, config.Prefix+"_") {
			t.Setenv(k, v) // restored after the test
			os.Unsetenv(k)
		}
	}
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	tdVersion, err := tongdun.ParseAPIVersion("")
	if err != nil {
		t.Fatal(err)
	}
	upShape, err := unionpay.ParseShape("")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		config, pkg   any
		pkgDefinition string
	}{
		{"FORWARD_BATCH_SIZE", cfg.ForwardBatchSize, forwarder.DefaultBatchSize, "forwarder.DefaultBatchSize"},
		{"FORWARD_CONCURRENCY", cfg.ForwardConcurrency, forwarder.DefaultConcurrency, "forwarder.DefaultConcurrency"},
		{"FORWARD_FLUSH_INTERVAL", cfg.ForwardFlushInterval, forwarder.DefaultFlushInterval, "forwarder.DefaultFlushInterval"},
		{"FORWARD_MAX_ATTEMPTS", cfg.ForwardMaxAttempts, forwarder.DefaultMaxAttempts, "forwarder.DefaultMaxAttempts"},
		{"FORWARD_MAX_AGE", cfg.ForwardMaxAge, forwarder.DefaultMaxAge, "forwarder.DefaultMaxAge"},
		{"FORWARD_BACKOFF_MAX", cfg.ForwardBackoffMax, forwarder.DefaultBackoffMax, "forwarder.DefaultBackoffMax"},
		{"FORWARD_PROBE_INTERVAL", cfg.ForwardProbeInterval, forwarder.DefaultProbeInterval, "forwarder.DefaultProbeInterval"},
		{"FORWARD_BREAKER_OPEN", cfg.ForwardBreakerOpen, forwarder.DefaultBreakerOpen, "forwarder.DefaultBreakerOpen"},

		{"DEDUPE_WINDOW", cfg.DedupeWindow, spool.DefaultDedupeWindow, "spool.DefaultDedupeWindow"},
		{"STORE_GC_INTERVAL", cfg.StoreGCInterval, spool.DefaultGCInterval, "spool.DefaultGCInterval"},

		{"MAX_BODY_BYTES", int64(cfg.MaxBodyBytes), int64(localapi.DefaultMaxBodyBytes), "localapi.DefaultMaxBodyBytes"},
		{"MAX_CONCURRENT_REQUESTS", cfg.MaxConcurrent, localapi.DefaultMaxConcurrent, "localapi.DefaultMaxConcurrent"},
		{"MAX_CONNECTIONS", cfg.MaxConnections, localapi.DefaultMaxConnections, "localapi.DefaultMaxConnections"},
		{"MAX_BODY_BYTES_IN_FLIGHT", int64(cfg.BodyBytesInFlight), int64(localapi.DefaultBodyBytesInFlight), "localapi.DefaultBodyBytesInFlight"},
		{"HEADER_TIMEOUT", cfg.HeaderTimeout, localapi.DefaultHeaderTimeout, "localapi.DefaultHeaderTimeout"},
		{"BODY_TIMEOUT", cfg.BodyTimeout, localapi.DefaultBodyTimeout, "localapi.DefaultBodyTimeout"},

		{"FLEET_VELOCITY_MAX_ENTRIES", cfg.FleetVelocityMaxEntries, fleet.DefaultVelocityMaxEntries, "fleet.DefaultVelocityMaxEntries"},
		{"FLEET_VELOCITY_MAX_AGE", cfg.FleetVelocityMaxAge, fleet.DefaultVelocityMaxAge, "fleet.DefaultVelocityMaxAge"},
		{"FLEET_VELOCITY_LOOKBACK", cfg.FleetVelocityLookback, fleet.DefaultVelocityLookback, "fleet.DefaultVelocityLookback"},

		{"DECISION_TIMEOUT", cfg.DecisionTimeout, decision.DefaultTimeout, "decision.DefaultTimeout"},
		{"DECISION_RETENTION", cfg.DecisionRetention, decision.DefaultRetention, "decision.DefaultRetention"},
		{"TONGDUN_CACHE_TTL", cfg.TongdunCacheTTL, decision.DefaultTongDunCache.TTL, "decision.DefaultTongDunCache.TTL"},
		{"TONGDUN_CACHE_MAX_STALE", cfg.TongdunCacheMaxStale, decision.DefaultTongDunCache.MaxStale, "decision.DefaultTongDunCache.MaxStale"},
		{"UNIONPAY_CACHE_TTL", cfg.UnionpayCacheTTL, decision.DefaultUnionPayCache.TTL, "decision.DefaultUnionPayCache.TTL"},
		{"UNIONPAY_CACHE_MAX_STALE", cfg.UnionpayCacheMaxStale, decision.DefaultUnionPayCache.MaxStale, "decision.DefaultUnionPayCache.MaxStale"},
		{"CACHE_NEGATIVE_TTL", cfg.CacheNegativeTTL, decision.DefaultNegativeTTL, "decision.DefaultNegativeTTL"},

		{"TENCENT_URL", cfg.TencentURL, tencent.DefaultBaseURL, "tencent.DefaultBaseURL"},
		{"TENCENT_REQUESTS_PER_MINUTE", cfg.TencentRequestsPerMin, tencent.DefaultRequestsPerMinute, "tencent.DefaultRequestsPerMinute"},
		{"TONGDUN_API_VERSION", tongdun.APIVersion(cfg.TongdunAPIVersion), tdVersion, `tongdun.ParseAPIVersion("")`},
		{"UNIONPAY_URL", cfg.UnionpayURL, unionpay.DefaultURL, "unionpay.DefaultURL"},
		{"UNIONPAY_API_SHAPE", unionpay.Shape(cfg.UnionpayAPIShape), upShape, `unionpay.ParseShape("")`},
	} {
		if tc.config != tc.pkg {
			t.Errorf("%s_%s defaults to %v in config, but %s is %v: one default, one value", config.Prefix, tc.name, tc.config, tc.pkgDefinition, tc.pkg)
		}
	}
}

// TestFleetMemoryNeed: the limit the start-up warning asks of a fleet
// view is the default limit plus 100 bytes a count, so that with the
// default view (1,000,000 counts) the default limit is warned about and a
// limit raised as the README says is not.
func TestFleetMemoryNeed(t *testing.T) {
	for _, tc := range []struct {
		entries int
		want    config.ByteSize
	}{
		{0, config.DefaultMemoryLimit},
		{1_000_000, config.DefaultMemoryLimit + 100_000_000},
	} {
		if got := fleetMemoryNeed(tc.entries); got != tc.want {
			t.Errorf("fleetMemoryNeed(%d) = %d, want %d", tc.entries, got, tc.want)
		}
	}
	// The defaults: AGENT_MEMORY_LIMIT and AGENT_FLEET_VELOCITY_MAX_ENTRIES.
	const limit, entries = config.DefaultMemoryLimit, 1_000_000
	if limit >= fleetMemoryNeed(entries) {
		t.Errorf("the default limit is not below what the default fleet view needs: no warning")
	}
	if raised := config.ByteSize(limit + entries*100); raised < fleetMemoryNeed(entries) {
		t.Errorf("a limit raised by entries x 100 bytes (%d) is still warned about", raised)
	}
}
