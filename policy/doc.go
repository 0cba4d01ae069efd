// Package policy decides fraud questions locally — accept, review or decline, with reasons — from
// a policy file, cached upstream answers (TongDun risk verification, UnionPay FireEye model score
// and transaction authentication), velocity counters and allow/block lists. It keeps deciding when
// the upstreams cannot be reached: the caller marks the input Degraded and gives each signal's
// status (fresh, stale, missing, error), and the policy says what that means.
//
// # Loading
//
// Parse (and LoadFile) decode the YAML strictly: unknown keys, duplicate keys or rule ids, unknown
// classes, modes or velocity keys, missing id/class/when/reason, review_at > decline_at, YAML
// anchors and aliases, conditions that do not type-check or are not bool, conditions whose
// estimated cost is too high, velocity counters used but not declared, an enumerated field
// compared with a value it never takes (event == "withdrawl"), and failing test vectors are all
// load errors. Every problem found is returned, as an ErrorList of *Error, each with the file
// name and the YAML line (and column where known) of the offending key or value; for CEL errors
// the position is that of the expression in the YAML file plus CEL's column, exact for one-line
// expressions and literal blocks (|), best effort for folded ones (>). A policy that loads is
// immutable and safe for concurrent use. Default returns the embedded default.yaml, whose every
// rule says in its doc which seed it encodes.
//
// Disabled rules are compiled and checked like the others (a broken rule is an error whatever
// its mode) but never evaluated.
//
// # Deciding
//
// Decide evaluates, in this order:
//
//  1. Input validation: a non-finite number or a string longer than 1024 bytes (TongDun's own
//     parameter limit) gives review with reason INPUT_INVALID and nothing else is looked at.
//  2. The allow list (accounts, devices, ips (addresses or CIDR prefixes), card_hashes): a match
//     accepts at once with reason ALLOW_LIST; no rule is evaluated. It beats everything below.
//  3. Every active and shadow rule is evaluated, block rules first, then allow, review and score
//     rules, each class in file order (this is the "evaluation order" of Fired and Reasons).
//  4. The outcome, first match wins:
//     - a block list hit (BLOCK_LIST_ACCOUNT, BLOCK_LIST_DEVICE, BLOCK_LIST_IP, BLOCK_LIST_CARD)
//     or any block rule fired: decline; reasons are the block list hits then the block rules;
//     - any allow rule fired: accept; reasons are the allow rules;
//     - any review rule fired: review; reasons are the review rules;
//     - otherwise the summed contributions of the score rules that fired (each, and the sum,
//     rounded to 2 decimals): >= decline_at declines, >= review_at reviews, else accept. Reasons are the score rules that fired when
//     the result is review or decline, none for an accept.
//  5. A rule whose evaluation failed (reported in Decision.Errors) did not fire. If it could
//     have changed the outcome — an active block rule when the result is not decline, or an
//     active review or score rule when the result came from the score — an accept becomes a
//     review and reason RULE_ERROR is added: an error never lets a request through unexamined.
//
// Decision.Fired lists every active rule that fired (not only the deciding ones), with each score
// rule's contribution; Decision.Shadow lists the shadow rules that fired, which never change the
// result, the score or the reasons.
//
// Money is compared to the cent: amount, credit.line, credit.outstanding, credit.remaining and
// transaction.amount are rounded to two decimals before the conditions see them, so a withdrawal
// of exactly the remaining line compares equal to it despite binary floating point.
//
// # The policy file
//
//	version: "2026-11-20.1"                  # required
//	description: free text                   # optional
//	thresholds: {review_at: 50, decline_at: 80}
//	offline_limit: 2000                      # the CEL variable offline_limit
//	lists:
//	  allow: {accounts: [], devices: [], ips: [], card_hashes: []}
//	  block: {accounts: [], devices: [], ips: ["203.0.113.0/24"], card_hashes: []}
//	velocity:                                # counters the caller computes (Policy.Velocity)
//	  - {name: withdrawals_1h, key: account, window: 1h, events: [withdraw]}
//	  - {name: loan_apps_1h, key: phone, window: 1h, fleet: true}   # shared with the fleet
//	rules:
//	  - id: TD_DECLINE                       # letters, digits, _ . -; unique
//	    class: block                         # allow | block | review | score
//	    mode: active                         # active (default) | shadow | disabled
//	    when: 'signals.tongdun.result == "decline"'   # CEL, type bool
//	    reason: TongDun advises decline      # the text reported with the id
//	    score: 25                            # class score only: a number, or a CEL int/double expression
//	    doc: why the rule exists
//	tests:                                   # run at every load; a failing test refuses the policy
//	  - name: td decline
//	    input: {event: withdraw, signals: {tongdun: {status: fresh, result: decline}}}
//	    expect: {result: decline, reasons: [TD_DECLINE]}   # also fired, shadow, errors, score
//
// A velocity counter's key is account, device, ip, card (the card number) or phone (the
// applicant's mobile: card.mobile, else TongDun v3's event_detail.account.phone).
//
// A test input takes the Input fields in snake_case (event, account_id, device, ip, card_hash,
// amount, now, credit, transaction, signals, velocity, degraded, fleet_velocity,
// fleet_age_seconds: a number, or none for no fleet view); a signal not given is missing, the
// fleet view's age is 0, and now defaults to 2026-01-01T00:00:00Z. Lists in expect are compared exactly, in order. The
// same shape serves RunCases (`agent policy test FILE CASES.yaml`).
//
// # CEL variables
//
//	event          string     TongDun decision_event (marketing, withdraw, get_coupon, ...)
//	account_id     string
//	device         string     terminal.black_box
//	ip             string
//	card_hash      string     HMAC of the card number
//	amount         double     0 when absent
//	now            timestamp  Input.Now (time.Now() when zero)
//	credit         outpost.Credit
//	    present bool, mode string ("revolving" | "single"), line double, outstanding double,
//	    remaining double (line - outstanding), overdue_days int, apr double (0.18 = 18%),
//	    valid_until timestamp (has(credit.valid_until) is false when there is none)
//	transaction    outpost.Transaction
//	    present bool, amount double, date string (YYYYMMDD)
//	signals        outpost.Signals
//	    tongdun, unionpay_model, unionpay_transaction: outpost.Signal
//	        status string (fresh | stale | missing | error), score int, result string,
//	        match bool, age_seconds double, reason_ids list(string) (the upstream's reason ids)
//	velocity       map(string, int)   the declared counters; a count the caller left out is 0
//	degraded       bool
//	offline_limit  double     the policy's offline_limit
//
// # The fleet's counts
//
// A counter declared fleet: true is shared by every agent of the fleet (fleet mode on Kafka,
// AGENT_FLEET_VELOCITY; docs/fleet-kafka.md). Two functions of velocity read it:
//
//	velocity.fleet("name")       int     the counter across the fleet: this agent's earlier events
//	                                     in the window (velocity.name) plus the other agents'
//	                                     increments that reached it, bucketed by event time (the
//	                                     window is rounded out to whole buckets of 1/60 of it). Never
//	                                     below velocity.name; without a fleet view it equals it.
//	velocity.fleet_age_seconds() double  how old the fleet view is: the time since it last held
//	                                     everything the broker had; the largest double when there
//	                                     is none (fleet velocity off, or never in step), so a
//	                                     comparison such as < 60.0 is false
//
// Both are checked at load: they are called on velocity only, and velocity.fleet takes the literal
// name of a counter declared fleet: true. A decision never waits for the fleet: both are read
// from memory, and a view that fell behind (Kafka unreachable) is what fleet_age_seconds says.
//
// The object types are declared to CEL through a types.Provider of this package, so conditions
// are fully type-checked at load: a misspelt field (signals.tongdun.scroe), a comparison of a
// double with an int literal (credit.outstanding > 0 instead of > 0.0) or a non-bool condition
// is a load error with its position. Field presence (has()) follows the data: credit and
// transaction fields are present when the input has a credit or transaction, a signal's fields
// when its status is fresh or stale. Maps of dyn were rejected because they check nothing, and
// flat variables (signals_tongdun_score) because they read worse and lose has().
//
// At run time the conditions read the Input through a pooled activation (an
// interpreter.Activation over the Input, with views whose fields the provider's GetFrom reads),
// converting each value to CEL at most once per decision; no map is built per call. Programs are
// compiled once at load with cel.OptOptimize.
//
// Conditions may use CEL's standard functions and macros (has, all, exists, exists_one, map,
// filter) and nothing else. Each condition's worst-case cost is estimated at load against the
// input sizes Decide enforces and must stay within 5000; conditions estimated above 100 (those
// with a comprehension or much string work) also run under a runtime cost limit as a backstop.
package policy
