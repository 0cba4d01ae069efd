package fleet

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric descriptions of the producer (the agent's Kafka side).
var (
	descPending   = prometheus.NewDesc("outpost_kafka_produce_pending_records", "Records handed to the Kafka client and not yet acknowledged by the broker.", nil, nil)
	descLag       = prometheus.NewDesc("outpost_kafka_produce_lag_seconds", "Age of the oldest record not yet acknowledged by the broker (0 when none): the produce lag.", nil, nil)
	descWatermark = prometheus.NewDesc("outpost_kafka_acknowledged_watermark", "Spool sequence up to which every entry of the queue is acknowledged by the broker.", []string{"queue"}, nil)
	descAcked     = prometheus.NewDesc("outpost_kafka_acknowledged_total", "Records of the queue acknowledged by the broker.", []string{"queue"}, nil)
	descFailed    = prometheus.NewDesc("outpost_kafka_produce_failures_total", "Records of the queue answered with an error (retried, paused or dead-lettered).", []string{"queue"}, nil)
	descPaused    = prometheus.NewDesc("outpost_kafka_producer_paused", "1 while the brokers refuse what only an operator can fix (credentials, ACLs, a missing topic).", nil, nil)
)

// Collector reads the producer's figures at scrape time.
func (p *Producer) Collector() prometheus.Collector { return ProducerCollector(p.Status) }

// ProducerCollector collects the figures status reports (the alert rules'
// test scrapes it with a made-up status).
func ProducerCollector(status func() ProducerStatus) prometheus.Collector {
	return producerCollector{status}
}

type producerCollector struct{ status func() ProducerStatus }

func (c producerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPending, descLag, descWatermark, descAcked, descFailed, descPaused} {
		ch <- d
	}
}

func (c producerCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(st.Pending))
	ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, st.OldestPendingSeconds)
	paused := 0.0
	if st.State == "paused" {
		paused = 1
	}
	ch <- prometheus.MustNewConstMetric(descPaused, prometheus.GaugeValue, paused)
	for q, s := range st.Queues {
		ch <- prometheus.MustNewConstMetric(descWatermark, prometheus.GaugeValue, float64(s.Watermark), q)
		ch <- prometheus.MustNewConstMetric(descAcked, prometheus.CounterValue, float64(s.Acknowledged), q)
		ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(s.Failed), q)
	}
}

// Metric descriptions of a relay.
var (
	descRelayLag       = prometheus.NewDesc("outpost_relay_lag_records", "Records of the partition past the relay's committed offset (high watermark minus committed).", []string{"topic", "partition"}, nil)
	descRelayCommitted = prometheus.NewDesc("outpost_relay_committed_offset", "The relay's committed offset of the partition.", []string{"topic", "partition"}, nil)
	descRelayBuffered  = prometheus.NewDesc("outpost_relay_buffered_records", "Records fetched by the relay and without a final verdict.", nil, nil)
	descRelayDelivered = prometheus.NewDesc("outpost_relay_delivered_total", "Records the relay delivered to Tencent.", nil, nil)
	descRelayDups      = prometheus.NewDesc("outpost_relay_duplicates_skipped_total", "Records skipped because their event id was delivered before.", nil, nil)
	descRelayDead      = prometheus.NewDesc("outpost_relay_dead_letters_total", "Records the relay produced to the dead-letter topic (refused by Tencent, or malformed).", nil, nil)
	descRelayCommitErr = prometheus.NewDesc("outpost_relay_commit_errors_total", "Offset commits that failed (the next commit carries the offsets again).", nil, nil)
	descRelayParts     = prometheus.NewDesc("outpost_relay_assigned_partitions", "Partitions of the actions topic assigned to this relay.", nil, nil)
)

// Collector reads the relay's figures at scrape time.
func (r *Relay) Collector() prometheus.Collector { return RelayCollector(r.Status) }

// RelayCollector collects the figures status reports.
func RelayCollector(status func() RelayStatus) prometheus.Collector { return relayCollector{status} }

type relayCollector struct{ status func() RelayStatus }

func (c relayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRelayLag, descRelayCommitted, descRelayBuffered, descRelayDelivered, descRelayDups, descRelayDead, descRelayCommitErr, descRelayParts} {
		ch <- d
	}
}

func (c relayCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	for _, p := range st.Partitions {
		part := strconv.Itoa(int(p.Partition))
		if p.Lag >= 0 {
			ch <- prometheus.MustNewConstMetric(descRelayLag, prometheus.GaugeValue, float64(p.Lag), st.Topic, part)
		}
		ch <- prometheus.MustNewConstMetric(descRelayCommitted, prometheus.GaugeValue, float64(p.Committed), st.Topic, part)
	}
	ch <- prometheus.MustNewConstMetric(descRelayBuffered, prometheus.GaugeValue, float64(st.Buffered))
	ch <- prometheus.MustNewConstMetric(descRelayDelivered, prometheus.CounterValue, float64(st.Delivered))
	ch <- prometheus.MustNewConstMetric(descRelayDups, prometheus.CounterValue, float64(st.Duplicates))
	ch <- prometheus.MustNewConstMetric(descRelayDead, prometheus.CounterValue, float64(st.DeadLetters))
	ch <- prometheus.MustNewConstMetric(descRelayCommitErr, prometheus.CounterValue, float64(st.CommitErrors))
	ch <- prometheus.MustNewConstMetric(descRelayParts, prometheus.GaugeValue, float64(len(st.Partitions)))
}
