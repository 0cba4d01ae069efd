package fleet

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/outpost-agent/outpost/vfs"
)

// AgentIDFile is where a generated agent id is kept, in the data directory.
const AgentIDFile = "agent-id"

// LoadAgentID returns configured when it is set, else the id kept in
// dataDir, else a new random UUID written there (mode 0600) first: an
// agent keeps its id across restarts, so event ids never repeat.
func LoadAgentID(configured, dataDir string) (string, error) {
	if configured != "" {
		return configured, ValidAgentID(configured)
	}
	p := filepath.Join(dataDir, AgentIDFile)
	b, err := os.ReadFile(p)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if err := ValidAgentID(id); err != nil {
			return "", fmt.Errorf("%s: %w", p, err)
		}
		return id, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read agent id: %w", err)
	}
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return "", err
	}
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	id := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("keep agent id: %w", err)
	}
	// Written whole and synced under a temporary name, then renamed: a
	// crash leaves either no id or the whole id, never half of one.
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("keep agent id: %w", err)
	}
	_, err = f.WriteString(id + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		return "", fmt.Errorf("keep agent id: %w", err)
	}
	// The rename is durable once the directory is synced: an agent that
	// crashed before would make a new id at its next start.
	if err := vfs.Default.SyncDir(dataDir); err != nil {
		return "", fmt.Errorf("keep agent id: %w", err)
	}
	return id, nil
}
