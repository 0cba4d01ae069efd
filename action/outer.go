package action

import (
	"crypto/sha256"
	"encoding/hex"
)

// Tencent's outer_action_id: 1 to 255 letters, digits and underscores.
const (
	MaxOuterActionIDLen = 255
	outerHashLen        = 16 // hex characters of SHA-256 appended to a mapped id
)

// OuterActionID returns the outer_action_id Tencent is sent for the action
// id: its de-duplication key, which takes only letters, digits and
// underscores, at most 255 of them, while an action id may also hold '.',
// ':' and '-'.
//
//   - An id that is already Tencent-safe goes unchanged:
//     "evt_42" -> "evt_42".
//   - Any other id has each byte outside [A-Za-z0-9_] replaced by '_', then
//     '_' and the first 16 hex characters of the SHA-256 of the original id
//     appended: "loan-app-000123" -> "loan_app_000123_" + 16 hex. The hash
//     keeps ids apart that the replacement alone would merge ("a-b", "a.b"
//     and "a_b" give three values) and a mapped id apart from an id that is
//     literally its readable part ("loan_app_000123" is sent as it is).
//     The readable part is cut to 238 bytes, so that the result is at most
//     255 (action ids are at most 128 today).
//
// The same id always gives the same value, so Tencent's de-duplication
// holds across retries, restarts and agent versions. The mapping happens
// on the way out: the spool keeps the id as the app posted it, and the
// dead-letter listing shows both.
func OuterActionID(id string) string {
	if TencentSafe(id) {
		return id
	}
	keep := min(len(id), MaxOuterActionIDLen-1-outerHashLen)
	b := make([]byte, 0, keep+1+outerHashLen)
	for i := 0; i < keep; i++ {
		if ch := id[i]; safeByte(ch) {
			b = append(b, ch)
		} else {
			b = append(b, '_')
		}
	}
	sum := sha256.Sum256([]byte(id))
	b = append(b, '_')
	b = hex.AppendEncode(b, sum[:outerHashLen/2])
	return string(b)
}

// TencentSafe reports whether s is a valid outer_action_id as it is: 1 to
// 255 of [A-Za-z0-9_].
func TencentSafe(s string) bool {
	if len(s) == 0 || len(s) > MaxOuterActionIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !safeByte(s[i]) {
			return false
		}
	}
	return true
}

func safeByte(ch byte) bool {
	return 'a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '_'
}
