package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// apiClient is how the admin subcommands talk to a running agent: its local
// API, at AGENT_LISTEN_ADDR (or --addr), with AGENT_ADMIN_TOKEN when set
// (the admin endpoints take no other, and the agent accepts it everywhere),
// else AGENT_AUTH_TOKEN (enough for status and drain). Each variable comes
// from the environment, else from the agent's env file (--env-file,
// /etc/outpost/agent.env): see cliEnv.
type apiClient struct {
	base  string
	token string
	http  *http.Client
	json  bool

	addrFlag, envFile string
	// envNote says why the env file could not be read, for a 401.
	envNote string
}

func adminFlags(name string, args []string) (*apiClient, *flag.FlagSet, error) {
	fs := flag.NewFlagSet("agent "+name, flag.ContinueOnError)
	c := &apiClient{http: &http.Client{Timeout: 10 * time.Second}}
	fs.StringVar(&c.addrFlag, "addr", "", "the agent's API address (default AGENT_LISTEN_ADDR from the environment or the env file, else 127.0.0.1:8470)")
	fs.StringVar(&c.token, "token", "", "bearer token (default AGENT_ADMIN_TOKEN, else AGENT_AUTH_TOKEN, from the environment or the env file); prefer the env file: ps shows arguments to every user")
	fs.StringVar(&c.envFile, "env-file", defaultEnvFile, "the agent's env file, read for AGENT_LISTEN_ADDR and the tokens the environment does not set")
	fs.BoolVar(&c.json, "json", false, "print JSON instead of a table")
	return c, fs, nil
}

// setup settles the address and the token once the flags are parsed.
func (c *apiClient) setup(fs *flag.FlagSet) error {
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "env-file" })
	env, err := loadCLIEnv(c.envFile, explicit)
	if err != nil {
		return err
	}
	c.envNote = env.note
	addr := c.addrFlag
	if addr == "" {
		addr = env.get("AGENT_LISTEN_ADDR")
	}
	if addr == "" {
		addr = "127.0.0.1:8470"
	}
	c.setBase(addr)
	if c.token == "" {
		c.token = env.get("AGENT_ADMIN_TOKEN")
	}
	if c.token == "" {
		c.token = env.get("AGENT_AUTH_TOKEN")
	}
	return nil
}

func (c *apiClient) setBase(addr string) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	c.base = strings.TrimRight(addr, "/")
}

func (c *apiClient) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("is the agent running at %s? %w", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Code != "" {
			if resp.StatusCode == http.StatusUnauthorized && c.token == "" && c.envNote != "" {
				e.Error.Message += "; " + c.envNote
			}
			return fmt.Errorf("%s %s: %d %s: %s", method, path, resp.StatusCode, e.Error.Code, e.Error.Message)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = b
		return nil
	}
	return json.Unmarshal(b, out)
}
