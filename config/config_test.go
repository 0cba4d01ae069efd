package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestMain unsets every AGENT_* variable: what the machine or CI exports
// must not decide what these tests see. Each test sets what it needs with
// t.Setenv.
func TestMain(m *testing.M) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, Prefix+"_") {
			os.Unsetenv(k)
		}
	}
	os.Exit(m.Run())
}

// TestDefaults: with no AGENT_* variable set, every field has its
// documented default (README's configuration tables); the fields without
// one are zero.
func TestDefaults(t *testing.T) {
	got, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		ListenAddr: "127.0.0.1:8470", DataDir: "./data", SpoolMaxBytes: 1 << 30, LogLevel: "info", LogFormat: "auto",
		ShutdownTimeout: 20 * time.Second, MemoryLimit: DefaultMemoryLimit, MaxBodyBytes: 1 << 20, MaxConcurrent: 256,
		MaxConnections: 512, BodyBytesInFlight: 16 << 20, HeaderTimeout: 10 * time.Second, BodyTimeout: 10 * time.Second,
		DedupeWindow: 168 * time.Hour, StoreGCInterval: time.Minute,
		TencentURL: "https://api.e.qq.com", TencentRequestsPerMin: 4000,
		TongdunAPIVersion: "v2",
		UnionpayURL:       "https://risktech.unionpay.com/fireeye/creditScore", UnionpayAPIShape: "table",
		ForwardBatchSize: 50, ForwardFlushInterval: time.Second, ForwardMaxAttempts: 1000, ForwardMaxAge: 168 * time.Hour,
		ForwardBackoffMax: 5 * time.Minute, ForwardProbeInterval: 5 * time.Minute, ForwardBreakerOpen: 10 * time.Second,
		MinFreeDisk: 128 << 20, ForwardConcurrency: 1,
		PolicyPollInterval: 2 * time.Second, DecisionTimeout: 300 * time.Millisecond, DecisionRetention: 2160 * time.Hour,
		TongdunCacheTTL: 10 * time.Minute, TongdunCacheMaxStale: time.Hour,
		UnionpayCacheTTL: 24 * time.Hour, UnionpayCacheMaxStale: 168 * time.Hour, CacheNegativeTTL: 30 * time.Second,
		KafkaTopicPrefix: "outpost", ForwardVia: "direct", KafkaGroup: "outpost-relay", KafkaStatusInterval: 30 * time.Second,
		FleetVelocityMaxAge: 30 * time.Second, FleetVelocityMaxEntries: 1000000, FleetVelocityLookback: 24 * time.Hour,
	}
	if !reflect.DeepEqual(got, want) {
		gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
		for i := range gv.NumField() {
			if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
				t.Errorf("%s_%s: default %v, want %v", Prefix, gv.Type().Field(i).Tag.Get("envconfig"), gv.Field(i), wv.Field(i))
			}
		}
	}
}

// TestREADMEDefaults: the configuration tables in README.md give each
// variable the default its envconfig tag has, and "(none)" (or no
// value) where it has none.
func TestREADMEDefaults(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	tick := regexp.MustCompile("`([^`]*)`")
	documented := map[string]string{} // variable -> its default cell's values, or "" for none
	for _, line := range strings.Split(string(readme), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.Contains(cells[1], "`"+Prefix+"_") {
			continue
		}
		var names, values []string
		for _, m := range tick.FindAllStringSubmatch(cells[1], -1) {
			names = append(names, m[1])
		}
		// A default is a value in backquotes; words ("(none)", "a UUID
		// made once...") say there is no default value.
		if strings.HasPrefix(strings.TrimSpace(cells[2]), "`") {
			for _, m := range tick.FindAllStringSubmatch(cells[2], -1) {
				values = append(values, m[1])
			}
		}
		for i, n := range names {
			switch {
			case len(values) == 0:
				documented[n] = ""
			case len(values) == len(names):
				documented[n] = values[i]
			default:
				documented[n] = values[0]
			}
		}
	}
	typ := reflect.TypeOf(Config{})
	for i := range typ.NumField() {
		f := typ.Field(i)
		name := Prefix + "_" + f.Tag.Get("envconfig")
		doc, ok := documented[name]
		if !ok {
			t.Errorf("%s is not in README.md's configuration tables", name)
			continue
		}
		if def := f.Tag.Get("default"); doc != def {
			t.Errorf("%s: README.md says the default is %q, the code %q", name, doc, def)
		}
	}
}

// TestMinFreeDisk: the free-space minimum defaults to 128MiB, and 0 is
// taken as it is (no minimum), not as unset.
func TestMinFreeDisk(t *testing.T) {
	for _, tt := range []struct {
		val  string
		want ByteSize
	}{{"", 128 << 20}, {"0", 0}, {"32MiB", 32 << 20}, {"1GiB", 1 << 30}} {
		if tt.val != "" {
			t.Setenv("AGENT_MIN_FREE_DISK", tt.val)
		}
		c, err := Load()
		if err != nil || c.MinFreeDisk != tt.want {
			t.Errorf("AGENT_MIN_FREE_DISK=%q: %d, %v; want %d", tt.val, c.MinFreeDisk, err, tt.want)
		}
	}
}

func TestBadValuesNameTheVariable(t *testing.T) {
	key := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(key, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(t.TempDir(), "openkey")
	if err := os.WriteFile(open, make([]byte, 32), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, env, val, want string
	}{
		{"size not a number", "AGENT_SPOOL_MAX_BYTES", "lots", "AGENT_SPOOL_MAX_BYTES"},
		{"size too small", "AGENT_SPOOL_MAX_BYTES", "10", "AGENT_SPOOL_MAX_BYTES"},
		{"level", "AGENT_LOG_LEVEL", "loud", "AGENT_LOG_LEVEL"},
		{"addr", "AGENT_LISTEN_ADDR", "nope", "AGENT_LISTEN_ADDR"},
		{"public addr without token", "AGENT_LISTEN_ADDR", "0.0.0.0:8470", "AGENT_AUTH_TOKEN"},
		{"short admin token", "AGENT_ADMIN_TOKEN", "short", "AGENT_ADMIN_TOKEN"},
		{"no connections", "AGENT_MAX_CONNECTIONS", "0", "AGENT_MAX_CONNECTIONS"},
		{"budget below one body", "AGENT_MAX_BODY_BYTES_IN_FLIGHT", "512KiB", "AGENT_MAX_BODY_BYTES_IN_FLIGHT"},
		{"budget not a size", "AGENT_MAX_BODY_BYTES_IN_FLIGHT", "lots", "AGENT_MAX_BODY_BYTES_IN_FLIGHT"},
		{"header timeout", "AGENT_HEADER_TIMEOUT", "1ms", "AGENT_HEADER_TIMEOUT"},
		{"body timeout", "AGENT_BODY_TIMEOUT", "0s", "AGENT_BODY_TIMEOUT"},
		{"duration", "AGENT_SHUTDOWN_TIMEOUT", "soon", "AGENT_SHUTDOWN_TIMEOUT"},
		{"key missing", "AGENT_ENCRYPTION_KEY_FILE", "/nonexistent/key", "AGENT_ENCRYPTION_KEY_FILE"},
		{"key wrong size", "AGENT_ENCRYPTION_KEY_FILE", key, "32 raw bytes"},
		{"key readable by others", "AGENT_ENCRYPTION_KEY_FILE", open, "chmod 600"},
		{"tencent half configured", "AGENT_TENCENT_ACCESS_TOKEN", "tok", "AGENT_TENCENT_ACCOUNT_ID, AGENT_TENCENT_USER_ACTION_SET_ID"},
		{"tongdun half configured", "AGENT_TONGDUN_PARTNER_KEY", "k", "AGENT_TONGDUN_CHANNEL"},
		{"unionpay url", "AGENT_UNIONPAY_URL", "ftp://x", "AGENT_UNIONPAY_URL"},
		{"unionpay url with a query", "AGENT_UNIONPAY_URL", "https://x/fireeye/creditScore?a=1", "AGENT_UNIONPAY_URL"},
		{"unionpay shape", "AGENT_UNIONPAY_API_SHAPE", "Sample", "AGENT_UNIONPAY_API_SHAPE"},
		{"unionpay score url", "AGENT_UNIONPAY_SCORE_URL", "esb.unionpay.com/ares", "AGENT_UNIONPAY_SCORE_URL"},
		{"data source type", "AGENT_TENCENT_DATA_SOURCE_TYPE", "H5", "AGENT_TENCENT_DATA_SOURCE_TYPE: \"H5\" is not a Tencent data source type"},
		{"data source type in lower case", "AGENT_TENCENT_DATA_SOURCE_TYPE", "web", "AGENT_TENCENT_DATA_SOURCE_TYPE"},
		{"batch over tencent's limit", "AGENT_FORWARD_BATCH_SIZE", "51", "AGENT_FORWARD_BATCH_SIZE"},
		{"tongdun api version", "AGENT_TONGDUN_API_VERSION", "3", "AGENT_TONGDUN_API_VERSION: \"3\" is not v2 or v3"},
		{"tongdun api version case", "AGENT_TONGDUN_API_VERSION", "V3", "AGENT_TONGDUN_API_VERSION"},
		{"decision sync over a second", "AGENT_DECISION_SYNC_WITHIN", "2s", "AGENT_DECISION_SYNC_WITHIN: must be 0"},
		{"decision sync negative", "AGENT_DECISION_SYNC_WITHIN", "-1ms", "AGENT_DECISION_SYNC_WITHIN"},
		{"free disk minimum below what a drain needs", "AGENT_MIN_FREE_DISK", "16MiB", "AGENT_MIN_FREE_DISK: must be 0 (no minimum) or at least 32MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(tt.env, tt.val)
			_, err := Load()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %s", err, tt.want)
			}
		})
	}
}

// TestUnparsableValueNamesTheVariable: every setting envconfig converts
// (durations, integers, booleans, rates, sizes), given a value it cannot
// read, is named once, as the operator wrote it: AGENT_X, not AGENT_AGENT_X.
func TestUnparsableValueNamesTheVariable(t *testing.T) {
	typ := reflect.TypeOf(Config{})
	n := 0
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Type.Kind() == reflect.String {
			continue
		}
		n++
		name := Prefix + "_" + f.Tag.Get("envconfig")
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, "abc")
			_, err := Load()
			if err == nil {
				t.Fatalf("%s=abc accepted", name)
			}
			if want := name + `="abc": `; !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), Prefix+"_"+Prefix+"_") {
				t.Fatalf("err = %q, want it to start %q", err, want)
			}
		})
	}
	if n < 20 {
		t.Fatalf("only %d non-string settings: did the Config change shape?", n)
	}
}

func TestKeyFileForms(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "raw")
	os.WriteFile(raw, []byte("0123456789abcdef0123456789abcdef"), 0o600)
	hex := filepath.Join(dir, "hex")
	os.WriteFile(hex, []byte(strings.Repeat("ab", 32)+"\n"), 0o400)
	for _, p := range []string{raw, hex} {
		k, err := ReadKeyFile(p)
		if err != nil || len(k) != 32 {
			t.Fatalf("%s: %v, %d bytes", p, err, len(k))
		}
	}
	k, _ := ReadKeyFile(hex)
	if k[0] != 0xab {
		t.Fatalf("hex key decoded wrong: %x", k)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "512KiB": 512 << 10, "64MiB": 64 << 20, "1GiB": 1 << 30, "10MB": 10e6, " 2 GiB ": 2 << 30} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5GiB", "GiB", "1XB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
}

func TestAdminTokenMustDifferFromAppToken(t *testing.T) {
	t.Setenv("AGENT_AUTH_TOKEN", "the-same-token-0123")
	t.Setenv("AGENT_ADMIN_TOKEN", "the-same-token-0123")
	_, err := Load()
	if err == nil || !strings.Contains(err.Error(), "AGENT_ADMIN_TOKEN") || strings.Contains(err.Error(), "the-same-token") {
		t.Fatalf("err = %v, want it to name AGENT_ADMIN_TOKEN and not show the token", err)
	}
}

// TestTongdunAPIVersion: v2 by default; v3 is refused with a URL that is
// TD's v2 endpoint, naming both variables.
func TestTongdunAPIVersion(t *testing.T) {
	c, err := Load()
	if err != nil || c.TongdunAPIVersion != "v2" {
		t.Fatalf("default: %q %v", c.TongdunAPIVersion, err)
	}
	for _, tt := range []struct {
		version, url string
		ok           bool
	}{
		{"v3", "https://cn.apitd.net/fraud/promo/v3", true},
		{"v3", "http://127.0.0.1:9102/riskService", true},
		{"v3", "", true},
		{"v2", "https://cn.apitd.net/fraud/promo/v3", true}, // v3 takes v2's requests
		{"v3", "https://cn.apitd.net/fraud/promo/v2", false},
		{"v3", "https://cn.apitd.net/fraud/promo/v2/", false},
	} {
		t.Setenv("AGENT_TONGDUN_API_VERSION", tt.version)
		t.Setenv("AGENT_TONGDUN_URL", tt.url)
		_, err := Load()
		// The URL alone leaves TD partly configured: only the version's
		// error counts here.
		bad := err != nil && strings.Contains(err.Error(), "AGENT_TONGDUN_API_VERSION")
		if bad == tt.ok || bad && !strings.Contains(err.Error(), "AGENT_TONGDUN_URL") {
			t.Errorf("%s with %q: %v", tt.version, tt.url, err)
		}
	}
}
