package fleet

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestLoadAgentID(t *testing.T) {
	dir := t.TempDir()
	id, err := LoadAgentID("", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
		t.Errorf("id %q is not a v4 UUID", id)
	}
	fi, err := os.Stat(filepath.Join(dir, AgentIDFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("agent-id file: %v, %v", fi, err)
	}
	again, err := LoadAgentID("", dir)
	if err != nil || again != id {
		t.Errorf("second start: %q, %v; want %q", again, err, id)
	}
	if got, err := LoadAgentID("branch-7", dir); err != nil || got != "branch-7" {
		t.Errorf("configured: %q, %v", got, err)
	}
	if _, err := LoadAgentID("a:b", dir); err == nil {
		t.Error("took an id with a colon")
	}
	os.WriteFile(filepath.Join(dir, AgentIDFile), []byte("bad id\n"), 0o600)
	if _, err := LoadAgentID("", dir); err == nil {
		t.Error("took a damaged id file")
	}
}
