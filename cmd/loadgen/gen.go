package main

import (
	"crypto/md5"
	"encoding/hex"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/outpost-agent/outpost/action"
)

// Bodies are built once, up front, as templates: every action id ends in a
// fixed-width decimal sequence number and every action_time is a fixed-width
// Unix time, and both are patched in place (a copy and a few byte writes)
// when a request is sent. That keeps the generator off the profile while
// still giving each action a unique id and action_time = now.
const (
	seqWidth  = 12 // digits of the per-run sequence number in an id
	timeWidth = 10 // digits of action_time (Unix seconds, good until 2286)
)

// kind is one (track, action_type) pair with the action_params that apply.
type kind struct {
	track, actionType string
	params            []action.ParamRule
}

// mix is the realistic action mix: every track, and within it every action
// type it allows, with the action_param rules that apply to the pair. The
// table comes from the action package so it follows the validator.
func mix() [][]kind {
	tracks := action.Tracks()
	rules := action.Params()
	var out [][]kind
	for _, tr := range action.TrackNames() {
		var ks []kind
		for _, at := range tracks[tr] {
			k := kind{track: tr, actionType: at}
			for _, r := range rules {
				if slices.Contains(r.Applies, action.TrackAction{Track: tr, ActionType: at}) {
					k.params = append(k.params, r)
				}
			}
			ks = append(ks, k)
		}
		out = append(out, ks)
	}
	return out
}

// template is one pre-built request body.
type template struct {
	body     []byte
	actions  int
	idOffs   []int // where each action's seqWidth-digit sequence number starts
	timeOffs []int // where each action's timeWidth-digit action_time starts
}

// generator holds the pool of bodies for one run.
type generator struct {
	// decisions makes POST /v1/decisions bodies instead of actions: one
	// TongDun-shaped request each, over a small set of accounts so that a
	// warm run measures the score-cache hit path.
	decisions bool
	accounts  int
	prefix    string // "lg-<run id>-": ids are prefix + sequence number
	batch     int
	dupRate   float64
	mix       [][]kind
	pool      []template
}

// approxActionBytes is a rough size of one generated action, used to size
// the pool.
const approxActionBytes = 230

// defaultPoolSize keeps the pool near 8 MiB: many distinct bodies for small
// batches, a few dozen for batches of 1000.
func defaultPoolSize(batch int) int {
	n := (8 << 20) / (batch * approxActionBytes)
	return min(max(n, 16), 1024)
}

func newGenerator(runID string, batch, poolSize int, dupRate float64, seed uint64, decisions bool, accounts int) *generator {
	g := &generator{prefix: "lg-" + runID + "-", batch: batch, dupRate: dupRate, mix: mix(), decisions: decisions, accounts: accounts}
	rng := rand.New(rand.NewPCG(seed, 0x6c6f616467656e))
	g.pool = make([]template, poolSize)
	for i := range g.pool {
		g.pool[i] = g.build(batch, rng)
	}
	return g
}

// buildDecision makes one decision request body; it has no placeholders
// (the agent gives each decision its own id).
func (g *generator) buildDecision(rng *rand.Rand) template {
	events := []string{"withdraw", "marketing", "get_coupon", "withdraw", "withdraw"}
	ev := events[rng.IntN(len(events))]
	b := make([]byte, 0, 400)
	b = append(b, `{"session_id":"`...)
	b = append(b, g.prefix...)
	b = strconv.AppendUint(b, rng.Uint64N(1<<40), 36)
	b = append(b, `","decision_event":"`...)
	b = append(b, ev...)
	b = append(b, `","event_time":"2026-11-23T14:20:50.521+08:00","account_id":"lg-acct-`...)
	b = strconv.AppendInt(b, int64(rng.IntN(max(g.accounts, 1))), 10)
	b = append(b, `","terminal":{"black_box":"bb-`...)
	b = strconv.AppendUint(b, rng.Uint64N(1<<32), 36)
	b = append(b, `","ip":"210.20.10.33"},"event_detail":{"`...)
	b = append(b, ev...)
	b = append(b, `":{}},"amount":`...)
	b = strconv.AppendInt(b, int64(100+rng.IntN(5000)), 10)
	if ev == "withdraw" {
		b = append(b, `,"credit":{"mode":"revolving","line":10000,"outstanding":2000,"overdue_days":0,"apr":0.18}`...)
	}
	b = append(b, '}')
	return template{body: b, actions: 1}
}

// build makes a template of n actions.
func (g *generator) build(n int, rng *rand.Rand) template {
	if g.decisions {
		return g.buildDecision(rng)
	}
	t := template{actions: n, idOffs: make([]int, 0, n), timeOffs: make([]int, 0, n)}
	b := make([]byte, 0, 16+n*(approxActionBytes+40))
	b = append(b, `{"actions":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		var idOff, timeOff int
		b, idOff, timeOff = g.appendAction(b, rng)
		t.idOffs = append(t.idOffs, idOff)
		t.timeOffs = append(t.timeOffs, timeOff)
	}
	t.body = append(b, "]}"...)
	return t
}

const (
	digits    = "0123456789"
	hexDigits = "0123456789abcdef"
	// openidChars are the characters of a WeChat openid (base64url).
	openidChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)

// appendAction appends one action drawn from the mix and returns where its
// sequence number and action_time placeholders start.
func (g *generator) appendAction(b []byte, rng *rand.Rand) (_ []byte, idOff, timeOff int) {
	ks := g.mix[rng.IntN(len(g.mix))]
	k := ks[rng.IntN(len(ks))]
	b = append(b, `{"id":"`...)
	b = append(b, g.prefix...)
	idOff = len(b)
	for range seqWidth {
		b = append(b, '0')
	}
	b = append(b, `","track":"`...)
	b = append(b, k.track...)
	b = append(b, `","action_type":"`...)
	b = append(b, k.actionType...)
	b = append(b, `","action_time":`...)
	timeOff = len(b)
	for range timeWidth {
		b = append(b, '0')
	}
	b = append(b, `,"user_id":{`...)
	switch rng.IntN(3) {
	case 0: // a raw phone number: the agent hashes it on intake
		b = append(b, `"phone":"`...)
		b = appendPhone(b, rng)
		b = append(b, '"')
	case 1: // hash_phone: MD5 of the 11 digits, as Tencent defines it
		var p [11]byte
		sum := md5.Sum(appendPhone(p[:0], rng))
		b = append(b, `"hash_phone":"`...)
		b = hex.AppendEncode(b, sum[:])
		b = append(b, '"')
	default: // a WeChat openid with its app id (Tencent requires both)
		b = append(b, `"wechat_openid":"o`...)
		for range 27 {
			b = append(b, openidChars[rng.IntN(len(openidChars))])
		}
		b = append(b, `","wechat_app_id":"wx`...)
		for range 16 {
			b = append(b, hexDigits[rng.IntN(16)])
		}
		b = append(b, '"')
	}
	b = append(b, '}')
	if len(k.params) > 0 {
		b = append(b, `,"action_param":{`...)
		for i, p := range k.params {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, p.Name...)
			b = append(b, `":`...)
			b = appendUint(b, uint64(p.Min+rng.IntN(p.Max-p.Min+1)))
		}
		b = append(b, '}')
	}
	return append(b, '}'), idOff, timeOff
}

// appendPhone appends a random valid mainland mobile number: 11 digits,
// 13x-19x.
func appendPhone(b []byte, rng *rand.Rand) []byte {
	b = append(b, '1', byte('3'+rng.IntN(7)))
	for range 9 {
		b = append(b, digits[rng.IntN(10)])
	}
	return b
}

func appendUint(b []byte, v uint64) []byte {
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}

// putDigits writes v as len(dst) decimal digits, zero-padded (the high
// digits are dropped if v does not fit).
func putDigits(dst []byte, v uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = byte('0' + v%10)
		v /= 10
	}
}

// render copies t into dst and patches it: action j gets sequence number
// first+j (or, with probability dupRate, the number of an action sent
// earlier, to make it a duplicate) and action_time nowSec. scratch is
// reused to keep duplicate picks within one body distinct (a body whose
// ids repeat is refused as a whole). It returns the body and the
// scratch slice for reuse.
func (g *generator) render(dst []byte, t *template, first uint64, nowSec int64, rng *rand.Rand, scratch []uint64) ([]byte, []uint64) {
	dst = append(dst[:0], t.body...)
	var ts [timeWidth]byte
	putDigits(ts[:], uint64(nowSec))
	for _, off := range t.timeOffs {
		copy(dst[off:off+timeWidth], ts[:])
	}
	scratch = scratch[:0]
	for j, off := range t.idOffs {
		seq := first + uint64(j)
		if g.dupRate > 0 && first > 0 && rng.Float64() < g.dupRate {
			for range 4 {
				d := rng.Uint64N(first)
				if !slices.Contains(scratch, d) {
					scratch = append(scratch, d)
					seq = d
					break
				}
			}
		}
		putDigits(dst[off:off+seqWidth], seq)
	}
	return dst, scratch
}

// newRunID returns a short random run id ([0-9a-z]{8}), so that ids never
// collide with an earlier run's within the agent's de-duplication window.
func newRunID() string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	var b [8]byte
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b[:])
}
