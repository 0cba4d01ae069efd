package unionpay

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"
)

// UnionPay FireEye answer codes (the seed's "应答码" table).
const (
	CodeOK            = "0000" // 调用接口成功
	CodeNotEnabled    = "0001" // 该机构未开通业务
	CodeWrongPassword = "0002" // 密码错误
	CodeNoTransaction = "0003" // 交易匹配失败，无此交易
	CodeProcessing    = "0004" // 处理异常
)

// Endpoint names, appended to the base URL. "transation" is UnionPay's own
// spelling: the real path has the typo.
const (
	PathTransactionAuth = "transationAuthentication"
	PathModelScore      = "UnionPayModelScore"
	// PathSampleModelScore ends the model score's URL in the sample shape.
	PathSampleModelScore = "ARESVerificationServiceProxy/modelScore/modelScoreDataQuery"
)

// DefaultSampleScoreURL is where the seed's sample code posts the model
// score (the sample shape's default ScoreURL).
const DefaultSampleScoreURL = "https://esb.unionpay.com/ares/ARESVerificationService/" + PathSampleModelScore

// Shape is which of the seed's two descriptions of the API the client
// speaks. The seed contradicts itself: its tables and its sample code give
// different paths, methods, envelopes and field types, and nothing says
// which one FireEye runs, so both are kept and a setting chooses.
type Shape string

const (
	// ShapeTable is the seed's tables, the default. Both calls are a POST
	// of the form data=<JSON>, URL-encoded
	// (application/x-www-form-urlencoded), the JSON being
	// {"id":ID,"appKey":AppKey,"data":{...the query...}}, to
	// URL/transationAuthentication and URL/UnionPayModelScore;
	// transAmount is a JSON number (the table's double), every other field
	// a string.
	ShapeTable Shape = "table"
	// ShapeSample is the seed's sample code. Transaction authentication is
	// a GET of URL/transationAuthentication?data=<JSON>, the JSON
	// URL-encoded as Java's URLEncoder does, being the query alone (no id,
	// no appKey: the sample sends none) with transAmount a string
	// ("21200"). The model score is a POST to ScoreURL (by default
	// .../ARESVerificationServiceProxy/modelScore/modelScoreDataQuery on
	// UnionPay's ESB) of the body data=<JSON>, the JSON not URL-encoded,
	// being {"id":ID,"appKey":AppKey,"data":{mobile,cardNo,certid}}.
	ShapeSample Shape = "sample"
)

// ParseShape reads a Shape: "table" or "sample" ("" is table).
func ParseShape(s string) (Shape, error) {
	switch Shape(s) {
	case "", ShapeTable:
		return ShapeTable, nil
	case ShapeSample:
		return ShapeSample, nil
	}
	return "", fmt.Errorf("unionpay: shape %q is neither %q nor %q", s, ShapeTable, ShapeSample)
}

// Score bounds of the credit model.
const (
	MinScore = 300
	MaxScore = 1000
)

// Check kinds in a spooled Check.
const (
	KindModelScore      = "model_score"
	KindTransactionAuth = "transaction_auth"
)

// TransDateLayout is transDate's YYYYMMDD.
const TransDateLayout = "20060102"

// TransactionQuery asks whether a card transaction exists
// (transationAuthentication). CertID, Mobile and TransLocation are optional
// and, when given, must agree with the transaction for a match.
type TransactionQuery struct {
	CardNo string `json:"cardNo"`
	// TransDate is YYYYMMDD.
	TransDate     string  `json:"transDate"`
	TransAmount   float64 `json:"transAmount"`
	CertID        string  `json:"certid,omitempty"`
	Mobile        string  `json:"mobile,omitempty"`
	TransLocation string  `json:"transLocation,omitempty"`
}

// ScoreQuery asks for the credit model score (UnionPayModelScore); all three
// fields are required.
type ScoreQuery struct {
	CardNo string `json:"cardNo"`
	CertID string `json:"certid"`
	Mobile string `json:"mobile"`
}

// Check is one spooled FireEye call: the Item payload of the "unionpay"
// queue.
type Check struct {
	Kind  string          `json:"kind"`
	Query json.RawMessage `json:"query"`
}

// Answer is Result.Answer for a delivered Check: Score for model_score, Match
// for transaction_auth.
type Answer struct {
	Score *int  `json:"score,omitempty"`
	Match *bool `json:"match,omitempty"`
}

// Validate checks what UnionPay requires (M-必填) so a query that can never
// succeed is rejected here instead of spending a call. Errors name fields,
// never values.
func (q TransactionQuery) Validate() error {
	var errs []error
	if !isCardNo(q.CardNo) {
		errs = append(errs, errors.New("cardNo must be 12-19 digits"))
	}
	if len(q.TransDate) != 8 {
		errs = append(errs, errors.New("transDate must be YYYYMMDD"))
	} else if _, err := time.Parse(TransDateLayout, q.TransDate); err != nil {
		errs = append(errs, errors.New("transDate must be a YYYYMMDD date"))
	}
	if math.IsNaN(q.TransAmount) || math.IsInf(q.TransAmount, 0) || q.TransAmount <= 0 {
		errs = append(errs, errors.New("transAmount must be a positive amount"))
	}
	return errors.Join(errs...)
}

// Validate checks the three required fields.
func (q ScoreQuery) Validate() error {
	var errs []error
	if !isCardNo(q.CardNo) {
		errs = append(errs, errors.New("cardNo must be 12-19 digits"))
	}
	if strings.TrimSpace(q.CertID) == "" {
		errs = append(errs, errors.New("certid is required"))
	}
	if strings.TrimSpace(q.Mobile) == "" {
		errs = append(errs, errors.New("mobile is required"))
	}
	return errors.Join(errs...)
}

// Payload builds the spool payload (a Check) for q.
func (q TransactionQuery) Payload() (json.RawMessage, error) {
	return marshalCheck(KindTransactionAuth, q)
}

// Payload builds the spool payload (a Check) for q.
func (q ScoreQuery) Payload() (json.RawMessage, error) {
	return marshalCheck(KindModelScore, q)
}

func marshalCheck(kind string, q any) (json.RawMessage, error) {
	b, err := json.Marshal(q)
	if err != nil {
		return nil, fmt.Errorf("unionpay: encode %s query: %w", kind, err)
	}
	return json.Marshal(Check{Kind: kind, Query: b})
}

// String masks personal fields, so printing a query by mistake leaks nothing.
func (q TransactionQuery) String() string {
	return fmt.Sprintf("{card %s date %s amount %.2f certid %s mobile %s}",
		MaskCard(q.CardNo), q.TransDate, q.TransAmount, maskAll(q.CertID), maskAll(q.Mobile))
}

// GoString masks %#v too.
func (q TransactionQuery) GoString() string { return "unionpay.TransactionQuery" + q.String() }

// LogValue masks personal fields in slog output.
func (q TransactionQuery) LogValue() slog.Value {
	return slog.GroupValue(slog.String("card", MaskCard(q.CardNo)), slog.String("date", q.TransDate))
}

// String masks personal fields.
func (q ScoreQuery) String() string {
	return fmt.Sprintf("{card %s certid %s mobile %s}", MaskCard(q.CardNo), maskAll(q.CertID), maskAll(q.Mobile))
}

// GoString masks %#v too.
func (q ScoreQuery) GoString() string { return "unionpay.ScoreQuery" + q.String() }

// LogValue masks personal fields in slog output.
func (q ScoreQuery) LogValue() slog.Value {
	return slog.GroupValue(slog.String("card", MaskCard(q.CardNo)))
}

// MaskCard keeps the first 6 and last 4 digits of a card number, the PCI
// display rule: 6262320120123210 -> 626232******3210. Spaces and dashes are
// dropped first. Numbers too short to keep both show only the last 4 (or
// nothing), so a short input is never shown whole.
func MaskCard(s string) string {
	r := []rune(strings.Map(func(c rune) rune {
		if c == ' ' || c == '-' {
			return -1
		}
		return c
	}, s))
	n := len(r)
	switch {
	case n == 0:
		return ""
	case n <= 4:
		return strings.Repeat("*", n)
	case n <= 10:
		return strings.Repeat("*", n-4) + string(r[n-4:])
	}
	return string(r[:6]) + strings.Repeat("*", n-10) + string(r[n-4:])
}

// maskAll hides a personal field entirely, keeping only whether it was set.
func maskAll(s string) string {
	if s == "" {
		return "-"
	}
	return "***"
}

func isCardNo(s string) bool {
	if len(s) < 12 || len(s) > 19 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
