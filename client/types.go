package client

import (
	"encoding/json"
	"time"
)

// Action is one Tencent Ads banking user action (POST /v1/actions). Its ID
// is the de-duplication key: an action sent again with the same ID within
// the agent's window (7 days) is counted as a duplicate, not stored twice.
type Action struct {
	// ID: 1-128 of A-Z a-z 0-9 . _ : -, and nothing that looks like a
	// phone, ID-card or bank-card number; a UUID is the safe choice.
	ID string `json:"id"`
	// Track is the industry track: enterprise_loan, individual_business_loan,
	// credit_card_short, credit_card_long, personal_loan, wealth_management,
	// payment.
	Track string `json:"track"`
	// ActionType is one of the types the Tencent banking spec lists for the
	// track (REGISTER, APPLY, CREDIT, WITHDRAW_DEPOSITS, ...).
	ActionType string `json:"action_type"`
	// ActionTime: at most 5 minutes ahead, at most 30 days old.
	ActionTime  time.Time    `json:"action_time"`
	UserID      *UserID      `json:"user_id,omitempty"`
	Trace       *Trace       `json:"trace,omitempty"`
	ActionParam *ActionParam `json:"action_param,omitempty"`
	// URL is the page an action from an H5/web page happened on: required
	// when the agent's Tencent data source is WEB.
	URL string `json:"url,omitempty"`
	// Optional, passed on to Tencent as given: Channel is one of
	// NATURAL, TENCENT, BYTEDANCE, KUAISHOU, ALIBABA, BAIDU, OTHERS,
	// MULTIPLE, UNKNOWN.
	Channel       string         `json:"channel,omitempty"`
	CustomAction  string         `json:"custom_action,omitempty"`
	ProductInform *ProductInform `json:"product_inform,omitempty"`
}

// ProductInform is the product an action is about.
type ProductInform struct {
	ContentType      string   `json:"content_type,omitempty"` // LOAN, FINANCIAL, BANKCARD, ...
	ProductCatalogID string   `json:"product_catalog_id,omitempty"`
	ProductID        []string `json:"product_id,omitempty"`
	CategoryPath     []string `json:"category_path,omitempty"`
}

// UserID identifies the user; give at least one field (or Trace.ClickID).
// A raw Phone is hashed by the agent before anything is stored.
type UserID struct {
	Phone         string `json:"phone,omitempty"`
	HashPhone     string `json:"hash_phone,omitempty"`
	SHA256Phone   string `json:"sha256_phone,omitempty"`
	WechatOpenID  string `json:"wechat_openid,omitempty"`
	WechatAppID   string `json:"wechat_app_id,omitempty"`
	WechatUnionID string `json:"wechat_unionid,omitempty"`
	HashIMEI      string `json:"hash_imei,omitempty"`
	HashIDFA      string `json:"hash_idfa,omitempty"`
	HashOAID      string `json:"hash_oaid,omitempty"`
	HashAndroidID string `json:"hash_android_id,omitempty"`
	// MD5SHA256*: the SHA-256 of the lower-case hex MD5 of the device id.
	MD5SHA256IMEI string `json:"md5_sha256_imei,omitempty"`
	MD5SHA256IDFA string `json:"md5_sha256_idfa,omitempty"`
	MD5SHA256OAID string `json:"md5_sha256_oaid,omitempty"`
	// CAID is the China Advertising ID (iOS), CAIDVersion its version.
	CAID        string `json:"caid,omitempty"`
	CAIDVersion int64  `json:"caid_version,omitempty"`
}

// Trace is Tencent's click trace.
type Trace struct {
	ClickID string `json:"click_id,omitempty"`
}

// ActionParam holds the parameters the spec allows for some tracks and
// types; zero leaves one out.
type ActionParam struct {
	CreditLevel           int `json:"credit_level,omitempty"`            // 1-3
	WithdrawDepositsLevel int `json:"withdraw_deposits_level,omitempty"` // 1-3
	RiskOverdue           int `json:"risk_overdue,omitempty"`            // 1-5
	CompleteOrderLevel    int `json:"complete_order_level,omitempty"`    // 1-3
}

// ActionsResult is the answer to PostActions: how many actions were stored
// and how many had been seen before.
type ActionsResult struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
}

// DecisionRequest is POST /v1/decisions: TongDun's risk-verification
// request, plus optional blocks. See the agent's README, "Decisions".
type DecisionRequest struct {
	// ID makes the call idempotent (the same ID answers the stored
	// decision), and so lets the client retry it.
	ID string `json:"id,omitempty"`
	// Channel is TongDun's; the agent fills it from its settings when empty.
	Channel       string `json:"channel,omitempty"`
	SessionID     string `json:"session_id"`
	DecisionEvent string `json:"decision_event"`
	// EventTime is ISO 8601 with milliseconds and an offset: see EventTime.
	EventTime   string                    `json:"event_time"`
	AccountID   string                    `json:"account_id,omitempty"`
	Terminal    *Terminal                 `json:"terminal"`
	Ext         map[string]any            `json:"ext,omitempty"`
	EventDetail map[string]map[string]any `json:"event_detail"`
	Amount      *float64                  `json:"amount,omitempty"`
	Card        *Card                     `json:"card,omitempty"`
	Transaction *Transaction              `json:"transaction,omitempty"`
	Credit      *Credit                   `json:"credit,omitempty"`
}

// EventTime formats t as a DecisionRequest's EventTime wants it:
// 2026-11-23T14:20:50.521+08:00.
func EventTime(t time.Time) string { return t.Format("2006-01-02T15:04:05.000Z07:00") }

// Terminal is the device: BlackBox or IP, at least one.
type Terminal struct {
	BlackBox string `json:"black_box,omitempty"`
	IP       string `json:"ip,omitempty"`
}

// Card asks UnionPay FireEye's model score.
type Card struct {
	CardNo string `json:"card_no"`
	CertID string `json:"cert_id"`
	Mobile string `json:"mobile"`
}

// Transaction asks UnionPay's transaction authentication (needs Card).
type Transaction struct {
	Date     string  `json:"date"` // YYYYMMDD
	Amount   float64 `json:"amount"`
	Location string  `json:"location,omitempty"`
}

// Credit describes the customer's credit line.
type Credit struct {
	Mode        string  `json:"mode"` // revolving or single
	Line        float64 `json:"line"`
	Outstanding float64 `json:"outstanding"`
	OverdueDays int     `json:"overdue_days"`
	APR         float64 `json:"apr"`                   // 0.18 is 18%
	ValidUntil  string  `json:"valid_until,omitempty"` // YYYY-MM-DD
}

// Decision is the answer to Decide.
type Decision struct {
	DecisionID string `json:"decision_id"`
	// Result is accept, review or decline.
	Result string `json:"result"`
	// Score is the policy's summed score, rounded to 2 decimals.
	Score         float64  `json:"score"`
	Reasons       []Reason `json:"reasons"`
	PolicyVersion string   `json:"policy_version"`
	// Degraded: a signal was missing or failed, and the policy's offline
	// rules decided.
	Degraded bool `json:"degraded"`
	// Signals by name: tongdun, unionpay_model, unionpay_transaction.
	Signals map[string]Signal `json:"signals"`
}

// Reason is why a decision came out as it did.
type Reason struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// Signal is one upstream's part in a decision.
type Signal struct {
	// Status is fresh or stale (cached), missing (not asked) or error.
	Status string `json:"status"`
	// Source is live, cache or none.
	Source     string   `json:"source"`
	Score      *int     `json:"score,omitempty"`
	Result     string   `json:"result,omitempty"`
	Match      *bool    `json:"match,omitempty"`
	AgeSeconds float64  `json:"age_seconds"`
	Reasons    []Reason `json:"reasons,omitempty"`
	// Queued: the check was queued; its late verdict shows in the record.
	Queued bool   `json:"queued,omitempty"`
	Note   string `json:"note,omitempty"`
}

// DecisionRecord is a stored decision (GET /v1/decisions/{id}, admin).
type DecisionRecord struct {
	Decision
	PolicySHA256 string           `json:"policy_sha256"`
	DecidedAt    time.Time        `json:"decided_at"`
	Fired        []FiredRule      `json:"fired,omitempty"`
	Shadow       []FiredRule      `json:"shadow,omitempty"`
	RuleErrors   []FiredRule      `json:"rule_errors,omitempty"`
	Velocity     map[string]int64 `json:"velocity,omitempty"`
	// Input is the request, personal fields masked.
	Input        json.RawMessage        `json:"input,omitempty"`
	LateVerdicts map[string]LateVerdict `json:"late_verdicts,omitempty"`
}

// FiredRule is a policy rule whose condition held (or failed, with Error).
type FiredRule struct {
	ID     string  `json:"id"`
	Class  string  `json:"class"`
	Mode   string  `json:"mode"`
	Reason string  `json:"reason"`
	Score  float64 `json:"score,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// LateVerdict is an upstream's answer to a queued check, as it came.
type LateVerdict struct {
	At     time.Time       `json:"at"`
	Answer json.RawMessage `json:"answer"`
}

// Status is GET /v1/status: queues, upstreams, the store and the policy.
type Status struct {
	Version string `json:"version,omitempty"`
	// Actions since the agent started.
	Actions ActionTotals `json:"actions"`
	// LastHour: one count a minute, oldest first.
	LastHour          LastHour                  `json:"last_hour"`
	Queues            map[string]QueueStatus    `json:"queues"`
	Upstreams         map[string]UpstreamStatus `json:"upstreams,omitempty"`
	Policy            *PolicyStatus             `json:"policy,omitempty"`
	DecisionsLastHour map[string]int64          `json:"decisions_last_hour"`
	Store             StoreStatus               `json:"store"`
	Notes             []string                  `json:"notes,omitempty"`
	// Raw is the answer as the agent sent it, fields this client does not
	// know included.
	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON keeps the raw answer beside the fields.
func (s *Status) UnmarshalJSON(b []byte) error {
	type plain Status
	if err := json.Unmarshal(b, (*plain)(s)); err != nil {
		return err
	}
	s.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// ActionTotals count actions since the agent started.
type ActionTotals struct {
	Accepted   int64 `json:"accepted_total"`
	Duplicates int64 `json:"duplicates_total"`
	Refused    int64 `json:"refused_total"`
	Delivered  int64 `json:"delivered_total"`
}

// LastHour is one count a minute over the last hour, oldest first: the
// last is the current minute, From the start of the first.
type LastHour struct {
	From      time.Time          `json:"from"`
	Queued    []int64            `json:"queued"`
	Delivered []int64            `json:"delivered"`
	Refused   []int64            `json:"refused"`
	Decisions map[string][]int64 `json:"decisions"`
}

// QueueStatus is one upstream's queue.
type QueueStatus struct {
	Depth            int64   `json:"depth"`
	Bytes            int64   `json:"bytes"`
	InFlight         int     `json:"in_flight"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	DeadLetters      int64   `json:"dead_letters"`
}

// UpstreamStatus is one upstream's delivery state.
type UpstreamStatus struct {
	// State is ok, retrying, paused, circuit_open or not_configured.
	State          string     `json:"state"`
	PausedUntil    *time.Time `json:"paused_until"`
	Reason         string     `json:"reason"`
	Queued         int64      `json:"queued"`
	InFlight       int        `json:"in_flight"`
	DeliveredTotal int64      `json:"delivered_total"`
	FailedTotal    int64      `json:"failed_total"`
	DeadLetters    int64      `json:"dead_letters"`
	LastSuccessAt  *time.Time `json:"last_success_at"`
	LastError      string     `json:"last_error"`
}

// PolicyStatus is the decision policy in force.
type PolicyStatus struct {
	Version     string     `json:"version"`
	SHA256      string     `json:"sha256"`
	File        string     `json:"file"`
	LoadedAt    *time.Time `json:"loaded_at,omitempty"`
	Reloads     int64      `json:"reloads"`
	Refusals    int64      `json:"refusals"`
	LastRefusal string     `json:"last_refusal,omitempty"`
}

// StoreStatus is the agent's store.
type StoreStatus struct {
	Bytes       int64          `json:"bytes"`
	QueuedBytes int64          `json:"queued_bytes"`
	Quarantine  *Quarantine    `json:"quarantine,omitempty"`
	Damage      []DamageReport `json:"damage,omitempty"`
	Intake      Intake         `json:"intake"`
}

// Quarantine is a store found unusable at start-up and moved aside.
type Quarantine struct {
	Path   string    `json:"path"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// DamageReport is damage found in the store's files and what it cost.
type DamageReport struct {
	At                 time.Time        `json:"at"`
	Found              string           `json:"found"`
	Spans              []DamagedSpan    `json:"spans,omitempty"`
	JournalRecordsLost uint64           `json:"journal_records_lost,omitempty"`
	EntriesLost        map[string]int64 `json:"entries_lost,omitempty"`
	OtherKeysLost      int64            `json:"other_keys_lost,omitempty"`
	CountUnknown       bool             `json:"count_unknown,omitempty"`
	SetAside           string           `json:"set_aside,omitempty"`
	Message            string           `json:"message"`
}

// DamagedSpan is a run of unreadable bytes in one file.
type DamagedSpan struct {
	File   string `json:"file"`
	Offset int64  `json:"offset"`
	End    int64  `json:"end"`
	What   string `json:"what"`
}

// Intake says whether the agent takes new work.
type Intake struct {
	// State is accepting or refusing; Reason, while refusing, disk_low or
	// spool_full.
	State            string `json:"state"`
	Reason           string `json:"reason,omitempty"`
	Message          string `json:"message,omitempty"`
	FreeDiskBytes    int64  `json:"free_disk_bytes"`
	MinFreeDiskBytes int64  `json:"min_free_disk_bytes"`
}

// Readiness is GET /readyz.
type Readiness struct {
	// Status is ready or not_ready; Reason, when not ready,
	// store_unavailable, disk_low or spool_full.
	Status     string      `json:"status"`
	Reason     string      `json:"reason,omitempty"`
	Error      string      `json:"error,omitempty"`
	Quarantine *Quarantine `json:"quarantine,omitempty"`
	Warnings   []string    `json:"warnings,omitempty"`
}

// DeadLetter is an item set aside for an upstream, personal fields masked.
type DeadLetter struct {
	Upstream string `json:"upstream"`
	Seq      uint64 `json:"seq"`
	ID       string `json:"id"`
	// OuterActionID is the key a Tencent action was sent under (its ID
	// mapped to Tencent's alphabet), to find it in Tencent's reports.
	OuterActionID string          `json:"outer_action_id,omitempty"`
	Reason        string          `json:"reason"`
	DeadAt        time.Time       `json:"dead_at"`
	EnqueuedAt    time.Time       `json:"enqueued_at"`
	Attempts      int             `json:"attempts"`
	LastError     string          `json:"last_error,omitempty"`
	PayloadMasked json.RawMessage `json:"payload_masked"`
	// Raw is the entry as the agent sent it.
	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON keeps the raw entry beside the fields.
func (d *DeadLetter) UnmarshalJSON(b []byte) error {
	type plain DeadLetter
	if err := json.Unmarshal(b, (*plain)(d)); err != nil {
		return err
	}
	d.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// Replay says which dead letters to put back: IDs, or All.
type Replay struct {
	Upstream string   `json:"upstream"`
	IDs      []string `json:"ids,omitempty"`
	All      bool     `json:"all,omitempty"`
}
