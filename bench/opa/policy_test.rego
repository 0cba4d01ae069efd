# The default policy's own test vectors (policy/default.yaml, tests:) against policy.rego.
# Run: opa test bench/opa/
package outpost_test

import data.outpost

# Test vectors decide at 2026-01-01T00:00:00Z unless they say otherwise, like the CEL ones.
decide(doc) := d if {
	d := outpost.decision with input as object.union({"now": "2026-01-01T00:00:00Z"}, doc)
}

ids(rs) := [r.id | some r in rs]

expect(d, result, reasons) if {
	d.result == result
	ids(d.reasons) == reasons
}

test_clean_withdrawal_within_the_line_is_accepted if {
	d := decide({
		"event": "withdraw", "amount": 1000,
		"credit": {"mode": "revolving", "line": 10000, "outstanding": 2000, "apr": 0.18, "valid_until": "2026-12-31T00:00:00Z"},
		"signals": {"tongdun": {"status": "fresh", "score": 10, "result": "accept"}, "unionpay_model": {"status": "fresh", "score": 780}},
	})
	expect(d, "accept", [])
	d.fired == ["TD_SCORE"]
	d.score == 6
}

test_tongdun_decline_is_carried_over if {
	expect(decide({"event": "withdraw", "signals": {"tongdun": {"status": "fresh", "score": 90, "result": "decline"}}}), "decline", ["TD_DECLINE"])
}

test_stale_tongdun_decline_still_declines if {
	expect(decide({"event": "withdraw", "signals": {"tongdun": {"status": "stale", "score": 90, "result": "decline"}}}), "decline", ["TD_DECLINE"])
}

test_tongdun_review_is_carried_over if {
	d := decide({"event": "get_coupon", "signals": {"tongdun": {"status": "fresh", "score": 40, "result": "review"}}})
	expect(d, "review", ["TD_REVIEW"])
	d.score == 24
}

test_missing_tongdun_answer_decides_nothing if {
	d := decide({"event": "marketing", "signals": {"tongdun": {"status": "missing", "score": 99, "result": "decline"}}})
	d.result == "accept"
	d.fired == []
}

test_high_tongdun_score_reviews_on_its_own if {
	d := decide({"event": "marketing", "signals": {"tongdun": {"status": "fresh", "score": 90, "result": "accept"}}})
	expect(d, "review", ["TD_SCORE"])
	d.score == 54
}

test_high_tongdun_score_with_a_fair_unionpay_score_declines if {
	d := decide({"event": "marketing", "signals": {
		"tongdun": {"status": "fresh", "score": 95, "result": "accept"},
		"unionpay_model": {"status": "fresh", "score": 650},
	}})
	expect(d, "decline", ["TD_SCORE", "UP_SCORE_FAIR"])
	d.score == 82
}

test_unionpay_model_score_bands if {
	expect(decide({"event": "withdraw", "signals": {"unionpay_model": {"status": "fresh", "score": 499}}}), "decline", ["UP_SCORE_LOW"])
	expect(decide({"event": "withdraw", "signals": {"unionpay_model": {"status": "fresh", "score": 500}}}), "review", ["UP_SCORE_MEDIUM"])
	d := decide({"event": "withdraw", "signals": {"unionpay_model": {"status": "fresh", "score": 600}}})
	d.result == "accept"
	d.fired == ["UP_SCORE_FAIR"]
	d.score == 25
}

test_transaction_authentication if {
	expect(
		decide({"event": "withdraw", "transaction": {"amount": 212.00, "date": "20261201"}, "signals": {"unionpay_transaction": {"status": "fresh", "match": false}}}),
		"decline", ["UP_TXN_NOT_FOUND"],
	)
	expect(
		decide({"event": "withdraw", "transaction": {"amount": 212.00, "date": "20261201"}, "signals": {"unionpay_transaction": {"status": "fresh", "match": true}}}),
		"accept", [],
	)
}

test_apr_ceiling if {
	expect(decide({"event": "withdraw", "amount": 100, "credit": {"mode": "revolving", "line": 1000, "apr": 0.36}}), "accept", [])
	expect(decide({"event": "withdraw", "amount": 100, "credit": {"mode": "revolving", "line": 1000, "apr": 0.3601}}), "decline", ["APR_OVER_36"])
}

test_remaining_line_to_the_cent if {
	expect(decide({"event": "withdraw", "amount": 8999.90, "credit": {"mode": "revolving", "line": 10000, "outstanding": 1000.10, "apr": 0.2}}), "accept", [])
	expect(decide({"event": "withdraw", "amount": 8999.91, "credit": {"mode": "revolving", "line": 10000, "outstanding": 1000.10, "apr": 0.2}}), "decline", ["LINE_EXCEEDED"])
}

test_overdue_revolving_line_declines_even_with_room if {
	expect(decide({"event": "withdraw", "amount": 100, "credit": {"mode": "revolving", "line": 10000, "overdue_days": 1, "apr": 0.2}}), "decline", ["OVERDUE"])
}

test_revolving_line_past_its_validity_declines if {
	expect(
		decide({"event": "withdraw", "amount": 100, "now": "2027-01-01T00:00:01Z", "credit": {"mode": "revolving", "line": 10000, "apr": 0.2, "valid_until": "2027-01-01T00:00:00Z"}}),
		"decline", ["LINE_EXPIRED"],
	)
}

test_single_drawdown if {
	expect(decide({"event": "withdraw", "amount": 10000, "credit": {"mode": "single", "line": 10000, "apr": 0.2, "valid_until": "2026-01-10T00:00:00Z"}}), "accept", [])
	expect(decide({"event": "withdraw", "amount": 9999.99, "credit": {"mode": "single", "line": 10000, "apr": 0.2}}), "decline", ["SINGLE_DRAWDOWN_PARTIAL"])
	expect(decide({"event": "withdraw", "amount": 10000, "credit": {"mode": "single", "line": 10000, "outstanding": 10000, "apr": 0.2}}), "decline", ["SINGLE_DRAWDOWN_USED"])
	expect(
		decide({"event": "withdraw", "amount": 10000, "now": "2026-01-10T00:00:00Z", "credit": {"mode": "single", "line": 10000, "apr": 0.2, "valid_until": "2026-01-10T00:00:00Z"}}),
		"accept", [],
	)
	expect(
		decide({"event": "withdraw", "amount": 10000, "now": "2026-01-10T00:00:01Z", "credit": {"mode": "single", "line": 10000, "apr": 0.2, "valid_until": "2026-01-10T00:00:00Z"}}),
		"decline", ["SINGLE_DRAWDOWN_EXPIRED"],
	)
}

test_offline_limit if {
	expect(decide({"event": "withdraw", "amount": 2000.01, "degraded": true}), "review", ["OFFLINE_LIMIT"])
	expect(decide({"event": "withdraw", "amount": 2000, "degraded": true}), "accept", [])
}

test_withdraw_velocity if {
	expect(decide({"event": "withdraw", "amount": 10, "velocity": {"withdrawals_1h": 5}}), "review", ["WITHDRAW_VELOCITY"])
	expect(decide({"event": "withdraw", "amount": 10, "velocity": {"withdrawals_1h": 4}}), "accept", [])
}

test_every_fired_rule_is_reported_the_block_rules_give_the_reasons if {
	d := decide({
		"event": "withdraw", "amount": 20000, "degraded": true,
		"credit": {"mode": "revolving", "line": 10000, "overdue_days": 30, "apr": 0.40},
		"signals": {"tongdun": {"status": "fresh", "score": 70, "result": "review"}},
	})
	expect(d, "decline", ["APR_OVER_36", "LINE_EXCEEDED", "OVERDUE"])
	d.fired == ["APR_OVER_36", "LINE_EXCEEDED", "OVERDUE", "TD_REVIEW", "OFFLINE_LIMIT", "TD_SCORE"]
}

test_the_shadow_rule_is_reported_but_does_not_decide if {
	d := decide({"event": "withdraw", "amount": 10, "degraded": true, "signals": {"tongdun": {"status": "stale", "score": 0, "result": "accept", "age_seconds": 90000}}})
	expect(d, "accept", [])
	d.fired == ["TD_SCORE"]
	d.shadow == ["TD_STALE_DEGRADED"]
}

# Not in default.yaml: the lists (empty in the default policy) and the benchmark's own input.
test_block_and_allow_lists if {
	blocked := outpost.decision with input as {"event": "withdraw", "ip": "203.0.113.9", "account_id": "a1"}
		with outpost.lists as {
			"allow": {"accounts": [], "devices": [], "ips": [], "card_hashes": []},
			"block": {"accounts": ["a1"], "devices": [], "ips": ["203.0.113.0/24"], "card_hashes": []},
		}
	expect(blocked, "decline", ["BLOCK_LIST_ACCOUNT", "BLOCK_LIST_IP"])

	allowed := outpost.decision with input as {"event": "withdraw", "card_hash": "ABCD", "signals": {"tongdun": {"status": "fresh", "score": 90, "result": "decline"}}}
		with outpost.lists as {
			"allow": {"accounts": [], "devices": [], "ips": [], "card_hashes": ["abcd"]},
			"block": {"accounts": [], "devices": [], "ips": [], "card_hashes": []},
		}
	expect(allowed, "accept", ["ALLOW_LIST"])
}

test_benchmark_input_is_a_clean_accept if {
	d := outpost.decision with input as data.input
	expect(d, "accept", [])
	d.fired == ["TD_SCORE"]
	d.score == 18
}
