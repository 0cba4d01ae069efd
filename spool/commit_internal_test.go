package spool

import "testing"

// Groups wait for the rest of a wave only after large groups, and stop
// waiting once load falls back to one caller at a time.
func TestWaveTracker(t *testing.T) {
	var w waveTracker
	if got := w.want(); got != 0 {
		t.Fatalf("idle: want %d, expected 0", got)
	}
	for range 20 {
		w.observe(1)
	}
	if got := w.want(); got != 0 {
		t.Errorf("one caller at a time: want %d, expected 0", got)
	}
	for range 40 {
		w.observe(64)
	}
	if got := w.want(); got < 28 || got > 32 {
		t.Errorf("waves of 64: want %d, expected about 32", got)
	}
	steps := 0
	for w.want() > 0 {
		w.observe(1)
		steps++
	}
	if steps > 30 {
		t.Errorf("took %d single-caller groups to stop waiting", steps)
	}
}
