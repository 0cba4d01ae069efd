package simctl

import (
	"encoding/json"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		``: 0, `null`: 0, `"250ms"`: 250 * time.Millisecond, `"1m"`: time.Minute, `1500000`: 1500 * time.Microsecond,
	} {
		got, err := ParseDuration(json.RawMessage(in))
		if err != nil || got != want {
			t.Errorf("ParseDuration(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{`"soon"`, `true`, `{}`} {
		if _, err := ParseDuration(json.RawMessage(in)); err == nil {
			t.Errorf("ParseDuration(%s) accepted", in)
		}
	}
}
