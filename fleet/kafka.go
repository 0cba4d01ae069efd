package fleet

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Conn is how to reach the bank's Kafka: the seed brokers, TLS and
// SASL/SCRAM (the AGENT_KAFKA_* settings).
type Conn struct {
	Brokers []string
	// TLS on; CAFile empty means the system roots. CertFile and KeyFile
	// are a client certificate for mutual TLS.
	TLS                                   bool
	CAFile, CertFile, KeyFile, ServerName string
	SASLMechanism, SASLUser, SASLPassword string
	// ClientID names the client to the brokers (their logs and quotas).
	ClientID string
	Logger   *slog.Logger
}

// options are the client options every fleet client shares.
func (c Conn) options() ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	if c.ClientID != "" {
		opts = append(opts, kgo.ClientID(c.ClientID))
	}
	if c.TLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return nil, fmt.Errorf("kafka TLS CA: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("kafka TLS CA: %s holds no PEM certificate", c.CAFile)
			}
		}
		if c.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("kafka TLS client certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	switch c.SASLMechanism {
	case "":
	case "SCRAM-SHA-256", "SCRAM-SHA-512":
		auth := scram.Auth{User: c.SASLUser, Pass: c.SASLPassword}
		if c.SASLMechanism == "SCRAM-SHA-256" {
			opts = append(opts, kgo.SASL(auth.AsSha256Mechanism()))
		} else {
			opts = append(opts, kgo.SASL(auth.AsSha512Mechanism()))
		}
	default:
		return nil, fmt.Errorf("kafka SASL mechanism %q is not SCRAM-SHA-256 or SCRAM-SHA-512", c.SASLMechanism)
	}
	return opts, nil
}

// connHook remembers the last failure to reach a broker, so a status can
// say why nothing is acknowledged (a wrong CA, a refused password, a
// broker that is down) while the client retries without end.
type connHook struct {
	set func(err error, at time.Time)
}

func (h connHook) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil {
		err = fmt.Errorf("connect to broker %s:%d: %w", meta.Host, meta.Port, err)
	}
	h.set(err, time.Now())
}

var _ kgo.HookBrokerConnect = connHook{}
