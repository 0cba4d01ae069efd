package main

import (
	"fmt"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds in an HDR histogram with 3
// significant digits (percentiles within 0.1%) from 1 µs to 10 minutes;
// the exact minimum and maximum are kept beside it.
const (
	histLowest  = 1
	histHighest = 10 * 60 * 1000 * 1000
	histDigits  = 3
)

type histogram struct {
	h        *hdrhistogram.Histogram
	min, max int64
}

func newHistogram() *histogram {
	return &histogram{h: hdrhistogram.New(histLowest, histHighest, histDigits)}
}

// record adds one latency in microseconds; values outside the range are
// clamped into it.
func (h *histogram) record(us int64) {
	if h.h.TotalCount() == 0 || us < h.min {
		h.min = us
	}
	if us > h.max {
		h.max = us
	}
	h.h.RecordValue(min(max(us, histLowest), histHighest))
}

func (h *histogram) summary() latencySummary {
	if h.h.TotalCount() == 0 {
		return latencySummary{}
	}
	return latencySummary{
		Count: h.h.TotalCount(),
		Min:   h.min,
		Mean:  h.h.Mean(),
		P50:   h.quantile(50),
		P90:   h.quantile(90),
		P99:   h.quantile(99),
		P999:  h.quantile(99.9),
		Max:   h.max,
	}
}

// quantile is the value at percentile q (0-100), never above the exact max
// (the histogram reports the top of a bucket).
func (h *histogram) quantile(q float64) int64 {
	return min(h.h.ValueAtQuantile(q), h.max)
}

// fmtMicros renders a latency in µs for people: 850µs, 1.23ms, 2.50s.
func fmtMicros(us int64) string {
	switch {
	case us < 1000:
		return fmt.Sprintf("%dµs", us)
	case us < 10_000:
		return fmt.Sprintf("%.2fms", float64(us)/1e3)
	case us < 1_000_000:
		return fmt.Sprintf("%.1fms", float64(us)/1e3)
	default:
		return fmt.Sprintf("%.2fs", float64(us)/1e6)
	}
}
