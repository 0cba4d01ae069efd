package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/outpost-agent/outpost/policy"
)

// policyCmd: `agent policy check FILE` and `agent policy test FILE CASES.yaml`,
// so a risk team can test a policy before it ships. Exit status 1 when the
// policy is refused or a case fails.
func policyCmd(args []string, out io.Writer) error {
	if len(args) < 2 || (args[0] == "test" && len(args) < 3) || (args[0] != "check" && args[0] != "test") {
		return errors.New("usage: agent policy check FILE | agent policy test FILE CASES.yaml")
	}
	src, err := os.ReadFile(args[1])
	if err != nil {
		return err
	}
	p, err := policy.Parse(src, args[1])
	if err != nil {
		return fmt.Errorf("policy refused:\n%w", err)
	}
	fmt.Fprintf(out, "policy %s ok: version %s, sha256 %s, %d velocity counters\n", args[1], p.Version(), p.SHA256(), len(p.Velocity()))
	if args[0] == "check" {
		return nil
	}
	cases, err := os.ReadFile(args[2])
	if err != nil {
		return err
	}
	results, err := policy.RunCases(p, cases)
	if err != nil {
		return fmt.Errorf("cases refused:\n%w", err)
	}
	failed := 0
	for _, r := range results {
		status := "PASS"
		if !r.Pass {
			status, failed = "FAIL", failed+1
		}
		fmt.Fprintf(out, "%s  %s (line %d): %s", status, r.Name, r.Line, r.Decision.Result)
		for _, why := range r.Decision.Reasons {
			fmt.Fprintf(out, " %s", why.ID)
		}
		fmt.Fprintln(out)
		for _, p := range r.Problems {
			fmt.Fprintf(out, "      %s\n", p)
		}
	}
	fmt.Fprintf(out, "%d passed, %d failed\n", len(results)-failed, failed)
	if failed > 0 {
		return fmt.Errorf("%d case(s) failed", failed)
	}
	return nil
}
