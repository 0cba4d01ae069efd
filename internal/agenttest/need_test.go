package agenttest

import (
	"strings"
	"testing"
)

// recorder is a testing.TB that records how a test ended.
type recorder struct {
	testing.TB
	skipped, fatal bool
	msg            string
}

func (r *recorder) Helper() {}
func (r *recorder) Skip(args ...any) {
	r.skipped, r.msg = true, strings.TrimSpace(strings.Join(strs(args), " "))
	panic(r)
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal, r.msg = true, format
	panic(r)
}

func strs(args []any) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i], _ = a.(string)
	}
	return out
}

func run(f func(testing.TB)) (r *recorder) {
	r = &recorder{}
	defer func() {
		if p := recover(); p != nil && p != r {
			panic(p)
		}
	}()
	f(r)
	return r
}

func TestNeedTool(t *testing.T) {
	for _, tt := range []struct {
		ci           string
		skip, failed bool
	}{{"", true, false}, {"false", true, false}, {"true", false, true}, {"1", false, true}} {
		t.Run("CI="+tt.ci, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			r := run(func(tb testing.TB) { NeedTool(tb, "no-such-tool-outpost", "outpost-pkg") })
			if r.skipped != tt.skip || r.fatal != tt.failed {
				t.Fatalf("skipped %v, failed %v; want %v, %v", r.skipped, r.fatal, tt.skip, tt.failed)
			}
			if tt.skip && !strings.Contains(r.msg, "apt-get install -y outpost-pkg") {
				t.Fatalf("the skip does not name the package: %q", r.msg)
			}
		})
	}
	t.Setenv("CI", "true")
	if p := NeedTool(t, "go", "golang"); p == "" {
		t.Fatal("go not found")
	}
}
