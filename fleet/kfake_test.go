package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outpost-agent/outpost/upstream"
)

// What the fleet tests share: a kfake cluster, actions, and a reader of a
// topic that is not our code's consumer.

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func newCluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// actionItems are n stored actions of accounts users, as the spool hands
// them to a sender (seq from first).
func actionItems(first uint64, n, users int) []upstream.Item {
	out := make([]upstream.Item, n)
	for i := range out {
		seq := first + uint64(i)
		id := fmt.Sprintf("act-%06d", seq)
		p := fmt.Sprintf(`{"id":%q,"track":"payment","action_type":"REGISTER","action_time":1796376600,"user_id":{"hash_phone":"%032x"}}`, id, int(seq)%users)
		out[i] = upstream.Item{ID: id, Payload: json.RawMessage(p), Seq: seq, EnqueuedAt: time.Unix(1796376600, int64(seq)).UTC()}
	}
	return out
}

func actionKey(p []byte) (string, error) {
	id, err := Identity(p)
	if err != nil {
		return "", err
	}
	return AccountKey(testSecret, id), nil
}

func newTestProducer(t *testing.T, addrs []string, opts ...kgo.Opt) (*Producer, *Sender) {
	t.Helper()
	p, err := NewProducer(ProducerConfig{Conn: Conn{Brokers: addrs}, AgentID: "agent-1", Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, p.Sender(SenderConfig{Queue: "tencent", Topic: Topic("outpost", KindActions), Kind: KindActions, Key: actionKey})
}

// readTopic reads every record of topic until it holds want or the time
// is up, with a plain client.
func readTopic(t *testing.T, addrs []string, topic string, want int, within time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

func header(r *kgo.Record, k string) string {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
