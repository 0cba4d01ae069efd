package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/outpost-agent/outpost/client"
	"github.com/outpost-agent/outpost/decision"
	"github.com/outpost-agent/outpost/localapi"
	"github.com/outpost-agent/outpost/policy"
	"github.com/outpost-agent/outpost/spool"
)

// agentForExample starts the agent's real local API on a loopback port: its
// HTTP server, a store in a temporary directory, the decision engine with
// the embedded default policy, no upstream configured (as `go run
// ./cmd/agent` starts with no settings). It returns the address and a
// function that stops it all.
func agentForExample() (addr string, stop func()) {
	addr, _, stop = startAgent()
	return addr, stop
}

func startAgent() (addr string, sp *spool.Spool, stop func()) {
	dir, err := os.MkdirTemp("", "outpost-client-example")
	if err != nil {
		panic(err)
	}
	sp, err = spool.Open(spool.Options{Dir: filepath.Join(dir, "spool"), Queues: []string{"tencent", "tongdun", "unionpay"}})
	if err != nil {
		panic(err)
	}
	eng := decision.New(decision.Config{Store: decision.NewSpoolStore(sp), Policies: defaultPolicy{policy.Default()}, HashKey: []byte("example-hash-key")})
	api := localapi.New(localapi.Config{Store: sp, Decider: eng, NoTongDun: true, Logger: slog.New(slog.DiscardHandler)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	done := make(chan struct{})
	go func() { api.Serve(ln); close(done) }()
	return ln.Addr().String(), sp, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		api.Shutdown(ctx)
		<-done
		eng.Close()
		sp.Close(ctx)
		os.RemoveAll(dir)
	}
}

type defaultPolicy struct{ p *policy.Policy }

func (d defaultPolicy) Current() *policy.Policy { return d.p }

// Post actions; posting them again is safe: the agent counts duplicates by
// action id.
func ExampleClient_PostActions() {
	addr, stop := agentForExample()
	defer stop()
	c, err := client.New(client.Config{Addr: addr}) // Token: the app token, when the agent has one
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	actions := []client.Action{{
		ID:          "loan-app-000123",
		Track:       "personal_loan",
		ActionType:  "WITHDRAW_DEPOSITS",
		ActionTime:  time.Now(),
		UserID:      &client.UserID{Phone: "13800138000"}, // hashed by the agent before it is stored
		ActionParam: &client.ActionParam{WithdrawDepositsLevel: 1, RiskOverdue: 1},
	}}
	for range 2 {
		res, err := c.PostActions(ctx, actions)
		if err != nil {
			panic(err)
		}
		fmt.Printf("accepted %d, duplicates %d\n", res.Accepted, res.Duplicates)
	}
	// Output:
	// accepted 1, duplicates 0
	// accepted 0, duplicates 1
}

// Ask for a decision. With an ID the call is idempotent: the client may
// retry it, and the same ID answers the same decision. This agent has no
// TongDun configured, so the decision is degraded and the policy's offline
// limit sends a withdrawal of 5000 to review.
func ExampleClient_Decide() {
	addr, stop := agentForExample()
	defer stop()
	c, _ := client.New(client.Config{Addr: addr})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	amount := 5000.0
	req := &client.DecisionRequest{
		ID:            "withdraw-7f3c2a",
		SessionID:     "abc0123456789",
		DecisionEvent: "withdraw",
		EventTime:     client.EventTime(time.Date(2026, 11, 23, 14, 20, 50, 521e6, time.FixedZone("CST", 8*3600))),
		AccountID:     "123456789",
		Terminal:      &client.Terminal{IP: "210.20.10.33"},
		EventDetail:   map[string]map[string]any{"withdraw": {}},
		Amount:        &amount,
		Credit:        &client.Credit{Mode: "revolving", Line: 10000, Outstanding: 2000, APR: 0.18},
	}
	for range 2 {
		d, err := c.Decide(ctx, req)
		if err != nil {
			panic(err)
		}
		fmt.Println(d.DecisionID, d.Result, d.Degraded, d.Reasons[0].ID, d.Signals["tongdun"].Status)
	}
	fmt.Println(req.EventTime)
	// Output:
	// withdraw-7f3c2a review true OFFLINE_LIMIT missing
	// withdraw-7f3c2a review true OFFLINE_LIMIT missing
	// 2026-11-23T14:20:50.521+08:00
}

// An invalid request is refused whole, every problem named by its field.
func ExampleError() {
	addr, stop := agentForExample()
	defer stop()
	c, _ := client.New(client.Config{Addr: addr})
	_, err := c.PostActions(context.Background(), []client.Action{{
		ID: "loan-app-000124", Track: "personal_loan", ActionType: "CREDIT", ActionTime: time.Now(),
		UserID: &client.UserID{Phone: "13800138000"}, ActionParam: &client.ActionParam{CreditLevel: 7},
	}})
	var e *client.Error
	if errors.As(err, &e) {
		fmt.Println(e.StatusCode, e.Code, e.Retryable())
		for _, d := range e.Details {
			fmt.Printf("%s: %s\n", d.Field, d.Reason)
		}
	}
	// Output:
	// 400 invalid_request false
	// actions[0].action_param.credit_level: must be 1, 2 or 3
}

// Read the queues and upstreams, as `agent status` does.
func ExampleClient_Status() {
	addr, stop := agentForExample()
	defer stop()
	c, _ := client.New(client.Config{Addr: addr}) // the admin token, for the admin calls
	ctx := context.Background()
	st, err := c.Status(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println(st.Queues["tencent"].Depth, st.Store.Intake.State)
	dead, err := c.DeadLetters(ctx, "tencent", 0, 100)
	fmt.Println(len(dead), err)
	// Output:
	// 0 accepting
	// 0 <nil>
}
