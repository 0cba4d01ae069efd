package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/outpost-agent/outpost/client"
	outpostupstream "github.com/outpost-agent/outpost/upstream"
)

// statusCmd: agent status [--json]
func statusCmd(ctx context.Context, args []string, out io.Writer) error {
	c, fs, _ := adminFlags("status", args)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := c.setup(fs); err != nil {
		return err
	}
	st, err := c.api.Status(ctx)
	if err != nil {
		return c.explain(err)
	}
	if c.json {
		_, err := fmt.Fprintln(out, string(st.Raw))
		return err
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UPSTREAM\tSTATE\tQUEUED\tOLDEST\tDEAD\tDELIVERED\tFAILED\tREASON")
	for _, name := range sortedKeys(st.Queues) {
		q := st.Queues[name]
		u := st.Upstreams[name]
		reason := u.Reason
		if reason == "" && u.LastError != "" && u.State != "ok" {
			reason = u.LastError
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%d\t%s\n", name, orDash(u.State), q.Depth,
			age(q.OldestAgeSeconds), q.DeadLetters, u.DeliveredTotal, u.FailedTotal, truncate(reason, 90))
	}
	tw.Flush()
	fmt.Fprintf(out, "\nstore %s on disk", humanBytes(st.Store.Bytes))
	if q := st.Store.Quarantine; q != nil {
		b, _ := json.Marshal(q)
		fmt.Fprintf(out, "  QUARANTINED at start-up: %s", b)
	}
	if n := len(st.Store.Damage); n > 0 {
		d := st.Store.Damage[n-1]
		fmt.Fprintf(out, "\nDAMAGE found in the store: %d reports; the latest (%s, %s): %s", n, d.Found, d.At.Format(time.RFC3339), truncate(d.Message, 300))
	}
	if st.Store.Intake.State == "refusing" {
		fmt.Fprintf(out, "\nINTAKE REFUSED: %s", st.Store.Intake.Message)
	}
	pol := st.Policy
	if pol == nil {
		pol = &client.PolicyStatus{}
	}
	fmt.Fprintf(out, "\npolicy %s (%s)", pol.Version, pol.File)
	if pol.LastRefusal != "" {
		fmt.Fprintf(out, "  last file REFUSED: %s", truncate(pol.LastRefusal, 200))
	}
	if len(st.DecisionsLastHour) > 0 {
		fmt.Fprintf(out, "\ndecisions last hour:")
		for _, k := range sortedKeys(st.DecisionsLastHour) {
			fmt.Fprintf(out, " %s %d", k, st.DecisionsLastHour[k])
		}
	}
	fmt.Fprintln(out)
	// Fleet mode's side, from the answer as sent (the client's Status
	// does not know it).
	var fl struct {
		Kafka         *kafkaDoc    `json:"kafka"`
		FleetVelocity *velocityDoc `json:"fleet_velocity"`
	}
	if json.Unmarshal(st.Raw, &fl) == nil {
		printKafka(out, fl.Kafka)
		printVelocity(out, fl.FleetVelocity)
	}
	for _, n := range st.Notes {
		fmt.Fprintf(out, "note: %s\n", n)
	}
	return nil
}

// deadLettersCmd: agent deadletters list UPSTREAM | replay UPSTREAM (--all | ID...)
func deadLettersCmd(ctx context.Context, args []string, out io.Writer) error {
	if len(args) < 2 || (args[0] != "list" && args[0] != "replay") {
		return fmt.Errorf("usage: agent deadletters list UPSTREAM | agent deadletters replay UPSTREAM (--all | ID...)")
	}
	verb, upstream := args[0], args[1]
	c, fs, _ := adminFlags("deadletters", args)
	all := fs.Bool("all", false, "replay: every dead letter of the upstream")
	if err := fs.Parse(args[2:]); err != nil {
		return err
	}
	if err := c.setup(fs); err != nil {
		return err
	}
	if verb == "replay" {
		ids := fs.Args()
		if *all == (len(ids) > 0) {
			return fmt.Errorf("replay: give --all or ids, not both or neither")
		}
		n, err := c.api.ReplayDeadLetters(ctx, client.Replay{Upstream: upstream, IDs: ids, All: *all})
		if err != nil {
			return c.explain(err)
		}
		if c.json {
			return json.NewEncoder(out).Encode(struct {
				Replayed int `json:"replayed"`
			}{n})
		}
		_, err = fmt.Fprintf(out, "replayed %d dead letter(s) of %s\n", n, upstream)
		return err
	}
	const page = 1000
	var after uint64
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	// Tencent actions were sent under their id mapped to Tencent's
	// alphabet: show both, to find them in Tencent's reports.
	outer := upstream == outpostupstream.Tencent
	if !c.json {
		if outer {
			fmt.Fprintln(tw, "SEQ\tID\tOUTER_ACTION_ID\tDEAD AT\tATTEMPTS\tREASON")
		} else {
			fmt.Fprintln(tw, "SEQ\tID\tDEAD AT\tATTEMPTS\tREASON")
		}
	}
	raws := []json.RawMessage{}
	for {
		dead, err := c.api.DeadLetters(ctx, upstream, after, page)
		if err != nil {
			return c.explain(err)
		}
		for _, d := range dead {
			after = d.Seq
			if c.json {
				raws = append(raws, d.Raw)
				continue
			}
			if outer {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", d.Seq, d.ID, d.OuterActionID, d.DeadAt.Format(time.RFC3339), d.Attempts, truncate(d.Reason, 100))
				continue
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\n", d.Seq, d.ID, d.DeadAt.Format(time.RFC3339), d.Attempts, truncate(d.Reason, 100))
		}
		if len(dead) < page {
			break
		}
	}
	if c.json {
		return json.NewEncoder(out).Encode(map[string]any{"dead_letters": raws})
	}
	return tw.Flush()
}

// drainCmd: agent drain [--timeout 5m] — wait until the running agent has
// forwarded everything queued; exit non-zero if anything is left (queued
// or dead-lettered) when the time is up. Items queued for an upstream that
// is not configured will never go: it fails at once, saying so.
func drainCmd(ctx context.Context, args []string, out io.Writer) error {
	c, fs, _ := adminFlags("drain", args)
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := c.setup(fs); err != nil {
		return err
	}
	deadline := time.Now().Add(*timeout)
	for {
		st, err := c.api.Status(ctx)
		if err != nil {
			return c.explain(err)
		}
		var queued, dead int64
		var stuck, never []string
		for _, name := range sortedKeys(st.Queues) {
			q := st.Queues[name]
			queued += q.Depth
			dead += q.DeadLetters
			if q.Depth > 0 {
				u := st.Upstreams[name]
				stuck = append(stuck, fmt.Sprintf("%s: %d queued (%s %s)", name, q.Depth, u.State, truncate(u.Reason, 80)))
				if u.State == "not_configured" {
					never = append(never, fmt.Sprintf("%s has %d queued and is not configured (%s): set its AGENT_%s_* credentials and restart the agent",
						name, q.Depth, u.Reason, strings.ToUpper(name)))
				}
			}
		}
		if len(never) > 0 {
			return fmt.Errorf("cannot drain: %s", strings.Join(never, "; "))
		}
		if queued == 0 {
			if dead > 0 {
				return fmt.Errorf("queues drained, but %d item(s) are in the dead letters (agent deadletters list UPSTREAM)", dead)
			}
			fmt.Fprintln(out, "drained: nothing left to forward")
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not drained after %s: %s", *timeout, strings.Join(stuck, "; "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func age(sec float64) string {
	if sec <= 0 {
		return "-"
	}
	return (time.Duration(sec) * time.Second).String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func humanBytes(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }
