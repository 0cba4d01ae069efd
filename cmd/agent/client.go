package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// apiClient is how the admin subcommands talk to a running agent: its local
// API, at AGENT_LISTEN_ADDR (or --addr), with AGENT_ADMIN_TOKEN when set
// (the admin endpoints take no other, and the agent accepts it everywhere),
// else AGENT_AUTH_TOKEN (enough for status and drain).
type apiClient struct {
	base  string
	token string
	http  *http.Client
	json  bool
}

func adminFlags(name string, args []string) (*apiClient, *flag.FlagSet, error) {
	fs := flag.NewFlagSet("agent "+name, flag.ContinueOnError)
	addr := os.Getenv("AGENT_LISTEN_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8470"
	}
	c := &apiClient{http: &http.Client{Timeout: 10 * time.Second}}
	fs.StringVar(&addr, "addr", addr, "the agent's API address (AGENT_LISTEN_ADDR)")
	token := os.Getenv("AGENT_ADMIN_TOKEN")
	if token == "" {
		token = os.Getenv("AGENT_AUTH_TOKEN")
	}
	fs.StringVar(&c.token, "token", token, "bearer token (AGENT_ADMIN_TOKEN, else AGENT_AUTH_TOKEN)")
	fs.BoolVar(&c.json, "json", false, "print JSON instead of a table")
	return c, fs, nil
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
