package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/outpost-agent/outpost/upstream"
)

var actionsTopic = Topic("outpost", KindActions)

func allDelivered(t *testing.T, rs []upstream.Result) {
	t.Helper()
	for i, r := range rs {
		if r.Verdict.Outcome != upstream.Delivered {
			t.Fatalf("item %d: %v %s %s", i, r.Verdict.Outcome, r.Verdict.Code, r.Verdict.Message)
		}
	}
}

// checkTopic: every item is on the topic once (at least once: atLeast
// allows duplicates), well-formed, with its headers and the account key.
func checkTopic(t *testing.T, addrs []string, items []upstream.Item, atLeast bool) {
	t.Helper()
	recs := readTopic(t, addrs, actionsTopic, len(items), 20*time.Second)
	seen := map[string]int{}
	byAccount := map[string]int32{}
	lastSeq := map[string]uint64{}
	for _, r := range recs {
		rec, err := Decode(r.Value)
		if err != nil {
			t.Fatalf("offset %d: %v", r.Offset, err)
		}
		if h := header(r, HeaderEventID); h != rec.EventID {
			t.Errorf("event-id header %q, value %q", h, rec.EventID)
		}
		if header(r, HeaderSchema) != "outpost.actions.v1" || header(r, HeaderAgentID) != "agent-1" {
			t.Errorf("headers %v", r.Headers)
		}
		key, _ := actionKey(rec.Payload)
		if string(r.Key) != key {
			t.Errorf("key %s, want %s", r.Key, key)
		}
		// One account, one partition, in spool order.
		if p, ok := byAccount[key]; ok && p != r.Partition {
			t.Errorf("account %s in partitions %d and %d", key, p, r.Partition)
		}
		byAccount[key] = r.Partition
		_, seq, _ := ParseEventID(rec.EventID)
		if seq < lastSeq[key] && seen[rec.EventID] == 0 {
			t.Errorf("account %s: seq %d after %d", key, seq, lastSeq[key])
		}
		lastSeq[key] = max(lastSeq[key], seq)
		seen[rec.EventID]++
	}
	for _, it := range items {
		n := seen[EventID("agent-1", it.Seq)]
		if n == 0 || (!atLeast && n != 1) {
			t.Errorf("seq %d is on the topic %d times", it.Seq, n)
		}
	}
}

func TestSenderDelivers(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(6, actionsTopic))
	p, s := newTestProducer(t, c.ListenAddrs())
	items := actionItems(1, 500, 37)
	allDelivered(t, s.Send(context.Background(), items))
	checkTopic(t, c.ListenAddrs(), items, false)
	st := p.Status()
	if q := st.Queues["tencent"]; q.Watermark != 500 || q.Acknowledged != 500 || st.Pending != 0 || st.State != "ok" {
		t.Errorf("status %+v", st)
	}
}

// TestSenderRequestTimeouts: the broker writes the batch but answers
// REQUEST_TIMED_OUT, and connections are cut mid-request (a ControlKey
// hook); the idempotent producer retries and the log holds each record
// once.
func TestSenderRequestTimeouts(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(3, actionsTopic))
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.RequestTimedOut, Count: 5})
	var mu sync.Mutex
	cut := 0
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		if cut < 3 {
			cut++
			return nil, errors.New("connection cut"), true
		}
		return nil, nil, false
	})
	// A cut connection makes the client refresh its metadata, which it
	// does at most every MetadataMinAge (5 s by default): 50 ms here, the
	// same retries without the two 5 s pauses.
	_, s := newTestProducer(t, c.ListenAddrs(), kgo.RetryBackoffFn(func(int) time.Duration { return 10 * time.Millisecond }), kgo.MetadataMinAge(50*time.Millisecond))
	items := actionItems(1, 300, 11)
	allDelivered(t, s.Send(context.Background(), items))
	checkTopic(t, c.ListenAddrs(), items, false)
	if cut < 3 {
		t.Errorf("only %d connections cut", cut)
	}
}

// TestSenderLeaderMoves: partition leaders move between brokers while
// records are in flight.
func TestSenderLeaderMoves(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(6, actionsTopic))
	_, s := newTestProducer(t, c.ListenAddrs(), kgo.RetryBackoffFn(func(int) time.Duration { return 10 * time.Millisecond }))
	var all []upstream.Item
	for b := range 10 {
		items := actionItems(uint64(b*100+1), 100, 23)
		all = append(all, items...)
		done := make(chan []upstream.Result)
		go func() { done <- s.Send(context.Background(), items) }()
		c.ShufflePartitionLeaders()
		if err := c.MoveTopicPartition(actionsTopic, int32(b%6), int32(b%3)); err != nil {
			t.Fatal(err)
		}
		allDelivered(t, <-done)
	}
	checkTopic(t, c.ListenAddrs(), all, false)
}

// TestSenderBrokerRestart: the whole cluster goes down mid-flow and comes
// back from its data directory: Send waits (an outage is a backlog), the
// forwarder's stop gets an answer at once, and every record is on the
// broker afterwards.
func TestSenderBrokerRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kafka")
	ports := []int{freePort(t), freePort(t), freePort(t)}
	opts := []kfake.Opt{kfake.Ports(ports...), kfake.DataDir(dir), kfake.SyncWrites(), kfake.SeedTopics(3, actionsTopic)}
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	addrs := c.ListenAddrs()
	p, s := newTestProducer(t, addrs, kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond }))
	first := actionItems(1, 200, 13)
	allDelivered(t, s.Send(context.Background(), first))
	c.Close()

	// Down: a Send waits, and is answered "retry" only when stopped.
	second := actionItems(201, 200, 13)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	rs := s.Send(ctx, second)
	cancel()
	for _, r := range rs {
		if r.Verdict.Outcome != upstream.RetryLater {
			t.Fatalf("during the outage: %v %s", r.Verdict.Outcome, r.Verdict.Message)
		}
	}
	if st := p.Status(); st.Pending != 200 {
		t.Errorf("pending during the outage: %d", st.Pending)
	}
	// The same items again (the forwarder's next lease) are not produced
	// twice; the cluster comes back from its directory.
	done := make(chan []upstream.Result)
	go func() { done <- s.Send(context.Background(), second) }()
	time.Sleep(300 * time.Millisecond)
	c2, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	select {
	case rs := <-done:
		allDelivered(t, rs)
	case <-time.After(30 * time.Second):
		t.Fatal("not delivered after the broker came back")
	}
	checkTopic(t, addrs, append(first, second...), false)
}

// TestSenderVerdicts: what the broker can never take is a dead letter;
// what needs an operator pauses; the rest is retried.
func TestSenderVerdicts(t *testing.T) {
	t.Run("too large", func(t *testing.T) {
		c := newCluster(t, kfake.SeedTopics(1, actionsTopic), kfake.BrokerConfigs(map[string]string{"message.max.bytes": "2000"}))
		_, s := newTestProducer(t, c.ListenAddrs())
		big := actionItems(1, 1, 1)
		pad := make([]byte, 4000)
		rand.Read(pad)
		big[0].Payload = []byte(`{"id":"act-000001","pad":"` + hex.EncodeToString(pad) + `"}`)
		rs := s.Send(context.Background(), big)
		if v := rs[0].Verdict; v.Outcome != upstream.Permanent || v.Code != "MESSAGE_TOO_LARGE" {
			t.Errorf("verdict %+v", v)
		}
		allDelivered(t, s.Send(context.Background(), actionItems(2, 5, 1)))
	})
	t.Run("not authorised", func(t *testing.T) {
		c := newCluster(t, kfake.SeedTopics(1, actionsTopic))
		c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.TopicAuthorizationFailed, Count: -1})
		p, s := newTestProducer(t, c.ListenAddrs())
		rs := s.Send(context.Background(), actionItems(1, 3, 1))
		if v := rs[0].Verdict; v.Outcome != upstream.Pause || v.Code != "TOPIC_AUTHORIZATION_FAILED" {
			t.Errorf("verdict %+v", v)
		}
		if st := p.Status(); st.State != "paused" || !strings.Contains(st.Reason, "TOPIC_AUTHORIZATION_FAILED") {
			t.Errorf("status %+v", st)
		}
	})
	t.Run("no such topic", func(t *testing.T) {
		c := newCluster(t) // and no auto-creation
		_, s := newTestProducer(t, c.ListenAddrs(), kgo.RetryBackoffFn(func(int) time.Duration { return 10 * time.Millisecond }))
		rs := s.Send(context.Background(), actionItems(1, 1, 1))
		if v := rs[0].Verdict; v.Outcome != upstream.Pause || v.Code != "UNKNOWN_TOPIC_OR_PARTITION" {
			t.Errorf("verdict %+v", v)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		c := newCluster(t, kfake.SeedTopics(1, actionsTopic), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "admin", "right"))
		// kfake drops the connection on a wrong password; a real broker
		// answers SASL_AUTHENTICATION_FAILED, as this does.
		c.ControlKey(int16(kmsg.SASLAuthenticate), func(req kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			resp := req.(*kmsg.SASLAuthenticateRequest).ResponseKind().(*kmsg.SASLAuthenticateResponse)
			resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
			msg := "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256"
			resp.ErrorMessage = &msg
			return resp, nil, true
		})
		p, err := NewProducer(ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs(), SASLMechanism: "SCRAM-SHA-256", SASLUser: "admin", SASLPassword: "wrong"}, AgentID: "agent-1"})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		s := p.Sender(SenderConfig{Queue: "tencent", Topic: actionsTopic, Kind: KindActions, Key: actionKey})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rs := s.Send(ctx, actionItems(1, 1, 1))
		if v := rs[0].Verdict; v.Outcome != upstream.Pause || !strings.Contains(v.Code, "SASL") {
			t.Errorf("verdict %+v; status %+v", v, p.Status())
		}
	})
	for _, tc := range []struct {
		err  error
		want upstream.Outcome
	}{
		{nil, upstream.Delivered},
		{kerr.InvalidRecord, upstream.Permanent},
		{kerr.CorruptMessage, upstream.Permanent},
		{kerr.NotEnoughReplicas, upstream.RetryLater},
		{kerr.SaslAuthenticationFailed, upstream.Pause},
		{kgo.ErrClientClosed, upstream.RetryLater},
		{errors.New("dial tcp: connection refused"), upstream.RetryLater},
	} {
		if got := Classify(tc.err); got.Outcome != tc.want {
			t.Errorf("Classify(%v) = %v, want %v", tc.err, got.Outcome, tc.want)
		}
	}
}

// TestSendersOfTwoQueuesShareSequences: every queue numbers its entries
// from 1, so the actions' entry 7 and the audit's entry 7 carry the same
// event id; in flight at once they are still two records. (The client's
// buffer was keyed by event id alone: one of the two was never produced,
// yet reported delivered.)
func TestSendersOfTwoQueuesShareSequences(t *testing.T) {
	decisionsTopic := Topic("outpost", KindDecisions)
	c := newCluster(t, kfake.SeedTopics(3, actionsTopic), kfake.SeedTopics(3, decisionsTopic))
	p, actions := newTestProducer(t, c.ListenAddrs())
	audit := p.Sender(SenderConfig{Queue: "decisions-audit", Topic: decisionsTopic, Kind: KindDecisions,
		Key: func([]byte) (string, error) { return "agent-1", nil }})
	items := actionItems(1, 200, 13)
	var wg sync.WaitGroup
	res := make([][]upstream.Result, 2)
	for i, s := range []*Sender{actions, audit} {
		wg.Go(func() { res[i] = s.Send(context.Background(), items) })
	}
	wg.Wait()
	allDelivered(t, res[0])
	allDelivered(t, res[1])
	checkTopic(t, c.ListenAddrs(), items, false)
	if got := readTopic(t, c.ListenAddrs(), decisionsTopic, len(items), 10*time.Second); len(got) != len(items) {
		t.Errorf("the audit's topic holds %d records, want %d", len(got), len(items))
	}
}
