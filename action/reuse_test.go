package action_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/outpost-agent/outpost/action"
)

// TestDecodeKeepsNoReferenceToBody: the local API decodes from a pooled
// buffer and reuses it once Decode returns, so neither the actions nor an
// error may point into the body.
func TestDecodeKeepsNoReferenceToBody(t *testing.T) {
	bodies := [][]byte{
		benchBody(1), benchBody(3),
		[]byte(`{"actions":[{"id":"\u0069d","track":"payment","action_type":"REGISTER","action_time":1795400100,` +
			`"user_id":{"wechat_openid":"o\u00e9","wechat_app_id":"wx1","hash_imei":"0123456789ABCDEF0123456789abcdef","sha256_phone":"` +
			"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + `"},"trace":{"click_id":"c\"k"}}]}`),
		[]byte(`{"actions":[{"id":"bad id","track":"nope","action_type":"NOPE","action_time":"x","weird key":1,"user_id":{"x":1}}],"other":2}`),
		[]byte(`{"actions":[{"id":`),
	}
	for _, in := range bodies {
		acts, err := action.Decode(in, now)
		before, _ := json.Marshal(acts)
		var msg string
		if err != nil {
			msg = err.Error()
		}
		var snapshot []action.Action
		json.Unmarshal(before, &snapshot)
		for i := range in {
			in[i] = 'X'
		}
		after, _ := json.Marshal(acts)
		if string(after) != string(before) {
			t.Fatalf("actions changed with the body:\n%s\n%s", before, after)
		}
		if err != nil && err.Error() != msg {
			t.Fatalf("error changed with the body:\n%s\n%s", msg, err.Error())
		}
		if len(acts) > 0 && !reflect.DeepEqual(acts, snapshot) {
			t.Fatalf("actions %+v, want %+v", acts, snapshot)
		}
	}
}
