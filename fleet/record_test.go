package fleet

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleRecord() Record {
	return Record{
		EventID: "branch-0042:17", AgentID: "branch-0042", Queue: "tencent", ID: "loan-app-000123",
		EnqueuedAt: time.Date(2026, 12, 4, 9, 30, 0, 123456789, time.UTC),
		Payload:    json.RawMessage(`{"id":"loan-app-000123","track":"personal_loan","action_type":"WITHDRAW_DEPOSITS","action_time":1796376600,"user_id":{"hash_phone":"e10adc3949ba59abbe56e057f20f883e"}}`),
	}
}

func TestRecordRoundTrip(t *testing.T) {
	r := sampleRecord()
	b, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"event_id":"branch-0042:17","agent_id":"branch-0042","queue":"tencent","id":"loan-app-000123","enqueued_at":"2026-12-04T09:30:00.123456789Z","payload":{"id":"loan-app-000123","track":"personal_loan","action_type":"WITHDRAW_DEPOSITS","action_time":1796376600,"user_id":{"hash_phone":"e10adc3949ba59abbe56e057f20f883e"}}}`
	if string(b) != want {
		t.Errorf("encoded:\n got %s\nwant %s", b, want)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	r.V = Version
	if !reflect.DeepEqual(got, r) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, r)
	}
	// The payload travels byte for byte as the spool stores it.
	if !bytes.Equal(got.Payload, r.Payload) {
		t.Errorf("payload changed: %s", got.Payload)
	}
}

func TestDecodeRefuses(t *testing.T) {
	good := `{"v":1,"event_id":"a:1","agent_id":"a","queue":"tencent","id":"x","enqueued_at":"2026-12-04T09:30:00Z","payload":{}}`
	if _, err := Decode([]byte(good)); err != nil {
		t.Fatalf("the good record: %v", err)
	}
	for _, tc := range []struct {
		name, value string
		want        error
	}{
		{"not json", `{"v":1`, ErrMalformed},
		{"no version", `{"event_id":"a:1"}`, ErrMalformed},
		{"version 2", strings.Replace(good, `"v":1`, `"v":2`, 1), ErrVersion},
		{"event id without sequence", strings.Replace(good, `"a:1"`, `"a"`, 1), ErrMalformed},
		{"event id with a signed sequence", strings.Replace(good, `"a:1"`, `"a:+1"`, 1), ErrMalformed},
		{"event id of another agent", strings.Replace(good, `"a:1"`, `"b:1"`, 1), ErrMalformed},
		{"no queue", strings.Replace(good, `"tencent"`, `""`, 1), ErrMalformed},
		{"no id", strings.Replace(good, `"id":"x"`, `"id":""`, 1), ErrMalformed},
		{"no time", strings.Replace(good, `"enqueued_at":"2026-12-04T09:30:00Z",`, ``, 1), ErrMalformed},
		{"payload not an object", strings.Replace(good, `"payload":{}`, `"payload":[1]`, 1), ErrMalformed},
		{"no payload", strings.Replace(good, `,"payload":{}`, ``, 1), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode([]byte(tc.value)); !errors.Is(err, tc.want) {
				t.Errorf("Decode(%s) = %v, want %v", tc.value, err, tc.want)
			}
		})
	}
}

func TestEncodeRefusesABadPayload(t *testing.T) {
	r := sampleRecord()
	r.Payload = json.RawMessage(`{"id":`)
	if _, err := Encode(r); !errors.Is(err, ErrMalformed) {
		t.Errorf("Encode = %v, want ErrMalformed", err)
	}
}

func TestEventID(t *testing.T) {
	id := EventID("0f3c2d1e-agent", 18446744073709551615)
	a, seq, err := ParseEventID(id)
	if err != nil || a != "0f3c2d1e-agent" || seq != 18446744073709551615 {
		t.Errorf("ParseEventID(%q) = %q, %d, %v", id, a, seq, err)
	}
	for _, bad := range []string{"", ":1", "a:", "a:x", "a b:1", "a:-1"} {
		if _, _, err := ParseEventID(bad); err == nil {
			t.Errorf("ParseEventID(%q) took it", bad)
		}
	}
}

func TestIdentity(t *testing.T) {
	for _, tc := range []struct{ payload, want string }{
		{`{"id":"x","user_id":{"hash_phone":"h1","hash_imei":"i"}}`, "hash_phone:h1"},
		{`{"id":"x","user_id":{"sha256_phone":"s","hash_oaid":"o"}}`, "sha256_phone:s"},
		{`{"id":"x","user_id":{"wechat_openid":"o1","wechat_app_id":"wx9"}}`, "wechat_openid:wx9/o1"},
		{`{"id":"x","user_id":{"wechat_unionid":"u","wechat_openid":"o1"}}`, "wechat_unionid:u"},
		{`{"id":"x","user_id":{"hash_idfa":"f"}}`, "hash_idfa:f"},
		{`{"id":"x","user_id":{"caid":"c1","caid_version":20230330}}`, "caid:c1"},
		{`{"id":"x","user_id":{"md5_sha256_oaid":"m","caid":"c1"}}`, "md5_sha256_oaid:m"},
		{`{"id":"x","trace":{"click_id":"c7"}}`, "click_id:c7"},
		{`{"id":"x","user_id":{"hash_oaid":"o"},"trace":{"click_id":"c7"}}`, "hash_oaid:o"},
		{`{"id":"x"}`, "id:x"},
		{`{"id":"x","user_id":{"hash_phone":7}}`, "id:x"}, // not a string: not an identifier
	} {
		got, err := Identity([]byte(tc.payload))
		if err != nil || got != tc.want {
			t.Errorf("Identity(%s) = %q, %v; want %q", tc.payload, got, err, tc.want)
		}
	}
	if _, err := Identity([]byte(`{}`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("Identity of nothing = %v", err)
	}
}

// TestAccountKey pins the key: every agent of a fleet, whatever its
// version, must map an account to the same key (and so partition).
func TestAccountKey(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	k := AccountKey(secret, "hash_phone:e10adc3949ba59abbe56e057f20f883e")
	if len(k) != 64 || strings.Contains(k, "e10adc") {
		t.Fatalf("key %q", k)
	}
	if k != AccountKey(secret, "hash_phone:e10adc3949ba59abbe56e057f20f883e") {
		t.Error("not stable")
	}
	if k == AccountKey(bytes.Repeat([]byte{8}, 32), "hash_phone:e10adc3949ba59abbe56e057f20f883e") {
		t.Error("the secret does not change the key")
	}
	if want := "75e1dbfe6dbcd9662448484fc4bb6278009664e9bfc92cff76933404eeba7d97"; k != want {
		t.Errorf("key = %s, want %s: changing it moves every account to another partition", k, want)
	}
}

func TestTopics(t *testing.T) {
	if got := Topic("bank-a", KindActions); got != "bank-a.actions.v1" {
		t.Error(got)
	}
	if got := Schema(KindDecisions); got != "outpost.decisions.v1" {
		t.Error(got)
	}
}
