package action

// The rules below encode section 2 (action types per industry track) and
// section 3 (action_param) of the seed "Tencent Ads user action reporting —
// banking". They are read-only tables; the exported accessors return copies.

// Industry tracks, in the seed's order.
const (
	TrackEnterpriseLoan         = "enterprise_loan"          // 企业贷
	TrackIndividualBusinessLoan = "individual_business_loan" // 个体工商户贷款
	TrackCreditCardShort        = "credit_card_short"        // 信用卡(短表)
	TrackCreditCardLong         = "credit_card_long"         // 信用卡(长表)
	TrackPersonalLoan           = "personal_loan"            // 个贷
	TrackWealthManagement       = "wealth_management"        // 理财
	TrackPayment                = "payment"                  // 支付
)

// Action types used by the seed (11 in all).
const (
	TypeFollow                = "FOLLOW"
	TypeRegister              = "REGISTER"
	TypeReservation           = "RESERVATION"
	TypeApply                 = "APPLY"
	TypeConfirmEffectiveLeads = "CONFIRM_EFFECTIVE_LEADS"
	TypeCredit                = "CREDIT"
	TypeCompleteOrder         = "COMPLETE_ORDER"
	TypeWithdrawDeposits      = "WITHDRAW_DEPOSITS"
	TypeScanCode              = "SCANCODE"
	TypeDownloadApp           = "DOWNLOAD_APP"
	TypeViewContent           = "VIEW_CONTENT"
)

// action_param names (seed section 3).
const (
	ParamCreditLevel           = "credit_level"
	ParamWithdrawDepositsLevel = "withdraw_deposits_level"
	ParamRiskOverdue           = "risk_overdue"
	ParamCompleteOrderLevel    = "complete_order_level"
)

var actionTypes = [...]string{
	TypeFollow, TypeRegister, TypeReservation, TypeApply,
	TypeConfirmEffectiveLeads, TypeCredit, TypeCompleteOrder,
	TypeWithdrawDeposits, TypeScanCode, TypeDownloadApp, TypeViewContent,
}

// trackRule lists a track's allowed action types in the seed's table order.
type trackRule struct {
	name    string
	actions []string
}

var trackRules = [...]trackRule{
	{TrackEnterpriseLoan, []string{TypeFollow, TypeRegister, TypeReservation, TypeApply, TypeConfirmEffectiveLeads, TypeCredit}},
	{TrackIndividualBusinessLoan, []string{TypeReservation, TypeCompleteOrder, TypeConfirmEffectiveLeads, TypeCredit}},
	{TrackCreditCardShort, []string{TypeRegister, TypeReservation}},
	{TrackCreditCardLong, []string{TypeApply, TypeConfirmEffectiveLeads, TypeCredit}},
	{TrackPersonalLoan, []string{TypeRegister, TypeReservation, TypeApply, TypeCredit, TypeWithdrawDeposits}},
	{TrackWealthManagement, []string{TypeFollow, TypeScanCode, TypeRegister, TypeDownloadApp, TypeReservation, TypeCompleteOrder}},
	{TrackPayment, []string{TypeViewContent, TypeRegister, TypeReservation, TypeConfirmEffectiveLeads}},
}

// TrackAction is one (track, action_type) pair.
type TrackAction struct {
	Track      string `json:"track"`
	ActionType string `json:"action_type"`
}

// ParamRule describes one action_param: its integer range and the
// (track, action_type) pairs it applies to. All parameters are optional.
type ParamRule struct {
	Name    string        `json:"name"`
	Min     int           `json:"min"`
	Max     int           `json:"max"`
	Applies []TrackAction `json:"applies"`
}

var paramRules = [...]ParamRule{
	// CONFIRM_EFFECTIVE_LEADS: 仅适用于企业贷赛道; CREDIT: 仅适用于企业贷和个贷赛道.
	{ParamCreditLevel, 1, 3, []TrackAction{
		{TrackEnterpriseLoan, TypeConfirmEffectiveLeads},
		{TrackEnterpriseLoan, TypeCredit},
		{TrackPersonalLoan, TypeCredit},
	}},
	// WITHDRAW_DEPOSITS: 仅适用于个贷赛道.
	{ParamWithdrawDepositsLevel, 1, 3, []TrackAction{{TrackPersonalLoan, TypeWithdrawDeposits}}},
	{ParamRiskOverdue, 1, 5, []TrackAction{{TrackPersonalLoan, TypeWithdrawDeposits}}},
	// COMPLETE_ORDER: 仅适用理财赛道.
	{ParamCompleteOrderLevel, 1, 3, []TrackAction{{TrackWealthManagement, TypeCompleteOrder}}},
}

// Tracks returns each industry track with the action types it accepts, in
// the seed's order. The result is a fresh copy.
func Tracks() map[string][]string {
	m := make(map[string][]string, len(trackRules))
	for _, t := range trackRules {
		m[t.name] = append([]string(nil), t.actions...)
	}
	return m
}

// TrackNames returns the track names in the seed's order.
func TrackNames() []string {
	out := make([]string, len(trackRules))
	for i, t := range trackRules {
		out[i] = t.name
	}
	return out
}

// ActionTypes returns the 11 action types the seed uses, in order of first
// appearance.
func ActionTypes() []string { return append([]string(nil), actionTypes[:]...) }

// Params returns the action_param rules of the seed's section 3 (a copy).
func Params() []ParamRule {
	out := make([]ParamRule, len(paramRules))
	for i, p := range paramRules {
		p.Applies = append([]TrackAction(nil), p.Applies...)
		out[i] = p
	}
	return out
}

// lookupTrack returns the index of track b in trackRules, or -1.
func lookupTrack(b []byte) int {
	for i := range trackRules {
		if string(b) == trackRules[i].name {
			return i
		}
	}
	return -1
}

// lookupActionType returns the canonical action type equal to b, if any.
func lookupActionType(b []byte) (string, bool) {
	for _, a := range actionTypes {
		if string(b) == a {
			return a, true
		}
	}
	return "", false
}

func trackAllows(track int, actionType string) bool {
	for _, a := range trackRules[track].actions {
		if a == actionType {
			return true
		}
	}
	return false
}

// lookupParam returns the index of parameter name b in paramRules, or -1.
func lookupParam(b []byte) int {
	for i := range paramRules {
		if string(b) == paramRules[i].Name {
			return i
		}
	}
	return -1
}
