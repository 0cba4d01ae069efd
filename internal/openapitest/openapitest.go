// Package openapitest holds real HTTP exchanges with the agent to its
// OpenAPI description (localapi/openapi.json): each request and answer a
// test makes is validated against the document with kin-openapi, and the
// routes and error codes seen are counted, so that a test can also fail
// when a part of the document was never exercised.
//
// The document is loaded stricter than it is written: every object schema
// with properties and no additionalProperties is closed
// (additionalProperties: false). Clients generated from the document stay
// lenient to fields a newer agent adds; the server is held to exactly the
// fields described, so a field added to an answer without its description
// fails here.
//
// kin-openapi validates OpenAPI 3.1 documents with a JSON Schema 2020-12
// validator (santhosh-tekuri/jsonschema), which openapi3filter turns on by
// itself for a document that says "openapi": "3.1.0".
package openapitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// Checker validates exchanges against one document.
type Checker struct {
	doc    *openapi3.T
	router routers.Router

	mu    sync.Mutex
	ops   map[string]bool // "METHOD /path/{template}" seen answered
	codes map[string]bool // error codes seen
}

// textDecoders registers, once, a decoder for the text answers that
// openapi3filter does not read by itself (the status page, the profiler's
// index): their schema is a string.
var textDecoders sync.Once

func decodeText(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	b, err := io.ReadAll(body)
	return string(b), err
}

// New loads doc (strictly, see the package documentation) and validates it.
func New(t testing.TB, doc []byte) *Checker {
	t.Helper()
	textDecoders.Do(func() { openapi3filter.RegisterBodyDecoder("text/html", decodeText) })
	var raw map[string]any
	if err := json.Unmarshal(doc, &raw); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if raw["openapi"] != "3.1.0" {
		t.Fatalf("openapi.json: openapi is %v, want 3.1.0", raw["openapi"])
	}
	var close func(v any)
	close = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["properties"]; ok && v["type"] == "object" {
				if _, ok := v["additionalProperties"]; !ok {
					v["additionalProperties"] = false
				}
			}
			for _, e := range v {
				close(e)
			}
		case []any:
			for _, e := range v {
				close(e)
			}
		}
	}
	close(raw)
	// The servers name the default address; requests go to test ports.
	delete(raw, "servers")
	strict, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	loader := openapi3.NewLoader()
	d, err := loader.LoadFromData(strict)
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if err := d.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	r, err := legacy.NewRouter(d)
	if err != nil {
		t.Fatal(err)
	}
	return &Checker{doc: d, router: r, ops: map[string]bool{}, codes: map[string]bool{}}
}

// Exchange is one request sent and the answer it got.
type Exchange struct {
	Method, Path string // Path with its query
	Header       http.Header
	Body         []byte
	// Valid says the request is meant to be valid by the document. Such a
	// request, and every request answered 2xx, must validate.
	Valid bool

	Status     int
	RespHeader http.Header
	RespBody   []byte
}

// Do sends a request with c to base+path and checks the exchange; it
// returns the answer. hdr are header name, value pairs.
func (c *Checker) Do(t testing.TB, hc *http.Client, base, method, path string, body []byte, valid bool, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = http.NoBody
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	sent := req.Header.Clone()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	c.Check(t, Exchange{Method: method, Path: path, Header: sent, Body: body, Valid: valid,
		Status: resp.StatusCode, RespHeader: resp.Header, RespBody: b})
	return resp.StatusCode, resp.Header, b
}

// Check validates one exchange, reporting what does not match with
// t.Errorf.
func (c *Checker) Check(t testing.TB, x Exchange) {
	t.Helper()
	what := fmt.Sprintf("%s %s -> %d", x.Method, x.Path, x.Status)
	u, err := url.Parse("http://127.0.0.1" + x.Path)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	req := &http.Request{Method: x.Method, URL: u, Header: x.Header, Host: "127.0.0.1"}
	if req.Header == nil {
		req.Header = http.Header{}
	}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.checkNoRoute(t, what, err, x)
		return
	}
	c.mu.Lock()
	c.ops[route.Method+" "+route.Path] = true
	c.mu.Unlock()
	ctx := context.Background()
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if x.Body != nil {
		req.Body = io.NopCloser(bytes.NewReader(x.Body))
		req.ContentLength = int64(len(x.Body))
	}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	if reqErr != nil && (x.Valid || x.Status/100 == 2) {
		t.Errorf("%s: the request does not match the description: %v\nbody: %.500s", what, reqErr, x.Body)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: x.Status, Header: x.RespHeader, Options: opts}
	out.SetBodyBytes(x.RespBody)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Errorf("%s: the answer does not match the description: %v\nanswer: %.1000s", what, err, x.RespBody)
		return
	}
	resp := route.Operation.Responses.Status(x.Status)
	c.checkCode(t, what, resp.Value, x.RespBody)
}

// checkNoRoute checks the answer to a request the document has no
// operation for: 404 not_found, or 405 method_not_allowed with Allow,
// described by components/responses NotFound and MethodNotAllowed.
func (c *Checker) checkNoRoute(t testing.TB, what string, err error, x Exchange) {
	t.Helper()
	name := "NotFound"
	var re *routers.RouteError
	if errors.As(err, &re) && re.Reason == routers.ErrMethodNotAllowed.Error() {
		name = "MethodNotAllowed"
	}
	ref := c.doc.Components.Responses[name]
	if ref == nil || ref.Value == nil {
		t.Fatalf("%s: components/responses/%s is missing", what, name)
	}
	want := map[string]int{"NotFound": http.StatusNotFound, "MethodNotAllowed": http.StatusMethodNotAllowed}[name]
	if x.Status != want {
		t.Errorf("%s: no operation is described for it (%v): want %d", what, err, want)
		return
	}
	for h, hr := range ref.Value.Headers {
		if hr.Value.Required && x.RespHeader.Get(h) == "" {
			t.Errorf("%s: header %s is missing", what, h)
		}
	}
	mt := ref.Value.Content.Get("application/json")
	var v any
	if err := json.Unmarshal(x.RespBody, &v); err != nil {
		t.Errorf("%s: answer is not JSON: %v", what, err)
		return
	}
	if err := mt.Schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		t.Errorf("%s: the answer does not match components/responses/%s: %v", what, name, err)
	}
	c.checkCode(t, what, ref.Value, x.RespBody)
}

// checkCode checks that an error answer's code is one its response lists
// in x-error-codes, and counts it.
func (c *Checker) checkCode(t testing.TB, what string, resp *openapi3.Response, body []byte) {
	t.Helper()
	var e struct {
		Error *struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == nil {
		return
	}
	codes := listed(resp)
	if !slices.Contains(codes, e.Error.Code) {
		t.Errorf("%s: code %q is not among the codes this answer lists (x-error-codes %v)", what, e.Error.Code, codes)
	}
	c.mu.Lock()
	c.codes[e.Error.Code] = true
	c.mu.Unlock()
}

func listed(resp *openapi3.Response) []string {
	var out []string
	if l, ok := resp.Extensions["x-error-codes"].([]any); ok {
		for _, v := range l {
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// Codes is every error code the document lists, sorted.
func (c *Checker) Codes() []string {
	set := map[string]bool{}
	add := func(r *openapi3.ResponseRef) {
		if r != nil && r.Value != nil {
			for _, code := range listed(r.Value) {
				set[code] = true
			}
		}
	}
	for _, r := range c.doc.Components.Responses {
		add(r)
	}
	for _, p := range c.doc.Paths.Map() {
		for _, op := range p.Operations() {
			for _, r := range op.Responses.Map() {
				add(r)
			}
		}
	}
	return sortedKeys(set)
}

// Operations is every operation of the document, "METHOD /path".
func (c *Checker) Operations() []string {
	set := map[string]bool{}
	for path, p := range c.doc.Paths.Map() {
		for method := range p.Operations() {
			set[method+" "+path] = true
		}
	}
	return sortedKeys(set)
}

// Coverage fails the test for every operation and error code of the
// document that no exchange showed, except those in skip (a reason for
// each: why a test cannot bring it about).
func (c *Checker) Coverage(t testing.TB, skip map[string]string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, op := range c.Operations() {
		if !c.ops[op] && skip[op] == "" {
			t.Errorf("the description's %s was never exercised", op)
		}
	}
	for _, code := range c.Codes() {
		if !c.codes[code] && skip[code] == "" {
			t.Errorf("the description's error code %s was never answered", code)
		}
	}
	for k, why := range skip {
		if c.ops[k] || c.codes[k] {
			t.Errorf("%s is listed as not brought about (%s), but it was: take it off the list", k, why)
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
