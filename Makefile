# etcd-rescue: the two commands a newcomer needs are `make demo` and `make test`.
# Both install what they need on a fresh Debian machine (root): apt packages,
# the etcd builds, the lab's root filesystem (see lab/lab.mk).

GO       ?= go
BIN      := bin/etcd-rescue
GOFLAGS  ?=
export GOTOOLCHAIN := local

-include lab/lab.mk

.PHONY: all build test unit e2e lint fuzz bench demo golden clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/etcd-rescue

## test: every test, the lab-based end-to-end ones included (needs root; installs prerequisites).
## -p 1: the lab and e2e packages each bring up labs, and only one lab fits on a machine.
test: build lint $(LAB_PREREQS)
	$(GO) test -p 1 -count=1 -timeout 60m ./...

## demo: bring up the lab, break its quorum, repair it with an example plan, prove every key survived
demo: build $(LAB_PREREQS)
	lab/demo.sh $(BIN)

## e2e: only the end-to-end and crash tests on the lab
e2e: build $(LAB_PREREQS)
	$(GO) test -count=1 -timeout 40m -run 'TestE2E' -v ./cmd/etcd-rescue/

## unit: the tests that need no lab
unit:
	$(GO) test -count=1 -short ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## fuzz: the plan parser and the shell quoting, for a bounded time each
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseCompile -fuzztime $(FUZZTIME) ./engine/
	$(GO) test -run '^$$' -fuzz FuzzQuote -fuzztime $(FUZZTIME) ./internal/shellquote/

## bench: the engine's walk (parallelism 4 against 1), a checkpoint write, and an SSH
## command on the pooled connection against dial+run; ratios against the baseline of
## the same invocation. The SSH ones start a real sshd on 127.0.0.1 (openssh-server).
BENCHTIME ?= 20x
bench: lab-deps
	@out=$$($(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) ./engine/ ./internal/sshx/ 2>&1) || { echo "$$out"; exit 1; }; \
	echo "$$out" | grep -E '^(Benchmark|ok)'; \
	echo "$$out" | awk '/^BenchmarkWalk\/parallelism=1-/{a=$$3} /^BenchmarkWalk\/parallelism=4-/{b=$$3} \
	  /^BenchmarkDialAndRun/{d=$$3} /^BenchmarkRunOnOpenConn/{o=$$3} \
	  END{ if (a && b) printf "walk, 24 step-hosts of 5 ms: parallelism 4 takes %.2fx less time than parallelism 1 (baseline)\n", a/b; \
	       if (d && o) printf "ssh: a command on the open connection takes %.1fx less time than dial+run (baseline)\n", d/o }'

## golden: rewrite the dry-run golden files after checking the change
golden:
	UPDATE_GOLDEN=1 $(GO) test -count=1 -run TestDryRunGolden ./engine/

clean:
	rm -rf bin
