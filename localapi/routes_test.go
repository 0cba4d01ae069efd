package localapi

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestRoutesAreDescribed holds the server's routes, openapi.json and the
// package doc together: every pattern the mux is given (read from the
// source: a ServeMux cannot list its patterns) is a path and method of
// openapi.json, and every path of openapi.json is named in the package
// doc. TestOpenAPI holds the other direction, from the description to the
// code.
func TestRoutesAreDescribed(t *testing.T) {
	var spec struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &spec); err != nil {
		t.Fatal(err)
	}
	// described reports whether openapi.json has method on path: a
	// {name} segment of its paths matches any segment, and the mux's "/{$}"
	// (exactly "/") is its "/".
	described := func(method, path string) bool {
		path = strings.TrimSuffix(path, "{$}")
		for p, ops := range spec.Paths {
			if _, ok := ops[strings.ToLower(method)]; !ok {
				continue
			}
			segs := strings.Split(p, "/")
			for i, s := range segs {
				if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
					segs[i] = "[^/]+"
				} else {
					segs[i] = regexp.QuoteMeta(s)
				}
			}
			if regexp.MustCompile("^" + strings.Join(segs, "/") + "$").MatchString(path) {
				return true
			}
		}
		return false
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "localapi.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ast.Inspect(f, func(node ast.Node) bool {
		call, ok := node.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
			return true
		}
		lit, ok := call.Args[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		pattern, _ := strconv.Unquote(lit.Value)
		method, path, ok := strings.Cut(pattern, " ")
		if !ok {
			t.Errorf("%s: route %q has no method", fset.Position(lit.Pos()), pattern)
			return true
		}
		n++
		if !described(method, path) {
			t.Errorf("%s: route %q is not in openapi.json", fset.Position(lit.Pos()), pattern)
		}
		return true
	})
	if n < 10 {
		t.Fatalf("found %d routes in localapi.go: the test would prove nothing", n)
	}
	// The doc names each path, then a space, a comma or a closing bracket.
	doc := f.Doc.Text()
	for p := range spec.Paths {
		if strings.HasPrefix(p, "/debug/pprof/") {
			p = "/debug/pprof/"
		}
		if !regexp.MustCompile(regexp.QuoteMeta(p) + `[\s,;.)]`).MatchString(doc) {
			t.Errorf("the package doc does not name %s, a route of openapi.json", p)
		}
	}
}
