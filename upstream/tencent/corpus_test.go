package tencent

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/action"
	"github.com/outpost-agent/outpost/upstream"
	"github.com/outpost-agent/outpost/upstream/tencent/tencentsim"
)

// The request model of Tencent's v3.0 user_actions/add, written by hand
// from its reference and the official Go SDK's model (UserActionsAddRequest,
// UserAction, UserIdDn, Trace, ProductInform, DeviceInfo): field names and
// types only. The agent's own types are not used, so that a field the
// client adds, renames or mistypes is caught here.
type v3Request struct {
	AccountID       int64      `json:"account_id"`
	UserActionSetID int64      `json:"user_action_set_id"`
	Actions         []v3Action `json:"actions"`
}

type v3Action struct {
	ActionTime    int64            `json:"action_time"`
	UserID        *v3UserID        `json:"user_id"`
	ActionType    string           `json:"action_type"`
	OuterActionID string           `json:"outer_action_id"`
	ActionParam   map[string]any   `json:"action_param"`
	CustomAction  string           `json:"custom_action"`
	Trace         *v3Trace         `json:"trace"`
	URL           string           `json:"url"`
	ProductInform *v3ProductInform `json:"product_inform"`
	Channel       string           `json:"channel"`
	ExtInfo       *v3DeviceInfo    `json:"ext_info"`
}

type v3UserID struct {
	HashImei      string `json:"hash_imei"`
	Md5Sha256Imei string `json:"md5_sha256_imei"`
	HashIdfa      string `json:"hash_idfa"`
	Md5Sha256Idfa string `json:"md5_sha256_idfa"`
	HashPhone     string `json:"hash_phone"`
	Sha256Phone   string `json:"sha256_phone"`
	HashAndroidID string `json:"hash_android_id"`
	HashOaid      string `json:"hash_oaid"`
	Md5Sha256Oaid string `json:"md5_sha256_oaid"`
	WechatOpenid  string `json:"wechat_openid"`
	WechatUnionid string `json:"wechat_unionid"`
	WechatAppID   string `json:"wechat_app_id"`
	Caid          string `json:"caid"`
	CaidVersion   int64  `json:"caid_version"`
}

type v3Trace struct {
	ClickID string `json:"click_id"`
}

type v3ProductInform struct {
	ContentType      string   `json:"content_type"`
	ProductCatalogID string   `json:"product_catalog_id"`
	ProductID        []string `json:"product_id"`
	CategoryPath     []string `json:"category_path"`
}

type v3DeviceInfo struct {
	PackageName string `json:"package_name"`
	AppVersion  string `json:"app_version"`
	Mac         string `json:"mac"`
	DeviceBrand string `json:"device_brand"`
	Model       string `json:"model"`
	OsVersion   string `json:"os_version"`
	Language    string `json:"language"`
	IP          string `json:"ip"`
	UserAgent   string `json:"user_agent"`
	WifiName    string `json:"wifi_name"`
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// tencentID is Tencent's rule for an id in a request: outer_action_id.
var tencentID = regexp.MustCompile(`^[A-Za-z0-9_]{1,255}$`)

// checkShape decodes a request body the client sent into Tencent's
// model, unknown fields disallowed, and checks every id in it.
func checkShape(t *testing.T, body string) v3Request {
	t.Helper()
	var req v3Request
	dec := json.NewDecoder(bytes.NewReader([]byte(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		t.Fatalf("body does not fit Tencent's v3 model: %v\n%s", err, body)
	}
	if req.AccountID != account || req.UserActionSetID != set || len(req.Actions) == 0 || len(req.Actions) > MaxActionsPerRequest {
		t.Fatalf("envelope: account %d set %d, %d actions", req.AccountID, req.UserActionSetID, len(req.Actions))
	}
	for i, a := range req.Actions {
		if !tencentID.MatchString(a.OuterActionID) {
			t.Fatalf("actions[%d].outer_action_id %q is not ^[A-Za-z0-9_]{1,255}$", i, a.OuterActionID)
		}
		if a.ActionTime <= 0 || a.ActionType == "" {
			t.Fatalf("actions[%d]: action_time %d, action_type %q", i, a.ActionTime, a.ActionType)
		}
	}
	return req
}

// corpusNow is the reference clock of the corpus: 2026-11-23T10:20:00+08:00.
var corpusNow = time.Date(2026, 11, 23, 2, 20, 0, 0, time.UTC)

// loadCorpus decodes testdata/valid_actions.json as the local API does:
// every action in it must still be accepted.
func loadCorpus(t *testing.T) []action.Action {
	t.Helper()
	b, err := os.ReadFile("testdata/valid_actions.json")
	if err != nil {
		t.Fatal(err)
	}
	acts, err := action.Decode(b, corpusNow)
	if err != nil {
		t.Fatalf("the corpus of valid actions is refused at intake: %v", err)
	}
	return acts
}

// TestCorpusDelivers: a fixed corpus of valid actions (every track and
// action type of the banking seed, every user_id form, ids with '.', ':'
// and '-', the README's examples, the optional fields, the longest
// values) is accepted at intake and, stored as the local API stores it,
// delivered whole through the real client to the simulator, which checks
// each of Tencent's rules: 100%, each under its Tencent-safe id, with what
// was posted; those with a url also to a web data source. Every request
// body fits Tencent's v3 model.
func TestCorpusDelivers(t *testing.T) {
	all := loadCorpus(t)
	if len(all) < 30 {
		t.Fatalf("corpus of %d actions", len(all))
	}
	clock := func() time.Time { return corpusNow }
	var web []action.Action // the actions from web pages
	for _, a := range all {
		if a.URL != "" {
			web = append(web, a)
		}
	}
	if len(web) < 5 {
		t.Fatalf("only %d actions with a url in the corpus", len(web))
	}
	for source, acts := range map[string][]action.Action{"": all, "WEB": web} {
		sim := tencentsim.New(tencentsim.Options{AccessToken: testToken, AccountID: account, UserActionSetID: set, DataSourceType: source, Clock: clock})
		rec := &recorder{next: sim}
		ts := httptest.NewServer(rec)
		c := newClient(t, ts.URL, nil, func(c *Config) { c.Clock = clock })
		items := make([]upstream.Item, len(acts))
		for i := range acts {
			items[i] = upstream.Item{ID: acts[i].ID, Payload: acts[i].AppendJSON(nil)}
		}
		for _, r := range c.Send(context.Background(), items) {
			if r.Verdict.Outcome != upstream.Delivered {
				t.Fatalf("data source %q: %s not delivered: %+v", source, r.ID, r.Verdict)
			}
		}
		got := map[string]tencentsim.Action{}
		for _, d := range sim.Delivered() {
			got[d.OuterActionID] = d
		}
		if len(got) != len(acts) {
			t.Fatalf("simulator holds %d distinct actions of %d", len(got), len(acts))
		}
		for _, a := range acts {
			d, ok := got[action.OuterActionID(a.ID)]
			if !ok {
				t.Fatalf("%s not delivered under %s", a.ID, action.OuterActionID(a.ID))
			}
			if d.ActionType != a.ActionType || d.ActionTime != a.ActionTime || d.URL != a.URL || d.Channel != a.Channel ||
				d.CustomAction != a.CustomAction || (a.Trace == nil) != (d.Trace == nil) || len(d.ActionParam) != len(a.ActionParam) {
				t.Fatalf("%s delivered as %+v, posted as %+v", a.ID, d, a)
			}
			var want map[string]any
			if a.UserID != nil {
				b, _ := json.Marshal(a.UserID)
				json.Unmarshal(b, &want)
			}
			if gotU, _ := json.Marshal(d.UserID); string(gotU) != string(must(json.Marshal(want))) {
				t.Fatalf("%s: user_id delivered %s, posted %+v", a.ID, gotU, a.UserID)
			}
		}
		if n := rec.requests.Load(); n != int64((len(acts)+49)/50) {
			t.Fatalf("%d requests for %d actions", n, len(acts))
		}
		for _, body := range rec.bodies {
			checkShape(t, body)
		}
		ts.Close()
	}
}

// TestShapeOfEveryRequest: whatever path a body takes through the client
// (a whole batch, bisection's halves after a rejection, the resend after a
// lost answer), it fits Tencent's v3 model and its ids Tencent's rule.
func TestShapeOfEveryRequest(t *testing.T) {
	acts := loadCorpus(t)
	clock := func() time.Time { return corpusNow }
	sim := tencentsim.New(tencentsim.Options{AccessToken: testToken, AccountID: account, UserActionSetID: set, Clock: clock})
	sim.SetFaults(tencentsim.Faults{BadActionIDs: []string{action.OuterActionID(acts[7].ID)}})
	rec := &recorder{next: sim}
	ts := httptest.NewServer(rec)
	defer ts.Close()
	c := newClient(t, ts.URL, nil, func(c *Config) { c.Clock = clock })
	items := make([]upstream.Item, len(acts))
	for i := range acts {
		items[i] = upstream.Item{ID: acts[i].ID, Payload: acts[i].AppendJSON(nil)}
	}
	c.Send(context.Background(), items)
	sim.SetFaults(tencentsim.Faults{Truncate: true})
	c.Send(context.Background(), items[:3])
	if len(rec.bodies) < 5 {
		t.Fatalf("%d requests: bisection did not run, the test proves little", len(rec.bodies))
	}
	for _, body := range rec.bodies {
		checkShape(t, body)
	}
}
