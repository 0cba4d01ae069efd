// Package tencentsim is a simulator of Tencent Ads' user_actions/add
// endpoint: a real HTTP handler that checks what it receives the way the
// API does, records what it accepts, and injects faults on demand. Tests
// and demos mount it with httptest.NewServer or any http.Server.
//
// Codes it answers (HTTP 200 with {"code","message","message_cn"} unless
// said otherwise):
//
//	0      accepted
//	10000  system busy                        (Tencent; ErrorRate default)
//	11000  access token expired               (Tencent; TokenExpired fault)
//	11002  access token invalid (wrong token) (Tencent)
//	11005  access token empty                 (Tencent)
//	11008  app request limit exceeded         (Tencent; Throttle fault)
//	11014  out of the token's authority       (Tencent's code; OUR CHOICE to
//	       use it for an account_id / user_action_set_id that does not
//	       match the token: Tencent documents no code for this to us, and
//	       it must not look like a per-action error)
//	11016  per-second request limit reached   (Tencent; QuotaPerSecond)
//	11017  per-minute request limit reached   (Tencent; QuotaPerMinute)
//	11018  per-day request limit reached      (Tencent; ThrottleCode)
//	11019  much too frequent (the body's or developer's frequency control)
//	                                          (Tencent; ThrottleCode)
//	12000  access_token, timestamp or nonce missing (Tencent)
//	12001  timestamp malformed or more than 300 s off      (OUR CHOICE)
//	12002  nonce empty or longer than 32 characters        (OUR CHOICE)
//	12003  nonce already used within the 300 s window      (OUR CHOICE)
//	31001  invalid parameter: body not JSON, wrong Content-Type, unknown
//	       field, 0 or >50 actions, action_time missing, unknown
//	       action_type, no user_id nor trace.click_id, an outer_action_id
//	       not 1-255 of [A-Za-z0-9_], wechat_openid without wechat_app_id,
//	       wechat_openid or wechat_unionid not 1-64 bytes, trace.click_id
//	       over 64 bytes, no url from a WEB data source (Tencent's rules),
//	       a url that is not an absolute http(s) URL (OUR CHOICE of
//	       strictness: Tencent's reference says "page url"), BadActionIDs
//	       (OUR CHOICE of code; the message names the field and the index,
//	       e.g. "actions[3].action_type")
//	31002  body larger than 50 KiB                          (OUR CHOICE)
//
// Transport-level answers: 404 for another path, 405 for another method,
// Faults.HTTPStatus as is, a closed connection for Faults.Outage.
//
// Any rejection rejects the whole request and records nothing, as Tencent
// does. Messages end with " trace_id: <hex>" like Tencent's.
package tencentsim

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/outpost-agent/outpost/upstream/simctl"
)

// Protocol limits the simulator enforces.
const (
	Path           = "/v3.0/user_actions/add"
	MaxActions     = 50
	MaxBodyBytes   = 50 * 1024
	TimestampSkew  = 300 * time.Second
	MaxNonceLength = 32
	// MaxOuterActionID is the longest outer_action_id Tencent takes.
	MaxOuterActionID = 255
	// MaxWechatID bounds wechat_openid and wechat_unionid, MaxClickID
	// trace.click_id (bytes).
	MaxWechatID = 64
	MaxClickID  = 64
)

// Codes the simulator answers; see the package comment for which are ours.
const (
	CodeOK             = 0
	CodeSystemError    = 10000
	CodeTokenExpired   = 11000
	CodeTokenInvalid   = 11002
	CodeTokenEmpty     = 11005
	CodeThrottled      = 11008
	CodeOutOfAuthority = 11014
	CodeSecondQuota    = 11016
	CodeMinuteQuota    = 11017
	CodeDayQuota       = 11018
	CodeTooFrequent    = 11019
	CodeMissingAuth    = 12000
	CodeBadTimestamp   = 12001
	CodeBadNonce       = 12002
	CodeNonceReused    = 12003
	CodeInvalidParam   = 31001
	CodeBodyTooLarge   = 31002
)

// knownActionType reports the banking action types Tencent accepts here.
// The list is the simulator's own, not the agent's action package, so that
// a mistake there is caught here.
func knownActionType(t string) bool {
	switch t {
	case "FOLLOW", "REGISTER", "RESERVATION", "APPLY", "CONFIRM_EFFECTIVE_LEADS",
		"CREDIT", "COMPLETE_ORDER", "WITHDRAW_DEPOSITS", "SCANCODE",
		"DOWNLOAD_APP", "VIEW_CONTENT":
		return true
	}
	return false
}

// knownActionField reports the action keys of Tencent's v3 model
// (UserAction); anything else (our internal "track", say) is an unknown
// parameter. ext_info, Tencent's device details, is not taken here: the
// agent never sends it.
func knownActionField(k string) bool {
	switch k {
	case "outer_action_id", "action_time", "user_id", "action_type",
		"action_param", "trace", "channel", "url", "custom_action", "product_inform":
		return true
	}
	return false
}

// userIDKeys are the members of Tencent's v3 user_id (UserIdDn), all
// strings but caid_version, an integer.
var userIDKeys = map[string]bool{
	"hash_imei": true, "md5_sha256_imei": true, "hash_idfa": true, "md5_sha256_idfa": true,
	"hash_phone": true, "sha256_phone": true, "hash_android_id": true, "hash_oaid": true,
	"md5_sha256_oaid": true, "wechat_openid": true, "wechat_unionid": true, "wechat_app_id": true,
	"caid": true, "caid_version": true,
}

// knownChannel: Tencent's ActionChannelType.
func knownChannel(c string) bool {
	switch c {
	case "NATURAL", "TENCENT", "BYTEDANCE", "KUAISHOU", "ALIBABA", "BAIDU", "OTHERS", "MULTIPLE", "UNKNOWN":
		return true
	}
	return false
}

// knownContentType: Tencent's ActionProductInformType.
func knownContentType(c string) bool {
	switch c {
	case "EC", "ESTATE", "VIDEO", "CAR", "NEWS_INFORMATION", "BEAUTY_PERSONAL_CARE", "RETAIL", "EDUCATION",
		"READING", "INSURANCE", "LOAN", "FINANCIAL", "BANKCARD", "WEDDING", "SECURITIES",
		"DECORATION_BUILDING_MATERIAL", "CARRIER", "GAME":
		return true
	}
	return false
}

// Action is one accepted action as it came over the wire.
type Action struct {
	OuterActionID string         `json:"outer_action_id,omitempty"`
	ActionTime    int64          `json:"action_time"`
	UserID        map[string]any `json:"user_id,omitempty"`
	ActionType    string         `json:"action_type"`
	ActionParam   map[string]any `json:"action_param,omitempty"`
	Trace         *Trace         `json:"trace,omitempty"`
	Channel       string         `json:"channel,omitempty"`
	URL           string         `json:"url,omitempty"`
	CustomAction  string         `json:"custom_action,omitempty"`
	ProductInform *ProductInform `json:"product_inform,omitempty"`
}

// ProductInform is Tencent's product_inform.
type ProductInform struct {
	ContentType      string   `json:"content_type,omitempty"`
	ProductCatalogID string   `json:"product_catalog_id,omitempty"`
	ProductID        []string `json:"product_id,omitempty"`
	CategoryPath     []string `json:"category_path,omitempty"`
}

// Trace carries the ad click id.
type Trace struct {
	ClickID string `json:"click_id,omitempty"`
}

// Options configure a Server.
type Options struct {
	AccessToken     string
	AccountID       int64
	UserActionSetID int64
	// DataSourceType is the user action set's type; "WEB" requires every
	// action to carry its page url, as Tencent does for a web data source.
	DataSourceType string
	Clock          func() time.Time // default time.Now
}

// Faults are the injected failures: simctl.Faults, the one type of the
// three simulators. Tencent's are injected in this order: Latency, Outage,
// HTTPStatus, then (after the auth checks) TokenExpired, Throttle,
// ThrottleCode, QuotaPerSecond, QuotaPerMinute, ErrorRate, then (after the
// body checks) BadActionIDs, and Truncate, Cut or Oversize on an accepted
// request.
type Faults = simctl.Faults

// Stats is what GET /_sim/stats answers.
type Stats struct {
	Requests         int    `json:"requests"`
	AcceptedRequests int    `json:"accepted_requests"`
	Delivered        int    `json:"delivered"`
	Duplicates       int    `json:"duplicates"`
	Faults           Faults `json:"faults"`
}

// Server is the simulator; it is an http.Handler.
type Server struct {
	opts Options

	mu        sync.Mutex
	faults    Faults
	errAcc    float64
	requests  int
	accepted  int
	delivered []Action
	counts    map[string]int
	nonces    map[string]time.Time
	pruned    time.Time
	quotaMin  int64
	quotaUsed int
	quotaSec  int64
	secUsed   int
}

// New builds a Server.
func New(opts Options) *Server {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	return &Server{opts: opts, counts: map[string]int{}, nonces: map[string]time.Time{}}
}

// SetFaults replaces the injected faults.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.BadActionIDs = append([]string(nil), f.BadActionIDs...)
	s.faults = f
	s.errAcc = 0
}

// Delivered returns the unique accepted actions in arrival order.
func (s *Server) Delivered() []Action {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Action(nil), s.delivered...)
}

// DeliveryCount is how many times outerID was received in an accepted
// request, duplicates included.
func (s *Server) DeliveryCount(outerID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[outerID]
}

// Requests is how many requests reached the handler, whatever the answer.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Stats returns counters and the current faults.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Requests: s.requests, AcceptedRequests: s.accepted, Delivered: len(s.delivered), Faults: s.faults}
	for _, n := range s.counts {
		if n > 1 {
			st.Duplicates += n - 1
		}
	}
	st.Faults.BadActionIDs = append([]string(nil), s.faults.BadActionIDs...)
	return st
}

// ServeHTTP serves the API and the /_sim/ control endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/_sim/faults":
		s.serveFaults(w, r)
		return
	case "/_sim/stats":
		writeJSON(w, http.StatusOK, s.Stats())
		return
	}

	s.mu.Lock()
	s.requests++
	f := s.faults
	s.mu.Unlock()

	// Read the body before any delay: net/http only notices a client that
	// hung up once the body is consumed.
	raw, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(raw))
	if f.Before(w, r, s.opts.Clock(), nil) {
		return
	}
	if r.URL.Path != Path {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if code, msg := s.checkAuth(r, f); code != 0 {
		if throttling(code) {
			s.retryAfter(w, f)
		}
		s.answer(w, code, msg)
		return
	}
	if code, msg := s.injectedError(f); code != 0 {
		s.answer(w, code, msg)
		return
	}
	actions, code, msg := s.checkBody(r, f)
	if code != 0 {
		s.answer(w, code, msg)
		return
	}

	s.mu.Lock()
	s.accepted++
	for _, a := range actions {
		if a.OuterActionID != "" {
			s.counts[a.OuterActionID]++
			if s.counts[a.OuterActionID] > 1 {
				continue // Tencent de-duplicates on outer_action_id
			}
		}
		s.delivered = append(s.delivered, a)
	}
	s.mu.Unlock()

	full, _ := json.Marshal(s.body(CodeOK, ""))
	s.header(w)
	f.Write(w, http.StatusOK, full)
}

func (s *Server) checkAuth(r *http.Request, f Faults) (int, string) {
	q := r.URL.Query()
	for _, p := range []string{"access_token", "timestamp", "nonce"} {
		if !q.Has(p) {
			return CodeMissingAuth, "Missing required parameter: " + p + "."
		}
	}
	tok := q.Get("access_token")
	switch {
	case tok == "":
		return CodeTokenEmpty, "Access token is empty."
	case tok != s.opts.AccessToken:
		return CodeTokenInvalid, "Access token is invalid."
	case f.TokenExpired:
		return CodeTokenExpired, "Access token is expired."
	}
	now := s.opts.Clock()
	ts, err := strconv.ParseInt(q.Get("timestamp"), 10, 64)
	if err != nil {
		return CodeBadTimestamp, "timestamp: not a Unix time in seconds."
	}
	if d := now.Sub(time.Unix(ts, 0)); d > TimestampSkew || d < -TimestampSkew {
		return CodeBadTimestamp, fmt.Sprintf("timestamp: %d is more than %d seconds from server time %d.", ts, int(TimestampSkew.Seconds()), now.Unix())
	}
	nonce := q.Get("nonce")
	if nonce == "" || len(nonce) > MaxNonceLength {
		return CodeBadNonce, fmt.Sprintf("nonce: must be 1 to %d characters.", MaxNonceLength)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.pruned) > TimestampSkew/10 {
		// A nonce outside the timestamp window can never be replayed
		// successfully, so the map only needs the window; pruning now and
		// then keeps a fleet-sized run from scanning it on every request.
		s.pruned = now
		for n, seen := range s.nonces {
			if now.Sub(seen) > 2*TimestampSkew {
				delete(s.nonces, n)
			}
		}
	}
	if _, used := s.nonces[nonce]; used {
		return CodeNonceReused, "The nonce has been used before."
	}
	s.nonces[nonce] = now

	if f.Throttle {
		return CodeThrottled, throttleMessage(CodeThrottled)
	}
	if f.ThrottleCode != 0 {
		return f.ThrottleCode, throttleMessage(f.ThrottleCode)
	}
	if f.QuotaPerSecond > 0 {
		sec := now.Unix()
		if sec != s.quotaSec {
			s.quotaSec, s.secUsed = sec, 0
		}
		if s.secUsed >= f.QuotaPerSecond {
			return CodeSecondQuota, throttleMessage(CodeSecondQuota)
		}
		s.secUsed++
	}
	if f.QuotaPerMinute > 0 {
		minute := now.Unix() / 60
		if minute != s.quotaMin {
			s.quotaMin, s.quotaUsed = minute, 0
		}
		if s.quotaUsed >= f.QuotaPerMinute {
			return CodeMinuteQuota, throttleMessage(CodeMinuteQuota)
		}
		s.quotaUsed++
	}
	return 0, ""
}

// throttling reports the codes that say "slow down"; their answers carry
// Faults.RetryAfter as a Retry-After header when it is set.
func throttling(code int) bool {
	return code == CodeThrottled || code >= CodeSecondQuota && code <= CodeTooFrequent
}

// throttleMessage is Tencent's message for a throttling code (its error
// table, developers.e.qq.com/v3.0/docs/errors).
func throttleMessage(code int) string {
	switch code {
	case CodeThrottled:
		return "Application request limit has been exceeded."
	case CodeSecondQuota:
		return "Application has reached the request limit per second."
	case CodeMinuteQuota:
		return "Application has reached the request limit per minute."
	case CodeDayQuota:
		return "Application has reached the request limit per day."
	case CodeTooFrequent:
		return "Your request is much too frequent."
	}
	return "Request limit reached."
}

func (s *Server) injectedError(f Faults) (int, string) {
	if f.ErrorRate <= 0 {
		return 0, ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errAcc += f.ErrorRate
	if s.errAcc < 1 {
		return 0, ""
	}
	s.errAcc--
	code := f.ErrorCode
	if code == 0 {
		code = CodeSystemError
	}
	return code, "We are unable to process your request at this time. Please retry your request."
}

// request is the body; numbers are pointers so that "missing" is seen.
type request struct {
	AccountID       *int64            `json:"account_id"`
	UserActionSetID *int64            `json:"user_action_set_id"`
	Actions         []json.RawMessage `json:"actions"`
}

func (s *Server) checkBody(r *http.Request, f Faults) ([]Action, int, string) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, CodeInvalidParam, "Content-Type: must be application/json."
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, CodeInvalidParam, "body: could not be read."
	}
	if len(body) > MaxBodyBytes {
		return nil, CodeBodyTooLarge, fmt.Sprintf("body: larger than %d bytes.", MaxBodyBytes)
	}
	var req request
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, CodeInvalidParam, "body: " + err.Error()
	}
	switch {
	case req.AccountID == nil:
		return nil, CodeInvalidParam, "account_id: required."
	case req.UserActionSetID == nil:
		return nil, CodeInvalidParam, "user_action_set_id: required."
	case *req.AccountID != s.opts.AccountID:
		return nil, CodeOutOfAuthority, "account_id: not authorised for this access token."
	case *req.UserActionSetID != s.opts.UserActionSetID:
		return nil, CodeOutOfAuthority, "user_action_set_id: does not belong to account_id."
	case len(req.Actions) == 0:
		return nil, CodeInvalidParam, "actions: at least 1 action is required."
	case len(req.Actions) > MaxActions:
		return nil, CodeInvalidParam, fmt.Sprintf("actions: at most %d actions per request, got %d.", MaxActions, len(req.Actions))
	}
	bad := map[string]bool{}
	for _, id := range f.BadActionIDs {
		bad[id] = true
	}
	now := s.opts.Clock()
	out := make([]Action, 0, len(req.Actions))
	for i, raw := range req.Actions {
		a, field, why := checkAction(raw, now, s.opts.DataSourceType == "WEB")
		if why == "" && bad[a.OuterActionID] {
			field, why = "", "rejected by the platform."
		}
		if why != "" {
			name := fmt.Sprintf("actions[%d]", i)
			if field != "" {
				name += "." + field
			}
			return nil, CodeInvalidParam, name + ": " + why
		}
		out = append(out, a)
	}
	return out, 0, ""
}

// checkAction validates one action; on failure it names the field.
func checkAction(raw json.RawMessage, now time.Time, web bool) (Action, string, string) {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return Action{}, "", "must be a JSON object."
	}
	for k := range keys {
		if !knownActionField(k) {
			return Action{}, k, "unknown parameter."
		}
	}
	var a Action
	if err := json.Unmarshal(raw, &a); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Action{}, te.Field, "wrong type."
		}
		return Action{}, "", "malformed."
	}
	if _, ok := keys["action_time"]; !ok || a.ActionTime <= 0 {
		return a, "action_time", "required (Unix seconds)."
	}
	if a.ActionTime > now.Add(TimestampSkew).Unix() {
		return a, "action_time", "must not be in the future."
	}
	if _, ok := keys["outer_action_id"]; ok && !validOuterID(a.OuterActionID) {
		return a, "outer_action_id", "must be 1-255 characters of letters, digits and underscores."
	}
	if !knownActionType(a.ActionType) {
		return a, "action_type", fmt.Sprintf("unknown value %q.", a.ActionType)
	}
	if field, why := checkUserID(a.UserID); why != "" {
		return a, "user_id." + field, why
	}
	if a.Trace != nil && len(a.Trace.ClickID) > MaxClickID {
		return a, "trace.click_id", fmt.Sprintf("must be at most %d bytes.", MaxClickID)
	}
	if a.URL == "" && web {
		return a, "url", "required for a web data source."
	}
	if _, ok := keys["url"]; ok {
		if u, err := url.Parse(a.URL); err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return a, "url", "must be the page's absolute http(s) URL."
		}
	}
	if _, ok := keys["channel"]; ok && !knownChannel(a.Channel) {
		return a, "channel", fmt.Sprintf("unknown value %q.", a.Channel)
	}
	if raw, ok := keys["product_inform"]; ok {
		var p ProductInform
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return a, "product_inform", "invalid: " + err.Error()
		}
		if p.ContentType != "" && !knownContentType(p.ContentType) {
			return a, "product_inform.content_type", fmt.Sprintf("unknown value %q.", p.ContentType)
		}
	}
	hasUser := false
	for k, v := range a.UserID {
		if s, ok := v.(string); ok && s != "" && k != "wechat_app_id" {
			hasUser = true
		}
	}
	if !hasUser && (a.Trace == nil || a.Trace.ClickID == "") {
		return a, "user_id", "user_id or trace.click_id is required."
	}
	return a, "", ""
}

// checkUserID checks user_id's members: known, of the right type, WeChat
// ids 1-64 bytes, an openid with its app id.
func checkUserID(u map[string]any) (field, why string) {
	str := map[string]string{}
	for k, v := range u {
		if !userIDKeys[k] {
			return k, "unknown parameter."
		}
		if k == "caid_version" {
			if n, ok := v.(float64); !ok || n != float64(int64(n)) {
				return k, "wrong type."
			}
			continue
		}
		s, ok := v.(string)
		if !ok {
			return k, "wrong type."
		}
		str[k] = s
	}
	for _, k := range []string{"wechat_openid", "wechat_unionid"} {
		if v, ok := str[k]; ok && (v == "" || len(v) > MaxWechatID) {
			return k, fmt.Sprintf("must be 1-%d bytes.", MaxWechatID)
		}
	}
	if str["wechat_openid"] != "" && str["wechat_app_id"] == "" {
		return "wechat_app_id", "required with wechat_openid."
	}
	return "", ""
}

// validOuterID is Tencent's rule for outer_action_id: 1 to 255 letters,
// digits and underscores. (The simulator's own copy, not the agent's.)
func validOuterID(id string) bool {
	if len(id) == 0 || len(id) > MaxOuterActionID {
		return false
	}
	for _, ch := range []byte(id) {
		if !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '_') {
			return false
		}
	}
	return true
}

func (s *Server) serveFaults(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, s.Stats().Faults)
	case http.MethodPost, http.MethodPut:
		var f Faults
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&f); err != nil {
			http.Error(w, "bad faults: "+err.Error(), http.StatusBadRequest)
			return
		}
		s.SetFaults(f)
		writeJSON(w, http.StatusOK, s.Stats().Faults)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (s *Server) retryAfter(w http.ResponseWriter, f Faults) {
	f.SetRetryAfter(w.Header(), s.opts.Clock())
}

type answerBody struct {
	Code      int            `json:"code"`
	Message   string         `json:"message"`
	MessageCN string         `json:"message_cn"`
	Data      map[string]any `json:"data"`
}

func (s *Server) body(code int, msg string) answerBody {
	a := answerBody{Code: code, Data: map[string]any{}}
	if code != CodeOK {
		var b [16]byte
		rand.Read(b[:])
		tid := " trace_id: " + hex.EncodeToString(b[:])
		a.Message = msg + tid
		a.MessageCN = msg + tid
	}
	return a
}

// header sets the Date from the simulator's clock, which lets a client
// detect clock skew as it would against Tencent.
func (s *Server) header(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Date", s.opts.Clock().UTC().Format(http.TimeFormat))
}

func (s *Server) answer(w http.ResponseWriter, code int, msg string) {
	s.header(w)
	b, _ := json.Marshal(s.body(code, msg))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
