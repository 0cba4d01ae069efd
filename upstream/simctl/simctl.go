// Package simctl holds what the upstream simulators share: one Faults
// type and its injection, the /_sim/ control endpoints (faults in and out,
// stats out) and dropping a connection the way a crashed upstream does.
package simctl

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
)

// Serve answers the control endpoints: POST /_sim/faults (a JSON F),
// GET /_sim/faults, GET /_sim/stats.
func Serve[F any](w http.ResponseWriter, r *http.Request, get func() F, set func(F), stats func() any) {
	switch {
	case r.URL.Path == "/_sim/faults" && r.Method == http.MethodPost:
		var f F
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&f); err != nil {
			http.Error(w, "bad faults: "+err.Error(), http.StatusBadRequest)
			return
		}
		set(f)
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/_sim/faults" && r.Method == http.MethodGet:
		WriteJSON(w, get())
	case r.URL.Path == "/_sim/stats" && r.Method == http.MethodGet:
		WriteJSON(w, stats())
	default:
		http.NotFound(w, r)
	}
}

// WriteJSON writes v as a 200 JSON answer.
func WriteJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// Reset drops the connection with an RST, as a crashed upstream or a
// middlebox would.
func Reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "outage", http.StatusBadGateway)
		return
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
