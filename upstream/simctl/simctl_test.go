package simctl

import (
	"encoding/json"
	"reflect"
	"strings"
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

// One Faults type for the three simulators: durations as strings or
// numbers (nanoseconds for latency, seconds for retry_after, as a
// Retry-After header counts), codes as numbers or strings of digits.
func TestFaultsJSON(t *testing.T) {
	in := Faults{Latency: 150 * time.Millisecond, RetryAfter: 7 * time.Second, ErrorRate: 0.5, ErrorCode: 9201,
		Code: 303, BadActionIDs: []string{"a"}, Oversize: 1 << 20}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Faults
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) || !strings.Contains(string(b), `"latency":"150ms"`) || !strings.Contains(string(b), `"retry_after":"7s"`) {
		t.Fatalf("%s -> %+v", b, out)
	}
	for js, want := range map[string]Faults{
		`{"latency":1000000}`:                 {Latency: time.Millisecond},
		`{"retry_after":30}`:                  {RetryAfter: 30 * time.Second},
		`{"retry_after":"250ms"}`:             {RetryAfter: 250 * time.Millisecond},
		`{"code":"0004","error_code":"0001"}`: {Code: 4, ErrorCode: 1},
		`{"code":305}`:                        {Code: 305},
	} {
		var got Faults
		if err := json.Unmarshal([]byte(js), &got); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v, %v; want %+v", js, got, err, want)
		}
	}
	for _, js := range []string{`{"latency":"soon"}`, `{"code":"abc"}`, `{"retry_after":true}`} {
		var got Faults
		if err := json.Unmarshal([]byte(js), &got); err == nil {
			t.Errorf("%s accepted", js)
		}
	}
}
