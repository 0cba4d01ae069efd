package localapi

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3.1 description of this API, served at GET
// /openapi.json. It is written by hand, and TestOpenAPI holds it to the
// code: every request it sends to a real server, valid and invalid, and
// every answer must match it, and every route and error code in it must
// be seen.
//
//go:embed openapi.json
var openAPI []byte

// openapi serves the description. Like /healthz it needs no token: it is
// the file in the repository, and generators fetch it.
func (s *Server) openapi(w http.ResponseWriter, r *http.Request) {
	writeRaw(w, http.StatusOK, openAPI)
}
