package action

import (
	neturl "net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/outpost-agent/outpost/redact"
)

// The optional fields of Tencent's v3 user action the agent passes on:
// channel, custom_action and product_inform. Their enums are Tencent's
// (the official Go SDK's ActionChannelType and ActionProductInformType);
// the length bounds are ours, where Tencent's reference gives none.
const (
	maxCustomActionLen = 128 // bytes
	maxProductTextLen  = 128 // bytes, each product_catalog_id, product_id, category_path entry
	maxProductIDs      = 50
	maxCategoryDepth   = 10
)

// Channels are the values of channel (ActionChannelType).
var channels = [...]string{"NATURAL", "TENCENT", "BYTEDANCE", "KUAISHOU", "ALIBABA", "BAIDU", "OTHERS", "MULTIPLE", "UNKNOWN"}

// contentTypes are the values of product_inform.content_type
// (ActionProductInformType).
var contentTypes = [...]string{"EC", "ESTATE", "VIDEO", "CAR", "NEWS_INFORMATION", "BEAUTY_PERSONAL_CARE", "RETAIL",
	"EDUCATION", "READING", "INSURANCE", "LOAN", "FINANCIAL", "BANKCARD", "WEDDING", "SECURITIES",
	"DECORATION_BUILDING_MATERIAL", "CARRIER", "GAME"}

// Channels returns the values channel takes (a copy).
func Channels() []string { return append([]string(nil), channels[:]...) }

// ContentTypes returns the values product_inform.content_type takes (a copy).
func ContentTypes() []string { return append([]string(nil), contentTypes[:]...) }

func lookup(list []string, b []byte) (string, bool) {
	for _, s := range list {
		if string(b) == s {
			return s, true
		}
	}
	return "", false
}

// plainText reports whether s is 1 to max bytes of valid UTF-8 without
// control or bidirectional formatting characters.
func plainText(s []byte, max int) bool {
	if len(s) == 0 || len(s) > max || !utf8.Valid(s) {
		return false
	}
	for _, r := range string(s) {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return false
		}
	}
	return true
}

func (v *validator) channel(i int, raw []byte, a *Action) {
	if !present(raw) {
		return
	}
	s, ok := unquote(raw)
	if !ok {
		v.add(path(i, "channel"), "must be a string")
		return
	}
	c, ok := lookup(channels[:], s)
	if !ok {
		v.add(path(i, "channel"), "unknown channel "+echo(s)+" (must be one of "+strings.Join(channels[:], ", ")+")")
		return
	}
	a.Channel = c
}

func (v *validator) customAction(i int, raw []byte, a *Action) {
	if !present(raw) {
		return
	}
	s, ok := unquote(raw)
	switch {
	case !ok:
		v.add(path(i, "custom_action"), "must be a string")
	case !plainText(s, maxCustomActionLen):
		v.add(path(i, "custom_action"), "must be 1-"+strconv.Itoa(maxCustomActionLen)+" bytes of text without control characters")
	default:
		a.CustomAction = string(s)
	}
}

// productInform validates product_inform. Every member is optional; one
// that names nothing is not stored.
func (v *validator) productInform(i int, raw []byte, a *Action) {
	const field = "product_inform"
	if !present(raw) {
		return
	}
	if !isObject(raw) {
		v.add(path(i, field), "must be an object")
		return
	}
	var p ProductInform
	var seen [4]bool
	names := [...]string{"content_type", "product_catalog_id", "product_id", "category_path"}
	bad := false
	m := newMembers(raw)
	for key, val, ok := m.next(); ok; key, val, ok = m.next() {
		k := fieldIndex(names[:], key)
		switch {
		case k < 0:
			v.add(keyPath(path(i, field), key), "unknown field")
			bad = true
			continue
		case seen[k]:
			v.add(path(i, field+"."+names[k]), "duplicate key")
			bad = true
			continue
		}
		seen[k] = true
		if !present(val) {
			continue
		}
		name := path(i, field+"."+names[k])
		switch k {
		case 0:
			s, ok := unquote(val)
			if !ok {
				v.add(name, "must be a string")
				bad = true
			} else if p.ContentType, ok = lookup(contentTypes[:], s); !ok {
				v.add(name, "unknown content_type "+echo(s)+" (must be one of "+strings.Join(contentTypes[:], ", ")+")")
				bad = true
			}
		case 1:
			s, ok := unquote(val)
			if !ok || !plainText(s, maxProductTextLen) {
				v.add(name, "must be a string of 1-"+strconv.Itoa(maxProductTextLen)+" bytes of text without control characters")
				bad = true
			} else {
				p.ProductCatalogID = string(s)
			}
		default:
			most := maxProductIDs
			if k == 3 {
				most = maxCategoryDepth
			}
			list, ok := v.textList(name, val, most)
			if !ok {
				bad = true
			} else if k == 2 {
				p.ProductID = list
			} else {
				p.CategoryPath = list
			}
		}
	}
	if bad || p.ContentType == "" && p.ProductCatalogID == "" && p.ProductID == nil && p.CategoryPath == nil {
		return
	}
	a.ProductInform = &p
}

// textList reads an array of 1 to most strings, each plain text of at
// most maxProductTextLen bytes.
func (v *validator) textList(name string, raw []byte, most int) ([]string, bool) {
	c := cursor{b: raw}
	_, elems := c.array(nil)
	switch {
	case !isArray(raw):
		v.add(name, "must be an array of strings")
		return nil, false
	case len(elems) == 0 || len(elems) > most:
		v.add(name, "must hold 1 to "+strconv.Itoa(most)+" strings")
		return nil, false
	}
	out := make([]string, len(elems))
	for j, e := range elems {
		s, ok := unquote(e)
		if !ok || !plainText(s, maxProductTextLen) {
			v.add(name+"["+strconv.Itoa(j)+"]", "must be a string of 1-"+strconv.Itoa(maxProductTextLen)+" bytes of text without control characters")
			return nil, false
		}
		out[j] = string(s)
	}
	return out, true
}

// MaxURLLen bounds url (bytes): ours, the common ceiling of browsers and
// servers; Tencent's reference states none.
const MaxURLLen = 2048

// url validates the page URL: required when the data source is WEB (as
// Tencent requires for a web data source), and when given an absolute
// http(s) URL with a host, without user information, white space or
// control characters, and without a query parameter whose name says it
// holds personal data or a secret (phone, mobile, id_no, openid, token...:
// redact.Sensitive). The URL goes to Tencent as it is and cannot be
// masked there.
func (v *validator) url(i int, raw []byte, a *Action) {
	const field = "url"
	if !present(raw) {
		if v.needURL {
			v.add(path(i, field), "is required: the Tencent data source is WEB (AGENT_TENCENT_DATA_SOURCE_TYPE)")
		}
		return
	}
	s, ok := unquote(raw)
	if !ok {
		v.add(path(i, field), "must be a string")
		return
	}
	if reason := checkURL(s); reason != "" {
		v.add(path(i, field), reason)
		return
	}
	a.URL = string(s)
}

func checkURL(s []byte) string {
	const shape = "must be an absolute http or https URL of at most 2048 bytes, such as https://bank.example/loan/apply"
	if len(s) == 0 || len(s) > MaxURLLen || !utf8.Valid(s) {
		return shape
	}
	for _, r := range string(s) {
		if r <= ' ' || r == 0x7f || unicode.IsControl(r) || unicode.IsSpace(r) || unicode.Is(unicode.Bidi_Control, r) {
			return shape
		}
	}
	u, err := neturl.Parse(string(s))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return shape
	}
	if u.User != nil {
		return "must not carry a user name or password"
	}
	q, _ := neturl.ParseQuery(u.RawQuery)
	for k := range q {
		if redact.Sensitive(k) {
			return "query parameter " + echo([]byte(k)) + " holds personal data or a secret; leave it out of the page URL"
		}
	}
	return ""
}
