package fleet

import (
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
func (p *Producer) Collector() prometheus.Collector { return producerCollector{p} }

type producerCollector struct{ p *Producer }

func (c producerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPending, descLag, descWatermark, descAcked, descFailed, descPaused} {
		ch <- d
	}
}

func (c producerCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.p.Status()
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
