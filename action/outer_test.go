package action_test

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"

	"github.com/outpost-agent/outpost/action"
)

var tencentID = regexp.MustCompile(`^[A-Za-z0-9_]{1,255}$`)

// hash16 is the test's own reading of the suffix: the first 16 hex
// characters of the SHA-256 of the original id.
func hash16(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])[:16]
}

func TestOuterActionID(t *testing.T) {
	long := strings.Repeat("a", 255)
	for _, tc := range []struct{ id, want string }{
		{"evt_42", "evt_42"},
		{"ABCxyz019_", "ABCxyz019_"},
		{long, long},
		{"loan-app-000123", "loan_app_000123_" + hash16("loan-app-000123")},
		{"a.b:c-d", "a_b_c_d_" + hash16("a.b:c-d")},
		{"-", "__" + hash16("-")},
		{"550e8400-e29b-41d4-a716-446655440000", "550e8400_e29b_41d4_a716_446655440000_" + hash16("550e8400-e29b-41d4-a716-446655440000")},
		{strings.Repeat("x", 256), strings.Repeat("x", 238) + "_" + hash16(strings.Repeat("x", 256))},
		{strings.Repeat("x-", 200), strings.Repeat("x_", 119) + "_" + hash16(strings.Repeat("x-", 200))},
	} {
		got := action.OuterActionID(tc.id)
		if got != tc.want {
			t.Errorf("OuterActionID(%q) = %q, want %q", tc.id, got, tc.want)
		}
		if !tencentID.MatchString(got) {
			t.Errorf("OuterActionID(%q) = %q is not Tencent-safe", tc.id, got)
		}
		if again := action.OuterActionID(tc.id); again != got {
			t.Errorf("OuterActionID(%q) not deterministic: %q, %q", tc.id, got, again)
		}
	}
	// Ids that the replacement alone would merge stay apart, and a mapped
	// id stays apart from the literal id of its readable part.
	seen := map[string]string{}
	for _, id := range []string{"a-b", "a.b", "a:b", "a_b", "loan-app-000123", "loan_app_000123", "loan.app.000123"} {
		o := action.OuterActionID(id)
		if prev, dup := seen[o]; dup {
			t.Errorf("%q and %q both map to %q", prev, id, o)
		}
		seen[o] = id
	}
}

func FuzzOuterActionID(f *testing.F) {
	for _, s := range []string{"loan-app-000123", "evt_1", "", "点", strings.Repeat("-", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		o := action.OuterActionID(id)
		if !tencentID.MatchString(o) {
			t.Fatalf("OuterActionID(%q) = %q is not Tencent-safe", id, o)
		}
		if tencentID.MatchString(id) != (o == id) {
			t.Fatalf("OuterActionID(%q) = %q: a safe id must go unchanged, any other must not", id, o)
		}
	})
}
