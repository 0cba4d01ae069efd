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

// fetchMaxBytes bounds what a fleet consumer (a relay, an agent's fleet
// velocity view) fetches from one broker at once: 1 MiB, and 1 MiB of one
// partition; the most a relay delivers in a third of a second. franz-go's
// default is 50 MiB a fetch: a relay draining a backlog of 100,000 actions
// in 24 partitions (one broker) peaked at 227 MiB of RSS, with 4 MiB
// fetches at 105 MiB and with 1 MiB at 68 MiB, at the same 27-30k
// actions/s, against its 256 MiB container limit (BENCHMARKS.md, session
// 16). A consumer still has a fetch in flight or buffered per broker, so
// its fetched bytes are at most 1 MiB times the brokers it reads from:
// bounding the fetches to fewer would leave a broker with new records
// waiting while another holds a fetch open for FetchMaxWait (franz-go's
// MaxConcurrentFetches). A broker still returns a record batch larger than
// this whole (Kafka's rule, so that a consumer always progresses); ours
// are at most 1 MiB.
const fetchMaxBytes = 1 << 20

// fetchOptions bound a consumer's fetches (fetchMaxBytes).
func fetchOptions() []kgo.Opt {
	return []kgo.Opt{
		kgo.FetchMaxBytes(fetchMaxBytes),
		kgo.FetchMaxPartitionBytes(1 << 20),
	}
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
