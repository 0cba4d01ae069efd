package main

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestImportDirection holds the direction imports flow in (STYLE.md,
// habit 1), as tailscale's deps tests do: cmd/agent wires everything;
// localapi and forwarder use spool, policy and the upstream clients; spool
// imports nothing of ours but the storage layer under it; the client of
// the local API is the standard library only; and nothing but tests
// depends on the test helpers. It reads `go list -deps`, so it holds for
// every import, direct or not, of the packages as built (tests aside).
func TestImportDirection(t *testing.T) {
	const mod = "github.com/outpost-agent/outpost"
	cmd := exec.Command("go", "list", "-json", mod+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := map[string][]string{} // our package (relative) -> every dependency
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		deps[strings.TrimPrefix(p.ImportPath, mod+"/")] = p.Deps
	}
	if len(deps) < 20 {
		t.Fatalf("go list found %d packages: the test would prove nothing", len(deps))
	}
	ours := func(dep string) (string, bool) {
		if rel, ok := strings.CutPrefix(dep, mod+"/"); ok {
			return rel, true
		}
		return "", false
	}
	under := func(pkg string, roots ...string) bool {
		for _, r := range roots {
			if pkg == r || strings.HasPrefix(pkg, r+"/") {
				return true
			}
		}
		return false
	}
	stdlib := func(dep string) bool {
		first, _, _ := strings.Cut(dep, "/")
		return !strings.Contains(first, ".")
	}
	for pkg, ds := range deps {
		for _, d := range ds {
			dep, isOurs := ours(d)
			switch {
			// The storage layer: spool, and the journal and file-system
			// seam under it, depend on nothing else of ours.
			case under(pkg, "spool") && isOurs && !under(dep, "spool", "journal", "vfs"),
				under(pkg, "journal") && isOurs && !under(dep, "journal", "vfs"),
				under(pkg, "vfs") && isOurs && !under(dep, "vfs"):
				t.Errorf("%s imports %s: the store depends on nothing above it", pkg, dep)
			// Apps import the client: the standard library only.
			case pkg == "client" && !stdlib(d):
				t.Errorf("client imports %s: it is the standard library only", d)
			// Only a command's own packages import it.
			case isOurs && under(dep, "cmd") && !under(pkg, "cmd") && !under(pkg, "packaging/cmd"):
				t.Errorf("%s imports %s: nothing imports a command", pkg, dep)
			case isOurs && under(dep, "cmd") && !strings.HasPrefix(dep, pkg):
				t.Errorf("%s imports %s: one command does not import another", pkg, dep)
			// The upstream clients know HTTP and their protocol, not where
			// their items come from nor who asks.
			case under(pkg, "upstream") && isOurs && under(dep, "spool", "localapi", "forwarder", "decision", "fleet", "config", "metrics"):
				t.Errorf("%s imports %s: the upstream clients depend on nothing of the agent's", pkg, dep)
			// The test helpers are for tests (their _test.go files are not
			// in go list's Deps).
			case isOurs && under(dep, "internal/agenttest", "internal/fakeclock", "internal/openapitest") &&
				!under(pkg, "internal/agenttest", "internal/fakeclock", "internal/openapitest", "e2e", "chaos"):
				t.Errorf("%s imports the test helper %s", pkg, dep)
			}
		}
	}
}
