package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKafkaOffByDefault: nothing of fleet mode is on unless asked.
func TestKafkaOffByDefault(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.KafkaConfigured() || c.ForwardViaKafka() || c.KafkaTopicPrefix != "outpost" || c.KafkaGroup != "outpost-relay" || c.ForwardVia != "direct" || c.FleetVelocityOn() {
		t.Errorf("defaults: %+v", c)
	}
}

func TestKafkaSettings(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "fleet.key")
	os.WriteFile(key, []byte(strings.Repeat("ab", 32)+"\n"), 0o600)
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("s3cret\n"), 0o600)
	open := filepath.Join(dir, "open")
	os.WriteFile(open, []byte("s3cret\n"), 0o644)
	ok := map[string]string{
		"AGENT_KAFKA_BROKERS": "k1:9092, k2:9092", "AGENT_FORWARD_VIA": "kafka", "AGENT_KAFKA_KEY_FILE": key,
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // "" = valid; else the variable the error must name
	}{
		{"forward via kafka", ok, ""},
		{"scram", map[string]string{"AGENT_KAFKA_BROKERS": "k:9092", "AGENT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "AGENT_KAFKA_SASL_USER": "u", "AGENT_KAFKA_SASL_PASSWORD_FILE": pass}, ""},
		{"via kafka without brokers", map[string]string{"AGENT_FORWARD_VIA": "kafka", "AGENT_KAFKA_KEY_FILE": key}, "AGENT_FORWARD_VIA"},
		{"via kafka without key", map[string]string{"AGENT_FORWARD_VIA": "kafka", "AGENT_KAFKA_BROKERS": "k:9092"}, "AGENT_KAFKA_KEY_FILE"},
		{"via carrier pigeon", map[string]string{"AGENT_FORWARD_VIA": "pigeon"}, "AGENT_FORWARD_VIA"},
		{"broker without port", map[string]string{"AGENT_KAFKA_BROKERS": "k1"}, "AGENT_KAFKA_BROKERS"},
		{"bad prefix", map[string]string{"AGENT_KAFKA_TOPIC_PREFIX": "a b"}, "AGENT_KAFKA_TOPIC_PREFIX"},
		{"empty group", map[string]string{"AGENT_KAFKA_GROUP": "x/y"}, "AGENT_KAFKA_GROUP"},
		{"agent id with a colon", map[string]string{"AGENT_ID": "a:b"}, "AGENT_ID"},
		{"open key file", map[string]string{"AGENT_KAFKA_KEY_FILE": open}, "AGENT_KAFKA_KEY_FILE"},
		{"missing CA", map[string]string{"AGENT_KAFKA_TLS": "true", "AGENT_KAFKA_TLS_CA_FILE": filepath.Join(dir, "nope")}, "AGENT_KAFKA_TLS_CA_FILE"},
		{"CA not PEM", map[string]string{"AGENT_KAFKA_TLS": "true", "AGENT_KAFKA_TLS_CA_FILE": pass}, "AGENT_KAFKA_TLS_CA_FILE"},
		{"cert without key", map[string]string{"AGENT_KAFKA_TLS": "true", "AGENT_KAFKA_TLS_CERT_FILE": pass}, "AGENT_KAFKA_TLS_CERT_FILE"},
		{"TLS files without TLS", map[string]string{"AGENT_KAFKA_TLS_SERVER_NAME": "kafka.bank"}, "AGENT_KAFKA_TLS"},
		{"unknown mechanism", map[string]string{"AGENT_KAFKA_SASL_MECHANISM": "PLAIN"}, "AGENT_KAFKA_SASL_MECHANISM"},
		{"scram without user", map[string]string{"AGENT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "AGENT_KAFKA_SASL_PASSWORD_FILE": pass}, "AGENT_KAFKA_SASL_USER"},
		{"open password file", map[string]string{"AGENT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "AGENT_KAFKA_SASL_USER": "u", "AGENT_KAFKA_SASL_PASSWORD_FILE": open}, "AGENT_KAFKA_SASL_PASSWORD_FILE"},
		{"user without mechanism", map[string]string{"AGENT_KAFKA_SASL_USER": "u"}, "AGENT_KAFKA_SASL_MECHANISM"},
		{"status too often", map[string]string{"AGENT_KAFKA_STATUS_INTERVAL": "10ms"}, "AGENT_KAFKA_STATUS_INTERVAL"},
		{"fleet velocity", map[string]string{"AGENT_KAFKA_BROKERS": "k:9092", "AGENT_KAFKA_KEY_FILE": key, "AGENT_FLEET_VELOCITY": "true",
			"AGENT_FLEET_VELOCITY_MAX_AGE": "5s", "AGENT_FLEET_VELOCITY_MAX_ENTRIES": "5000000", "AGENT_FLEET_VELOCITY_LOOKBACK": "2h"}, ""},
		{"fleet velocity without brokers", map[string]string{"AGENT_FLEET_VELOCITY": "true", "AGENT_KAFKA_KEY_FILE": key}, "AGENT_FLEET_VELOCITY"},
		{"fleet velocity without the fleet secret", map[string]string{"AGENT_FLEET_VELOCITY": "true", "AGENT_KAFKA_BROKERS": "k:9092"}, "AGENT_KAFKA_KEY_FILE"},
		{"fleet velocity not a boolean", map[string]string{"AGENT_FLEET_VELOCITY": "sometimes"}, "AGENT_FLEET_VELOCITY"},
		{"fleet view never stale", map[string]string{"AGENT_FLEET_VELOCITY_MAX_AGE": "0s"}, "AGENT_FLEET_VELOCITY_MAX_AGE"},
		{"fleet view too small", map[string]string{"AGENT_FLEET_VELOCITY_MAX_ENTRIES": "10"}, "AGENT_FLEET_VELOCITY_MAX_ENTRIES"},
		{"fleet lookback too short", map[string]string{"AGENT_FLEET_VELOCITY_LOOKBACK": "1s"}, "AGENT_FLEET_VELOCITY_LOOKBACK"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := Load()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Errorf("taken; want an error naming %s", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want+":") && !strings.Contains(err.Error(), tc.want+"="):
				t.Errorf("error %q does not name %s", err, tc.want)
			}
		})
	}
	t.Setenv("AGENT_KAFKA_BROKERS", " k1:9092,,k2:9093 ")
	c, err := Load()
	if err != nil || strings.Join(c.Brokers(), "|") != "k1:9092|k2:9093" {
		t.Errorf("Brokers() = %q, %v", c.Brokers(), err)
	}
}
