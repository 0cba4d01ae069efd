# Outpost's default fraud policy (policy/default.yaml, version 2026-11-20.1) written in Rego, for
# the comparison benchmark in bench/opa/run.sh only: the agent never loads this file.
#
# Query:  POST /v1/data/outpost/decision  {"input": <the input below>}
# Answer: {"result": "accept"|"review"|"decline", "score": N, "reasons": [{"id", "reason"}...],
#          "fired": [ids], "shadow": [ids], "policy_version": "..."}
#
# The input is the policy package's Input (what the CEL conditions see), as JSON:
#
#   event, account_id, device, ip, card_hash   strings (absent or "" when unknown)
#   amount                                     number, 0 when absent
#   now                                        RFC 3339; the evaluation time when absent
#   credit        {mode, line, outstanding, overdue_days, apr, valid_until (RFC 3339)}, absent if none
#   transaction   {amount, date}, absent if none
#   signals       {tongdun, unionpay_model, unionpay_transaction}:
#                   {status: fresh|stale|missing|error, score, result, match, age_seconds}
#                   (a signal left out is missing)
#   velocity      {withdrawals_1h: N}  (earlier events in the window, this one not counted)
#   degraded      bool
#
# Order of decision, as policy/doc.go: input validation, allow list, then block lists and block
# rules, allow rules, review rules, and last the summed score of the score rules against
# review_at 50 / decline_at 80. Reasons and fired ids are in evaluation order: block rules, then
# allow, review and score rules, each class in file order. Money (amount, credit.line,
# credit.outstanding, credit.remaining) is rounded to the cent before it is compared.
#
# A condition that reads a field the input does not have is undefined and so does not fire, which
# is what the CEL rules get from their status/present guards; where CEL would see a zero value
# (amount, counters) the Rego takes the same default.
package outpost

version := "2026-11-20.1"

thresholds := {"review_at": 50, "decline_at": 80}

offline_limit := 2000

max_string := 1024

lists := {
	"allow": {"accounts": [], "devices": [], "ips": [], "card_hashes": []},
	"block": {"accounts": [], "devices": [], "ips": [], "card_hashes": []},
}

# ---------------------------------------------------------------- the rules' ids, classes, reasons

rule_info := {
	"TD_DECLINE": {"class": "block", "reason": "TongDun advises decline"},
	"TD_REVIEW": {"class": "review", "reason": "TongDun advises review"},
	"TD_SCORE": {"class": "score", "reason": "TongDun risk score"},
	"UP_SCORE_LOW": {"class": "block", "reason": "UnionPay model credit score below 500"},
	"UP_SCORE_MEDIUM": {"class": "review", "reason": "UnionPay model credit score 500-599"},
	"UP_SCORE_FAIR": {"class": "score", "reason": "UnionPay model credit score 600-699"},
	"UP_TXN_NOT_FOUND": {"class": "block", "reason": "UnionPay could not authenticate the transaction"},
	"APR_OVER_36": {"class": "block", "reason": "Annualised rate above 36% is not compliant"},
	"LINE_EXCEEDED": {"class": "block", "reason": "Withdrawal above the remaining revolving line"},
	"OVERDUE": {"class": "block", "reason": "Revolving line has an overdue repayment"},
	"LINE_EXPIRED": {"class": "block", "reason": "Revolving line is past its validity"},
	"SINGLE_DRAWDOWN_PARTIAL": {"class": "block", "reason": "A single drawdown must take the whole line"},
	"SINGLE_DRAWDOWN_USED": {"class": "block", "reason": "The single drawdown was already taken"},
	"SINGLE_DRAWDOWN_EXPIRED": {"class": "block", "reason": "The single drawdown grant has expired"},
	"OFFLINE_LIMIT": {"class": "review", "reason": "Amount above the offline limit while signals are degraded"},
	"WITHDRAW_VELOCITY": {"class": "review", "reason": "More than 5 withdrawals by the account in an hour"},
	# mode: shadow: reported in "shadow", never decides
	"TD_STALE_DEGRADED": {"class": "review", "reason": "TongDun answer older than a day while degraded"},
}

# The active rules of each class in file order (the evaluation order). The policy has no allow
# rules.
block_rules := [
	"TD_DECLINE", "UP_SCORE_LOW", "UP_TXN_NOT_FOUND", "APR_OVER_36", "LINE_EXCEEDED", "OVERDUE",
	"LINE_EXPIRED", "SINGLE_DRAWDOWN_PARTIAL", "SINGLE_DRAWDOWN_USED", "SINGLE_DRAWDOWN_EXPIRED",
]

allow_rules := []

review_rules := ["TD_REVIEW", "UP_SCORE_MEDIUM", "OFFLINE_LIMIT", "WITHDRAW_VELOCITY"]

score_rules := ["TD_SCORE", "UP_SCORE_FAIR"]

shadow_rules := ["TD_STALE_DEGRADED"]

# ---------------------------------------------------------------- the input, with Input's defaults

amount := cents(object.get(input, "amount", 0))

withdrawal if input.event == "withdraw"

td_usable if input.signals.tongdun.status in {"fresh", "stale"}

model_usable if input.signals.unionpay_model.status in {"fresh", "stale"}

model_score := object.get(input.signals.unionpay_model, "score", 0)

revolving_withdrawal if {
	withdrawal
	input.credit.mode == "revolving"
}

single_withdrawal if {
	withdrawal
	input.credit.mode == "single"
}

remaining := cents(object.get(input.credit, "line", 0) - object.get(input.credit, "outstanding", 0))

now_ns := time.parse_rfc3339_ns(input.now) if is_string(input.now)

now_ns := time.now_ns() if not is_string(input.now)

# has(credit.valid_until) && now > credit.valid_until
credit_expired if now_ns > time.parse_rfc3339_ns(input.credit.valid_until)

cents(x) := round(x * 100) / 100

# ---------------------------------------------------------------- rule conditions

fires contains "TD_DECLINE" if {
	td_usable
	input.signals.tongdun.result == "decline"
}

fires contains "TD_REVIEW" if {
	td_usable
	input.signals.tongdun.result == "review"
}

# CEL: double(signals.tongdun.score) * 0.6. OPA computes with big.Float (64-bit mantissa), where
# 90 * 0.6 is 54.000000000000000003 (float64 gives 54); * 6 / 10 keeps whole results exact.
score_of["TD_SCORE"] := (object.get(input.signals.tongdun, "score", 0) * 6) / 10 if td_usable

fires contains "UP_SCORE_LOW" if {
	model_usable
	model_score < 500
}

fires contains "UP_SCORE_MEDIUM" if {
	model_usable
	model_score >= 500
	model_score < 600
}

score_of["UP_SCORE_FAIR"] := 25 if {
	model_usable
	model_score >= 600
	model_score < 700
}

fires contains "UP_TXN_NOT_FOUND" if {
	input.signals.unionpay_transaction.status == "fresh"
	not input.signals.unionpay_transaction.match
}

fires contains "APR_OVER_36" if input.credit.apr > 0.36

fires contains "LINE_EXCEEDED" if {
	revolving_withdrawal
	amount > remaining
}

fires contains "OVERDUE" if {
	revolving_withdrawal
	input.credit.overdue_days > 0
}

fires contains "LINE_EXPIRED" if {
	revolving_withdrawal
	credit_expired
}

fires contains "SINGLE_DRAWDOWN_PARTIAL" if {
	single_withdrawal
	amount != cents(object.get(input.credit, "line", 0))
}

fires contains "SINGLE_DRAWDOWN_USED" if {
	single_withdrawal
	cents(input.credit.outstanding) > 0
}

fires contains "SINGLE_DRAWDOWN_EXPIRED" if {
	single_withdrawal
	credit_expired
}

fires contains "OFFLINE_LIMIT" if {
	input.degraded == true
	amount > offline_limit
}

fires contains "WITHDRAW_VELOCITY" if {
	withdrawal
	input.velocity.withdrawals_1h >= 5
}

fires contains "TD_STALE_DEGRADED" if {
	input.degraded == true
	input.signals.tongdun.status == "stale"
	input.signals.tongdun.age_seconds > 86400
}

fired_ids := fires | {id | some id, _ in score_of}

# ---------------------------------------------------------------- lists

allow_listed if input.account_id in lists.allow.accounts

allow_listed if input.device in lists.allow.devices

allow_listed if ip_listed(lists.allow.ips)

allow_listed if card_listed(lists.allow.card_hashes)

block_hits contains 0 if input.account_id in lists.block.accounts

block_hits contains 1 if input.device in lists.block.devices

block_hits contains 2 if ip_listed(lists.block.ips)

block_hits contains 3 if card_listed(lists.block.card_hashes)

ip_listed(prefixes) if {
	some p in prefixes
	net.cidr_contains(as_cidr(p), input.ip)
}

card_listed(hashes) if {
	some h in hashes
	lower(h) == lower(input.card_hash)
}

as_cidr(p) := p if contains(p, "/")

as_cidr(p) := concat("", [p, "/128"]) if {
	not contains(p, "/")
	contains(p, ":")
}

as_cidr(p) := concat("", [p, "/32"]) if {
	not contains(p, "/")
	not contains(p, ":")
}

block_list_reasons := [
	{"id": "BLOCK_LIST_ACCOUNT", "reason": "account is on the block list"},
	{"id": "BLOCK_LIST_DEVICE", "reason": "device is on the block list"},
	{"id": "BLOCK_LIST_IP", "reason": "IP address is on the block list"},
	{"id": "BLOCK_LIST_CARD", "reason": "card is on the block list"},
]

# ---------------------------------------------------------------- input validation

long_string if {
	some k in ["event", "account_id", "device", "ip", "card_hash"]
	count(input[k]) > max_string
}

long_string if count(input.credit.mode) > max_string

long_string if count(input.transaction.date) > max_string

long_string if {
	some s in input.signals
	some k in ["status", "result"]
	count(s[k]) > max_string
}

# ---------------------------------------------------------------- outcome

fired_of(ids) := [id | some id in ids; fired_ids[id]]

reasons(ids) := [{"id": id, "reason": rule_info[id].reason} | some id in ids]

score := sum([v | some v in score_of])

score_result := "decline" if score >= thresholds.decline_at

else := "review" if score >= thresholds.review_at

else := "accept"

# {result, reasons} by the first of: block lists and block rules, allow rules, review rules, score.
outcome := {"result": "decline", "reasons": array.concat([block_list_reasons[i] | some i in block_hits], reasons(b))} if {
	b := fired_of(block_rules)
	count(block_hits) + count(b) > 0
} else := {"result": "accept", "reasons": reasons(a)} if {
	a := fired_of(allow_rules)
	count(a) > 0
} else := {"result": "review", "reasons": reasons(r)} if {
	r := fired_of(review_rules)
	count(r) > 0
} else := {"result": "accept", "reasons": []} if {
	score_result == "accept"
} else := {"result": score_result, "reasons": reasons(fired_of(score_rules))}

decision := {
	"result": "review", "score": 0, "reasons": [{"id": "INPUT_INVALID", "reason": "input has a string longer than 1024 bytes"}],
	"fired": [], "shadow": [], "policy_version": version,
} if {
	long_string
} else := {
	"result": "accept", "score": 0, "reasons": [{"id": "ALLOW_LIST", "reason": "on the allow list"}],
	"fired": [], "shadow": [], "policy_version": version,
} if {
	allow_listed
} else := {
	"result": outcome.result, "score": score, "reasons": outcome.reasons,
	"fired": array.concat(array.concat(fired_of(block_rules), fired_of(allow_rules)), array.concat(fired_of(review_rules), fired_of(score_rules))),
	"shadow": fired_of(shadow_rules), "policy_version": version,
}
