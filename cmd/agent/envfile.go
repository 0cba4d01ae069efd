package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// defaultEnvFile is where the packages install the agent's settings
// (systemd's EnvironmentFile): the CLI reads the address and the tokens
// there, so an operator need not export a token or pass it with --token,
// where ps shows it to every user of the host.
const defaultEnvFile = "/etc/outpost/agent.env"

// cliEnv is what the CLI knows of the agent's settings: the process
// environment first (a variable set, even empty, wins), then the env file.
type cliEnv struct {
	file map[string]string
	// note says why the file was not read, for an error that needs it
	// (a 401 when the file holds the token but is not readable).
	note string
}

// loadCLIEnv reads path. A missing default file is no error (a host without
// the package, a container); a file named with --env-file must be there.
func loadCLIEnv(path string, explicit bool) (cliEnv, error) {
	m, err := readEnvFile(path)
	switch {
	case err == nil:
		return cliEnv{file: m}, nil
	case explicit:
		return cliEnv{}, fmt.Errorf("--env-file: %w", err)
	case errors.Is(err, fs.ErrNotExist):
		return cliEnv{}, nil
	default:
		return cliEnv{note: fmt.Sprintf("%s was not read (%v): run as root or as a member of the outpost group, or pass --token", path, errors.Unwrap(err))}, nil
	}
}

func (e cliEnv) get(name string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return e.file[name]
}

// readEnvFile reads a file in systemd's EnvironmentFile format: KEY=VALUE
// lines, comments starting with # or ;, values optionally in single or
// double quotes (in double quotes \" and \\ are escapes), "export " allowed.
func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t\"'") {
			return nil, fmt.Errorf("%s:%d: not KEY=VALUE", path, n)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			q := v[0]
			v = v[1 : len(v)-1]
			if q == '"' {
				v = strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(v)
			}
		}
		m[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}
