package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestTarget(t *testing.T) {
	cases := []struct {
		arg, listen, want string
	}{
		{"/readyz", "", "http://127.0.0.1:8470/readyz"},
		{"/healthz", "127.0.0.1:9000", "http://127.0.0.1:9000/healthz"},
		{"/readyz", "0.0.0.0:8470", "http://127.0.0.1:8470/readyz"},
		{"/readyz", ":8470", "http://127.0.0.1:8470/readyz"},
		{"/readyz", "[::]:8470", "http://[::1]:8470/readyz"},
		{"/readyz", "[::1]:8470", "http://[::1]:8470/readyz"},
		{"http://10.0.0.1:1/x", "", "http://10.0.0.1:1/x"},
	}
	for _, c := range cases {
		got, err := target(c.arg, env(map[string]string{"AGENT_LISTEN_ADDR": c.listen}))
		if err != nil || got != c.want {
			t.Errorf("target(%q, %q) = %q, %v; want %q", c.arg, c.listen, got, err, c.want)
		}
	}
	for _, bad := range []string{"readyz", ""} {
		if _, err := target(bad, env(nil)); err == nil {
			t.Errorf("target(%q) accepted", bad)
		}
	}
	if _, err := target("/readyz", env(map[string]string{"AGENT_LISTEN_ADDR": "nohostport"})); err == nil {
		t.Error("a bad AGENT_LISTEN_ADDR was accepted")
	}
}

func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz":
			w.Write([]byte(`{"status":"ok"}`))
		case r.Header.Get("Authorization") != "Bearer s3cret-s3cret-s3cret":
			w.WriteHeader(http.StatusUnauthorized)
		case r.URL.Path == "/readyz":
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"status":"store_unavailable"}`))
		default:
			w.Write([]byte("ok"))
		}
	}))
	defer srv.Close()
	listen := strings.TrimPrefix(srv.URL, "http://")
	noAuth := env(map[string]string{"AGENT_LISTEN_ADDR": listen})
	auth := env(map[string]string{"AGENT_LISTEN_ADDR": listen, "AGENT_AUTH_TOKEN": "s3cret-s3cret-s3cret"})

	if err := probe("/healthz", noAuth, time.Second); err != nil {
		t.Errorf("healthz: %v", err)
	}
	if err := probe("/other", noAuth, time.Second); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("without the token: %v", err)
	}
	if err := probe("/other", auth, time.Second); err != nil {
		t.Errorf("with the token: %v", err)
	}
	if err := probe("/readyz", auth, time.Second); err == nil || !strings.Contains(err.Error(), "store_unavailable") {
		t.Errorf("not ready: %v", err)
	}
	srv.Close()
	if err := probe("/healthz", noAuth, time.Second); err == nil {
		t.Error("a closed server passed")
	}
}
