package policy

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"go.yaml.in/yaml/v3"
)

//go:embed default.yaml
var defaultYAML []byte

// Limits on what a policy file may hold.
const (
	maxPolicyBytes = 4 << 20
	maxRules       = 1000
)

// ReasonInvalidInput is the reason given when Decide is handed a non-finite number.
const ReasonInvalidInput = "INPUT_INVALID"

var reservedIDs = map[string]bool{
	ReasonAllowList: true, ReasonBlockListAccount: true, ReasonBlockListDevice: true,
	ReasonBlockListIP: true, ReasonBlockListCard: true, ReasonRuleError: true, ReasonInvalidInput: true,
}

var (
	ruleIDPattern   = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,63}$`)
	velocityPattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	yamlLinePattern = regexp.MustCompile(`line (\d+)(?:, column (\d+))?`)
)

// Policy is a loaded, compiled and tested policy. It is immutable and safe for concurrent use.
type Policy struct {
	name         string
	version      string
	sha          string
	reviewAt     float64
	declineAt    float64
	offlineLimit float64

	offlineLimitVal ref.Val
	allow, block    idList
	velocity        []VelocityDef
	velIndex        map[string]int
	rules           []*rule // active and shadow rules in evaluation order
	all             []*rule // every rule in file order
	pool            sync.Pool
}

// RuleInfo describes one rule of a policy (for listing and documentation).
type RuleInfo struct {
	ID, Class, Mode, Reason, Doc string
	When                         string // the CEL condition
	Score                        string // class score: the contribution (a number or a CEL expression)
	Line                         int
}

type rule struct {
	RuleInfo
	reason    Reason
	when      cel.Program
	score     float64
	scoreExpr cel.Program
}

var classRank = map[string]int{ClassBlock: 0, ClassAllow: 1, ClassReview: 2, ClassScore: 3}

// Version is the policy's version string.
func (p *Policy) Version() string { return p.version }

// SHA256 is the hex SHA-256 of the policy file's bytes.
func (p *Policy) SHA256() string { return p.sha }

// Name is the name the policy was loaded under (its file name).
func (p *Policy) Name() string { return p.name }

// OfflineLimit is the amount above which a degraded decision is sent to review (the default
// policy's OFFLINE_LIMIT rule uses it as `offline_limit`).
func (p *Policy) OfflineLimit() float64 { return p.offlineLimit }

// Thresholds are the score thresholds: a summed score >= reviewAt reviews, >= declineAt declines.
func (p *Policy) Thresholds() (reviewAt, declineAt float64) { return p.reviewAt, p.declineAt }

// Velocity lists the counters the caller must compute and pass in Input.Velocity.
func (p *Policy) Velocity() []VelocityDef {
	out := make([]VelocityDef, len(p.velocity))
	for i, d := range p.velocity {
		d.Events = slices.Clone(d.Events)
		out[i] = d
	}
	return out
}

// Rules lists every rule, disabled ones included, in file order.
func (p *Policy) Rules() []RuleInfo {
	out := make([]RuleInfo, len(p.all))
	for i, r := range p.all {
		out[i] = r.RuleInfo
	}
	return out
}

var (
	defaultOnce   sync.Once
	defaultPolicy *Policy
)

// Default returns the embedded default policy (default.yaml). It panics if that file does not
// load, which the package's tests rule out.
func Default() *Policy {
	defaultOnce.Do(func() {
		p, err := Parse(defaultYAML, "default.yaml")
		if err != nil {
			panic("policy: the embedded default.yaml does not load: " + err.Error())
		}
		defaultPolicy = p
	})
	return defaultPolicy
}

// DefaultYAML returns a copy of the embedded default policy file.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// LoadFile reads and parses a policy file.
func LoadFile(path string) (*Policy, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(src, path)
}

// Parse loads a policy: it decodes the YAML strictly, compiles and type-checks every condition,
// checks the static cost of each, and runs the file's own test vectors. Any problem makes it
// return a nil policy and an ErrorList of *Error, each at its YAML line.
func Parse(src []byte, name string) (p *Policy, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, ErrorList{{File: name, Msg: fmt.Sprintf("internal error while loading: %v", r)}}
		}
	}()
	l := &loader{file: name, src: src}
	p = l.policy(src)
	if err := l.err(); err != nil {
		return nil, err
	}
	return p, nil
}

// err returns the problems found, in file order, or nil.
func (l *loader) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	sort.SliceStable(l.errs, func(i, j int) bool {
		a, b := l.errs[i], l.errs[j]
		return a.Line < b.Line || a.Line == b.Line && a.Column < b.Column
	})
	return l.errs
}

// loader walks the YAML node tree, collecting every problem with its position.
type loader struct {
	file  string
	src   []byte
	lines []string
	errs  ErrorList
	env   *cel.Env
	est   estimator
	vel   map[string]int
	// fleetVel: the velocity counters, true for those shared with the fleet.
	fleetVel map[string]bool
}

func (l *loader) errAt(line, col int, format string, args ...any) {
	l.errs = append(l.errs, &Error{File: l.file, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)})
}

func (l *loader) errf(n *yaml.Node, format string, args ...any) {
	l.errAt(n.Line, n.Column, format, args...)
}

// document decodes src into its root node, or reports why it cannot.
func (l *loader) document(src []byte) *yaml.Node {
	if len(src) > maxPolicyBytes {
		l.errAt(0, 0, "file is %d bytes, more than the %d allowed", len(src), maxPolicyBytes)
		return nil
	}
	if !utf8.Valid(src) {
		l.errAt(0, 0, "file is not UTF-8")
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			l.errAt(0, 0, "file is empty")
		} else {
			l.yamlError(err)
		}
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			l.yamlError(err)
		} else {
			l.errf(&extra, "only one YAML document is allowed")
		}
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		l.errAt(doc.Line, doc.Column, "expected one YAML document")
		return nil
	}
	if !l.plain(doc.Content[0]) {
		return nil
	}
	return doc.Content[0]
}

func (l *loader) yamlError(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line, col := 0, 0
	if m := yamlLinePattern.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		if m[2] != "" {
			col, _ = strconv.Atoi(m[2])
		}
	}
	l.errAt(line, col, "invalid YAML: %s", msg)
}

// plain refuses anchors, aliases and merge keys anywhere in the tree: a policy is read as written.
func (l *loader) plain(n *yaml.Node) bool {
	ok := true
	var walk func(n *yaml.Node, depth int)
	walk = func(n *yaml.Node, depth int) {
		if depth > 64 {
			if ok {
				l.errf(n, "nesting deeper than 64 levels")
			}
			ok = false
			return
		}
		if n.Kind == yaml.AliasNode || n.Anchor != "" {
			l.errf(n, "YAML anchors and aliases are not allowed in a policy")
			ok = false
			return
		}
		for _, c := range n.Content {
			walk(c, depth+1)
		}
	}
	walk(n, 0)
	return ok
}

// fields checks that n is a mapping whose keys are among allowed, each at most once.
func (l *loader) fields(n *yaml.Node, what string, allowed ...string) map[string]*yaml.Node {
	if n.Kind != yaml.MappingNode {
		l.errf(n, "%s must be a mapping", what)
		return nil
	}
	m := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			l.errf(k, "%s: keys must be plain names", what)
			continue
		}
		if !slices.Contains(allowed, k.Value) {
			l.errf(k, "%s: unknown key %q (allowed: %s)", what, k.Value, strings.Join(allowed, ", "))
			continue
		}
		if _, dup := m[k.Value]; dup {
			l.errf(k, "%s: duplicate key %q", what, k.Value)
			continue
		}
		m[k.Value] = v
	}
	return m
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func (l *loader) str(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		l.errf(n, "%s must be a string", what)
		return "", false
	}
	return n.Value, true
}

func (l *loader) nonEmpty(n *yaml.Node, what string) (string, bool) {
	s, ok := l.str(n, what)
	if ok && strings.TrimSpace(s) == "" {
		l.errf(n, "%s must not be empty", what)
		return "", false
	}
	return s, ok
}

func (l *loader) num(n *yaml.Node, what string) (float64, bool) {
	if n.Kind == yaml.ScalarNode && (n.Tag == "!!int" || n.Tag == "!!float") {
		f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		if err != nil && n.Tag == "!!int" {
			var i int64
			if i, err = strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64); err == nil {
				f = float64(i)
			}
		}
		if err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return f, true
		}
	}
	l.errf(n, "%s must be a finite number", what)
	return 0, false
}

func (l *loader) integer(n *yaml.Node, what string) (int64, bool) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		if i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64); err == nil {
			return i, true
		}
	}
	l.errf(n, "%s must be an integer", what)
	return 0, false
}

func (l *loader) boolean(n *yaml.Node, what string) (bool, bool) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!bool" {
		if b, err := strconv.ParseBool(strings.ToLower(n.Value)); err == nil {
			return b, true
		}
	}
	l.errf(n, "%s must be true or false", what)
	return false, false
}

// seq returns the items of a sequence; null is an empty sequence.
func (l *loader) seq(n *yaml.Node, what string) []*yaml.Node {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		l.errf(n, "%s must be a list", what)
		return nil
	}
	return n.Content
}

func (l *loader) strList(n *yaml.Node, what string) []string {
	var out []string
	for i, it := range l.seq(n, what) {
		if s, ok := l.nonEmpty(it, fmt.Sprintf("%s[%d]", what, i)); ok {
			out = append(out, s)
		}
	}
	return out
}

func (l *loader) policy(src []byte) *Policy {
	root := l.document(src)
	if root == nil {
		return nil
	}
	sum := sha256.Sum256(src)
	p := &Policy{name: l.file, sha: hex.EncodeToString(sum[:])}
	top := l.fields(root, "policy", "version", "description", "thresholds", "offline_limit", "lists", "velocity", "rules", "tests")
	if top == nil {
		return nil
	}
	if n, ok := top["version"]; !ok {
		l.errf(root, "policy: version is required")
	} else if v, ok := l.nonEmpty(n, "version"); ok {
		if len(v) > 64 || strings.ContainsAny(v, "\n\r\t") {
			l.errf(n, "version must be one line of at most 64 characters")
		}
		p.version = v
	}
	if n, ok := top["description"]; ok {
		l.str(n, "description")
	}
	if n, ok := top["thresholds"]; !ok {
		l.errf(root, "policy: thresholds is required (review_at, decline_at)")
	} else if m := l.fields(n, "thresholds", "review_at", "decline_at"); m != nil {
		ra, rok := m["review_at"]
		da, dok := m["decline_at"]
		if !rok || !dok {
			l.errf(n, "thresholds: review_at and decline_at are both required")
		} else {
			r, ok1 := l.num(ra, "thresholds.review_at")
			d, ok2 := l.num(da, "thresholds.decline_at")
			if ok1 && ok2 && r > d {
				l.errf(ra, "thresholds: review_at (%g) must not be above decline_at (%g)", r, d)
			}
			p.reviewAt, p.declineAt = r, d
		}
	}
	if n, ok := top["offline_limit"]; !ok {
		l.errf(root, "policy: offline_limit is required (the amount above which a degraded decision goes to review)")
	} else if v, ok := l.num(n, "offline_limit"); ok {
		if v < 0 {
			l.errf(n, "offline_limit must not be negative")
		}
		p.offlineLimit = v
	}
	p.offlineLimitVal = types.Double(p.offlineLimit)
	if n, ok := top["lists"]; ok {
		l.lists(n, p)
	}
	p.velIndex = map[string]int{}
	if n, ok := top["velocity"]; ok {
		l.velocity(n, p)
	}
	l.vel = p.velIndex
	l.fleetVel = map[string]bool{}
	for _, d := range p.velocity {
		l.fleetVel[d.Name] = d.Fleet
	}
	l.est = estimator{velocitySize: uint64(len(p.velocity))}
	env, err := celEnv()
	if err != nil {
		l.errAt(0, 0, "CEL environment: %v", err)
		return nil
	}
	l.env = env
	if n, ok := top["rules"]; !ok {
		l.errf(root, "policy: rules is required")
	} else {
		l.rules(n, p)
	}
	p.pool.New = func() any { return newEvalCtx(p) }
	if n, ok := top["tests"]; ok && len(l.errs) == 0 {
		tests := l.cases(n, p, "tests")
		if len(l.errs) == 0 {
			for _, tc := range tests {
				if problems := tc.check(p); len(problems) > 0 {
					l.errAt(tc.line, tc.col, "test %q fails: %s", tc.name, strings.Join(problems, "; "))
				}
			}
		}
	}
	return p
}

// idList is an allow or block list.
type idList struct {
	accounts, devices, cards map[string]struct{}
	ips                      []netip.Prefix
}

func (l *loader) lists(n *yaml.Node, p *Policy) {
	m := l.fields(n, "lists", "allow", "block")
	for _, which := range []string{"allow", "block"} {
		ln, ok := m[which]
		if !ok || isNull(ln) {
			continue
		}
		what := "lists." + which
		f := l.fields(ln, what, "accounts", "devices", "ips", "card_hashes")
		if f == nil {
			continue
		}
		var il idList
		set := func(key string, norm func(*yaml.Node, string) (string, bool)) map[string]struct{} {
			n, ok := f[key]
			if !ok {
				return nil
			}
			out := map[string]struct{}{}
			for i, it := range l.seq(n, what+"."+key) {
				s, ok := l.nonEmpty(it, fmt.Sprintf("%s.%s[%d]", what, key, i))
				if !ok {
					continue
				}
				if norm != nil {
					if s, ok = norm(it, s); !ok {
						continue
					}
				}
				out[s] = struct{}{}
			}
			return out
		}
		il.accounts = set("accounts", nil)
		il.devices = set("devices", nil)
		il.cards = set("card_hashes", func(it *yaml.Node, s string) (string, bool) {
			// An HMAC in hex is at least 32 digits; a card number (13 to 19 digits) never is.
			if _, err := hex.DecodeString(s); err != nil || len(s) < 32 {
				l.errf(it, "%s.card_hashes: %q is not a hex HMAC (raw card numbers never go in a policy)", what, s)
				return "", false
			}
			return strings.ToLower(s), true
		})
		if ipn, ok := f["ips"]; ok {
			for i, it := range l.seq(ipn, what+".ips") {
				s, ok := l.nonEmpty(it, fmt.Sprintf("%s.ips[%d]", what, i))
				if !ok {
					continue
				}
				var pfx netip.Prefix
				var err error
				if strings.Contains(s, "/") {
					pfx, err = netip.ParsePrefix(s)
					pfx = pfx.Masked()
				} else {
					var a netip.Addr
					if a, err = netip.ParseAddr(s); err == nil {
						a = a.Unmap()
						pfx = netip.PrefixFrom(a, a.BitLen())
					}
				}
				if err != nil {
					l.errf(it, "%s.ips: %q is not an IP address or CIDR prefix", what, s)
					continue
				}
				il.ips = append(il.ips, pfx)
			}
		}
		if which == "allow" {
			p.allow = il
		} else {
			p.block = il
		}
	}
}

func (l *loader) velocity(n *yaml.Node, p *Policy) {
	for i, it := range l.seq(n, "velocity") {
		what := fmt.Sprintf("velocity[%d]", i)
		m := l.fields(it, what, "name", "key", "window", "events", "fleet", "doc")
		if m == nil {
			continue
		}
		var d VelocityDef
		ok := true
		for _, req := range []string{"name", "key", "window"} {
			if _, has := m[req]; !has {
				l.errf(it, "%s: %s is required", what, req)
				ok = false
			}
		}
		if !ok {
			continue
		}
		if s, good := l.str(m["name"], what+".name"); good {
			if !velocityPattern.MatchString(s) {
				l.errf(m["name"], "%s: name %q must be lower_snake_case (a-z, 0-9, _)", what, s)
				ok = false
			} else if _, dup := p.velIndex[s]; dup {
				l.errf(m["name"], "%s: duplicate velocity name %q", what, s)
				ok = false
			}
			d.Name = s
		} else {
			ok = false
		}
		if s, good := l.str(m["key"], what+".key"); good {
			switch s {
			case "account", "device", "ip", "card", "phone":
				d.Key = s
			default:
				l.errf(m["key"], "%s: unknown key %q (account, device, ip, card or phone)", what, s)
			}
		}
		if s, good := l.str(m["window"], what+".window"); good {
			w, err := time.ParseDuration(s)
			if err != nil || w <= 0 || w > 366*24*time.Hour {
				l.errf(m["window"], "%s: window %q must be a duration such as 10m, 1h or 24h (at most a year)", what, s)
			}
			d.Window = w
		}
		if en, has := m["events"]; has {
			for j, ev := range l.seq(en, what+".events") {
				if s, good := l.nonEmpty(ev, fmt.Sprintf("%s.events[%d]", what, j)); good {
					if !slices.Contains(tongdunEvents, s) {
						l.errf(ev, "%s: unknown event %q (TongDun decision_event: %s)", what, s, strings.Join(tongdunEvents, ", "))
						continue
					}
					d.Events = append(d.Events, s)
				}
			}
		}
		if fn, has := m["fleet"]; has {
			d.Fleet, _ = l.boolean(fn, what+".fleet")
		}
		if dn, has := m["doc"]; has {
			l.str(dn, what+".doc")
		}
		if ok {
			p.velIndex[d.Name] = len(p.velocity)
			p.velocity = append(p.velocity, d)
		}
	}
}

func (l *loader) rules(n *yaml.Node, p *Policy) {
	items := l.seq(n, "rules")
	if len(items) > maxRules {
		l.errf(n, "rules: %d rules, more than the %d allowed", len(items), maxRules)
		return
	}
	seen := map[string]int{}
	for i, it := range items {
		what := fmt.Sprintf("rules[%d]", i)
		m := l.fields(it, what, "id", "class", "when", "reason", "mode", "score", "doc")
		if m == nil {
			continue
		}
		r := &rule{}
		r.Line = it.Line
		ok := true
		if idn, has := m["id"]; !has {
			l.errf(it, "%s: id is required", what)
			ok = false
		} else if id, good := l.str(idn, what+".id"); good {
			switch {
			case !ruleIDPattern.MatchString(id):
				l.errf(idn, "%s: id %q must be a letter then letters, digits, _ . - (at most 64)", what, id)
				ok = false
			case reservedIDs[id]:
				l.errf(idn, "%s: id %q is reserved", what, id)
				ok = false
			case seen[id] > 0:
				l.errf(idn, "%s: duplicate rule id %q (first at line %d)", what, id, seen[id])
				ok = false
			default:
				seen[id] = idn.Line
			}
			r.ID = id
			what = "rule " + id
		} else {
			ok = false
		}
		if cn, has := m["class"]; !has {
			l.errf(it, "%s: class is required (allow, block, review or score)", what)
			ok = false
		} else if c, good := l.str(cn, what+": class"); good {
			if _, known := classRank[c]; !known {
				l.errf(cn, "%s: unknown class %q (allow, block, review or score)", what, c)
				ok = false
			}
			r.Class = c
		} else {
			ok = false
		}
		r.Mode = ModeActive
		if mn, has := m["mode"]; has {
			if md, good := l.str(mn, what+": mode"); good {
				switch md {
				case ModeActive, ModeShadow, ModeDisabled:
					r.Mode = md
				default:
					l.errf(mn, "%s: unknown mode %q (active, shadow or disabled)", what, md)
					ok = false
				}
			} else {
				ok = false
			}
		}
		if rn, has := m["reason"]; !has {
			l.errf(it, "%s: reason is required", what)
			ok = false
		} else if s, good := l.nonEmpty(rn, what+": reason"); good {
			r.Reason = strings.TrimSpace(s)
		} else {
			ok = false
		}
		if dn, has := m["doc"]; has {
			if s, good := l.str(dn, what+": doc"); good {
				r.Doc = strings.TrimSpace(s)
			}
		}
		if wn, has := m["when"]; !has {
			l.errf(it, "%s: when is required", what)
			ok = false
		} else if s, good := l.nonEmpty(wn, what+": when"); good {
			r.When = s
			prg, good := l.compile(wn, what+": when", types.BoolType)
			ok = ok && good
			r.when = prg
		} else {
			ok = false
		}
		sn, hasScore := m["score"]
		switch {
		case r.Class == ClassScore && !hasScore:
			l.errf(it, "%s: a score rule needs score (a number, or a CEL expression giving int or double)", what)
			ok = false
		case r.Class != ClassScore && hasScore && r.Class != "":
			l.errf(sn, "%s: score is only for class score", what)
			ok = false
		case hasScore && sn.Kind == yaml.ScalarNode && (sn.Tag == "!!int" || sn.Tag == "!!float"):
			v, good := l.num(sn, what+": score")
			ok = ok && good
			r.score, r.Score = v, sn.Value
		case hasScore:
			if s, good := l.nonEmpty(sn, what+": score"); good {
				r.Score = s
				prg, good := l.compile(sn, what+": score", types.IntType, types.DoubleType)
				ok = ok && good
				r.scoreExpr = prg
			} else {
				ok = false
			}
		}
		r.reason = Reason{ID: r.ID, Reason: r.Reason}
		if ok {
			p.all = append(p.all, r)
		}
	}
	for _, r := range p.all {
		if r.Mode != ModeDisabled {
			p.rules = append(p.rules, r)
		}
	}
	sort.SliceStable(p.rules, func(i, j int) bool { return classRank[p.rules[i].Class] < classRank[p.rules[j].Class] })
}

// compile parses, type-checks and cost-checks the CEL expression in n and returns its program.
// Disabled rules are compiled too: a broken rule is an error whatever its mode.
func (l *loader) compile(n *yaml.Node, what string, want ...*types.Type) (cel.Program, bool) {
	if n.Kind != yaml.ScalarNode {
		l.errf(n, "%s must be a CEL expression (a string)", what)
		return nil, false
	}
	ast, iss := l.env.Compile(n.Value)
	if iss != nil && iss.Err() != nil {
		for _, e := range iss.Errors() {
			line, col := l.celPos(n, e.Location)
			l.errAt(line, col, "%s: %s", what, e.Message)
		}
		return nil, false
	}
	out := ast.OutputType()
	typeOK := false
	for _, t := range want {
		if out.IsExactType(t) {
			typeOK = true
		}
	}
	if !typeOK {
		names := make([]string, len(want))
		for i, t := range want {
			names[i] = t.String()
		}
		l.errf(n, "%s must be of type %s, not %s", what, strings.Join(names, " or "), out.String())
		return nil, false
	}
	est, err := l.env.EstimateCost(ast, l.est)
	if err != nil {
		l.errf(n, "%s: cost cannot be estimated: %v", what, err)
		return nil, false
	}
	if est.Max > maxRuleCost {
		l.errf(n, "%s is too expensive: its cost can reach %d, the limit is %d", what, est.Max, maxRuleCost)
		return nil, false
	}
	if !l.checkRefs(ast.NativeRep(), n, what) {
		return nil, false
	}
	progOpts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if est.Max > trackCostAbove {
		progOpts = append(progOpts, cel.CostLimit(runtimeCostLimit))
	}
	prg, err := l.env.Program(ast, progOpts...)
	if err != nil {
		l.errf(n, "%s: %v", what, err)
		return nil, false
	}
	return prg, true
}

// celPos maps a position inside a CEL expression to the YAML file. Literal blocks (|) keep their
// lines; folded blocks (>) and multi-line plain or quoted scalars are folded into one line by YAML,
// and the column is walked back over the source lines (best effort: escapes and blank lines can
// shift it, in which case the scalar's own position is given).
func (l *loader) celPos(n *yaml.Node, loc common.Location) (int, int) {
	if loc == nil || loc.Line() <= 0 || loc.Column() < 0 {
		return n.Line, n.Column
	}
	cl, cc := loc.Line(), loc.Column()
	switch n.Style {
	case yaml.LiteralStyle:
		// The block's indentation is that of its first line.
		if first, ok := l.line(n.Line + 1); ok {
			if _, ok := l.line(n.Line + cl); ok {
				return n.Line + cl, len(first) - len(strings.TrimLeft(first, " ")) + cc + 1
			}
		}
		return n.Line, n.Column
	case yaml.FoldedStyle:
		if cl == 1 {
			return l.foldedPos(n.Line+1, 1, cc, false, n)
		}
	default:
		if cl == 1 {
			quoted := n.Style == yaml.SingleQuotedStyle || n.Style == yaml.DoubleQuotedStyle
			start := n.Column
			if quoted {
				start++
			}
			return l.foldedPos(n.Line, start, cc, quoted, n)
		}
	}
	return n.Line, n.Column
}

// foldedPos finds code point cc of a scalar that YAML folded from source lines (joined with one
// space, each continuation line's indentation dropped), starting at line, column start.
func (l *loader) foldedPos(line, start, cc int, quoted bool, n *yaml.Node) (int, int) {
	for i := 0; i < 1000; i++ {
		s, ok := l.line(line + i)
		if !ok {
			break
		}
		runes := []rune(s)
		col := start
		if i > 0 || n.Style == yaml.FoldedStyle {
			col = len(runes) - len([]rune(strings.TrimLeft(s, " \t"))) + 1
		}
		if col-1 > len(runes) {
			break
		}
		seg := []rune(strings.TrimRight(string(runes[col-1:]), " \t"))
		if quoted && len(seg) > 0 && (seg[len(seg)-1] == '\'' || seg[len(seg)-1] == '"') && cc >= len(seg)-1 {
			seg = seg[:len(seg)-1]
		}
		if cc < len(seg) {
			return line + i, col + cc
		}
		cc -= len(seg) + 1
		if cc < 0 {
			return line + i, col + len(seg)
		}
	}
	return n.Line, n.Column
}

func (l *loader) line(i int) (string, bool) {
	if l.lines == nil {
		l.lines = strings.Split(string(l.src), "\n")
	}
	if i < 1 || i > len(l.lines) {
		return "", false
	}
	return strings.TrimRight(l.lines[i-1], "\r"), true
}

// enumValues are the values a string field can take; comparing it with anything else is a typo.
func enumValues(path string) []string {
	switch path {
	case "event":
		return tongdunEvents
	case "credit.mode":
		return []string{CreditRevolving, CreditSingle}
	case "signals.tongdun.status", "signals.unionpay_model.status", "signals.unionpay_transaction.status":
		return []string{StatusFresh, StatusStale, StatusMissing, StatusError}
	case "signals.tongdun.result", "signals.unionpay_model.result", "signals.unionpay_transaction.result":
		return []string{Accept, Review, Decline}
	}
	return nil
}

func exprPath(e celast.Expr) string {
	switch e.Kind() {
	case celast.IdentKind:
		return e.AsIdent()
	case celast.SelectKind:
		s := e.AsSelect()
		if s.IsTestOnly() {
			return ""
		}
		if p := exprPath(s.Operand()); p != "" {
			return p + "." + s.FieldName()
		}
	}
	return ""
}

func literalString(e celast.Expr) (string, bool) {
	if e.Kind() != celast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// checkRefs catches, best effort, what type-checking cannot: velocity counters that are not
// declared (velocity["x"], velocity.x, "x" in velocity) and comparisons of an enumerated field
// (event, credit.mode, a signal's status or result) with a value it never takes. The fleet
// functions are checked exactly: called on velocity only, velocity.fleet with the literal name of
// a counter declared fleet: true.
func (l *loader) checkRefs(a *celast.AST, n *yaml.Node, what string) bool {
	ok := true
	info := a.SourceInfo()
	bad := func(id int64, format string, args ...any) {
		line, col := l.celPos(n, info.GetStartLocation(id))
		l.errAt(line, col, "%s: %s", what, fmt.Sprintf(format, args...))
		ok = false
	}
	velocityName := func(id int64, name string) {
		if _, declared := l.vel[name]; !declared {
			names := make([]string, 0, len(l.vel))
			for k := range l.vel {
				names = append(names, k)
			}
			sort.Strings(names)
			bad(id, "velocity counter %q is not declared under velocity: (declared: %s)", name, strings.Join(names, ", "))
		}
	}
	enumLiteral := func(path string, lit celast.Expr) {
		vals := enumValues(path)
		if vals == nil {
			return
		}
		if s, isStr := literalString(lit); isStr && s != "" && !slices.Contains(vals, s) {
			bad(lit.ID(), "%s is never %q (it is one of: %s)", path, s, strings.Join(vals, ", "))
		}
	}
	isVelocity := func(e celast.Expr) bool { return e.Kind() == celast.IdentKind && e.AsIdent() == "velocity" }
	celast.PreOrderVisit(a.Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		switch e.Kind() {
		case celast.SelectKind:
			if s := e.AsSelect(); isVelocity(s.Operand()) {
				velocityName(e.ID(), s.FieldName())
			}
		case celast.CallKind:
			c := e.AsCall()
			args := c.Args()
			if fn := c.FunctionName(); fn == fnFleet || fn == fnFleetAge {
				if !c.IsMemberFunction() || !isVelocity(c.Target()) {
					bad(e.ID(), "%s() is called on velocity only: velocity.%s(...)", fn, fn)
					return
				}
				if fn == fnFleet {
					name, isStr := literalString(args[0])
					switch _, declared := l.vel[name]; {
					case !isStr:
						bad(args[0].ID(), "velocity.fleet takes the counter's name as a string literal, such as velocity.fleet(\"loan_apps_1h\")")
					case !declared:
						velocityName(args[0].ID(), name)
					case !l.fleetVel[name]:
						bad(args[0].ID(), "velocity counter %q is not shared with the fleet: declare it with fleet: true to use velocity.fleet(%q)", name, name)
					}
				}
				return
			}
			if len(args) != 2 {
				return
			}
			switch c.FunctionName() {
			case operators.Index, operators.OptIndex:
				if s, isStr := literalString(args[1]); isStr && isVelocity(args[0]) {
					velocityName(args[1].ID(), s)
				}
			case operators.Equals, operators.NotEquals:
				enumLiteral(exprPath(args[0]), args[1])
				enumLiteral(exprPath(args[1]), args[0])
			case operators.In:
				if s, isStr := literalString(args[0]); isStr && isVelocity(args[1]) {
					velocityName(args[0].ID(), s)
				}
				if path := exprPath(args[0]); path != "" && args[1].Kind() == celast.ListKind {
					for _, el := range args[1].AsList().Elements() {
						enumLiteral(path, el)
					}
				}
			}
		}
	}))
	return ok
}
