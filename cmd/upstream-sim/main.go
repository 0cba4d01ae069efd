// Command upstream-sim serves the three upstream simulators (Tencent Ads
// user actions, TongDun risk verification, UnionPay FireEye) on loopback,
// for demos and manual tests. Each checks what it receives like the real
// API and takes faults at POST /_sim/faults; GET /_sim/stats shows counts.
//
//	go run ./cmd/upstream-sim            # prints the AGENT_* settings to point an agent at it
//	go run ./cmd/upstream-sim -unionpay-shape sample   # FireEye as the seed's sample code speaks it
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/outpost-agent/outpost/upstream/tencent/tencentsim"
	"github.com/outpost-agent/outpost/upstream/tongdun"
	"github.com/outpost-agent/outpost/upstream/tongdun/tdsim"
	"github.com/outpost-agent/outpost/upstream/unionpay"
	"github.com/outpost-agent/outpost/upstream/unionpay/upsim"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "upstream-sim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("upstream-sim", flag.ContinueOnError)
	tAddr := fs.String("tencent", "127.0.0.1:9101", "Tencent Ads simulator address")
	dAddr := fs.String("tongdun", "127.0.0.1:9102", "TongDun simulator address")
	uAddr := fs.String("unionpay", "127.0.0.1:9103", "UnionPay FireEye simulator address")
	token := fs.String("tencent-token", "demo-access-token", "access token the Tencent simulator accepts")
	account := fs.Int64("tencent-account", 10001, "account_id")
	set := fs.Int64("tencent-set", 20002, "user_action_set_id")
	source := fs.String("tencent-data-source-type", "", "the user action set's type; WEB requires each action's url (empty: not checked)")
	pcode := fs.String("tongdun-partner-code", "demo", "TongDun partner_code")
	pkey := fs.String("tongdun-partner-key", "demo-partner-key", "TongDun partner_key")
	channel := fs.String("tongdun-channel", "demo", "TongDun channel")
	tdVersion := fs.String("tongdun-api-version", "v2", "TongDun API version served: v2 or v3 (lookup, event_detail.account)")
	upID := fs.String("unionpay-id", "demo", "UnionPay id")
	upKey := fs.String("unionpay-app-key", "demo-app-key", "UnionPay appKey")
	upShape := fs.String("unionpay-shape", string(unionpay.ShapeTable), "request shape the UnionPay simulator accepts: table or sample (README, UnionPay FireEye)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	shape, err := unionpay.ParseShape(*upShape)
	if err != nil {
		return err
	}
	tdv, err := tongdun.ParseAPIVersion(*tdVersion)
	if err != nil {
		return fmt.Errorf("-tongdun-api-version: %w", err)
	}
	for _, a := range []string{*tAddr, *dAddr, *uAddr} {
		host, _, err := net.SplitHostPort(a)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("%s: the simulators serve on loopback only", a)
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	servers := []*http.Server{
		{Addr: *tAddr, Handler: tencentsim.New(tencentsim.Options{AccessToken: *token, AccountID: *account, UserActionSetID: *set, DataSourceType: *source})},
		{Addr: *dAddr, Handler: tdsim.New(tdsim.Options{PartnerCode: *pcode, PartnerKey: *pkey, Channel: *channel, APIVersion: tdv})},
		{Addr: *uAddr, Handler: upsim.New(upsim.Options{ID: *upID, AppKey: *upKey, Shape: shape})},
	}
	errs := make(chan error, len(servers))
	for _, s := range servers {
		s.ReadHeaderTimeout = 5 * time.Second
		ln, err := net.Listen("tcp", s.Addr)
		if err != nil {
			return err
		}
		go func(s *http.Server) { errs <- s.Serve(ln) }(s)
	}
	log.Info("simulators up", "tencent", *tAddr, "tongdun", *dAddr, "unionpay", *uAddr, "unionpay_shape", shape)
	// The score URL is always printed: an AGENT_UNIONPAY_SCORE_URL left in
	// the environment would otherwise send the agent's scores elsewhere.
	scoreURL := "http://" + *uAddr + "/fireeye/creditScore/" + unionpay.PathModelScore
	if shape == unionpay.ShapeSample {
		scoreURL = "http://" + *uAddr + "/ares/ARESVerificationService/" + unionpay.PathSampleModelScore
	}
	fmt.Printf(`# point an agent at the simulators:
export AGENT_TENCENT_URL=http://%s AGENT_TENCENT_ACCOUNT_ID=%d AGENT_TENCENT_USER_ACTION_SET_ID=%d AGENT_TENCENT_ACCESS_TOKEN=%s
export AGENT_TONGDUN_URL=http://%s/riskService AGENT_TONGDUN_PARTNER_CODE=%s AGENT_TONGDUN_PARTNER_KEY=%s AGENT_TONGDUN_CHANNEL=%s AGENT_TONGDUN_API_VERSION=%s
export AGENT_UNIONPAY_URL=http://%s/fireeye/creditScore AGENT_UNIONPAY_ID=%s AGENT_UNIONPAY_APP_KEY=%s
export AGENT_UNIONPAY_API_SHAPE=%s AGENT_UNIONPAY_SCORE_URL=%s
`, *tAddr, *account, *set, *token, *dAddr, *pcode, *pkey, *channel, tdv, *uAddr, *upID, *upKey, shape, scoreURL)
	if *source != "" {
		fmt.Printf("export AGENT_TENCENT_DATA_SOURCE_TYPE=%s\n", *source)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sigs:
	case err := <-errs:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		s.Shutdown(sctx)
	}
	return nil
}
