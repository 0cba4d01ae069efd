# Outpost agent. `make help` lists the targets.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: help build run test lint bench bench-kafka fuzz ci
help: ## this list
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'
build: ## static binary in bin/agent, version stamped from git describe
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o bin/agent ./cmd/agent
run: ## run the agent with its embedded defaults
	go run ./cmd/agent
test: ## the test suite, as CI runs it
	go test -race -count=1 ./...
lint: ## golangci-lint with .golangci.yml (the version .ci/run pins)
	golangci-lint run ./...
bench: ## the benchmarks recorded in BENCHMARKS.md
	go test -run=NONE -bench=. -benchtime=3s ./spool/ ./action/
bench-kafka: ## fleet mode's figures in BENCHMARKS.md: backlog drains, ingest, a relay, 202-to-broker p99
	go build -o /tmp/outpost-agent ./cmd/agent && go run ./bench/kafka -agent-bin /tmp/outpost-agent
# FUZZTIME is per target; FUZZFLAGS takes e.g. -parallel=1 on a shared machine.
FUZZTIME ?= 10s
FUZZFLAGS ?=
fuzz: ## every fuzz target in turn, FUZZTIME (10s) each: make fuzz FUZZTIME=90s
	@set -e; for dir in $$(git grep --untracked -l '^func Fuzz' -- '*_test.go' | xargs -n1 dirname | sort -u); do \
		names=$$(go test -list '^Fuzz' ./$$dir); \
		for name in $$(echo "$$names" | grep '^Fuzz'); do \
			echo "== $$dir $$name"; \
			go test -run=NONE -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) $(FUZZFLAGS) ./$$dir; \
		done; \
	done
ci: ## what CI runs
	bash .ci/run
