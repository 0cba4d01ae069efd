package decision

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/policy"
	"github.com/outpost-agent/outpost/spool"
)

// discardSpool is a spool that keeps nothing: under a SpoolStore, the
// benchmarks below measure the engine's own CPU, keys and all, not the
// spool's commit.
type discardSpool struct{}

func (discardSpool) Write(context.Context, []spool.KV, []spool.Record) (spool.AppendResult, error) {
	return spool.AppendResult{}, nil
}
func (discardSpool) Get(string) ([]byte, bool, error)                     { return nil, false, nil }
func (discardSpool) Scan(string, string, func(string, []byte) bool) error { return nil }

// benchBody is a decision request as cmd/loadgen sends it (a withdrawal,
// with a credit line).
func benchBody(acct int) []byte {
	return []byte(`{"session_id":"lg-abc-1x2y3z4","decision_event":"withdraw","event_time":"2026-11-23T14:20:50.521+08:00",` +
		`"account_id":"lg-acct-` + strconv.Itoa(acct) + `","terminal":{"black_box":"bb-1k2j3h","ip":"210.20.10.33"},` +
		`"event_detail":{"withdraw":{}},"amount":1234,"credit":{"mode":"revolving","line":10000,"outstanding":2000,"overdue_days":0,"apr":0.18}}`)
}

// benchCardBody adds a card block and an ext map with nested values.
func benchCardBody() []byte {
	return []byte(`{"id":"req-000123","session_id":"sess-9","decision_event":"withdraw","event_time":"2026-11-23T14:20:50.521+08:00",` +
		`"account_id":"acct-1","terminal":{"ip":"210.20.10.33"},"ext":{"channel_no":"13888888888","nested":{"a":[1,"b",true,null]}},` +
		`"event_detail":{"withdraw":{"to":"6262320120123210","n":3}},"amount":99.5,` +
		`"card":{"card_no":"6262320120123210","cert_id":"411524198810280019","mobile":"13888888888"},` +
		`"transaction":{"date":"20261120","amount":212,"location":"Shanghai"}}`)
}

func BenchmarkParseRequest(b *testing.B) {
	for _, c := range []struct {
		name string
		body []byte
	}{{"loadgen", benchBody(7)}, {"card", benchCardBody()}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseRequest(c.body, "bank"); err != nil {
					b.Fatal(err)
				}
			}
		})
		// encoding/json, which parseFast passes anything unusual to.
		b.Run(c.name+"-reference", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parseRequestReference(c.body, "bank"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMaskedInput(b *testing.B) {
	for _, c := range []struct {
		name string
		body []byte
	}{{"loadgen", benchBody(7)}, {"card", benchCardBody()}} {
		req, err := ParseRequest(c.body, "bank")
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				maskedInput(req)
			}
		})
		// The pair it replaces: json.Marshal, then redact.JSON over it.
		b.Run(c.name+"-reference", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				maskedInputReference(req)
			}
		})
	}
}

// BenchmarkDecideCPU: one caller, a warm score cache, a store that keeps
// nothing: the engine's CPU per decision (parse included, as the API does
// it).
func BenchmarkDecideCPU(b *testing.B) {
	now := time.Now()
	eng := New(Config{Store: NewSpoolStore(discardSpool{}), Policies: fixedPolicy{policy.Default()}, HashKey: []byte("test-hash-key"),
		Clock: func() time.Time { return now }})
	defer eng.Close()
	const accounts = 200
	bodies := make([][]byte, accounts)
	for i := range bodies {
		bodies[i] = benchBody(i)
		req, err := ParseRequest(bodies[i], "bank")
		if err != nil {
			b.Fatal(err)
		}
		eng.mem.put(eng.tdKey(&req.Request), cached{At: now, Score: 20, Result: "accept", SequenceID: "seq"})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		req, err := ParseRequest(bodies[i%accounts], "bank")
		if err != nil {
			b.Fatal(err)
		}
		res, err := eng.Decide(context.Background(), req)
		if err != nil || res.Signals["tongdun"].Source != "cache" {
			b.Fatalf("%v %+v", err, res.Signals["tongdun"])
		}
		i++
	}
}
