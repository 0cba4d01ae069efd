package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/outpost-agent/outpost/forwarder"
	"github.com/outpost-agent/outpost/spool"
)

// drainPoll is how often the drain looks at the queues.
const drainPoll = 50 * time.Millisecond

// drainQueues forwards what is queued before the agent stops: every worker
// sends its partial batches at once, and this returns when each queue is
// empty or its upstream cannot take it now (not configured, paused, circuit
// open: waiting would only use up the budget), or when ctx ends. On a pod
// whose spool is an emptyDir, what is left when it returns is lost with the
// pod; on a host or a volume that outlives the pod, the next start
// forwards it.
func drainQueues(ctx context.Context, sp *spool.Spool, ws map[string]*forwarder.Worker, log *slog.Logger) {
	if left, _ := leftToForward(sp, ws); left == 0 {
		return
	}
	for _, w := range ws {
		w.Drain()
	}
	left, per := leftToForward(sp, ws)
	deadline, _ := ctx.Deadline()
	log.Info("draining: forwarding the queues before stopping", "queued", left, "queues", per, "until", deadline)
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if left, _ := leftToForward(sp, ws); left == 0 {
			return
		}
	}
}

// leftToForward counts the queued items whose upstream can take them now,
// and says per queue what is queued and why it waits.
func leftToForward(sp *spool.Spool, ws map[string]*forwarder.Worker) (int64, string) {
	var n int64
	var per []string
	for q, st := range sp.Stats() {
		if st.Depth == 0 {
			continue
		}
		state := forwarder.StateNotConfigured
		if w, ok := ws[q]; ok {
			state = w.Status().State
		}
		switch state {
		case forwarder.StateOK, forwarder.StateRetrying:
			n += st.Depth
		}
		per = append(per, fmt.Sprintf("%s %d (%s)", q, st.Depth, state))
	}
	sort.Strings(per)
	return n, strings.Join(per, ", ")
}

// stoppedLine logs the agent's last line: how many queued items it could
// not forward, and where they wait. It is a warning when any are left.
func stoppedLine(log *slog.Logger, queued map[string]spool.QueueStats, dataDir, how string) {
	var n, dead int64
	var per []string
	for q, st := range queued {
		n += st.Depth
		dead += st.DeadLetters
		if st.Depth > 0 {
			per = append(per, fmt.Sprintf("%s %d", q, st.Depth))
		}
	}
	sort.Strings(per)
	msg := fmt.Sprintf("stopped%s: %d actions not forwarded (queued in %s", how, n, filepath.Join(dataDir, "spool"))
	if n > 0 {
		msg += ": " + strings.Join(per, ", ") + "; the next start with this data directory forwards them"
	}
	msg += ")"
	level := slog.LevelInfo
	if n > 0 {
		level = slog.LevelWarn
	}
	log.Log(context.Background(), level, msg, "not_forwarded", n, "dead_letters", dead)
}
