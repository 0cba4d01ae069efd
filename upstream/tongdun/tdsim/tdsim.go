// Package tdsim is a TongDun risk verification simulator: a real HTTP handler
// that checks what it receives the way TD does (credentials, Content-Type,
// one event per request, the 9001-9004 rules, the assigned channel) and
// answers deterministic decisions, with faults to inject.
//
// Choices where the seed is silent (the client relies on them only through
// the documented codes):
//   - wrong or missing partner_code/partner_key: code 301 ("未购买此服务"),
//     as the seed has no authentication code and an unknown partner has not
//     bought the service; the client pauses until an operator acts.
//   - a channel other than Options.Channel: 9002 on "channel" (an empty
//     Options.Channel accepts any).
//   - an empty body: 9001 on "request body"; a body that is not one JSON
//     object (invalid JSON, an array, two objects, an unknown field, a
//     value of the wrong type): 9002.
//   - every TD code is answered with HTTP 200 and the code in the body;
//     non-POST methods get HTTP 405.
//   - DailyCap counts accepted events per Asia/Shanghai day (+08:00) on the
//     injected clock; the event after the cap gets 305 until local midnight.
//   - Options.APIVersion is the API the simulated endpoint serves (TD's
//     …/fraud/promo/v2 or …/v3; v2 by default): v3's lookup event and
//     event_detail.account are answered 9002 by a v2 endpoint, as the
//     seed's enum and its one-object event_detail have it
//     (tongdun.ValidateRequest).
//
// Test hooks over HTTP: POST /_sim/faults (JSON Faults), GET /_sim/faults,
// GET /_sim/stats. Every other path is the API. In Go, SetVerdict fixes the
// decision for an account and SetAnswer the exact bytes of the answer (to
// replay a recorded one, such as the public example).
package tdsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-agent/outpost/upstream/simctl"
	"github.com/outpost-agent/outpost/upstream/tongdun"
)

// Options configures the simulator: the credentials and channel TD would
// have assigned.
type Options struct {
	PartnerCode string
	PartnerKey  string
	Channel     string
	// APIVersion is the version of the API served: v2 (the default) or v3.
	APIVersion tongdun.APIVersion
	// Clock drives the daily cap's day and sequence ids (default time.Now).
	Clock func() time.Time
	// Seed makes ErrorRate draws reproducible.
	Seed uint64
}

// Faults are the injected failures: simctl.Faults, the one type of the
// three simulators.
type Faults = simctl.Faults

// Stats is what GET /_sim/stats answers.
type Stats struct {
	// Requests counts every API request, rejected ones included.
	Requests int `json:"requests"`
	// Accepted counts events answered 200.
	Accepted int `json:"accepted"`
	// ByCode counts answers by TD code ("200", "9001"...), and by
	// "http_NNN"/"outage" for injected transport faults.
	ByCode map[string]int `json:"by_code"`
	// BySession counts accepted events per session_id (the delivery key).
	BySession map[string]int `json:"by_session"`
	// Today is the accepted count in the current Shanghai day.
	Today int `json:"today"`
	// ByDay counts, per Shanghai day ("2026-11-23", on the injected clock),
	// the events accepted and those refused with 305 (daily cap): what a
	// fleet sharing one daily quota got of it, and how often it asked past it.
	ByDay  map[string]DayStats `json:"by_day"`
	Faults Faults              `json:"faults"`
}

// DayStats is one Shanghai day's share of the daily cap.
type DayStats struct {
	Accepted int `json:"accepted"`
	Capped   int `json:"capped"`
}

type verdict struct {
	score   int
	result  string
	reasons []tongdun.Reason
}

// Server is the simulator; it is an http.Handler.
type Server struct {
	opts Options

	mu        sync.Mutex
	faults    Faults
	rng       *rand.Rand
	overrides map[string]verdict
	answers   map[string]fixedAnswer
	requests  int
	received  []tongdun.Request
	byCode    map[string]int
	bySession map[string]int
	seq       uint64
	day       string
	today     int
	byDay     map[string]DayStats
}

// New builds a simulator.
func New(opts Options) *Server {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	return &Server{
		opts:      opts,
		rng:       rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x5eed)),
		overrides: map[string]verdict{},
		answers:   map[string]fixedAnswer{},
		byCode:    map[string]int{},
		bySession: map[string]int{},
		byDay:     map[string]DayStats{},
	}
}

// SetFaults replaces the injected faults.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
}

// Faults returns the injected faults.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// SetVerdict fixes the answer for every event of accountID.
func (s *Server) SetVerdict(accountID string, score int, result string, reasons []tongdun.Reason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.overrides[accountID] = verdict{score: score, result: result, reasons: append([]tongdun.Reason(nil), reasons...)}
}

// fixedAnswer is an answer set with SetAnswer: its bytes and its code.
type fixedAnswer struct {
	raw  []byte
	code int
}

// SetAnswer makes the simulator answer every valid event of accountID with
// exactly answer, a TD answer (a JSON object with a code), byte for byte:
// a recorded answer replayed. The request is checked first as always; an
// answer with code 200 counts as accepting the event. It takes precedence
// over SetVerdict.
func (s *Server) SetAnswer(accountID string, answer []byte) error {
	var a struct {
		Code *int `json:"code"`
	}
	if err := json.Unmarshal(answer, &a); err != nil || a.Code == nil {
		return errors.New("tdsim: an answer is a JSON object with a code")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[accountID] = fixedAnswer{raw: bytes.Clone(answer), code: *a.Code}
	return nil
}

// Requests counts every API request received, rejected ones included.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Received returns the accepted events, in order.
func (s *Server) Received() []tongdun.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]tongdun.Request(nil), s.received...)
}

// Count is how many times an event of sessionID was accepted.
func (s *Server) Count(sessionID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bySession[sessionID]
}

// Stats snapshots the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Requests:  s.requests,
		Accepted:  len(s.received),
		ByCode:    make(map[string]int, len(s.byCode)),
		BySession: make(map[string]int, len(s.bySession)),
		ByDay:     make(map[string]DayStats, len(s.byDay)),
		Today:     s.today,
		Faults:    s.faults,
	}
	if s.day != dayOf(s.opts.Clock()) {
		st.Today = 0
	}
	for k, v := range s.byCode {
		st.ByCode[k] = v
	}
	for k, v := range s.bySession {
		st.BySession[k] = v
	}
	for k, v := range s.byDay {
		st.ByDay[k] = v
	}
	return st
}

// Predict is the decision the simulator gives an event when no SetVerdict
// applies, so tests can know it in advance: the score is a hash of
// account_id and decision_event, 0-100; 0-59 accept, 60-79 review, 80-100
// decline with one reason.
func Predict(accountID, event string) (score int, result string, reasons []tongdun.Reason) {
	h := fnv.New64a()
	h.Write([]byte(accountID))
	h.Write([]byte{0})
	h.Write([]byte(event))
	sum := h.Sum64()
	score = int(sum % 101)
	switch {
	case score >= 80:
		result = tongdun.ResultDecline
	case score >= 60:
		result = tongdun.ResultReview
	default:
		result = tongdun.ResultAccept
	}
	reasons = []tongdun.Reason{}
	if result != tongdun.ResultAccept {
		reasons = append(reasons, tongdun.Reason{ID: fmt.Sprintf("SIM%05X", sum>>44), Reason: "短时间内操作频率异常"})
	}
	return score, result, reasons
}

func dayOf(t time.Time) string {
	return t.In(time.FixedZone("CST", 8*3600)).Format("2006-01-02")
}

// ServeHTTP serves the API and the /_sim/ hooks.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sim/") {
		simctl.Serve(w, r, s.Faults, s.SetFaults, func() any { return s.Stats() })
		return
	}
	s.mu.Lock()
	s.requests++
	f := s.faults
	s.mu.Unlock()

	// Read the body first: net/http only notices a client hanging up (and
	// cancels r.Context) once the body is consumed, and Latency must end
	// when the client gives up.
	raw, readErr := io.ReadAll(io.LimitReader(r.Body, 1<<20))

	if f.Before(w, r, s.opts.Clock(), s.count) {
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	if q.Get("partner_code") != s.opts.PartnerCode || q.Get("partner_key") != s.opts.PartnerKey ||
		q.Get("partner_code") == "" || q.Get("partner_key") == "" {
		s.answer(w, f, tongdun.CodeNotPurchased, "未购买此服务", nil)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.answer(w, f, tongdun.CodeContentTypeInvalid, "content-type不合法", nil)
		return
	}
	if f.Code != 0 {
		s.answer(w, f, f.Code, messageFor(f.Code), nil)
		return
	}
	if f.ErrorRate > 0 && s.draw() < f.ErrorRate {
		code := f.ErrorCode
		if code == 0 {
			code = tongdun.CodeSystemError
		}
		s.answer(w, f, code, messageFor(code), nil)
		return
	}

	req, p := decode(raw, readErr)
	if p == nil {
		if ps := tongdun.ValidateRequest(req, s.opts.APIVersion); len(ps) > 0 {
			p = &ps[0]
		}
	}
	if p == nil && s.opts.Channel != "" && req.Channel != s.opts.Channel {
		p = &tongdun.FieldProblem{Field: "channel", Code: tongdun.CodeFieldInvalid, Reason: "not the channel TD assigned"}
	}
	if p != nil {
		s.answer(w, f, p.Code, p.TDMessage(), nil)
		return
	}

	s.mu.Lock()
	now := s.opts.Clock()
	if d := dayOf(now); d != s.day {
		s.day, s.today = d, 0
	}
	ds := s.byDay[s.day]
	if f.DailyCap > 0 && s.today >= f.DailyCap {
		ds.Capped++
		s.byDay[s.day] = ds
		s.mu.Unlock()
		s.answer(w, f, tongdun.CodeDailyCap, "日流量已封顶", nil)
		return
	}
	if fa, ok := s.answers[req.AccountID]; ok {
		if fa.code == tongdun.CodeOK {
			s.today++
			ds.Accepted++
			s.byDay[s.day] = ds
			s.received = append(s.received, *req)
			s.bySession[req.SessionID]++
		}
		s.mu.Unlock()
		s.write(w, f, fa.code, fa.raw)
		return
	}
	s.today++
	ds.Accepted++
	s.byDay[s.day] = ds
	s.seq++
	v, ok := s.overrides[req.AccountID]
	if !ok {
		v.score, v.result, v.reasons = Predict(req.AccountID, req.DecisionEvent)
	}
	if v.reasons == nil {
		v.reasons = []tongdun.Reason{}
	}
	resp := &tongdun.Response{
		Code:    tongdun.CodeOK,
		Message: "",
		// 16 digits of time then 16 hex digits of a counter run through an
		// odd multiplier (a bijection): unique, and looks like TD's.
		SequenceID: fmt.Sprintf("%016d%016X", now.UnixMicro()%1e16, s.seq*0x9E3779B97F4A7C15),
		Score:      v.score,
		Result:     v.result,
		Reasons:    v.reasons,
	}
	s.received = append(s.received, *req)
	s.bySession[req.SessionID]++
	s.mu.Unlock()
	s.answer(w, f, tongdun.CodeOK, "", resp)
}

func (s *Server) draw() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.Float64()
}

func (s *Server) count(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byCode[key]++
}

// decode reads one TD request strictly: exactly one JSON object, known
// fields only, right types.
func decode(raw []byte, readErr error) (*tongdun.Request, *tongdun.FieldProblem) {
	if readErr != nil {
		return nil, &tongdun.FieldProblem{Field: "request body", Code: tongdun.CodeFieldInvalid, Reason: "unreadable"}
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, &tongdun.FieldProblem{Field: "request body", Code: tongdun.CodeFieldEmpty, Reason: "empty"}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var req tongdun.Request
	if err := dec.Decode(&req); err != nil {
		field := "request body"
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			field = te.Field
		} else if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			field = strings.Trim(name, `"`)
		}
		return nil, &tongdun.FieldProblem{Field: field, Code: tongdun.CodeFieldInvalid, Reason: "not one valid TD request"}
	}
	if dec.More() {
		return nil, &tongdun.FieldProblem{Field: "request body", Code: tongdun.CodeFieldInvalid, Reason: "one event per request"}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &tongdun.FieldProblem{Field: "request body", Code: tongdun.CodeFieldInvalid, Reason: "trailing data"}
	}
	return &req, nil
}

func messageFor(code int) string {
	switch code {
	case tongdun.CodeNotPurchased:
		return "未购买此服务"
	case tongdun.CodeTrafficDisabled:
		return "流量已被禁用"
	case tongdun.CodeTrafficShort:
		return "流量不足"
	case tongdun.CodeServiceExpired:
		return "服务已过期"
	case tongdun.CodeDailyCap:
		return "日流量已封顶"
	case tongdun.CodeFieldEmpty:
		return "字段为空"
	case tongdun.CodeFieldInvalid:
		return "参数校验错误"
	case tongdun.CodeFieldTooLong:
		return "参数长度或者大小超过1024"
	case tongdun.CodeTerminalMissing:
		return "black_box或ip至少存在一个"
	case tongdun.CodeSystemError:
		return "系统异常"
	case tongdun.CodeUnknownError:
		return "未知异常"
	case tongdun.CodeContentTypeInvalid:
		return "content-type不合法"
	}
	return "模拟错误"
}

// answer writes a TD answer (HTTP 200, code in the body). Error answers
// carry only code and message with an empty sequence_id, like the seed's
// error table suggests.
func (s *Server) answer(w http.ResponseWriter, f Faults, code int, msg string, resp *tongdun.Response) {
	if resp == nil {
		resp = &tongdun.Response{Code: code, Message: msg, Reasons: []tongdun.Reason{}}
	}
	b, err := json.Marshal(resp)
	if err != nil {
		s.count(strconv.Itoa(code))
		http.Error(w, "encode", http.StatusInternalServerError)
		return
	}
	s.write(w, f, code, b)
}

// write sends the answer b (HTTP 200, code in the body), counted by code.
func (s *Server) write(w http.ResponseWriter, f Faults, code int, b []byte) {
	s.count(strconv.Itoa(code))
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	f.Write(w, http.StatusOK, b)
}
