// Command kafka-dev runs a Kafka-protocol cluster on loopback for trying
// fleet mode by hand and for the end-to-end tests: franz-go's kfake, an
// in-process fake of Kafka's wire protocol (produce, fetch, consumer
// groups, idempotent producers), with the fleet's topics created. It is a
// development tool, not a broker for production.
//
//	go run ./cmd/kafka-dev                       # 127.0.0.1:9092, data in memory
//	go run ./cmd/kafka-dev -data-dir ./kafka     # kept across restarts (synced writes)
//
// It prints `export AGENT_KAFKA_BROKERS=...` on stdout (the rest of its talk
// goes to stderr), so `go run ./cmd/kafka-dev > kafka.env &` and
// `. ./kafka.env` point an agent at it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/outpost-agent/outpost/fleet"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "kafka-dev:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("kafka-dev", flag.ContinueOnError)
	ports := fs.String("ports", "9092", "comma-separated loopback ports, one broker each")
	dataDir := fs.String("data-dir", "", "keep the cluster's data here across restarts (every write synced); empty: memory only")
	prefix := fs.String("prefix", "outpost", "topic prefix (AGENT_KAFKA_TOPIC_PREFIX)")
	partitions := fs.Int("partitions", 6, "partitions of the actions, decisions and velocity topics")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var ps []int
	for _, s := range strings.Split(*ports, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || p < 0 || p > 65535 {
			return fmt.Errorf("-ports: %q is not a port", s)
		}
		ps = append(ps, p)
	}
	opts := []kfake.Opt{kfake.NumBrokers(len(ps)), kfake.Ports(ps...), kfake.ClusterID("outpost-dev")}
	if *dataDir != "" {
		opts = append(opts, kfake.DataDir(*dataDir), kfake.SyncWrites())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	// The fleet's topics, as docs/fleet-kafka.md sets them (on one
	// process there is no replication to set). A topic already there
	// (from the data directory) is kept.
	for _, t := range []struct {
		kind    string
		parts   int
		configs map[string]string
	}{
		{fleet.KindActions, *partitions, nil},
		{fleet.KindDecisions, *partitions, nil},
		{fleet.KindDeadLetters, 3, nil},
		{fleet.KindAgents, 3, map[string]string{"cleanup.policy": "compact"}},
		{fleet.KindVelocity, *partitions, nil},
	} {
		name := fleet.Topic(*prefix, t.kind)
		if c.TopicInfo(name) != nil {
			continue
		}
		if err := c.CreateTopic(name, int32(t.parts), t.configs); err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
	}
	fmt.Printf("export AGENT_KAFKA_BROKERS=%s\n", strings.Join(c.ListenAddrs(), ","))
	fmt.Fprintf(os.Stderr, "kafka-dev: %d broker(s) on %s, topics %s.*.v1; Ctrl-C stops\n", len(ps), strings.Join(c.ListenAddrs(), ","), *prefix)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}
