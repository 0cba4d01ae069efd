// Package action defines a Tencent Ads banking user action as the agent
// takes it on its local API, validates it against the seed's rules
// (industry tracks, action types, action_param enums) and stores it.
package action

// Action is the stored (normalised) form of one user action: the raw phone
// number has already been replaced by hash_phone, and action_time is Unix
// seconds. This is the payload kept in the spool's "tencent" queue.
type Action struct {
	ID          string         `json:"id"`
	Track       string         `json:"track"`
	ActionType  string         `json:"action_type"`
	ActionTime  int64          `json:"action_time"`
	UserID      *UserID        `json:"user_id,omitempty"`
	Trace       *Trace         `json:"trace,omitempty"`
	ActionParam map[string]int `json:"action_param,omitempty"`
}

// UserID holds the user identifiers Tencent accepts. A raw phone number is
// never stored: it is normalised and hashed into HashPhone on intake.
type UserID struct {
	HashPhone     string `json:"hash_phone,omitempty"`
	SHA256Phone   string `json:"sha256_phone,omitempty"`
	WechatOpenID  string `json:"wechat_openid,omitempty"`
	WechatAppID   string `json:"wechat_app_id,omitempty"`
	WechatUnionID string `json:"wechat_unionid,omitempty"`
	HashIMEI      string `json:"hash_imei,omitempty"`
	HashIDFA      string `json:"hash_idfa,omitempty"`
	HashOAID      string `json:"hash_oaid,omitempty"`
}

// Trace carries the ad click id.
type Trace struct {
	ClickID string `json:"click_id,omitempty"`
}
