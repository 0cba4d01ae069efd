// Command agent is Outpost, a local edge agent for banks and consumer-finance
// lenders: apps on the same host post events to it on localhost; it stores
// them durably and forwards them to the upstreams.
//
// Usage:
//
//	agent            run the agent (configured from AGENT_* variables)
//	agent relay      fleet mode: deliver <prefix>.actions.v1 to Tencent (consumer group)
//	agent version    print the version
//	agent status [--json]
//	agent deadletters list|replay UPSTREAM
//	agent drain [--timeout 5m]
//	agent policy check FILE
//	agent policy test FILE CASES.yaml
//
// Environment (defaults in brackets):
//
//	AGENT_LISTEN_ADDR              [127.0.0.1:8470] where the local API listens; a
//	                               non-loopback address needs AGENT_AUTH_TOKEN
//	AGENT_DATA_DIR                 [./data] the store lives in DATA_DIR/spool
//	AGENT_SPOOL_MAX_BYTES          [1GiB] past it new events get 503 + Retry-After
//	AGENT_ENCRYPTION_KEY_FILE      [] 32-byte key (raw or 64 hex chars, mode 0600):
//	                               turns on encryption at rest; without it data is
//	                               stored in clear
//	AGENT_LOG_LEVEL                [info] debug, info, warn, error
//	AGENT_LOG_FORMAT               [auto] json, text, or auto (text on a terminal)
//	AGENT_SHUTDOWN_TIMEOUT         [20s] how long SIGTERM spends finishing requests and
//	                               forwarding the queues; the store's close takes up
//	                               to 10s more (stop timeouts must exceed the sum)
//	AGENT_MEMORY_LIMIT             [44MiB] Go soft memory limit (GOMEMLIMIT); 0 = none;
//	                               under it GC runs at GOGC=400 unless GOGC is set
//	AGENT_MAX_BODY_BYTES           [1MiB] larger request bodies get 413
//	AGENT_MAX_CONCURRENT_REQUESTS  [256] beyond it requests get 503 at once
//	AGENT_MAX_BODY_BYTES_IN_FLIGHT [16MiB] request body bytes held at once by the
//	                               process; a body that does not fit gets 503
//	AGENT_MAX_CONNECTIONS          [512] open connections (TCP and unix together);
//	                               one more gets 503 and is closed
//	AGENT_HEADER_TIMEOUT           [10s] to send the request line and headers; then 408
//	AGENT_BODY_TIMEOUT             [10s] to send the body after the headers; then 408
//	AGENT_AUTH_TOKEN               [] app token: bearer token required on all but /healthz
//	                               and the admin endpoints
//	AGENT_ADMIN_TOKEN              [] admin token: the only one that opens dead letters,
//	                               decision records and pprof (the app token gets 403);
//	                               with only AGENT_AUTH_TOKEN set those are closed. The
//	                               CLI sends it (else AGENT_AUTH_TOKEN)
//	AGENT_DEDUPE_WINDOW            [168h] an event id seen within it is not stored twice
//	AGENT_STORE_GC_INTERVAL        [1m] value-log garbage collection period
//	AGENT_LISTEN_UNIX              [] also listen on this unix socket (mode 0660)
//	AGENT_PPROF                    [false] serve Go's profiler under /debug/pprof/
//	AGENT_MIN_FREE_DISK            [128MiB] below it new data gets 503 spool_full and
//	                               queued items are still delivered (drain-only); at
//	                               least 32MiB, or 0 for none (badger writes through
//	                               mmaps: a full disk may then crash the agent)
//
// Upstreams (each is configured by all its credentials, or none):
//
//	AGENT_TENCENT_URL              [https://api.e.qq.com]
//	AGENT_TENCENT_ACCOUNT_ID, AGENT_TENCENT_USER_ACTION_SET_ID, AGENT_TENCENT_ACCESS_TOKEN
//	AGENT_TENCENT_REQUESTS_PER_MINUTE [4000] client-side rate limit
//	AGENT_TENCENT_DATA_SOURCE_TYPE [] the user action set's type: WEB, ANDROID, IOS,
//	                               OFFLINE, WECHAT, WECHAT_MINI_PROGRAM, WECHAT_MINI_GAME
//	                               or HARMONY; WEB makes each action's page url required
//	AGENT_TONGDUN_URL, AGENT_TONGDUN_PARTNER_CODE, AGENT_TONGDUN_PARTNER_KEY, AGENT_TONGDUN_CHANNEL
//	AGENT_TONGDUN_API_VERSION      [v2] TD's API at that URL: v2, or v3 (also takes the
//	                               lookup event and event_detail.account)
//	AGENT_UNIONPAY_URL             [https://risktech.unionpay.com/fireeye/creditScore]
//	AGENT_UNIONPAY_ID, AGENT_UNIONPAY_APP_KEY
//	AGENT_UNIONPAY_API_SHAPE       [table] which of the seed's two descriptions of
//	                               FireEye to speak: table (its tables) or sample
//	                               (its sample code); README, "UnionPay FireEye"
//	AGENT_UNIONPAY_SCORE_URL       [] the model score's full URL; unset: URL/UnionPayModelScore
//	                               (table), the sample's UnionPay ESB URL (sample)
//
// Forwarding:
//
//	AGENT_FORWARD_BATCH_SIZE       [50] actions per Tencent request
//	AGENT_FORWARD_CONCURRENCY      [1] batches in flight per upstream (1 keeps queue order)
//	AGENT_TONGDUN_REQUESTS_PER_SECOND, AGENT_UNIONPAY_REQUESTS_PER_SECOND [0 = no cap]
//	AGENT_FORWARD_FLUSH_INTERVAL   [1s] a partial batch waits until its oldest is this old
//	AGENT_FORWARD_MAX_ATTEMPTS     [1000] then the item is dead-lettered
//	AGENT_FORWARD_MAX_AGE          [168h] likewise
//	AGENT_FORWARD_BACKOFF_MAX      [5m] ceiling of back-off and circuit open time
//	AGENT_FORWARD_BREAKER_OPEN     [10s] first circuit open time
//	AGENT_FORWARD_PROBE_INTERVAL   [5m] probe of an upstream paused for an operator
//
// Decisions:
//
//	AGENT_POLICY_FILE              [] policy YAML; the embedded default when unset
//	AGENT_POLICY_POLL_INTERVAL     [2s] changes are seen through inotify; only where the
//	                               file's directory cannot be watched is it re-read this often
//	AGENT_DECISION_TIMEOUT         [300ms] budget for live upstream calls
//	AGENT_DECISION_RETENTION       [2160h] how long decision records are kept
//	AGENT_DECISION_SYNC_WITHIN     [0s] 0: each decision's record is synced before its answer;
//	                               d (up to 1s): a decision that queues nothing is answered once
//	                               its record is written, synced within d (a power cut can lose
//	                               the decisions of the last d, a crash of the agent none)
//	AGENT_TONGDUN_CACHE_TTL        [10m] fresh TongDun scores
//	AGENT_TONGDUN_CACHE_MAX_STALE  [1h] served stale (refreshed in the background) until
//	AGENT_UNIONPAY_CACHE_TTL       [24h] fresh UnionPay model scores
//	AGENT_UNIONPAY_CACHE_MAX_STALE [168h]
//	AGENT_CACHE_NEGATIVE_TTL       [30s] a failing upstream is not asked again for this long
//
// Fleet mode on Kafka (off while AGENT_KAFKA_BROKERS is empty; docs/fleet-kafka.md):
//
//	AGENT_KAFKA_BROKERS            [] comma-separated host:port seed brokers; set, the
//	                               decisions' audit goes to <prefix>.decisions.v1 and the
//	                               agent's status to <prefix>.agents.v1
//	AGENT_KAFKA_TOPIC_PREFIX       [outpost] <prefix>.actions.v1 and the other topics
//	AGENT_FORWARD_VIA              [direct] or kafka: the action queue goes to
//	                               <prefix>.actions.v1 instead of Tencent
//	AGENT_ID                       [a UUID made once, kept in DATA_DIR/agent-id] this
//	                               agent's name in the fleet; event ids are <id>:<seq>
//	AGENT_KAFKA_GROUP              [outpost-relay] the relays' consumer group
//	AGENT_KAFKA_KEY_FILE           [] the fleet secret (32 bytes, mode 0600) keying the
//	                               HMAC of the account, the actions' record key
//	AGENT_KAFKA_TLS                [false] TLS to the brokers; with
//	AGENT_KAFKA_TLS_CA_FILE, AGENT_KAFKA_TLS_CERT_FILE, AGENT_KAFKA_TLS_KEY_FILE,
//	AGENT_KAFKA_TLS_SERVER_NAME    [] CA, client certificate and key, name to verify
//	AGENT_KAFKA_SASL_MECHANISM     [] SCRAM-SHA-256 or SCRAM-SHA-512, with
//	AGENT_KAFKA_SASL_USER, AGENT_KAFKA_SASL_PASSWORD_FILE (mode 0600)
//	AGENT_KAFKA_STATUS_INTERVAL    [30s] status published to <prefix>.agents.v1
//	AGENT_FLEET_VELOCITY           [false] share the policy's counters marked fleet: true
//	                               through <prefix>.velocity.v1 (velocity.fleet(name));
//	                               needs AGENT_KAFKA_BROKERS and AGENT_KAFKA_KEY_FILE
//	AGENT_FLEET_VELOCITY_MAX_AGE   [30s] an older fleet view is stale: decisions go on
//	                               with the local view and their records say so
//	AGENT_FLEET_VELOCITY_MAX_ENTRIES [1000000] (subject, bucket) counts held in memory,
//	                               about 100 bytes each: raise AGENT_MEMORY_LIMIT to match
//	AGENT_FLEET_VELOCITY_LOOKBACK  [24h] how far back a new agent first reads the topic
package main

import (
	"context"
	"fmt"
	"os"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return serve(ctx)
	}
	switch args[0] {
	case "version", "--version", "-v":
		fmt.Println(versionString())
		return nil
	case "serve":
		return serve(ctx)
	case "relay":
		return relayCmd(ctx)
	case "policy":
		return policyCmd(args[1:], os.Stdout)
	case "status":
		return statusCmd(ctx, args[1:], os.Stdout)
	case "deadletters":
		return deadLettersCmd(ctx, args[1:], os.Stdout)
	case "drain":
		return drainCmd(ctx, args[1:], os.Stdout)
	case "help", "--help", "-h":
		fmt.Print(usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

const usage = `usage:
  agent            run the agent (configured from AGENT_* variables; see README)
  agent version    print the version
  agent relay      fleet mode: consume <prefix>.actions.v1 in AGENT_KAFKA_GROUP, deliver to Tencent
  agent status [--json]                queues, upstreams, store and policy of the running agent
  agent deadletters list UPSTREAM      what was set aside, masked
  agent deadletters replay UPSTREAM (--all | ID...)
  agent drain [--timeout 5m]           wait until everything queued is forwarded; non-zero if not
                                       (at once if an upstream with a queue is not configured)
  agent policy check FILE              parse, type-check and self-test a policy file
  agent policy test FILE CASES.yaml    run test cases (request + signals -> expected result)

The admin commands take --addr, --token and --env-file (default /etc/outpost/agent.env):
AGENT_LISTEN_ADDR, AGENT_ADMIN_TOKEN and AGENT_AUTH_TOKEN come from the environment, else
from that file, so the token need not be exported or shown to ps on the command line.
`
