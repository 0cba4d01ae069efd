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
	descRelayExpired   = prometheus.NewDesc("outpost_relay_expired_undelivered_total", "Records of the actions topic gone from the broker (retention, deletion) before a relay delivered them: lost. Alert on any.", nil, nil)
	descRelayParts     = prometheus.NewDesc("outpost_relay_assigned_partitions", "Partitions of the actions topic assigned to this relay.", nil, nil)
)

// Collector reads the relay's figures at scrape time.
func (r *Relay) Collector() prometheus.Collector { return RelayCollector(r.Status) }

// RelayCollector collects the figures status reports.
func RelayCollector(status func() RelayStatus) prometheus.Collector { return relayCollector{status} }

type relayCollector struct{ status func() RelayStatus }

func (c relayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRelayLag, descRelayCommitted, descRelayBuffered, descRelayDelivered, descRelayDups, descRelayDead, descRelayCommitErr, descRelayExpired, descRelayParts} {
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
	ch <- prometheus.MustNewConstMetric(descRelayExpired, prometheus.CounterValue, float64(st.Expired))
	ch <- prometheus.MustNewConstMetric(descRelayParts, prometheus.GaugeValue, float64(len(st.Partitions)))
}

// Metric descriptions of the fleet's velocity view.
var (
	descVelAge       = prometheus.NewDesc("outpost_fleet_velocity_age_seconds", "Time since the fleet's velocity view last held everything on the broker (-1: never in step).", nil, nil)
	descVelLive      = prometheus.NewDesc("outpost_fleet_velocity_live", "1 while the fleet view is at most AGENT_FLEET_VELOCITY_MAX_AGE old; 0 while decisions go on with the local view.", nil, nil)
	descVelLag       = prometheus.NewDesc("outpost_fleet_velocity_lag_records", "Records of the velocity topic's partition not yet merged.", []string{"partition"}, nil)
	descVelEntries   = prometheus.NewDesc("outpost_fleet_velocity_entries", "(subject, bucket) counts the fleet view holds in memory.", nil, nil)
	descVelMerged    = prometheus.NewDesc("outpost_fleet_velocity_merged_total", "The other agents' increments merged into the fleet view.", nil, nil)
	descVelDups      = prometheus.NewDesc("outpost_fleet_velocity_duplicates_total", "Increments skipped as already merged.", nil, nil)
	descVelOverCap   = prometheus.NewDesc("outpost_fleet_velocity_over_capacity_total", "Counts not kept for AGENT_FLEET_VELOCITY_MAX_ENTRIES.", nil, nil)
	descVelExpired   = prometheus.NewDesc("outpost_fleet_velocity_expired_unread_total", "Records of the velocity topic gone from the broker (retention, deletion) before this agent read them: increments never counted.", nil, nil)
	descVelNotQueued = prometheus.NewDesc("outpost_fleet_velocity_not_queued_total", "This agent's increments not queued for a full spool.", nil, nil)
)

// Collector reads the view's figures at scrape time.
func (v *Velocity) Collector() prometheus.Collector { return velocityCollector{v.Status, v.delay} }

// VelocityCollector exposes a fleet view's figures from status (the
// merge-delay histogram only comes with a Velocity's own Collector).
func VelocityCollector(status func() VelocityStatus) prometheus.Collector {
	return velocityCollector{status: status}
}

type velocityCollector struct {
	status func() VelocityStatus
	delay  prometheus.Histogram
}

func (c velocityCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descVelAge, descVelLive, descVelLag, descVelEntries, descVelMerged, descVelDups, descVelOverCap, descVelNotQueued, descVelExpired} {
		ch <- d
	}
	if c.delay != nil {
		c.delay.Describe(ch)
	}
}

func (c velocityCollector) Collect(ch chan<- prometheus.Metric) {
	if c.delay != nil {
		c.delay.Collect(ch)
	}
	st := c.status()
	age, live := -1.0, 0.0
	if st.AgeSeconds != nil {
		age = *st.AgeSeconds
	}
	if st.State == ViewLive {
		live = 1
	}
	ch <- prometheus.MustNewConstMetric(descVelAge, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(descVelLive, prometheus.GaugeValue, live)
	for p, s := range st.Partitions {
		ch <- prometheus.MustNewConstMetric(descVelLag, prometheus.GaugeValue, float64(s.Lag), p)
	}
	ch <- prometheus.MustNewConstMetric(descVelEntries, prometheus.GaugeValue, float64(st.Entries))
	ch <- prometheus.MustNewConstMetric(descVelMerged, prometheus.CounterValue, float64(st.Merged))
	ch <- prometheus.MustNewConstMetric(descVelDups, prometheus.CounterValue, float64(st.Duplicates))
	ch <- prometheus.MustNewConstMetric(descVelOverCap, prometheus.CounterValue, float64(st.OverCapacity))
	ch <- prometheus.MustNewConstMetric(descVelNotQueued, prometheus.CounterValue, float64(st.NotQueued))
	ch <- prometheus.MustNewConstMetric(descVelExpired, prometheus.CounterValue, float64(st.Expired))
}
