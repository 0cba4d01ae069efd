// Package upsim is a UnionPay FireEye simulator: a real HTTP handler for
// transaction authentication and the model score that checks what it
// receives the way FireEye does, with a table of known transactions, a
// deterministic model score, the seed's respCd/resp quirk, and faults to
// inject.
//
// It speaks one of the seed's two shapes (Options.Shape, see
// unionpay.Shape) and refuses the other:
//   - table (default): .../transationAuthentication and
//     .../UnionPayModelScore, GET ?data= or POST form data=, both
//     URL-encoded, the JSON {"id","appKey","data":{...}}; transAmount a
//     JSON number.
//   - sample: .../transationAuthentication by GET only, ?data=<the query's
//     JSON> URL-encoded, no id or appKey, transAmount a JSON string holding
//     a number; .../ARESVerificationServiceProxy/modelScore/modelScoreDataQuery
//     by POST only, the body data=<{"id","appKey","data":{...}}> not
//     URL-encoded (whatever its Content-Type: the seed does not show it).
//
// Choices where the seed is silent:
//   - a request that cannot be read (not the shape's encoding, no data
//     field, data not JSON), a missing required field or a malformed one
//     (transDate not YYYYMMDD, a field not of the shape's type: transAmount
//     not a JSON number in the table shape (its double), not a string in
//     the sample shape, any other field not a JSON string): 0004 "处理异常",
//     the only generic error code the seed has.
//   - a request target with characters RFC 3986 does not allow (JSON put in
//     the query without URL-encoding): HTTP 400, as Java servers answer it.
//   - unknown or missing id: 0001 (the institution is not enabled); right id
//     with a wrong appKey: 0002 (wrong password). The sample shape's
//     transaction authentication carries no credentials, so it checks none.
//   - 0003 answers carry data 0; error answers carry data null.
//   - a transaction matches on cardNo + transDate + transAmount; if it
//     exists but a given optional field (certid, mobile, transLocation)
//     disagrees with the recorded one, data is 0; if none exists, 0003.
//   - the table shape takes GET with ?data= too (the table says GET/POST);
//     the sample shape takes each call by its sample's method only. Other
//     methods get HTTP 405, a call of the other shape's path 404. Every
//     FireEye code comes with HTTP 200.
//   - by default transaction authentication answers its code as respCd and
//     the model score as resp, like the seed's two samples, in both shapes.
//
// Test hooks over HTTP: POST /_sim/faults (JSON Faults), GET /_sim/faults,
// GET /_sim/stats (cards masked). Every other path ending in one of the
// shape's two call paths is the API.
package upsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-agent/outpost/upstream/simctl"
	"github.com/outpost-agent/outpost/upstream/unionpay"
)

// Code field spellings for Options.AuthCodeField / ScoreCodeField.
const (
	FieldRespCd = "respCd"
	FieldResp   = "resp"
	// FieldBoth writes the code under both names.
	FieldBoth = "both"
)

// Options configures the simulator.
type Options struct {
	// ID and AppKey are the credentials UnionPay would have issued.
	ID     string
	AppKey string
	// Clock is for the record only (default time.Now).
	Clock func() time.Time
	// AuthCodeField is how transationAuthentication names its code
	// (default respCd); ScoreCodeField likewise for UnionPayModelScore
	// (default resp).
	AuthCodeField  string
	ScoreCodeField string
	// Seed makes ErrorRate draws reproducible.
	Seed uint64
	// Shape is the request shape accepted (default unionpay.ShapeTable).
	Shape unionpay.Shape
}

// Faults are the injected failures: simctl.Faults, the one type of the
// three simulators.
type Faults = simctl.Faults

// Call is one accepted call (answered 0000 or 0003), as received.
type Call struct {
	Kind string
	// Auth is set for transaction_auth, Score for model_score.
	Auth  *unionpay.TransactionQuery
	Score *unionpay.ScoreQuery
	// Code and Data are what the simulator answered.
	Code string
	Data int
	At   time.Time
}

// Stats is what GET /_sim/stats answers. Cards are masked.
type Stats struct {
	Requests int            `json:"requests"`
	Accepted int            `json:"accepted"`
	ByCode   map[string]int `json:"by_code"`
	// ByCard counts accepted calls per masked card number.
	ByCard map[string]int `json:"by_card"`
	Faults Faults         `json:"faults"`
}

// Server is the simulator; it is an http.Handler.
type Server struct {
	opts Options

	mu       sync.Mutex
	faults   Faults
	rng      *rand.Rand
	txs      []unionpay.TransactionQuery
	scores   map[string]int
	requests int
	received []Call
	byCode   map[string]int
	byCard   map[string]int
}

// New builds a simulator. It panics on a Shape unionpay.ParseShape refuses.
func New(opts Options) *Server {
	shape, err := unionpay.ParseShape(string(opts.Shape))
	if err != nil {
		panic(err)
	}
	opts.Shape = shape
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.AuthCodeField == "" {
		opts.AuthCodeField = FieldRespCd
	}
	if opts.ScoreCodeField == "" {
		opts.ScoreCodeField = FieldResp
	}
	return &Server{
		opts:   opts,
		rng:    rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x5eed)),
		scores: map[string]int{},
		byCode: map[string]int{},
		byCard: map[string]int{},
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

// AddTransaction records a transaction that transationAuthentication will
// find. Optional fields left empty match anything.
func (s *Server) AddTransaction(tx unionpay.TransactionQuery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.txs = append(s.txs, tx)
}

// SetScore fixes the model score of a card (any value: out-of-range ones
// test the client).
func (s *Server) SetScore(cardNo string, score int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scores[cardNo] = score
}

// Requests counts every API request, rejected ones included.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Received returns the accepted calls, in order.
func (s *Server) Received() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.received...)
}

// Count is how many calls about cardNo were accepted.
func (s *Server) Count(cardNo string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byCard[cardNo]
}

// Stats snapshots the counters, cards masked.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Requests: s.requests, Accepted: len(s.received), ByCode: map[string]int{}, ByCard: map[string]int{}, Faults: s.faults}
	for k, v := range s.byCode {
		st.ByCode[k] = v
	}
	for k, v := range s.byCard {
		st.ByCard[unionpay.MaskCard(k)] += v
	}
	return st
}

// Predict is the model score the simulator gives when SetScore does not
// apply: a hash of the three fields mapped onto 300-1000.
func Predict(cardNo, certID, mobile string) int {
	h := fnv.New64a()
	for _, s := range []string{cardNo, certID, mobile} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return unionpay.MinScore + int(h.Sum64()%uint64(unionpay.MaxScore-unionpay.MinScore+1))
}

// ServeHTTP serves the API and the /_sim/ hooks.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sim/") {
		simctl.Serve(w, r, s.Faults, s.SetFaults, func() any { return s.Stats() })
		return
	}
	scorePath := unionpay.PathModelScore
	if s.opts.Shape == unionpay.ShapeSample {
		scorePath = unionpay.PathSampleModelScore
	}
	var kind, field string
	switch {
	case strings.HasSuffix(r.URL.Path, "/"+unionpay.PathTransactionAuth):
		kind, field = unionpay.KindTransactionAuth, s.opts.AuthCodeField
	case strings.HasSuffix(r.URL.Path, "/"+scorePath):
		kind, field = unionpay.KindModelScore, s.opts.ScoreCodeField
	default:
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	s.requests++
	f := s.faults
	s.mu.Unlock()
	if !validTarget(r.RequestURI) {
		s.count("http_400")
		http.Error(w, "invalid character in the request target", http.StatusBadRequest)
		return
	}

	// Read the body before any delay: net/http only notices a client that
	// hung up once the body is consumed.
	raw, readErr := io.ReadAll(io.LimitReader(r.Body, 1<<20))

	if f.Before(w, r, s.opts.Clock(), s.count) {
		return
	}

	sample := s.opts.Shape == unionpay.ShapeSample
	allow := []string{http.MethodGet, http.MethodPost}
	switch {
	case sample && kind == unionpay.KindTransactionAuth:
		allow = []string{http.MethodGet}
	case sample:
		allow = []string{http.MethodPost}
	}
	if !slices.Contains(allow, r.Method) {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}

	data, ok := s.data(r, raw, readErr)
	if !ok {
		s.answer(w, f, field, unionpay.CodeProcessing, nil)
		return
	}
	// The sample shape's transaction authentication is the query alone,
	// without credentials; every other call is an envelope.
	var env struct {
		ID     string          `json:"id"`
		AppKey string          `json:"appKey"`
		Data   json.RawMessage `json:"data"`
	}
	if sample && kind == unionpay.KindTransactionAuth {
		env.Data = json.RawMessage(data)
	} else {
		if json.Unmarshal([]byte(data), &env) != nil {
			s.answer(w, f, field, unionpay.CodeProcessing, nil)
			return
		}
		if env.ID == "" || env.ID != s.opts.ID {
			s.answer(w, f, field, unionpay.CodeNotEnabled, nil)
			return
		}
		if env.AppKey != s.opts.AppKey {
			s.answer(w, f, field, unionpay.CodeWrongPassword, nil)
			return
		}
	}
	if f.Code != 0 {
		s.answer(w, f, field, fmt.Sprintf("%04d", f.Code), nil)
		return
	}
	if f.ErrorRate > 0 && s.draw() < f.ErrorRate {
		code := unionpay.CodeProcessing
		if f.ErrorCode != 0 {
			code = fmt.Sprintf("%04d", f.ErrorCode)
		}
		s.answer(w, f, field, code, nil)
		return
	}

	fields, ok := fieldsOf(env.Data, sample)
	if !ok {
		s.answer(w, f, field, unionpay.CodeProcessing, nil)
		return
	}
	call := Call{Kind: kind, At: s.opts.Clock()}
	var card string
	if kind == unionpay.KindTransactionAuth {
		q, ok := authQuery(fields)
		if !ok {
			s.answer(w, f, field, unionpay.CodeProcessing, nil)
			return
		}
		call.Auth, card = &q, q.CardNo
		call.Code, call.Data = s.lookup(q)
	} else {
		q, ok := scoreQuery(fields)
		if !ok {
			s.answer(w, f, field, unionpay.CodeProcessing, nil)
			return
		}
		call.Score, card = &q, q.CardNo
		s.mu.Lock()
		score, set := s.scores[q.CardNo]
		s.mu.Unlock()
		if !set {
			score = Predict(q.CardNo, q.CertID, q.Mobile)
		}
		call.Code, call.Data = unionpay.CodeOK, score
	}
	if f.Data != nil && call.Code == unionpay.CodeOK {
		call.Data = *f.Data
	}
	s.mu.Lock()
	s.received = append(s.received, call)
	s.byCard[card]++
	s.mu.Unlock()
	d := call.Data
	s.answer(w, f, field, call.Code, &d)
}

// data is the data field of a request in the configured shape, as text:
// the form field (URL-encoded) of a table shape request or of the sample
// shape's GET; what follows "data=" in the body (not URL-encoded) of the
// sample shape's POST.
func (s *Server) data(r *http.Request, raw []byte, readErr error) (string, bool) {
	if r.Method == http.MethodGet {
		vals, err := url.ParseQuery(r.URL.RawQuery)
		return vals.Get("data"), err == nil && vals.Get("data") != ""
	}
	if readErr != nil {
		return "", false
	}
	if s.opts.Shape == unionpay.ShapeSample {
		d, ok := bytes.CutPrefix(raw, []byte("data="))
		return string(d), ok && len(d) > 0
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return "", false
	}
	vals, err := url.ParseQuery(string(raw))
	return vals.Get("data"), err == nil && vals.Get("data") != ""
}

// lookup finds the transaction: 0003 when no transaction has this card, date
// and amount; data 0 when one does but a given optional field disagrees.
func (s *Server) lookup(q unionpay.TransactionQuery) (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	found := false
	for _, tx := range s.txs {
		if tx.CardNo != q.CardNo || tx.TransDate != q.TransDate || math.Abs(tx.TransAmount-q.TransAmount) >= 0.005 {
			continue
		}
		found = true
		if agree(tx.CertID, q.CertID) && agree(tx.Mobile, q.Mobile) && agree(tx.TransLocation, q.TransLocation) {
			return unionpay.CodeOK, 1
		}
	}
	if found {
		return unionpay.CodeOK, 0
	}
	return unionpay.CodeNoTransaction, 0
}

func agree(recorded, given string) bool { return recorded == "" || given == "" || recorded == given }

// fieldsOf reads the inner data object with the shape's field types: every
// field is a JSON string but transAmount, a JSON number in the table shape
// (its double) and a JSON string in the sample shape (its "21200"). null
// is taken as absent.
func fieldsOf(raw json.RawMessage, amountString bool) (map[string]string, bool) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, false
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case string:
			if k == "transAmount" && !amountString {
				return nil, false
			}
			out[k] = strings.TrimSpace(x)
		case json.Number:
			if k != "transAmount" || amountString {
				return nil, false
			}
			out[k] = x.String()
		case nil:
		default:
			return nil, false
		}
	}
	return out, true
}

// validTarget reports whether a request target holds only what RFC 3986
// allows in a path and a query: unreserved characters, sub-delims, ":",
// "@", "/", "?" and %XX escapes. A Java server such as Tomcat answers
// anything else (a raw "{", '"' or space: JSON put in a query without
// URL-encoding) with HTTP 400 before the application sees it; Go's server
// is laxer, so the simulator checks.
func validTarget(t string) bool {
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=:@/?", c) >= 0:
		case c == '%':
			if i+2 >= len(t) || !isHex(t[i+1]) || !isHex(t[i+2]) {
				return false
			}
			i += 2
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func authQuery(f map[string]string) (unionpay.TransactionQuery, bool) {
	q := unionpay.TransactionQuery{
		CardNo: f["cardNo"], TransDate: f["transDate"],
		CertID: f["certid"], Mobile: f["mobile"], TransLocation: f["transLocation"],
	}
	if q.CardNo == "" || len(q.TransDate) != 8 {
		return q, false
	}
	if _, err := time.Parse(unionpay.TransDateLayout, q.TransDate); err != nil {
		return q, false
	}
	amount, err := strconv.ParseFloat(f["transAmount"], 64)
	if err != nil || math.IsNaN(amount) || math.IsInf(amount, 0) {
		return q, false
	}
	q.TransAmount = amount
	return q, true
}

func scoreQuery(f map[string]string) (unionpay.ScoreQuery, bool) {
	q := unionpay.ScoreQuery{CardNo: f["cardNo"], CertID: f["certid"], Mobile: f["mobile"]}
	return q, q.CardNo != "" && q.CertID != "" && q.Mobile != ""
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

// answer writes a FireEye answer with HTTP 200, the code under the
// configured name(s).
func (s *Server) answer(w http.ResponseWriter, f Faults, field, code string, data *int) {
	s.count(code)
	msg := "Failed"
	if code == unionpay.CodeOK {
		msg = "Success"
	}
	var b []byte
	var err error
	switch field {
	case FieldResp:
		b, err = json.Marshal(struct {
			Resp string `json:"resp"`
			Msg  string `json:"msg"`
			Data *int   `json:"data"`
		}{code, msg, data})
	case FieldBoth:
		b, err = json.Marshal(struct {
			RespCd string `json:"respCd"`
			Resp   string `json:"resp"`
			Msg    string `json:"msg"`
			Data   *int   `json:"data"`
		}{code, code, msg, data})
	default:
		b, err = json.Marshal(struct {
			RespCd string `json:"respCd"`
			Msg    string `json:"msg"`
			Data   *int   `json:"data"`
		}{code, msg, data})
	}
	if err != nil {
		http.Error(w, "encode", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	f.Write(w, http.StatusOK, b)
}
