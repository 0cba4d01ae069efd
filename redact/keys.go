package redact

// sensitive keys are masked wherever they appear in a JSON document, at any
// depth. Hashes of personal data are masked too: an MD5 of an 11-digit phone
// number is reversed by brute force in minutes.
var sensitive = map[string]bool{
	"phone": true, "hash_phone": true, "sha256_phone": true, "mobile": true,
	"card_no": true, "cardno": true, "cert_id": true, "certid": true, "id_no": true,
	"wechat_openid": true, "wechat_unionid": true, "open_id": true,
	"hash_imei": true, "hash_idfa": true, "hash_oaid": true, "hash_android_id": true, "caid": true,
	"md5_sha256_imei": true, "md5_sha256_idfa": true, "md5_sha256_oaid": true,
	"black_box": true, "ip": true, "account_id": true,
	"partner_key": true, "appkey": true, "access_token": true, "token": true, "password": true,
}

// sensitiveWord: a word that makes a key sensitive wherever it stands in
// it (payee_mobile, contactPhone, tel, home_tel, user_email).
func sensitiveWord(w []byte) bool {
	switch string(w) {
	case "phone", "mobile", "tel", "telephone", "cellphone", "email",
		"cardno", "certid", "certno", "idno", "idcard",
		"openid", "unionid", "password", "passwd", "secret", "token":
		return true
	}
	return false
}

// Sensitive reports whether a JSON key names personal data or a secret:
// one of the listed keys (phone, card_no, cert_id, account_id, ip,
// black_box, partner_key...), or a key with a word of personal data in it
// (phone, mobile, tel, email, card no, id no, id card, cert id/no; any
// *_card: bank_card, payee_card), in snake_case, kebab-case or camelCase.
// Its value is masked whole.
func Sensitive(key string) bool { return sensitiveKey(key) }

// NameKey reports whether a JSON key holds a person's name: "name" is in
// it (name, payee_name, realName). A name has no shape to recognise it
// by, so its value is masked by its key, to its first character and "*"
// (张三 -> 张*).
func NameKey(key string) bool { return nameKey(key) }

func nameKey[T string | []byte](key T) bool {
	for i := 0; i+4 <= len(key); i++ {
		if key[i]|0x20 == 'n' && key[i+1]|0x20 == 'a' && key[i+2]|0x20 == 'm' && key[i+3]|0x20 == 'e' {
			return true
		}
	}
	return false
}

// sensitiveKey looks the key up in lower case, then splits it into words
// (at any character but a letter or digit, and where a capital follows a
// small letter or digit) and applies the word rules. It does not
// allocate.
func sensitiveKey[T string | []byte](key T) bool {
	var low [32]byte
	if len(key) <= len(low) {
		for i := 0; i < len(key); i++ {
			low[i] = lower(key[i])
		}
		if sensitive[string(low[:len(key)])] {
			return true
		}
	}
	var prev, cur [16]byte
	np, nw := 0, 0 // length of the previous word; words so far
	lastCard := false
	for i := 0; i < len(key); {
		for i < len(key) && !isAlnum(key[i]) {
			i++
		}
		j := i
		for j < len(key) && isAlnum(key[j]) {
			if j > i && key[j] >= 'A' && key[j] <= 'Z' && !(key[j-1] >= 'A' && key[j-1] <= 'Z') {
				break
			}
			j++
		}
		if j == i {
			break
		}
		n := j - i
		if n > len(cur) {
			n = 0 // no rule has a word that long
		}
		for k := 0; k < n; k++ {
			cur[k] = lower(key[i+k])
		}
		w := cur[:n]
		if n > 0 && sensitiveWord(w) || pair(prev[:np], w) {
			return true
		}
		lastCard = string(w) == "card"
		prev, np = cur, n
		nw++
		i = j
	}
	// bank_card, payee_card, bankCard; not "card" alone, the decision
	// request's block of card_no, cert_id and mobile.
	return lastCard && nw > 1
}

// pair: two words in a row that name personal data (card no, id card,
// cert id...).
func pair(a, b []byte) bool {
	number := string(b) == "no" || string(b) == "num" || string(b) == "number"
	switch string(a) {
	case "card":
		return number
	case "id":
		return number || string(b) == "card"
	case "cert":
		return number || string(b) == "id"
	}
	return false
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
