package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadEnvFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "agent.env")
	os.WriteFile(p, []byte(`# comment
; another
AGENT_LISTEN_ADDR=127.0.0.1:9000

export AGENT_AUTH_TOKEN = "app \"token\" 0123456789"
AGENT_ADMIN_TOKEN='admin-$token-0123456789'
#AGENT_SHUTDOWN_TIMEOUT=20s
EMPTY=
`), 0o640)
	m, err := readEnvFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"AGENT_LISTEN_ADDR": "127.0.0.1:9000", "AGENT_AUTH_TOKEN": `app "token" 0123456789`,
		"AGENT_ADMIN_TOKEN": "admin-$token-0123456789", "EMPTY": ""}
	if len(m) != len(want) {
		t.Fatalf("got %q, want %q", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	os.WriteFile(p, []byte("not a setting\n"), 0o640)
	if _, err := readEnvFile(p); err == nil {
		t.Error("a line without = accepted")
	}
}

// TestCLIEnvPrecedence: a variable of the process environment wins, even
// set empty (a test or an operator blanking it); else the file's; a missing
// default file is no error, a missing --env-file is.
func TestCLIEnvPrecedence(t *testing.T) {
	p := filepath.Join(t.TempDir(), "agent.env")
	os.WriteFile(p, []byte("AGENT_ADMIN_TOKEN=from-file-0123456789\nAGENT_AUTH_TOKEN=app-from-file-0123456789\n"), 0o640)
	e, err := loadCLIEnv(p, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AGENT_AUTH_TOKEN", "")
	t.Setenv("AGENT_ADMIN_TOKEN", "from-env-0123456789")
	if got := e.get("AGENT_ADMIN_TOKEN"); got != "from-env-0123456789" {
		t.Errorf("ADMIN = %q, want the environment's", got)
	}
	if got := e.get("AGENT_AUTH_TOKEN"); got != "" {
		t.Errorf("AUTH = %q, want the environment's empty value", got)
	}
	os.Unsetenv("AGENT_ADMIN_TOKEN")
	if got := e.get("AGENT_ADMIN_TOKEN"); got != "from-file-0123456789" {
		t.Errorf("ADMIN = %q, want the file's", got)
	}
	if _, err := loadCLIEnv(filepath.Join(t.TempDir(), "none"), false); err != nil {
		t.Errorf("a missing default file: %v", err)
	}
	if _, err := loadCLIEnv(filepath.Join(t.TempDir(), "none"), true); err == nil {
		t.Error("a missing --env-file accepted")
	}
}
