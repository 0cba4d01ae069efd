// Command outpost-probe is the container image's health probe. The agent
// listens on 127.0.0.1 (the app in the same pod reaches it on localhost), so
// the kubelet's httpGet probes, which go to the pod IP, cannot reach it; and
// the distroless image has no shell or curl. Kubernetes runs this instead as
// an exec probe inside the agent's container:
//
//	outpost-probe /readyz        # GET http://127.0.0.1:8470/readyz
//	outpost-probe /healthz
//	outpost-probe http://127.0.0.1:8470/readyz
//	outpost-probe sleep 10s      # a preStop hook for clusters without the sleep action
//
// The address comes from AGENT_LISTEN_ADDR (the container's own environment;
// a wildcard host is probed on loopback). When AGENT_AUTH_TOKEN is set it is
// sent as the bearer token (/readyz requires it). Exit 0 on a 2xx answer,
// 1 otherwise with the reason on stderr (kubectl describe pod shows it).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	timeout := flag.Duration("timeout", 2*time.Second, "give up after this long")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: outpost-probe [-timeout 2s] /readyz | /healthz | URL\n       outpost-probe sleep DURATION")
	}
	flag.Parse()
	if flag.NArg() == 2 && flag.Arg(0) == "sleep" {
		d, err := time.ParseDuration(flag.Arg(1))
		if err != nil || d < 0 {
			fmt.Fprintln(os.Stderr, "outpost-probe: sleep: want a duration such as 10s")
			os.Exit(2)
		}
		time.Sleep(d)
		return
	}
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := probe(flag.Arg(0), os.Getenv, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "outpost-probe:", err)
		os.Exit(1)
	}
}

// target turns a path into a URL on the agent's listen address.
func target(arg string, getenv func(string) string) (string, error) {
	if strings.HasPrefix(arg, "http://") || strings.HasPrefix(arg, "https://") {
		return arg, nil
	}
	if !strings.HasPrefix(arg, "/") {
		return "", fmt.Errorf("%q is neither a path nor a URL", arg)
	}
	addr := getenv("AGENT_LISTEN_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8470"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("AGENT_LISTEN_ADDR %q: %v", addr, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + arg, nil
}

func probe(arg string, getenv func(string) string, timeout time.Duration) error {
	url, err := target(arg, getenv)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if tok := getenv("AGENT_AUTH_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
