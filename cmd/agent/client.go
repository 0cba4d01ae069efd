package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"time"

	"github.com/outpost-agent/outpost/client"
)

// apiClient is how the admin subcommands talk to a running agent: its local
// API, at AGENT_LISTEN_ADDR (or --addr), with AGENT_ADMIN_TOKEN when set
// (the admin endpoints take no other, and the agent accepts it everywhere),
// else AGENT_AUTH_TOKEN (enough for status and drain). Each variable comes
// from the environment, else from the agent's env file (--env-file,
// /etc/outpost/agent.env): see cliEnv. The calls go through the client
// package apps use, with its retries off: a command answers at once, and
// drain polls by itself.
type apiClient struct {
	api   *client.Client
	token string
	json  bool

	addrFlag, envFile string
	// envNote says why the env file could not be read, for a 401.
	envNote string
}

func adminFlags(name string, args []string) (*apiClient, *flag.FlagSet, error) {
	fs := flag.NewFlagSet("agent "+name, flag.ContinueOnError)
	c := &apiClient{}
	fs.StringVar(&c.addrFlag, "addr", "", "the agent's API address (default AGENT_LISTEN_ADDR from the environment or the env file, else 127.0.0.1:8470)")
	fs.StringVar(&c.token, "token", "", "bearer token (default AGENT_ADMIN_TOKEN, else AGENT_AUTH_TOKEN, from the environment or the env file); prefer the env file: ps shows arguments to every user")
	fs.StringVar(&c.envFile, "env-file", defaultEnvFile, "the agent's env file, read for AGENT_LISTEN_ADDR and the tokens the environment does not set")
	fs.BoolVar(&c.json, "json", false, "print JSON instead of a table")
	return c, fs, nil
}

// setup settles the address and the token once the flags are parsed, and
// makes the client.
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
		addr = client.DefaultAddr
	}
	if c.token == "" {
		c.token = env.get("AGENT_ADMIN_TOKEN")
	}
	if c.token == "" {
		c.token = env.get("AGENT_AUTH_TOKEN")
	}
	api, err := client.New(client.Config{
		Addr:        addr,
		Token:       c.token,
		HTTPClient:  &http.Client{Timeout: 10 * time.Second},
		MaxAttempts: 1,
		UserAgent:   "outpost-agent-cli/" + version,
	})
	if err != nil {
		return fmt.Errorf("agent address %q: %w", addr, err)
	}
	c.api = api
	return nil
}

// explain words a failed call for an operator: the API's code and message
// for an answer (and why no token was found, for a 401), or whether the
// agent is running at all.
func (c *apiClient) explain(err error) error {
	var e *client.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e) && e.Code != "":
		msg := e.Message
		if e.StatusCode == http.StatusUnauthorized && c.token == "" && c.envNote != "" {
			msg += "; " + c.envNote
		}
		return fmt.Errorf("%s %s: %d %s: %s", e.Method, e.Path, e.StatusCode, e.Code, msg)
	case errors.As(err, &e):
		return fmt.Errorf("%s %s: %d %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode))
	}
	return fmt.Errorf("is the agent running at %s? %w", c.api.Addr(), err)
}
