package policy

import (
	"math"
	"time"
)

// Results a Decision can carry.
const (
	Accept  = "accept"
	Review  = "review"
	Decline = "decline"
)

// Rule classes.
const (
	ClassAllow  = "allow"
	ClassBlock  = "block"
	ClassReview = "review"
	ClassScore  = "score"
)

// Rule modes.
const (
	ModeActive   = "active"
	ModeShadow   = "shadow"
	ModeDisabled = "disabled"
)

// Signal statuses.
const (
	StatusFresh   = "fresh"
	StatusStale   = "stale"
	StatusMissing = "missing"
	StatusError   = "error"
)

// Credit modes (see the consumer-credit flow: a revolving line may be drawn in parts within its
// remaining amount; a single drawdown is taken whole or not at all before it expires).
const (
	CreditRevolving = "revolving"
	CreditSingle    = "single"
)

// Reason ids the package itself produces (rule ids may not use them).
const (
	ReasonAllowList        = "ALLOW_LIST"
	ReasonBlockListAccount = "BLOCK_LIST_ACCOUNT"
	ReasonBlockListDevice  = "BLOCK_LIST_DEVICE"
	ReasonBlockListIP      = "BLOCK_LIST_IP"
	ReasonBlockListCard    = "BLOCK_LIST_CARD"
	ReasonRuleError        = "RULE_ERROR"
)

// Input is everything a policy sees. It carries no raw card, ID or phone number: CardHash is an
// HMAC computed by the caller.
type Input struct {
	Event       string       // TongDun decision_event: marketing, withdraw, get_coupon, ...
	AccountID   string       // TongDun account_id
	Device      string       // TongDun terminal.black_box
	IP          string       // TongDun terminal.ip
	CardHash    string       // HMAC of the card number, computed by the caller
	Amount      float64      // amount asked for; 0 when absent
	Now         time.Time    // decision time; the zero value means time.Now()
	Credit      *Credit      // the customer's credit grant; nil when absent
	Transaction *Transaction // the transaction UnionPay was asked to authenticate; nil when absent
	Signals     Signals
	Velocity    map[string]int64 // counter name -> count in its window (names declared by the policy)
	Degraded    bool             // some needed signal could not be had live
	// FleetVelocity is, for the counters declared fleet: true, the count across the fleet: this
	// agent's earlier events (Velocity) plus the other agents' that reached it through Kafka. A
	// count the caller left out is 0.
	FleetVelocity map[string]int64
	// FleetAgeSeconds is how old the fleet view is: the time since it last held everything the
	// broker had. NoFleetView when there is none (fleet velocity off, or never in step).
	FleetAgeSeconds float64
}

// NoFleetView is Input.FleetAgeSeconds when there is no fleet view: the largest double, so that a
// condition such as velocity.fleet_age_seconds() < 60.0 is false, as for a view infinitely old
// (a finite number, so that the input stays valid and the record encodes).
const NoFleetView = math.MaxFloat64

// Credit is the customer's credit grant as the lender's own systems see it.
type Credit struct {
	Mode        string    // "revolving" | "single"
	Line        float64   // the granted amount
	Outstanding float64   // drawn and not yet repaid
	OverdueDays int       // days the oldest unpaid instalment is late; 0 when none
	APR         float64   // annualised rate including fees, 0.18 = 18%
	ValidUntil  time.Time // end of the grant's validity; zero if none
}

// Transaction is what was sent to UnionPay FireEye's transaction authentication.
type Transaction struct {
	Amount float64
	Date   string // YYYYMMDD, as FireEye takes it
}

// Signal is one cached upstream answer.
type Signal struct {
	Status     string  // fresh | stale | missing | error ("" counts as missing)
	Score      int     // TongDun 0-100; FireEye model 300-1000
	Result     string  // TongDun: accept | review | decline
	Match      bool    // FireEye transaction authentication: data == 1
	AgeSeconds float64 // age of the cached answer
	Reasons    []Reason
}

// Signals are the upstream answers a policy may use.
type Signals struct {
	TongDun             Signal // TongDun risk verification
	UnionPayModel       Signal // FireEye model score (Score 300-1000)
	UnionPayTransaction Signal // FireEye transaction authentication (Match)
}

// Reason is one reason for a decision, in TongDun's shape.
type Reason struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// Fired is a rule whose condition held.
type Fired struct {
	ID     string  `json:"id"`
	Class  string  `json:"class"`
	Mode   string  `json:"mode"`
	Reason string  `json:"reason"`
	Score  float64 `json:"score,omitempty"` // contribution of a score rule
	Error  string  `json:"error,omitempty"` // set when the rule could not be evaluated (it did not fire)
}

// Decision is the outcome of Policy.Decide.
type Decision struct {
	Result  string   `json:"result"`  // accept | review | decline
	Score   float64  `json:"score"`   // summed contributions of active score rules that fired
	Reasons []Reason `json:"reasons"` // of the lists and active rules that produced Result, in evaluation order
	Fired   []Fired  `json:"fired"`   // every active rule that fired, in evaluation order
	Shadow  []Fired  `json:"shadow"`  // shadow rules that fired; they never change Result
	Errors  []Fired  `json:"errors"`  // rules (active or shadow) whose evaluation failed
	// PolicyVersion and PolicySHA256 identify the policy that decided.
	PolicyVersion string `json:"policy_version"`
	PolicySHA256  string `json:"policy_sha256"`
}

// VelocityDef declares a counter the caller must compute and pass in Input.Velocity.
type VelocityDef struct {
	Name   string
	Key    string // account | device | ip | card | phone
	Window time.Duration
	Events []string // empty = all events
	// Fleet: the counter is shared with the fleet (velocity.fleet(name)): each agent publishes
	// its increments and merges the others'.
	Fleet bool
}
