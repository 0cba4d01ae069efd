package unionpay

import (
	"bytes"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
)

func TestParseAnswer(t *testing.T) {
	one, zero, score := 1, 0, 888
	tests := []struct {
		name string
		body string
		code string
		data *int
		bad  bool
	}{
		{"respCd (transationAuthentication sample)", `{"respCd":"0000","data":1,"msg":"Success"}`, "0000", &one, false},
		{"resp (UnionPayModelScore sample)", `{"resp":"0000","msg":"Success","data":888}`, "0000", &score, false},
		{"both agree", `{"respCd":"0003","resp":"0003","msg":"Failed","data":0}`, "0003", &zero, false},
		{"both disagree: respCd wins", `{"respCd":"0002","resp":"0000","msg":"Failed"}`, "0002", nil, false},
		{"respCd null falls back to resp", `{"respCd":null,"resp":"0004","msg":"Failed"}`, "0004", nil, false},
		{"numeric code", `{"respCd":4,"msg":"Failed"}`, "0004", nil, false},
		{"data as string", `{"resp":"0000","data":"888"}`, "0000", &score, false},
		{"data null on error", `{"respCd":"0001","msg":"Failed","data":null}`, "0001", nil, false},
		{"no code at all", `{"msg":"Success","data":1}`, "", nil, true},
		{"code not 4 digits", `{"respCd":"OK","data":1}`, "", nil, true},
		{"data not an integer", `{"respCd":"0000","data":1.5}`, "", nil, true},
		{"truncated", `{"respCd":"0000","da`, "", nil, true},
		{"html error page", `<html>502</html>`, "", nil, true},
		{"empty", ``, "", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, data, err := parseAnswer([]byte(tt.body))
			if tt.bad {
				if err == nil {
					t.Fatalf("accepted: %s %v", code, data)
				}
				return
			}
			if err != nil || code != tt.code || (data == nil) != (tt.data == nil) || (data != nil && *data != *tt.data) {
				t.Fatalf("got %q %v %v, want %q %v", code, ptr(data), err, tt.code, ptr(tt.data))
			}
		})
	}
}

func ptr(p *int) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

func TestMaskCard(t *testing.T) {
	tests := []struct{ in, want string }{
		{"6262320120123210", "626232******3210"},
		{"6262 3201 2012 3210", "626232******3210"},
		{"6222021234567890123", "622202*********0123"},
		{"12345678901", "123456*8901"},
		{"1234567890", "******7890"},
		{"12345", "*2345"},
		{"1234", "****"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := MaskCard(tt.in); got != tt.want {
			t.Errorf("MaskCard(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestValidateQueries(t *testing.T) {
	okTx := TransactionQuery{CardNo: "6262320120123210", TransDate: "20161201", TransAmount: 212}
	txs := []struct {
		name string
		mod  func(*TransactionQuery)
		ok   bool
	}{
		{"ok", func(*TransactionQuery) {}, true},
		{"no card", func(q *TransactionQuery) { q.CardNo = "" }, false},
		{"card with letters", func(q *TransactionQuery) { q.CardNo = "62623201201232AB" }, false},
		{"date with dashes", func(q *TransactionQuery) { q.TransDate = "2016-12-01" }, false},
		{"impossible date", func(q *TransactionQuery) { q.TransDate = "20161332" }, false},
		{"zero amount", func(q *TransactionQuery) { q.TransAmount = 0 }, false},
		{"NaN amount", func(q *TransactionQuery) { q.TransAmount = math.NaN() }, false},
	}
	for _, tt := range txs {
		q := okTx
		tt.mod(&q)
		err := q.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.name, err)
		}
		if err != nil && strings.Contains(err.Error(), "6262320120123210") {
			t.Errorf("%s: error holds the card: %v", tt.name, err)
		}
	}
	okScore := ScoreQuery{CardNo: "6262320120123210", CertID: "411524198810280019", Mobile: "13888888888"}
	if err := okScore.Validate(); err != nil {
		t.Errorf("score ok: %v", err)
	}
	for _, q := range []ScoreQuery{{CertID: "x", Mobile: "y"}, {CardNo: okScore.CardNo, Mobile: "y"}, {CardNo: okScore.CardNo, CertID: "x"}} {
		if q.Validate() == nil {
			t.Errorf("accepted %v", q)
		}
	}
}

// TestQueriesMaskThemselves: printing or logging a query by mistake must not
// leak the card, ID number or mobile.
func TestQueriesMaskThemselves(t *testing.T) {
	tx := TransactionQuery{CardNo: "6262320120123210", TransDate: "20161201", TransAmount: 212, CertID: "411524198810280019", Mobile: "13888888888"}
	sq := ScoreQuery{CardNo: tx.CardNo, CertID: tx.CertID, Mobile: tx.Mobile}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	log.Info("x", "tx", tx, "score", sq)
	out := buf.String() + fmt.Sprintf("%v %+v %#v %s %v %#v", tx, tx, tx, sq, sq, sq)
	for _, secret := range []string{tx.CardNo, tx.CertID, tx.Mobile} {
		if strings.Contains(out, secret) {
			t.Errorf("leak of %s in %s", secret, out)
		}
	}
	if !strings.Contains(out, "626232******3210") {
		t.Errorf("masked card missing: %s", out)
	}
}
