package action

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/outpost-agent/outpost/redact"
)

// Limits of a POST /v1/actions request.
const (
	MaxActions    = 1000                // actions per request
	MaxFuture     = 5 * time.Minute     // action_time may be at most this far after now
	MaxPast       = 30 * 24 * time.Hour // and at most this far before now
	maxProblems   = 100                 // problems listed before "... N more problems"
	maxIDLen      = 128
	maxWechatLen  = 64  // wechat_openid, wechat_unionid: Tencent's 1-64 bytes
	maxAppIDLen   = 128 // wechat_app_id (wx + 16 hex in practice)
	maxClickIDLen = 64  // trace.click_id: Tencent's at most 64 bytes
	maxCAIDLen    = 64  // caid (ours: CAIDs are 32 hex in practice)
	maxEcho       = 64  // characters of a caller's value echoed in a message
)

// FieldError is one problem with the request.
type FieldError struct {
	Field  string `json:"field"`  // e.g. "actions[2].action_param.credit_level"; "" for the whole body
	Reason string `json:"reason"` // human message, e.g. "must be 1, 2 or 3"
}

// ValidationError lists every problem found (not only the first), ordered by
// action index then field path, capped at 100 entries plus a final
// "... N more problems" entry.
type ValidationError struct{ Problems []FieldError }

func (e *ValidationError) Error() string {
	var sb strings.Builder
	sb.WriteString("invalid actions request")
	for i, p := range e.Problems {
		if i == 0 {
			sb.WriteString(": ")
		} else {
			sb.WriteString("; ")
		}
		if p.Field != "" {
			sb.WriteString(p.Field)
			sb.WriteString(": ")
		}
		sb.WriteString(p.Reason)
	}
	return sb.String()
}

// SyntaxError is malformed JSON, with the byte offset.
type SyntaxError struct {
	Offset int64
	Msg    string
}

func (e *SyntaxError) Error() string {
	return "malformed JSON at byte " + strconv.FormatInt(e.Offset, 10) + ": " + e.Msg
}

// Decode parses and validates a request body {"actions":[...]} against the
// rules, using now for the time window, and returns the normalised actions
// ready to store. On any problem it returns no actions and an error that is
// *SyntaxError or *ValidationError.
//
// Syntax is checked as encoding/json's Valid does (see validJSON); the
// validated text is then walked once without reflection. JSON null counts
// as absent. Duplicate keys in an object are an error.
//
// Decode keeps no reference to body: every string in the result (and in
// an error) is a copy, so the caller may reuse body once Decode returns.
func Decode(body []byte, now time.Time) ([]Action, error) {
	return DecodeWith(body, now, Options{})
}

// Options are the intake rules that depend on the deployment.
type Options struct {
	// DataSource is the type of the Tencent user action set (data source)
	// the actions go to (AGENT_TENCENT_DATA_SOURCE_TYPE): DataSourceWeb
	// makes url required. Empty: not said, url is optional.
	DataSource string
}

// Tencent's user action set types (AmUserActionSetType in its v3 model).
const (
	DataSourceWeb               = "WEB"
	DataSourceAndroid           = "ANDROID"
	DataSourceIOS               = "IOS"
	DataSourceOffline           = "OFFLINE"
	DataSourceWechat            = "WECHAT"
	DataSourceWechatMiniProgram = "WECHAT_MINI_PROGRAM"
	DataSourceWechatMiniGame    = "WECHAT_MINI_GAME"
	DataSourceHarmony           = "HARMONY"
)

// DataSourceTypes returns Tencent's user action set types.
func DataSourceTypes() []string {
	return []string{DataSourceWeb, DataSourceAndroid, DataSourceIOS, DataSourceOffline, DataSourceWechat,
		DataSourceWechatMiniProgram, DataSourceWechatMiniGame, DataSourceHarmony}
}

// DecodeWith is Decode under the deployment's options.
func DecodeWith(body []byte, now time.Time, o Options) ([]Action, error) {
	if !validJSON(body) && !json.Valid(body) {
		return nil, syntaxError(body)
	}
	v := validator{lo: now.Add(-MaxPast), hi: now.Add(MaxFuture), needURL: o.DataSource == DataSourceWeb}
	root := trimSpace(body)
	if !isObject(root) {
		v.add("", "request body must be a JSON object")
		return nil, v.err()
	}
	var (
		list  []byte // raw "actions" value
		stack [32][]byte
		elems = stack[:0] // raw elements of list, if it is an array
	)
	m := newMembers(root)
	for key, ok := m.key(); ok; key, ok = m.key() {
		switch {
		case string(key) != "actions":
			v.add(keyPath("", key), "unknown field")
			m.skip()
		case list != nil:
			v.add("actions", "duplicate key")
			m.skip()
		default:
			// Walk the array once, keeping each element's extent.
			list, elems = m.c.array(elems)
		}
	}
	var out []Action
	switch n := len(elems); {
	case list == nil || isNull(list):
		v.add("actions", "is required")
	case !isArray(list):
		v.add("actions", "must be an array")
	case n == 0 || n > MaxActions:
		v.add("actions", "must hold 1 to "+strconv.Itoa(MaxActions)+" actions, got "+strconv.Itoa(n))
	default:
		v.flush() // body-level problems come first
		v.n = n
		if n == 1 {
			// The common request: one allocation for the action and the
			// identifiers it may point to.
			one := new(single)
			out, v.users, v.traces = one.a[:], one.u[:0], one.t[:0]
		} else {
			out = make([]Action, n)
			v.ids = make(map[string]int, n)
		}
		for i, raw := range elems {
			v.action(i, raw, &out[i])
			v.flush()
		}
	}
	if v.failed() {
		return nil, v.err()
	}
	return out, nil
}

// single holds a one-action result with room for its user_id and trace.
type single struct {
	a [1]Action
	u [1]UserID
	t [1]Trace
}

// syntaxError reports why body is not valid JSON, with encoding/json's offset.
func syntaxError(body []byte) error {
	var x any
	err := json.Unmarshal(body, &x)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &SyntaxError{Offset: se.Offset, Msg: se.Error()}
	}
	return &SyntaxError{Offset: int64(len(body)), Msg: "invalid JSON"}
}

type validator struct {
	lo, hi  time.Time
	needURL bool           // the data source is WEB: url is required
	ids     map[string]int // valid ids seen so far -> action index
	cur     []FieldError   // problems of the current action, sorted on flush
	list    []FieldError
	more    int
	n       int // number of actions, to size the pools below
	users   []UserID
	traces  []Trace
}

func (v *validator) add(field, reason string) {
	if len(v.list) >= maxProblems {
		v.more++
		return
	}
	v.cur = append(v.cur, FieldError{field, reason})
	if len(v.cur) >= 4*maxProblems {
		v.trim() // bound memory on bodies with very many bad keys
	}
}

// trim sorts the current action's problems by field and keeps only as many
// as the list still has room for, counting the rest.
func (v *validator) trim() {
	slices.SortStableFunc(v.cur, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
	if room := maxProblems - len(v.list); len(v.cur) > room {
		v.more += len(v.cur) - room
		clear(v.cur[room:])
		v.cur = v.cur[:room]
	}
}

// flush moves the current action's problems, sorted by field, to the list.
func (v *validator) flush() {
	if len(v.cur) == 0 {
		return
	}
	v.trim()
	v.list = append(v.list, v.cur...)
	v.cur = v.cur[:0]
}

func (v *validator) failed() bool { v.flush(); return len(v.list) > 0 }

func (v *validator) err() error {
	v.flush()
	list := v.list
	if v.more > 0 {
		list = append(list, FieldError{"", "... " + strconv.Itoa(v.more) + " more problems"})
	}
	return &ValidationError{Problems: list}
}

// actionFields indexes the raw members of one action.
const (
	fID = iota
	fTrack
	fActionType
	fActionTime
	fUserID
	fTrace
	fActionParam
	fURL
	fChannel
	fCustomAction
	fProductInform
	nActionFields
)

var actionFieldNames = [nActionFields]string{"id", "track", "action_type", "action_time", "user_id", "trace", "action_param",
	"url", "channel", "custom_action", "product_inform"}

func fieldIndex(names []string, key []byte) int {
	for i, n := range names {
		if string(key) == n {
			return i
		}
	}
	return -1
}

// present reports whether a member was given with a non-null value.
func present(raw []byte) bool { return raw != nil && !isNull(raw) }

func path(i int, field string) string { return "actions[" + strconv.Itoa(i) + "]." + field }

// action validates actions[i] and fills a.
func (v *validator) action(i int, raw []byte, a *Action) {
	if !isObject(raw) {
		v.add("actions["+strconv.Itoa(i)+"]", "must be an object")
		return
	}
	var f [nActionFields][]byte
	m := newMembers(raw)
	for key, val, ok := m.next(); ok; key, val, ok = m.next() {
		k := fieldIndex(actionFieldNames[:], key)
		switch {
		case k < 0:
			v.add(keyPath("actions["+strconv.Itoa(i)+"]", key), "unknown field")
		case f[k] != nil:
			v.add(path(i, actionFieldNames[k]), "duplicate key")
		default:
			f[k] = val
		}
	}

	// id
	if !present(f[fID]) {
		v.add(path(i, "id"), "is required")
	} else if s, ok := unquote(f[fID]); !ok {
		v.add(path(i, "id"), "must be a string")
	} else if !validID(s) {
		v.add(path(i, "id"), "must be 1-128 characters of [A-Za-z0-9._:-]")
	} else if a.ID = string(s); redact.Personal(a.ID) != "" {
		// The id is Tencent's outer_action_id and is listed back: it must
		// not be personal data.
		v.add(path(i, "id"), "looks like "+redact.Personal(a.ID)+"; use an opaque id, such as a UUID")
	} else {
		if v.ids != nil {
			if j, dup := v.ids[a.ID]; dup {
				v.add(path(i, "id"), "duplicates actions["+strconv.Itoa(j)+"].id")
			} else {
				v.ids[a.ID] = i
			}
		}
	}

	// track and action_type
	track := -1
	if !present(f[fTrack]) {
		v.add(path(i, "track"), "is required")
	} else if s, ok := unquote(f[fTrack]); !ok {
		v.add(path(i, "track"), "must be a string")
	} else if track = lookupTrack(s); track < 0 {
		v.add(path(i, "track"), "unknown track "+echo(s)+" (must be one of "+strings.Join(TrackNames(), ", ")+")")
	} else {
		a.Track = trackRules[track].name
	}
	if !present(f[fActionType]) {
		v.add(path(i, "action_type"), "is required")
	} else if s, ok := unquote(f[fActionType]); !ok {
		v.add(path(i, "action_type"), "must be a string")
	} else if at, known := lookupActionType(s); !known {
		v.add(path(i, "action_type"), "unknown action_type "+echo(s))
	} else if track >= 0 && !trackAllows(track, at) {
		v.add(path(i, "action_type"), at+" is not allowed on track "+a.Track+
			" (allowed: "+strings.Join(trackRules[track].actions, ", ")+")")
	} else {
		a.ActionType = at
	}

	v.actionTime(i, f[fActionTime], a)
	hasUser := v.userID(i, f[fUserID], a)
	hasClick := v.trace(i, f[fTrace], a)
	if !hasUser && !hasClick {
		v.add(path(i, "user_id"), "user_id or trace.click_id is required")
	}
	v.params(i, f[fActionParam], a, track)
	v.url(i, f[fURL], a)
	v.channel(i, f[fChannel], a)
	v.customAction(i, f[fCustomAction], a)
	v.productInform(i, f[fProductInform], a)
}

func validID(s []byte) bool {
	if len(s) == 0 || len(s) > maxIDLen {
		return false
	}
	for _, ch := range s {
		switch {
		case 'a' <= ch && ch <= 'z', 'A' <= ch && ch <= 'Z', '0' <= ch && ch <= '9',
			ch == '.', ch == '_', ch == ':', ch == '-':
		default:
			return false
		}
	}
	return true
}

func (v *validator) actionTime(i int, raw []byte, a *Action) {
	const field = "action_time"
	if !present(raw) {
		v.add(path(i, field), "is required")
		return
	}
	var t time.Time
	switch {
	case raw[0] == '"':
		s, ok := unquote(raw)
		if !ok {
			v.add(path(i, field), "must be an RFC 3339 time string")
			return
		}
		var err error
		if t, err = time.Parse(time.RFC3339, string(s)); err != nil {
			v.add(path(i, field), "must be an RFC 3339 time such as 2026-11-23T10:15:00+08:00")
			return
		}
	case isInteger(raw):
		sec, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil { // out of int64 range: far outside the window either way
			if raw[0] == '-' {
				v.add(path(i, field), "is more than 30 days before now")
			} else {
				v.add(path(i, field), "is more than 5 minutes after now")
			}
			return
		}
		t = time.Unix(sec, 0)
	default:
		v.add(path(i, field), "must be an RFC 3339 time string or integer Unix seconds")
		return
	}
	switch {
	case t.After(v.hi):
		v.add(path(i, field), "is more than 5 minutes after now")
	case t.Before(v.lo):
		v.add(path(i, field), "is more than 30 days before now")
	default:
		a.ActionTime = t.Unix()
	}
}

// user_id members.
const (
	uPhone = iota
	uHashPhone
	uSHA256Phone
	uWechatOpenID
	uWechatAppID
	uWechatUnionID
	uHashIMEI
	uHashIDFA
	uHashOAID
	uHashAndroidID
	uMD5SHA256IMEI
	uMD5SHA256IDFA
	uMD5SHA256OAID
	uCAID
	uCAIDVersion
	nUserFields
)

var userFieldNames = [nUserFields]string{"phone", "hash_phone", "sha256_phone", "wechat_openid", "wechat_app_id", "wechat_unionid",
	"hash_imei", "hash_idfa", "hash_oaid", "hash_android_id", "md5_sha256_imei", "md5_sha256_idfa", "md5_sha256_oaid",
	"caid", "caid_version"}

// userID validates user_id and reports whether it names at least one
// identifier (valid or not). Values are never echoed.
func (v *validator) userID(i int, raw []byte, a *Action) bool {
	if !present(raw) {
		return false
	}
	if !isObject(raw) {
		v.add(path(i, "user_id"), "must be an object")
		return true // do not also demand an identifier
	}
	var f [nUserFields][]byte
	m := newMembers(raw)
	for key, val, ok := m.next(); ok; key, val, ok = m.next() {
		k := fieldIndex(userFieldNames[:], key)
		switch {
		case k < 0:
			v.add(keyPath(path(i, "user_id"), key), "unknown field")
		case f[k] != nil:
			v.add(path(i, "user_id."+userFieldNames[k]), "duplicate key")
		default:
			f[k] = val
		}
	}
	var u UserID
	given, bad := false, false
	for k := range f {
		if !present(f[k]) {
			continue
		}
		given = true
		name := userFieldNames[k]
		if k == uCAIDVersion {
			n, err := strconv.ParseInt(string(f[k]), 10, 32)
			if !isInteger(f[k]) || err != nil || n < 1 {
				v.add(path(i, "user_id."+name), "must be a positive integer")
				bad = true
				continue
			}
			u.CAIDVersion = n
			continue
		}
		s, ok := unquote(f[k])
		if !ok {
			v.add(path(i, "user_id."+name), "must be a string")
			bad = true
			continue
		}
		var (
			val    string
			reason string
		)
		switch k {
		case uPhone:
			val, ok = hashPhone(s)
			reason = "must be an 11-digit mainland China mobile number (optionally +86, spaces, dashes)"
		case uHashPhone, uHashIMEI, uHashIDFA, uHashOAID, uHashAndroidID:
			val, ok = lowerHex(s, 32)
			reason = "must be 32 hex characters (MD5)"
		case uSHA256Phone, uMD5SHA256IMEI, uMD5SHA256IDFA, uMD5SHA256OAID:
			val, ok = lowerHex(s, 64)
			reason = "must be 64 hex characters (SHA-256)"
		case uCAID:
			if ok = visibleASCII(s, maxCAIDLen); ok {
				val = string(s)
			}
			reason = "must be 1-64 printable ASCII characters"
		case uWechatAppID:
			if ok = visibleASCII(s, maxAppIDLen); ok {
				val = string(s)
			}
			reason = "must be 1-128 printable ASCII characters"
		default: // wechat_openid, wechat_unionid
			if ok = visibleASCII(s, maxWechatLen); ok {
				val = string(s)
			}
			reason = "must be 1-64 printable ASCII characters"
		}
		if !ok {
			v.add(path(i, "user_id."+name), reason)
			bad = true
			continue
		}
		*u.slot(k) = val
	}
	if present(f[uPhone]) && present(f[uHashPhone]) {
		v.add(path(i, "user_id"), "phone and hash_phone must not both be given")
		bad = true
	}
	// Tencent takes an openid only with the app it belongs to (openids
	// are per app); an app id names the app of an openid or a unionid.
	switch {
	case present(f[uWechatOpenID]) && !present(f[uWechatAppID]):
		v.add(path(i, "user_id.wechat_app_id"), "is required with wechat_openid")
		bad = true
	case present(f[uWechatAppID]) && !present(f[uWechatOpenID]) && !present(f[uWechatUnionID]):
		v.add(path(i, "user_id.wechat_app_id"), "is only allowed with wechat_openid or wechat_unionid")
		bad = true
	}
	if present(f[uCAIDVersion]) && !present(f[uCAID]) {
		v.add(path(i, "user_id.caid_version"), "is only allowed with caid")
		bad = true
	}
	if given && !bad {
		if v.users == nil {
			v.users = make([]UserID, 0, v.n) // one allocation for all actions
		}
		v.users = append(v.users, u)
		a.UserID = &v.users[len(v.users)-1]
	}
	return given
}

// slot returns the stored field for user_id member k; a raw phone is stored
// as its hash.
func (u *UserID) slot(k int) *string {
	switch k {
	case uPhone, uHashPhone:
		return &u.HashPhone
	case uSHA256Phone:
		return &u.SHA256Phone
	case uWechatOpenID:
		return &u.WechatOpenID
	case uWechatAppID:
		return &u.WechatAppID
	case uWechatUnionID:
		return &u.WechatUnionID
	case uHashIMEI:
		return &u.HashIMEI
	case uHashIDFA:
		return &u.HashIDFA
	case uHashOAID:
		return &u.HashOAID
	case uHashAndroidID:
		return &u.HashAndroidID
	case uMD5SHA256IMEI:
		return &u.MD5SHA256IMEI
	case uMD5SHA256IDFA:
		return &u.MD5SHA256IDFA
	case uMD5SHA256OAID:
		return &u.MD5SHA256OAID
	default:
		return &u.CAID
	}
}

// hashPhone normalises a mainland mobile number and returns the lower-case
// hex MD5 of its 11 digits.
func hashPhone(s []byte) (string, bool) {
	var buf [16]byte
	n := 0
	for _, ch := range s {
		if ch == ' ' || ch == '-' {
			continue
		}
		if n == len(buf) {
			return "", false
		}
		buf[n] = ch
		n++
	}
	d := buf[:n]
	switch {
	case n == 14 && string(d[:3]) == "+86":
		d = d[3:]
	case n == 13 && string(d[:2]) == "86":
		d = d[2:]
	}
	if len(d) != 11 || d[0] != '1' {
		return "", false
	}
	for _, ch := range d {
		if ch < '0' || ch > '9' {
			return "", false
		}
	}
	sum := md5.Sum(d)
	var out [32]byte
	hex.Encode(out[:], sum[:])
	return string(out[:]), true
}

// lowerHex checks s is exactly n hex digits and returns it in lower case.
func lowerHex(s []byte, n int) (string, bool) {
	if len(s) != n {
		return "", false
	}
	var buf [64]byte
	for j, ch := range s {
		switch {
		case '0' <= ch && ch <= '9', 'a' <= ch && ch <= 'f':
		case 'A' <= ch && ch <= 'F':
			ch += 'a' - 'A'
		default:
			return "", false
		}
		buf[j] = ch
	}
	return string(buf[:n]), true
}

func visibleASCII(s []byte, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for _, ch := range s {
		if ch < 0x21 || ch > 0x7e {
			return false
		}
	}
	return true
}

// trace validates trace and reports whether it names a click_id (valid or
// not).
func (v *validator) trace(i int, raw []byte, a *Action) bool {
	if !present(raw) {
		return false
	}
	if !isObject(raw) {
		v.add(path(i, "trace"), "must be an object")
		return true // do not also demand an identifier
	}
	var click []byte
	m := newMembers(raw)
	for key, val, ok := m.next(); ok; key, val, ok = m.next() {
		switch {
		case string(key) != "click_id":
			v.add(keyPath(path(i, "trace"), key), "unknown field")
		case click != nil:
			v.add(path(i, "trace.click_id"), "duplicate key")
		default:
			click = val
		}
	}
	if !present(click) {
		return false
	}
	s, ok := unquote(click)
	switch {
	case !ok:
		v.add(path(i, "trace.click_id"), "must be a string")
	case len(s) == 0 || len(s) > maxClickIDLen:
		v.add(path(i, "trace.click_id"), "must be 1-64 bytes")
	default:
		if v.traces == nil {
			v.traces = make([]Trace, 0, v.n)
		}
		v.traces = append(v.traces, Trace{ClickID: string(s)})
		a.Trace = &v.traces[len(v.traces)-1]
	}
	return true
}

// params validates action_param against the seed's section 3. track is the
// index of a valid track or -1; a.ActionType is "" unless valid.
func (v *validator) params(i int, raw []byte, a *Action, track int) {
	if !present(raw) {
		return
	}
	if !isObject(raw) {
		v.add(path(i, "action_param"), "must be an object")
		return
	}
	var seen [len(paramRules)]bool
	var vals [len(paramRules)]int
	var set [len(paramRules)]bool
	m := newMembers(raw)
	for key, val, ok := m.next(); ok; key, val, ok = m.next() {
		k := lookupParam(key)
		if k < 0 {
			v.add(keyPath(path(i, "action_param"), key), "unknown parameter")
			continue
		}
		rule := &paramRules[k]
		if seen[k] {
			v.add(path(i, "action_param."+rule.Name), "duplicate key")
			continue
		}
		seen[k] = true
		if isNull(val) {
			continue
		}
		if reason := applies(rule, track, a.ActionType); reason != "" {
			v.add(path(i, "action_param."+rule.Name), reason)
			continue
		}
		if !isInteger(val) {
			v.add(path(i, "action_param."+rule.Name), "must be an integer")
			continue
		}
		n, err := strconv.Atoi(string(val))
		if err != nil || n < rule.Min || n > rule.Max {
			v.add(path(i, "action_param."+rule.Name), rangeReason(rule))
			continue
		}
		vals[k], set[k] = n, true
	}
	var mp map[string]int
	for k := range set {
		if set[k] {
			if mp == nil {
				mp = make(map[string]int, 2)
			}
			mp[paramRules[k].Name] = vals[k]
		}
	}
	a.ActionParam = mp
}

// applies returns why rule does not apply to (track, actionType), or "".
// It says nothing when the track or action type is itself invalid: that is
// reported on its own field.
func applies(rule *ParamRule, track int, actionType string) string {
	if track < 0 || actionType == "" {
		return ""
	}
	onAction := false
	for _, ta := range rule.Applies {
		if ta.ActionType == actionType {
			if ta.Track == trackRules[track].name {
				return ""
			}
			onAction = true
		}
	}
	if !onAction {
		var acts []string
		for _, ta := range rule.Applies {
			if !slices.Contains(acts, ta.ActionType) {
				acts = append(acts, ta.ActionType)
			}
		}
		return "does not apply to " + actionType + " (only to " + strings.Join(acts, ", ") + ")"
	}
	var tracks []string
	for _, ta := range rule.Applies {
		if ta.ActionType == actionType {
			tracks = append(tracks, ta.Track)
		}
	}
	return "does not apply to " + actionType + " on track " + trackRules[track].name +
		" (only on " + strings.Join(tracks, ", ") + ")"
}

func rangeReason(rule *ParamRule) string {
	var sb strings.Builder
	sb.WriteString("must be ")
	for n := rule.Min; n <= rule.Max; n++ {
		switch {
		case n == rule.Min:
		case n == rule.Max:
			sb.WriteString(" or ")
		default:
			sb.WriteString(", ")
		}
		sb.WriteString(strconv.Itoa(n))
	}
	return sb.String()
}

// keyPath renders prefix + an unknown member key for a field path:
// ".key" for plain keys, `["key"]` otherwise, with the key passed through
// the same masking as echo.
func keyPath(prefix string, key []byte) string {
	e := mask(key)
	plain := e != ""
	for j := 0; j < len(e) && plain; j++ {
		ch := e[j]
		plain = 'a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '_' || ch == '-'
	}
	switch {
	case !plain:
		return prefix + "[" + strconv.Quote(e) + "]"
	case prefix == "":
		return e
	default:
		return prefix + "." + e
	}
}

// echo quotes a caller's value for an error message (see mask), numbers
// written with separators masked first (redact.Text).
func echo(s []byte) string { return strconv.Quote(mask([]byte(redact.Text(string(s))))) }

// mask makes a caller-supplied string safe to put in an error message: at
// most 64 characters, non-printable characters replaced by '?', and every
// run of 6 or more digits or of 16 or more hex characters replaced by "***",
// so that no phone, ID or card number, nor a hash of one, can leak through a
// misplaced value or key.
func mask(s []byte) string {
	out := make([]byte, 0, min(len(s), maxEcho)+8)
	chars := 0
	for j := 0; j < len(s) && chars < maxEcho; {
		if isHexDigit(s[j]) {
			end := j
			for end < len(s) && isHexDigit(s[end]) {
				end++
			}
			if end-j >= 16 {
				out = append(out, "***"...)
				chars += 3
				j = end
				continue
			}
			for j < end && chars < maxEcho {
				if !isDigit(s[j]) {
					out = append(out, s[j])
					chars++
					j++
					continue
				}
				d := j
				for d < end && isDigit(s[d]) {
					d++
				}
				if d-j >= 6 {
					out = append(out, "***"...)
					chars += 3
				} else {
					for ; j < d && chars < maxEcho; j++ {
						out = append(out, s[j])
						chars++
					}
				}
				j = d
			}
			j = end
			continue
		}
		r, size := utf8.DecodeRune(s[j:])
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			out = append(out, '?')
		} else {
			out = utf8.AppendRune(out, r)
		}
		chars++
		j += size
	}
	return string(out)
}

func isDigit(ch byte) bool { return '0' <= ch && ch <= '9' }
func isHexDigit(ch byte) bool {
	return isDigit(ch) || 'a' <= ch && ch <= 'f' || 'A' <= ch && ch <= 'F'
}
