package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-agent/outpost/spool"
)

// TestKill9MidLoadLosesNothing is the durability promise, checked with the
// real binary: many clients post actions (and some invalid batches), the
// agent is killed with SIGKILL mid-load, restarted on the same directory,
// killed again, and finally the store it left is opened and read. Every id
// that got a 202 must be in the queue exactly once; no id of a refused
// request may be there.
func TestKill9MidLoadLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and kills the real binary")
	}
	t.Parallel() // see agent_test.go
	data := t.TempDir()
	var (
		mu       sync.Mutex
		acked    = map[string]bool{} // got 202
		refused  = map[string]bool{} // got 4xx
		attempts atomic.Int64
		nextID   atomic.Int64
	)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	// load posts batches of 1-20 actions from 32 goroutines until ctx ends.
	// Every 10th batch is invalid (a bad credit_level) and must be refused.
	load := func(ctx context.Context, a *agent) {
		var wg sync.WaitGroup
		for w := 0; w < 32; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(w), 7))
				for ctx.Err() == nil {
					n := 1 + rng.IntN(20)
					ids := make([]string, n)
					for i := range ids {
						ids[i] = fmt.Sprintf("k-%d", nextID.Add(1))
					}
					body := batchJSON(ids, time.Now())
					invalid := rng.IntN(10) == 0
					if invalid {
						body = []byte(`{"actions":[` + actionJSON(ids[0], time.Now())[:len(actionJSON(ids[0], time.Now()))-1] +
							`,"trace":{"click_id":"c"},"extra":1}]}`)
						ids = ids[:1]
					}
					attempts.Add(1)
					code, _, err := postJSON(ctx, client, a.URL("/v1/actions"), body)
					mu.Lock()
					switch {
					case err != nil:
						// killed mid-request: outcome unknown, either is fine
					case code == http.StatusAccepted:
						if invalid {
							t.Errorf("invalid batch accepted")
						}
						for _, id := range ids {
							acked[id] = true
						}
					case code >= 400 && code < 500:
						for _, id := range ids {
							refused[id] = true
						}
					}
					mu.Unlock()
				}
			}(w)
		}
		wg.Wait()
	}

	for round := 0; round < 3; round++ {
		a := startAgent(t, data)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { load(ctx, a); close(done) }()
		time.Sleep(time.Duration(700+rand.IntN(600)) * time.Millisecond)
		a.Kill9() // mid-load: requests are in flight right now
		cancel()
		<-done
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 1000 {
		t.Fatalf("only %d actions acknowledged over 3 rounds; the load did not run", len(acked))
	}
	if len(refused) == 0 {
		t.Fatalf("no invalid batch was refused; the test's invalid batches are not reaching the agent")
	}

	// A clean start after the last kill, then a clean stop: the store opens.
	a := startAgent(t, data)
	var st struct {
		Queues map[string]struct{ Depth int64 } `json:"queues"`
	}
	resp, err := client.Get(a.URL("/v1/status"))
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err := a.Stop(); err != nil {
		t.Fatalf("clean stop: %v\n%s", err, a.Logs)
	}

	// Read the store the agent left, with the spool package itself.
	sp, err := spool.Open(spool.Options{Dir: filepath.Join(data, "spool"), Queues: []string{"tencent", "tongdun", "unionpay"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close(context.Background())
	if sp.Quarantine() != nil {
		t.Fatalf("store was quarantined: %+v", sp.Quarantine())
	}
	count := map[string]int{}
	for {
		es, err := sp.Lease(context.Background(), "tencent", 5000, 64<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			break
		}
		for _, e := range es {
			count[e.ID]++
			var act struct {
				ID     string            `json:"id"`
				UserID map[string]string `json:"user_id"`
			}
			if err := json.Unmarshal(e.Payload, &act); err != nil || act.ID != e.ID || act.UserID["hash_phone"] == "" {
				t.Fatalf("entry %s damaged: %s", e.ID, e.Payload)
			}
		}
	}
	var lost, dup, leaked int
	for id := range acked {
		switch count[id] {
		case 0:
			lost++
		case 1:
		default:
			dup++
		}
	}
	for id := range refused {
		if count[id] > 0 {
			leaked++
		}
	}
	t.Logf("requests %d, actions acknowledged %d, refused %d, stored %d, status depth %d; lost %d, duplicated %d, refused-but-stored %d",
		attempts.Load(), len(acked), len(refused), len(count), st.Queues["tencent"].Depth, lost, dup, leaked)
	if lost != 0 || dup != 0 || leaked != 0 {
		t.Fatalf("lost %d acknowledged actions, %d stored twice, %d refused ones stored", lost, dup, leaked)
	}
	if st.Queues["tencent"].Depth != int64(len(count)) {
		t.Fatalf("status depth %d, but the store holds %d", st.Queues["tencent"].Depth, len(count))
	}
}
