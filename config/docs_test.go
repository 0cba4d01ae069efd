package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestEveryVariableIsDocumented: each AGENT_* variable appears in the
// README and in cmd/agent's package doc, so the docs cannot drift from the
// code.
func TestEveryVariableIsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../cmd/agent/main.go")
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeOf(Config{})
	for i := 0; i < typ.NumField(); i++ {
		name := Prefix + "_" + typ.Field(i).Tag.Get("envconfig")
		if !strings.Contains(string(readme), name) {
			t.Errorf("%s is not in README.md", name)
		}
		if !strings.Contains(string(doc), name) {
			t.Errorf("%s is not in cmd/agent/main.go's package doc", name)
		}
	}
}
