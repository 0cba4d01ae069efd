package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// KafkaConfigured says whether fleet mode is on.
func (k Config) KafkaConfigured() bool { return strings.TrimSpace(k.KafkaBrokers) != "" }

// ForwardViaKafka says whether the tencent queue goes to Kafka.
func (k Config) ForwardViaKafka() bool { return k.ForwardVia == "kafka" }

// Brokers is KAFKA_BROKERS split.
func (k Config) Brokers() []string {
	var out []string
	for _, b := range strings.Split(k.KafkaBrokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// SASLMechanisms are the KAFKA_SASL_MECHANISM values.
var SASLMechanisms = []string{"SCRAM-SHA-256", "SCRAM-SHA-512"}

func (k Config) validateKafka(bad func(name, format string, a ...any)) {
	switch k.ForwardVia {
	case "direct":
	case "kafka":
		if !k.KafkaConfigured() {
			bad("FORWARD_VIA", "is kafka but AGENT_KAFKA_BROKERS is empty")
		}
		if k.KafkaKeyFile == "" {
			bad("KAFKA_KEY_FILE", "must be set with AGENT_FORWARD_VIA=kafka: it keys the HMAC of the account in every action's record key")
		}
	default:
		bad("FORWARD_VIA", "%q is not direct or kafka", k.ForwardVia)
	}
	for _, b := range k.Brokers() {
		host, port, err := net.SplitHostPort(b)
		if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
			bad("KAFKA_BROKERS", "%q is not host:port", b)
		}
	}
	if !validTopicPart(k.KafkaTopicPrefix) || len(k.KafkaTopicPrefix) > 200 {
		bad("KAFKA_TOPIC_PREFIX", "%q must be 1-200 of [A-Za-z0-9._-]", k.KafkaTopicPrefix)
	}
	if !validTopicPart(k.KafkaGroup) {
		bad("KAFKA_GROUP", "%q must be 1-255 of [A-Za-z0-9._-]", k.KafkaGroup)
	}
	if k.AgentID != "" && (len(k.AgentID) > 64 || !validTopicPart(k.AgentID) || strings.Contains(k.AgentID, ":")) {
		bad("ID", "%q must be 1-64 of [A-Za-z0-9._-] (it starts every event id, <agent id>:<sequence>)", k.AgentID)
	}
	if k.KafkaKeyFile != "" {
		if _, err := ReadKeyFile(k.KafkaKeyFile); err != nil {
			bad("KAFKA_KEY_FILE", "%v", err)
		}
	}
	if k.KafkaTLSCAFile != "" {
		if b, err := os.ReadFile(k.KafkaTLSCAFile); err != nil {
			bad("KAFKA_TLS_CA_FILE", "%v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(b) {
			bad("KAFKA_TLS_CA_FILE", "%s holds no PEM certificate", k.KafkaTLSCAFile)
		}
	}
	if (k.KafkaTLSCertFile == "") != (k.KafkaTLSKeyFile == "") {
		bad("KAFKA_TLS_CERT_FILE", "AGENT_KAFKA_TLS_CERT_FILE and AGENT_KAFKA_TLS_KEY_FILE go together (the client certificate and its key)")
	} else if k.KafkaTLSCertFile != "" {
		if _, err := tls.LoadX509KeyPair(k.KafkaTLSCertFile, k.KafkaTLSKeyFile); err != nil {
			bad("KAFKA_TLS_CERT_FILE", "%v", err)
		}
	}
	if !k.KafkaTLS && (k.KafkaTLSCAFile != "" || k.KafkaTLSCertFile != "" || k.KafkaTLSServerName != "") {
		bad("KAFKA_TLS", "is false but TLS files or a server name are set; set AGENT_KAFKA_TLS=true")
	}
	switch k.KafkaSASLMechanism {
	case "":
		if k.KafkaSASLUser != "" || k.KafkaSASLPassFile != "" {
			bad("KAFKA_SASL_MECHANISM", "must be set (%s) when AGENT_KAFKA_SASL_USER or _PASSWORD_FILE is", strings.Join(SASLMechanisms, " or "))
		}
	case SASLMechanisms[0], SASLMechanisms[1]:
		if k.KafkaSASLUser == "" {
			bad("KAFKA_SASL_USER", "must be set with AGENT_KAFKA_SASL_MECHANISM")
		}
		if k.KafkaSASLPassFile == "" {
			bad("KAFKA_SASL_PASSWORD_FILE", "must be set with AGENT_KAFKA_SASL_MECHANISM")
		} else if _, err := ReadSecretFile(k.KafkaSASLPassFile); err != nil {
			bad("KAFKA_SASL_PASSWORD_FILE", "%v", err)
		}
	default:
		bad("KAFKA_SASL_MECHANISM", "%q is not %s", k.KafkaSASLMechanism, strings.Join(SASLMechanisms, " or "))
	}
	if k.KafkaStatusInterval < time.Second {
		bad("KAFKA_STATUS_INTERVAL", "must be at least 1s")
	}
	if k.FleetVelocity {
		if !k.KafkaConfigured() {
			bad("FLEET_VELOCITY", "is true but AGENT_KAFKA_BROKERS is empty: the fleet's counts travel on <prefix>.velocity.v1")
		}
		if k.KafkaKeyFile == "" {
			bad("KAFKA_KEY_FILE", "must be set with AGENT_FLEET_VELOCITY=true: it keys the hash of every counter's subject, the same on every agent")
		}
	}
	if k.FleetVelocityMaxAge < time.Second || k.FleetVelocityMaxAge > 24*time.Hour {
		bad("FLEET_VELOCITY_MAX_AGE", "must be between 1s and 24h")
	}
	if k.FleetVelocityMaxEntries < 1000 || k.FleetVelocityMaxEntries > 100_000_000 {
		bad("FLEET_VELOCITY_MAX_ENTRIES", "must be between 1000 and 100000000 (about 40 bytes of memory each)")
	}
	if k.FleetVelocityLookback < time.Minute || k.FleetVelocityLookback > 366*24*time.Hour {
		bad("FLEET_VELOCITY_LOOKBACK", "must be between 1m and 8784h (a year)")
	}
}

// FleetVelocityOn says whether the fleet's velocity counters are shared.
func (k Config) FleetVelocityOn() bool { return k.FleetVelocity && k.KafkaConfigured() }

func validTopicPart(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// ReadSecretFile reads a secret (a password) from a file not readable by
// group or others; a trailing newline is dropped.
func ReadSecretFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("secret file %s is readable by others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return s, nil
}
