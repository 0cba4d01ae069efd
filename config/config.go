// Package config reads the agent's settings from the environment (prefix
// AGENT_) with envconfig, applies defaults and validates them. Every error
// names the variable at fault.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Prefix of every variable.
const Prefix = "AGENT"

// Config is every setting of the agent. The envconfig tags are the single
// place defaults live; the README lists them.
type Config struct {
	ListenAddr        string        `envconfig:"LISTEN_ADDR" default:"127.0.0.1:8470"`
	DataDir           string        `envconfig:"DATA_DIR" default:"./data"`
	SpoolMaxBytes     ByteSize      `envconfig:"SPOOL_MAX_BYTES" default:"1GiB"`
	EncryptionKeyFile string        `envconfig:"ENCRYPTION_KEY_FILE"`
	LogLevel          string        `envconfig:"LOG_LEVEL" default:"info"`
	LogFormat         string        `envconfig:"LOG_FORMAT" default:"auto"`
	ShutdownTimeout   time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"20s"`
	MemoryLimit       ByteSize      `envconfig:"MEMORY_LIMIT" default:"44MiB"`
	MaxBodyBytes      ByteSize      `envconfig:"MAX_BODY_BYTES" default:"1MiB"`
	MaxConcurrent     int           `envconfig:"MAX_CONCURRENT_REQUESTS" default:"256"`
	MaxConnections    int           `envconfig:"MAX_CONNECTIONS" default:"512"`
	BodyBytesInFlight ByteSize      `envconfig:"MAX_BODY_BYTES_IN_FLIGHT" default:"16MiB"`
	HeaderTimeout     time.Duration `envconfig:"HEADER_TIMEOUT" default:"10s"`
	BodyTimeout       time.Duration `envconfig:"BODY_TIMEOUT" default:"10s"`
	AuthToken         string        `envconfig:"AUTH_TOKEN"`
	AdminToken        string        `envconfig:"ADMIN_TOKEN"`
	DedupeWindow      time.Duration `envconfig:"DEDUPE_WINDOW" default:"168h"`
	StoreGCInterval   time.Duration `envconfig:"STORE_GC_INTERVAL" default:"1m"`

	TencentURL             string `envconfig:"TENCENT_URL" default:"https://api.e.qq.com"`
	TencentAccountID       int64  `envconfig:"TENCENT_ACCOUNT_ID"`
	TencentUserActionSetID int64  `envconfig:"TENCENT_USER_ACTION_SET_ID"`
	TencentAccessToken     string `envconfig:"TENCENT_ACCESS_TOKEN"`
	TencentRequestsPerMin  int    `envconfig:"TENCENT_REQUESTS_PER_MINUTE" default:"4000"`
	// TencentDataSourceType is the type of the user action set (WEB,
	// ANDROID, IOS, ...): WEB makes each action's page url required.
	TencentDataSourceType string `envconfig:"TENCENT_DATA_SOURCE_TYPE"`

	TongdunURL         string `envconfig:"TONGDUN_URL"`
	TongdunPartnerCode string `envconfig:"TONGDUN_PARTNER_CODE"`
	TongdunPartnerKey  string `envconfig:"TONGDUN_PARTNER_KEY"`
	TongdunChannel     string `envconfig:"TONGDUN_CHANNEL"`
	// TongdunAPIVersion is the TD risk verification API version of
	// TONGDUN_URL: v2 (the seed) or v3 (adds the lookup event and an
	// account object in event_detail).
	TongdunAPIVersion string `envconfig:"TONGDUN_API_VERSION" default:"v2"`

	UnionpayURL    string `envconfig:"UNIONPAY_URL" default:"https://risktech.unionpay.com/fireeye/creditScore"`
	UnionpayID     string `envconfig:"UNIONPAY_ID"`
	UnionpayAppKey string `envconfig:"UNIONPAY_APP_KEY"`
	// UnionpayAPIShape is unionpay.Shape: "table" or "sample".
	UnionpayAPIShape string `envconfig:"UNIONPAY_API_SHAPE" default:"table"`
	// UnionpayScoreURL empty means the shape's default.
	UnionpayScoreURL string `envconfig:"UNIONPAY_SCORE_URL"`

	ForwardBatchSize     int           `envconfig:"FORWARD_BATCH_SIZE" default:"50"`
	ForwardFlushInterval time.Duration `envconfig:"FORWARD_FLUSH_INTERVAL" default:"1s"`
	ForwardMaxAttempts   int           `envconfig:"FORWARD_MAX_ATTEMPTS" default:"1000"`
	ForwardMaxAge        time.Duration `envconfig:"FORWARD_MAX_AGE" default:"168h"`
	ForwardBackoffMax    time.Duration `envconfig:"FORWARD_BACKOFF_MAX" default:"5m"`
	ForwardProbeInterval time.Duration `envconfig:"FORWARD_PROBE_INTERVAL" default:"5m"`
	ForwardBreakerOpen   time.Duration `envconfig:"FORWARD_BREAKER_OPEN" default:"10s"`

	Pprof              bool          `envconfig:"PPROF" default:"false"`
	MinFreeDisk        ByteSize      `envconfig:"MIN_FREE_DISK" default:"128MiB"`
	ListenUnix         string        `envconfig:"LISTEN_UNIX"`
	ForwardConcurrency int           `envconfig:"FORWARD_CONCURRENCY" default:"1"`
	TongdunRatePerSec  float64       `envconfig:"TONGDUN_REQUESTS_PER_SECOND" default:"0"`
	UnionpayRatePerSec float64       `envconfig:"UNIONPAY_REQUESTS_PER_SECOND" default:"0"`
	PolicyFile         string        `envconfig:"POLICY_FILE"`
	PolicyPollInterval time.Duration `envconfig:"POLICY_POLL_INTERVAL" default:"2s"`
	DecisionTimeout    time.Duration `envconfig:"DECISION_TIMEOUT" default:"300ms"`
	DecisionRetention  time.Duration `envconfig:"DECISION_RETENTION" default:"2160h"`
	// DecisionSyncWithin 0: a decision is answered once its record is
	// synced to disk. Positive: a decision that queues nothing is answered
	// once its record is written to the journal, and synced within this long
	// (spool.Options.PutSyncWithin): a power cut can lose the decisions of
	// the last DecisionSyncWithin, a crash of the agent none.
	DecisionSyncWithin    time.Duration `envconfig:"DECISION_SYNC_WITHIN" default:"0s"`
	TongdunCacheTTL       time.Duration `envconfig:"TONGDUN_CACHE_TTL" default:"10m"`
	TongdunCacheMaxStale  time.Duration `envconfig:"TONGDUN_CACHE_MAX_STALE" default:"1h"`
	UnionpayCacheTTL      time.Duration `envconfig:"UNIONPAY_CACHE_TTL" default:"24h"`
	UnionpayCacheMaxStale time.Duration `envconfig:"UNIONPAY_CACHE_MAX_STALE" default:"168h"`
	CacheNegativeTTL      time.Duration `envconfig:"CACHE_NEGATIVE_TTL" default:"30s"`

	// Fleet mode on Kafka (kafka.go, package fleet): off while
	// KAFKA_BROKERS is empty.
	KafkaBrokers     string `envconfig:"KAFKA_BROKERS"`
	KafkaTopicPrefix string `envconfig:"KAFKA_TOPIC_PREFIX" default:"outpost"`
	// ForwardVia is where the tencent queue goes: "direct" (Tencent) or
	// "kafka" (<prefix>.actions.v1, for the relays).
	ForwardVia string `envconfig:"FORWARD_VIA" default:"direct"`
	// AgentID is this agent's stable name in the fleet; empty: a UUID made
	// once and kept in DATA_DIR/agent-id.
	AgentID    string `envconfig:"ID"`
	KafkaGroup string `envconfig:"KAFKA_GROUP" default:"outpost-relay"`
	// KafkaKeyFile holds the fleet secret that keys the HMAC of the account
	// (the actions' record key): 32 bytes, raw or hex, mode 0600. The same
	// file on every agent of the fleet.
	KafkaKeyFile        string        `envconfig:"KAFKA_KEY_FILE"`
	KafkaTLS            bool          `envconfig:"KAFKA_TLS" default:"false"`
	KafkaTLSCAFile      string        `envconfig:"KAFKA_TLS_CA_FILE"`
	KafkaTLSCertFile    string        `envconfig:"KAFKA_TLS_CERT_FILE"`
	KafkaTLSKeyFile     string        `envconfig:"KAFKA_TLS_KEY_FILE"`
	KafkaTLSServerName  string        `envconfig:"KAFKA_TLS_SERVER_NAME"`
	KafkaSASLMechanism  string        `envconfig:"KAFKA_SASL_MECHANISM"`
	KafkaSASLUser       string        `envconfig:"KAFKA_SASL_USER"`
	KafkaSASLPassFile   string        `envconfig:"KAFKA_SASL_PASSWORD_FILE"`
	KafkaStatusInterval time.Duration `envconfig:"KAFKA_STATUS_INTERVAL" default:"30s"`

	// Fleet velocity (package fleet, velocity.go): the policy's counters
	// declared fleet: true are published to <prefix>.velocity.v1 and every
	// agent's are merged. Needs KAFKA_BROKERS and KAFKA_KEY_FILE.
	FleetVelocity bool `envconfig:"FLEET_VELOCITY" default:"false"`
	// FleetVelocityMaxAge: a fleet view older than this is stale, and the
	// decisions made on it are marked so.
	FleetVelocityMaxAge time.Duration `envconfig:"FLEET_VELOCITY_MAX_AGE" default:"30s"`
	// FleetVelocityMaxEntries caps the (subject, bucket) counts held in
	// memory (about 40 bytes each).
	FleetVelocityMaxEntries int `envconfig:"FLEET_VELOCITY_MAX_ENTRIES" default:"1000000"`
	// FleetVelocityLookback: how far back a new agent first reads the
	// topic (at least the longest fleet counter's window).
	FleetVelocityLookback time.Duration `envconfig:"FLEET_VELOCITY_LOOKBACK" default:"24h"`
}

// StoreCloseTimeout is how long closing the store may take after the
// drain (AGENT_SHUTDOWN_TIMEOUT) ran out: a clean close is what makes the
// next start fast, and acknowledged data is on disk whatever happens.
const StoreCloseTimeout = 10 * time.Second

// StopBudget is the longest a stop takes from the first SIGTERM to the
// exit: the drain (finishing requests, forwarding the queues) within
// AGENT_SHUTDOWN_TIMEOUT, then closing the store within StoreCloseTimeout.
// The unit's TimeoutStopSec, `docker stop -t` and the pods'
// terminationGracePeriodSeconds are sized from it (tests in systemd/ and
// packaging/ hold them to it).
func (c Config) StopBudget() time.Duration { return c.ShutdownTimeout + StoreCloseTimeout }

// DefaultMemoryLimit is AGENT_MEMORY_LIMIT's default (the struct tag says
// the same; TestDefaults holds them together): what the agent needs
// without a fleet view, which comes on top.
const DefaultMemoryLimit = 44 << 20

// MinFreeDiskFloor is the smallest AGENT_MIN_FREE_DISK but 0 (none).
const MinFreeDiskFloor = 32 << 20

// Load reads the process environment and validates the result.
func Load() (Config, error) {
	var c Config
	if err := envconfig.Process(Prefix, &c); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			// KeyName is the whole variable's name, prefix included.
			return c, fmt.Errorf("%s=%q: %v", pe.KeyName, pe.Value, pe.Err)
		}
		return c, fmt.Errorf("configuration: %w", err)
	}
	return c, c.Validate()
}

// Validate checks values envconfig cannot.
func (c Config) Validate() error {
	var errs []error
	bad := func(name, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s_%s: %s", Prefix, name, fmt.Sprintf(format, a...)))
	}
	host, port, err := net.SplitHostPort(c.ListenAddr)
	if err != nil {
		bad("LISTEN_ADDR", "%q is not host:port", c.ListenAddr)
	} else {
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad("LISTEN_ADDR", "port %q is not 0-65535", port)
		}
		if !IsLoopback(host) && c.AuthToken == "" {
			bad("LISTEN_ADDR", "%q is not a loopback address; set AGENT_AUTH_TOKEN to listen beyond this host", c.ListenAddr)
		}
	}
	if c.ListenUnix != "" && !filepath.IsAbs(c.ListenUnix) {
		bad("LISTEN_UNIX", "must be an absolute path")
	}
	if c.AuthToken != "" && len(c.AuthToken) < 16 {
		bad("AUTH_TOKEN", "must be at least 16 characters")
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		bad("ADMIN_TOKEN", "must be at least 16 characters")
	}
	if c.AdminToken != "" && c.AdminToken == c.AuthToken {
		bad("ADMIN_TOKEN", "must differ from AGENT_AUTH_TOKEN: apps hold the app token, and it must not open the admin endpoints")
	}
	if c.DataDir == "" {
		bad("DATA_DIR", "must not be empty")
	}
	if c.SpoolMaxBytes < 1<<20 {
		bad("SPOOL_MAX_BYTES", "must be at least 1MiB, got %d", c.SpoolMaxBytes)
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		bad("LOG_LEVEL", "%v", err)
	}
	switch c.LogFormat {
	case "auto", "json", "text":
	default:
		bad("LOG_FORMAT", "%q is not auto, json or text", c.LogFormat)
	}
	if c.ShutdownTimeout <= 0 {
		bad("SHUTDOWN_TIMEOUT", "must be positive")
	}
	if c.MemoryLimit != 0 && c.MemoryLimit < 32<<20 {
		bad("MEMORY_LIMIT", "must be 0 (no limit) or at least 32MiB")
	}
	if c.MaxBodyBytes < 1024 || c.MaxBodyBytes > 64<<20 {
		bad("MAX_BODY_BYTES", "must be between 1KiB and 64MiB")
	}
	if c.MaxConcurrent < 1 {
		bad("MAX_CONCURRENT_REQUESTS", "must be at least 1")
	}
	// The store needs 24 MiB to open and deliver on a full disk (the drain
	// reserve in spool/space.go; the floor leaves 8 MiB to spare): a
	// smaller minimum would let intake fill the disk past what a restart
	// can open.
	if c.MinFreeDisk != 0 && c.MinFreeDisk < MinFreeDiskFloor {
		bad("MIN_FREE_DISK", "must be 0 (no minimum) or at least 32MiB (the store needs 24MiB to open and deliver on a full disk), got %d", c.MinFreeDisk)
	}
	if c.MaxConnections < 1 || c.MaxConnections > 1<<16 {
		bad("MAX_CONNECTIONS", "must be 1-65536")
	}
	if c.BodyBytesInFlight < c.MaxBodyBytes || c.BodyBytesInFlight > 1<<30 {
		bad("MAX_BODY_BYTES_IN_FLIGHT", "must be at least AGENT_MAX_BODY_BYTES (%d) and at most 1GiB, got %d", c.MaxBodyBytes, c.BodyBytesInFlight)
	}
	if c.HeaderTimeout < 100*time.Millisecond || c.HeaderTimeout > 10*time.Minute {
		bad("HEADER_TIMEOUT", "must be between 100ms and 10m")
	}
	if c.BodyTimeout < 100*time.Millisecond || c.BodyTimeout > 10*time.Minute {
		bad("BODY_TIMEOUT", "must be between 100ms and 10m")
	}
	if c.DedupeWindow < time.Minute {
		bad("DEDUPE_WINDOW", "must be at least 1m")
	}
	if c.StoreGCInterval < time.Second {
		bad("STORE_GC_INTERVAL", "must be at least 1s")
	}
	// An upstream is configured when any of its credentials is set; then
	// all of them must be, or it would fail at 3 am instead of at start-up.
	need := func(upstream string, vars map[string]bool) {
		set, missing := 0, []string{}
		for name, ok := range vars {
			if ok {
				set++
			} else {
				missing = append(missing, Prefix+"_"+name)
			}
		}
		if set > 0 && len(missing) > 0 {
			sort.Strings(missing)
			bad(strings.ToUpper(upstream), "partly configured; also set %s", strings.Join(missing, ", "))
		}
	}
	need("tencent", map[string]bool{"TENCENT_ACCOUNT_ID": c.TencentAccountID != 0, "TENCENT_USER_ACTION_SET_ID": c.TencentUserActionSetID != 0, "TENCENT_ACCESS_TOKEN": c.TencentAccessToken != ""})
	need("tongdun", map[string]bool{"TONGDUN_URL": c.TongdunURL != "", "TONGDUN_PARTNER_CODE": c.TongdunPartnerCode != "", "TONGDUN_PARTNER_KEY": c.TongdunPartnerKey != "", "TONGDUN_CHANNEL": c.TongdunChannel != ""})
	need("unionpay", map[string]bool{"UNIONPAY_ID": c.UnionpayID != "", "UNIONPAY_APP_KEY": c.UnionpayAppKey != ""})
	for name, u := range map[string]string{"TENCENT_URL": c.TencentURL, "TONGDUN_URL": c.TongdunURL, "UNIONPAY_URL": c.UnionpayURL, "UNIONPAY_SCORE_URL": c.UnionpayScoreURL} {
		if u == "" {
			continue
		}
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			bad(name, "%q is not an http(s) URL", u)
		} else if strings.HasPrefix(name, "UNIONPAY_") && (pu.RawQuery != "" || pu.ForceQuery) {
			bad(name, "%q has a query; FireEye's calls take their data there or in the body", u)
		}
	}
	// The seed's two descriptions of FireEye (unionpay.ShapeTable,
	// unionpay.ShapeSample); config imports none of our packages.
	if c.UnionpayAPIShape != "table" && c.UnionpayAPIShape != "sample" {
		bad("UNIONPAY_API_SHAPE", "%q is neither table (the seed's tables) nor sample (its sample code)", c.UnionpayAPIShape)
	}
	switch c.TongdunAPIVersion {
	case "v2":
	case "v3":
		// TD's endpoints carry their version last (…/fraud/promo/v2, …/v3):
		// v3 requests sent to a v2 endpoint would all be refused (9002).
		if pu, err := url.Parse(c.TongdunURL); err == nil && path.Base(pu.Path) == "v2" {
			bad("TONGDUN_API_VERSION", "is v3 but AGENT_TONGDUN_URL %q is TD's v2 endpoint, which refuses lookup and the account object", pu.Path)
		}
	default:
		bad("TONGDUN_API_VERSION", "%q is not v2 or v3", c.TongdunAPIVersion)
	}
	switch c.TencentDataSourceType {
	case "", "WEB", "ANDROID", "IOS", "OFFLINE", "WECHAT", "WECHAT_MINI_PROGRAM", "WECHAT_MINI_GAME", "HARMONY":
	default:
		bad("TENCENT_DATA_SOURCE_TYPE", "%q is not a Tencent data source type: WEB, ANDROID, IOS, OFFLINE, WECHAT, WECHAT_MINI_PROGRAM, WECHAT_MINI_GAME or HARMONY (or unset)", c.TencentDataSourceType)
	}
	if c.TencentRequestsPerMin < 1 {
		bad("TENCENT_REQUESTS_PER_MINUTE", "must be at least 1")
	}
	if c.ForwardBatchSize < 1 || c.ForwardBatchSize > 50 {
		bad("FORWARD_BATCH_SIZE", "must be 1-50 (Tencent takes at most 50 actions a request)")
	}
	if c.ForwardFlushInterval <= 0 || c.ForwardBackoffMax <= 0 || c.ForwardProbeInterval <= 0 || c.ForwardMaxAge <= 0 || c.ForwardBreakerOpen <= 0 {
		bad("FORWARD_*", "intervals and ages must be positive")
	}
	if c.ForwardConcurrency < 1 || c.ForwardConcurrency > 64 {
		bad("FORWARD_CONCURRENCY", "must be 1-64")
	}
	if c.TongdunRatePerSec < 0 || c.UnionpayRatePerSec < 0 {
		bad("TONGDUN_REQUESTS_PER_SECOND", "rates must be 0 (no cap) or positive")
	}
	if c.ForwardMaxAttempts < 1 {
		bad("FORWARD_MAX_ATTEMPTS", "must be at least 1")
	}
	if c.DecisionTimeout < time.Millisecond || c.DecisionTimeout > 30*time.Second {
		bad("DECISION_TIMEOUT", "must be between 1ms and 30s")
	}
	if c.DecisionRetention < time.Hour {
		bad("DECISION_RETENTION", "must be at least 1h")
	}
	if c.DecisionSyncWithin < 0 || c.DecisionSyncWithin > time.Second {
		bad("DECISION_SYNC_WITHIN", "must be 0 (every decision synced before its answer) or up to 1s")
	}
	if c.PolicyPollInterval < 100*time.Millisecond {
		bad("POLICY_POLL_INTERVAL", "must be at least 100ms")
	}
	if c.TongdunCacheTTL <= 0 || c.TongdunCacheMaxStale < c.TongdunCacheTTL {
		bad("TONGDUN_CACHE_MAX_STALE", "TTL must be positive and MAX_STALE at least the TTL")
	}
	if c.UnionpayCacheTTL <= 0 || c.UnionpayCacheMaxStale < c.UnionpayCacheTTL {
		bad("UNIONPAY_CACHE_MAX_STALE", "TTL must be positive and MAX_STALE at least the TTL")
	}
	if c.CacheNegativeTTL <= 0 {
		bad("CACHE_NEGATIVE_TTL", "must be positive")
	}
	if c.EncryptionKeyFile != "" {
		if _, err := ReadKeyFile(c.EncryptionKeyFile); err != nil {
			bad("ENCRYPTION_KEY_FILE", "%v", err)
		}
	}
	c.validateKafka(bad)
	return errors.Join(errs...)
}

// TencentConfigured and its siblings say whether an upstream has credentials.
func (c Config) TencentConfigured() bool  { return c.TencentAccessToken != "" }
func (c Config) TongdunConfigured() bool  { return c.TongdunPartnerKey != "" }
func (c Config) UnionpayConfigured() bool { return c.UnionpayAppKey != "" }

// IsLoopback reports whether host (a literal address or "localhost") only
// reaches this machine.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ParseLevel maps debug, info, warn, error to slog levels.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
	}
	return l, nil
}

// ReadKeyFile reads a 32-byte encryption key: 32 raw bytes, or 64 hex
// characters (a trailing newline is allowed). The file must not be readable
// by group or others.
func ReadKeyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s is readable by others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	if len(b) == 32 {
		return b, nil
	}
	t := strings.TrimSpace(string(b))
	if len(t) == 64 {
		k := make([]byte, 32)
		for i := range k {
			v, err := strconv.ParseUint(t[2*i:2*i+2], 16, 8)
			if err != nil {
				return nil, errors.New("key file is neither 32 raw bytes nor 64 hex characters")
			}
			k[i] = byte(v)
		}
		return k, nil
	}
	return nil, fmt.Errorf("key file holds %d bytes; want 32 raw bytes or 64 hex characters", len(b))
}

// ByteSize is a size in bytes that also reads "512KiB", "64MiB", "1GiB",
// "10MB" (decimal) or a plain number.
type ByteSize int64

// Decode implements envconfig.Decoder.
func (b *ByteSize) Decode(v string) error {
	n, err := ParseByteSize(v)
	if err != nil {
		return err
	}
	*b = ByteSize(n)
	return nil
}

// ParseByteSize parses a size with an optional unit, in integers. Not
// go-humanize's ParseBytes (in the module graph, and used for display):
// it parses through float64, so a byte count above 2^53 comes back rounded
// (FuzzParseByteSize, tried on it, read 4611686018427387905 as
// 4611686018427387904) and "-0" is refused; ours is exact and fuzzed.
func ParseByteSize(v string) (int64, error) {
	s := strings.TrimSpace(v)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (examples: 1048576, 512KiB, 64MiB, 1GiB)", v)
	}
	return n * mult, nil
}
