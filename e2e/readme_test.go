package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeSkipped are the README's sh blocks this test does not run, each
// found by a line it holds, with the reason.
var readmeSkipped = map[string]string{
	"go test -race -count=1 ./...": "the first block starts the agent in the foreground (this test starts the same binary with the same " +
		"embedded defaults, on a free port) and runs the whole test suite, this test included",
	"openapi-generator-cli generate": "openapi-generator needs Java and downloads its jar from Maven Central, which this machine cannot reach",
}

// TestREADMEExamples runs the README's sh blocks as a newcomer would paste
// them into a shell, against the real binary with its embedded defaults,
// and checks every answer the README shows: a "# " line (or lines) right
// after a command is the answer expected of the command above it, JSON
// compared key by key ("..." for what varies: any value, any string, or
// more keys), or text matched against a line of the output. The changes
// made to a block before it runs: `go run ./cmd/X` runs the binary built
// from the same source, and the fixed ports (8470 for the agent, 9101-9103
// for the simulators) become free ones. Blocks not run are listed in
// readmeSkipped with the reason.
func TestREADMEExamples(t *testing.T) {
	// Parallel (see agent_test.go): the fixed ports of the README's fleet
	// block (8471, 8472, 8479, 9092) are no other test's, and its steps
	// wait for states, not for times.
	t.Parallel()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(string(readme))
	if len(blocks) < 5 {
		t.Fatalf("found %d sh blocks in README.md", len(blocks))
	}
	bins := map[string]string{"agent": agentBinary(t), "upstream-sim": buildCmd(t, "upstream-sim")}

	// The agent as the first block starts it: embedded defaults, data in
	// ./data of its working directory; only the port is a free one.
	home := t.TempDir()
	cmd := exec.Command(bins["agent"])
	cmd.Dir = home
	cmd.Env = append(cleanEnv(), "AGENT_LISTEN_ADDR=127.0.0.1:0")
	a := runAgent(t, cmd)
	if _, err := os.Stat(filepath.Join(home, "data", "spool")); err != nil {
		t.Errorf("the agent with its defaults keeps no store in ./data: %v", err)
	}

	ran := 0
	for _, b := range blocks {
		if why := skipReason(b); why != "" {
			t.Logf("README.md:%d: not run: %s", b.line, why)
			continue
		}
		ran++
		t.Run(fmt.Sprintf("line%d", b.line), func(t *testing.T) {
			runReadmeBlock(t, b, repo, bins, a.Addr)
		})
	}
	if ran < 4 {
		t.Errorf("ran %d blocks; the README's examples are gone?", ran)
	}
}

// readmeBlock is one ```sh block: its first line's number in README.md
// and its lines.
type readmeBlock struct {
	line  int
	lines []string
}

func readmeBlocks(readme string) []readmeBlock {
	var out []readmeBlock
	var cur *readmeBlock
	for i, l := range strings.Split(readme, "\n") {
		switch {
		case cur == nil && strings.TrimSpace(l) == "```sh":
			cur = &readmeBlock{line: i + 2}
		case cur != nil && strings.TrimSpace(l) == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.lines = append(cur.lines, l)
		}
	}
	return out
}

func skipReason(b readmeBlock) string {
	for _, l := range b.lines {
		for key, why := range readmeSkipped {
			if strings.Contains(l, key) {
				return why
			}
		}
	}
	return ""
}

// segment is commands and the answer the README shows for the last of
// them ("" when it shows none).
type segment struct {
	commands []string
	want     string
	line     int // of the answer in README.md
	last     int // of the last command
}

// segments splits a block at its answer lines: "# " lines that follow a
// command line.
func segments(b readmeBlock) []segment {
	var out []segment
	cur := segment{}
	for i := 0; i < len(b.lines); i++ {
		l := b.lines[i]
		if strings.HasPrefix(l, "# ") && len(cur.commands) > 0 {
			seg := cur
			seg.line = b.line + i
			var want []string
			for ; i < len(b.lines) && strings.HasPrefix(b.lines[i], "# "); i++ {
				want = append(want, strings.TrimPrefix(b.lines[i], "# "))
			}
			i--
			seg.want = strings.Join(want, "\n")
			out = append(out, seg)
			cur = segment{}
			continue
		}
		cur.commands = append(cur.commands, l)
		cur.last = b.line + i
	}
	if len(cur.commands) > 0 {
		out = append(out, cur)
	}
	return out
}

// runReadmeBlock runs one block with bash in a directory of its own whose
// entries link to the repository's (so `cp policy/default.yaml x` works
// and writes nothing into the checkout), and checks each answer.
func runReadmeBlock(t *testing.T, b readmeBlock, repo string, bins map[string]string, agentAddr string) {
	dir := t.TempDir()
	entries, err := os.ReadDir(repo)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != ".git" && e.Name() != "data" {
			os.Symlink(filepath.Join(repo, e.Name()), filepath.Join(dir, e.Name()))
		}
	}
	text := strings.Join(b.lines, "\n")
	// A block that starts an agent of its own gets a port of its own.
	if strings.Contains(text, "go run ./cmd/agent &") {
		agentAddr = freeAddr(t)
	}
	sims := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	rewrite := strings.NewReplacer(
		"go run ./cmd/agent", bins["agent"],
		"go run ./cmd/upstream-sim", bins["upstream-sim"]+" -tencent "+sims[0]+" -tongdun "+sims[1]+" -unionpay "+sims[2],
		"localhost:8470", agentAddr,
		"localhost:9101", sims[0], "localhost:9102", sims[1], "localhost:9103", sims[2],
	)
	segs := segments(b)
	var script strings.Builder
	for i, s := range segs {
		for _, c := range s.commands {
			script.WriteString(rewrite.Replace(c) + "\n")
		}
		fmt.Fprintf(&script, "echo \"@@END %d $?\"\n", i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "AGENT_LISTEN_ADDR="+agentAddr)
	// Its own process group, so that what it leaves running in the
	// background (the demo's agent and simulators) is stopped with it.
	// A block that leaves something running holds the output open: it is
	// killed after WaitDelay, and the test fails (ErrWaitDelay).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // what it left behind
	}
	if err != nil {
		t.Fatalf("README.md:%d: %v\n%s\nstderr:\n%s", b.line, err, out, stderr.String())
	}
	outputs := splitOutputs(t, b, string(out), len(segs))
	for i, s := range segs {
		o := outputs[i]
		if o.status != 0 {
			t.Errorf("README.md:%d: the command exited %d\n%s\nstderr:\n%s", s.last, o.status, o.text, stderr.String())
			continue
		}
		if s.want == "" {
			continue
		}
		if msg := matchAnswer(s.want, o.text); msg != "" {
			t.Errorf("README.md:%d: the answer is not the one shown: %s\nshown:\n%s\ngot:\n%s", s.line, msg, s.want, o.text)
		}
	}
}

type segOutput struct {
	text   string
	status int
}

func splitOutputs(t *testing.T, b readmeBlock, out string, n int) []segOutput {
	t.Helper()
	res := make([]segOutput, 0, n)
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	for sc.Scan() {
		l := sc.Text()
		// The marker may follow output that ends without a newline (the
		// simulators' answers to POST /_sim/faults).
		if i := strings.Index(l, "@@END "); i >= 0 {
			cur.WriteString(l[:i])
			f := strings.Fields(l[i:])
			st, _ := strconv.Atoi(f[2])
			res = append(res, segOutput{text: cur.String(), status: st})
			cur.Reset()
			continue
		}
		cur.WriteString(l + "\n")
	}
	if len(res) != n {
		t.Fatalf("README.md:%d: ran %d of %d parts\n%s", b.line, len(res), n, out)
	}
	return res
}

// matchAnswer compares output with the answer shown: JSON (the last JSON
// value the commands printed) when the answer starts with { or [, else
// text that one line of the output must match, "..." standing for
// anything. It returns what differs, or "".
func matchAnswer(want, output string) string {
	if strings.HasPrefix(want, "{") || strings.HasPrefix(want, "[") {
		pat, err := parsePattern(want)
		if err != nil {
			return "the README's answer does not parse: " + err.Error()
		}
		dec := json.NewDecoder(strings.NewReader(output))
		dec.UseNumber()
		var last any
		n := 0
		for {
			var v any
			if err := dec.Decode(&v); err != nil {
				if n == 0 || err.Error() != "EOF" {
					return fmt.Sprintf("the output is not JSON values (%v)", err)
				}
				break
			}
			last, n = v, n+1
		}
		return pat.match("", last)
	}
	parts := strings.Split(want, "...")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	re := regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
	for _, l := range strings.Split(output, "\n") {
		if re.MatchString(strings.TrimRight(l, " ")) {
			return ""
		}
	}
	return "no line of the output matches"
}

// pattern is a JSON value in which "..." may stand for any value, any
// string ("..." in quotes), more members of an object, or more elements
// of an array.
type pattern struct {
	kind    byte // '*' any, 's' any string, 'v' literal, '{' object, '['
	literal any
	keys    []string
	members map[string]*pattern
	elems   []*pattern
	more    bool
}

func (p *pattern) match(path string, v any) string {
	at := path
	if at == "" {
		at = "the answer"
	}
	switch p.kind {
	case '*':
		return ""
	case 's':
		if _, ok := v.(string); !ok {
			return fmt.Sprintf("%s: %v is not a string", at, v)
		}
	case 'v':
		if !sameLiteral(p.literal, v) {
			return fmt.Sprintf("%s: %v, shown %v", at, v, p.literal)
		}
	case '{':
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: %v is not an object", at, v)
		}
		for _, k := range p.keys {
			got, ok := m[k]
			if !ok {
				return fmt.Sprintf("%s: no key %q", at, k)
			}
			if msg := p.members[k].match(path+"."+k, got); msg != "" {
				return msg
			}
		}
		if !p.more && len(m) != len(p.keys) {
			return fmt.Sprintf("%s: has keys the README does not show (%d, shown %d)", at, len(m), len(p.keys))
		}
	case '[':
		a, ok := v.([]any)
		if !ok {
			return fmt.Sprintf("%s: %v is not an array", at, v)
		}
		if len(a) < len(p.elems) || (!p.more && len(a) != len(p.elems)) {
			return fmt.Sprintf("%s: %d elements, shown %d", at, len(a), len(p.elems))
		}
		for i, e := range p.elems {
			if msg := e.match(fmt.Sprintf("%s[%d]", path, i), a[i]); msg != "" {
				return msg
			}
		}
	}
	return ""
}

func sameLiteral(want, got any) bool {
	if w, ok := want.(json.Number); ok {
		g, ok := got.(json.Number)
		if !ok {
			return false
		}
		wf, _ := w.Float64()
		gf, _ := g.Float64()
		return wf == gf
	}
	return want == got
}

// parsePattern parses JSON with "..." as described at pattern.
func parsePattern(s string) (*pattern, error) {
	pp := &patternParser{s: s}
	p, err := pp.value()
	if err != nil {
		return nil, err
	}
	pp.space()
	if pp.i != len(pp.s) {
		return nil, fmt.Errorf("text after the value at %d", pp.i)
	}
	return p, nil
}

type patternParser struct {
	s string
	i int
}

func (pp *patternParser) space() {
	for pp.i < len(pp.s) && strings.ContainsRune(" \t\r\n", rune(pp.s[pp.i])) {
		pp.i++
	}
}

func (pp *patternParser) ellipsis() bool {
	pp.space()
	if strings.HasPrefix(pp.s[pp.i:], "...") {
		pp.i += 3
		return true
	}
	return false
}

func (pp *patternParser) value() (*pattern, error) {
	if pp.ellipsis() {
		return &pattern{kind: '*'}, nil
	}
	pp.space()
	if pp.i >= len(pp.s) {
		return nil, fmt.Errorf("a value is missing at the end")
	}
	switch pp.s[pp.i] {
	case '{':
		pp.i++
		p := &pattern{kind: '{', members: map[string]*pattern{}}
		for {
			pp.space()
			if pp.i < len(pp.s) && pp.s[pp.i] == '}' {
				pp.i++
				return p, nil
			}
			if pp.ellipsis() {
				p.more = true
			} else {
				k, err := pp.literal()
				if err != nil {
					return nil, err
				}
				key, ok := k.(string)
				if !ok {
					return nil, fmt.Errorf("an object key is not a string at %d", pp.i)
				}
				pp.space()
				if pp.i >= len(pp.s) || pp.s[pp.i] != ':' {
					return nil, fmt.Errorf("':' missing at %d", pp.i)
				}
				pp.i++
				v, err := pp.value()
				if err != nil {
					return nil, err
				}
				p.keys = append(p.keys, key)
				p.members[key] = v
			}
			pp.space()
			if pp.i < len(pp.s) && pp.s[pp.i] == ',' {
				pp.i++
			}
		}
	case '[':
		pp.i++
		p := &pattern{kind: '['}
		for {
			pp.space()
			if pp.i < len(pp.s) && pp.s[pp.i] == ']' {
				pp.i++
				return p, nil
			}
			if pp.ellipsis() {
				p.more = true
			} else {
				v, err := pp.value()
				if err != nil {
					return nil, err
				}
				p.elems = append(p.elems, v)
			}
			pp.space()
			if pp.i < len(pp.s) && pp.s[pp.i] == ',' {
				pp.i++
			}
		}
	}
	v, err := pp.literal()
	if err != nil {
		return nil, err
	}
	if v == "..." {
		return &pattern{kind: 's'}, nil
	}
	return &pattern{kind: 'v', literal: v}, nil
}

// literal reads a string, number, true, false or null with encoding/json.
func (pp *patternParser) literal() (any, error) {
	pp.space()
	dec := json.NewDecoder(strings.NewReader(pp.s[pp.i:]))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("at %d: %v", pp.i, err)
	}
	switch v.(type) {
	case map[string]any, []any:
		return nil, fmt.Errorf("at %d: unexpected object or array", pp.i)
	}
	pp.i += int(dec.InputOffset())
	return v, nil
}

// cleanEnv is the environment a newcomer's shell would have: no AGENT_
// setting of this machine's.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AGENT_") {
			env = append(env, kv)
		}
	}
	return env
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// buildCmd builds cmd/name into the test's temporary directory.
func buildCmd(t *testing.T, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	if b, err := exec.Command("go", "build", "-o", out, "github.com/outpost-agent/outpost/cmd/"+name).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, b)
	}
	return out
}
