// Package systemd holds the agent's systemd unit (outpost-agent.service) and
// its default environment file (agent.env), embedded for the packaging tests,
// and a small reader for unit files. The files themselves are what the .deb
// and .rpm install; their tests run systemd-analyze on them.
package systemd

import (
	"bufio"
	"bytes"
	_ "embed"
	"fmt"
	"strings"
)

// UnitName is the unit's file name, as installed.
const UnitName = "outpost-agent.service"

// UnitFile is outpost-agent.service as shipped.
//
//go:embed outpost-agent.service
var UnitFile []byte

// EnvFile is agent.env as shipped (installed as /etc/outpost/agent.env).
//
//go:embed agent.env
var EnvFile []byte

// Directive is one Key=Value line of a unit file.
type Directive struct {
	Section, Key, Value string
	Line                int
	// Commented says whether a comment explains the line: the nearest
	// line above it that is not itself a directive is a comment.
	Commented bool
}

// Unit is a parsed unit file, directives in file order.
type Unit []Directive

// ParseUnit reads a unit file: [Section] headers, Key=Value lines, '#' and
// ';' comments. Line continuations are not used in our files and are refused.
func ParseUnit(b []byte) (Unit, error) {
	var u Unit
	section := ""
	commented := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			commented = false
		case line[0] == '#' || line[0] == ';':
			commented = true
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("line %d: bad section header %q", n, line)
			}
			section, commented = line[1:len(line)-1], false
		default:
			if strings.HasSuffix(line, "\\") {
				return nil, fmt.Errorf("line %d: continuation lines are not supported", n)
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				return nil, fmt.Errorf("line %d: %q is not Key=Value inside a section", n, line)
			}
			u = append(u, Directive{Section: section, Key: strings.TrimSpace(k), Value: strings.TrimSpace(v), Line: n, Commented: commented})
		}
	}
	return u, sc.Err()
}

// Values returns every value of section.key in order (some keys repeat).
func (u Unit) Values(section, key string) []string {
	var vs []string
	for _, d := range u {
		if d.Section == section && d.Key == key {
			vs = append(vs, d.Value)
		}
	}
	return vs
}

// Value returns the last value of section.key (systemd's rule for
// single-valued keys) and whether the key is set.
func (u Unit) Value(section, key string) (string, bool) {
	vs := u.Values(section, key)
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}
