package agenttest

import (
	"strings"
	"testing"
)

// A race-built agent's report is shown whatever the tail holds.
func TestTailShowsRaceReports(t *testing.T) {
	log := "{\"msg\":\"start\"}\n==================\nWARNING: DATA RACE\nWrite at 0x1 by goroutine 7:\n  pkg.f()\n==================\n" +
		"{\"msg\":\"a\"}\n{\"msg\":\"b\"}\n{\"msg\":\"c\"}\nFound 1 data race(s)\n"
	a := &Agent{Logs: &SyncBuffer{}}
	a.Logs.Write([]byte(log))
	got := a.Tail(2)
	if !strings.Contains(got, "WARNING: DATA RACE\nWrite at 0x1 by goroutine 7:\n  pkg.f()") || !strings.HasSuffix(got, "{\"msg\":\"c\"}\nFound 1 data race(s)") {
		t.Fatalf("Tail(2) =\n%s", got)
	}
	a = &Agent{Logs: &SyncBuffer{}}
	a.Logs.Write([]byte("{\"msg\":\"a\"}\n{\"msg\":\"b\"}\n"))
	if got := a.Tail(1); got != "{\"msg\":\"b\"}" {
		t.Fatalf("Tail(1) without a race = %q", got)
	}
}
