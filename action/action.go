// Package action defines a Tencent Ads banking user action as the agent
// takes it on its local API, validates it against the seed's rules
// (industry tracks, action types, action_param enums) and stores it.
//
// The stored form is encoded by hand (AppendJSON), because it earns it
// (BENCHMARKS.md, release 0.2 and session 12): 200 ns and no allocation an
// action against json.Marshal's 760-810 ns and 6 allocations, which were
// 5.7% of the agent's CPU with requests of 100. encode_test.go holds it to
// json.Marshal's bytes.
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
	// URL is the page the action happened on, for actions from H5/web
	// pages: required when the Tencent data source is WEB.
	URL string `json:"url,omitempty"`
	// Optional Tencent fields, passed on as given (after validation).
	Channel       string         `json:"channel,omitempty"`
	CustomAction  string         `json:"custom_action,omitempty"`
	ProductInform *ProductInform `json:"product_inform,omitempty"`
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
	HashAndroidID string `json:"hash_android_id,omitempty"`
	// MD5SHA256*: the SHA-256 of the lower-case hex MD5 of the device id.
	MD5SHA256IMEI string `json:"md5_sha256_imei,omitempty"`
	MD5SHA256IDFA string `json:"md5_sha256_idfa,omitempty"`
	MD5SHA256OAID string `json:"md5_sha256_oaid,omitempty"`
	// CAID is the China Advertising ID (iOS), CAIDVersion its version.
	CAID        string `json:"caid,omitempty"`
	CAIDVersion int64  `json:"caid_version,omitempty"`
}

// Trace carries the ad click id.
type Trace struct {
	ClickID string `json:"click_id,omitempty"`
}

// ProductInform is Tencent's product_inform: the product an action is
// about.
type ProductInform struct {
	ContentType      string   `json:"content_type,omitempty"`
	ProductCatalogID string   `json:"product_catalog_id,omitempty"`
	ProductID        []string `json:"product_id,omitempty"`
	CategoryPath     []string `json:"category_path,omitempty"`
}
