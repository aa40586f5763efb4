# etcd-rescue: the two commands a newcomer needs are `make demo` and `make test`.
# Both install what they need on a fresh Debian machine (root): apt packages,
# the etcd builds, the lab's root filesystem (see lab/lab.mk).

GO       ?= go
BIN      := bin/etcd-rescue
GOFLAGS  ?=
export GOTOOLCHAIN := local

# staticcheck, pinned, installed from the Go module proxy into a project-local
# bin dir the first time `make lint` runs.
STATICCHECK_VERSION := v0.8.2
TOOLS_BIN   := $(CURDIR)/bin/tools
STATICCHECK := $(TOOLS_BIN)/staticcheck

-include lab/lab.mk

.PHONY: all build test unit e2e lint fuzz bench bench-ship demo golden clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/etcd-rescue

## test: every test (needs root; installs prerequisites): the unit tests with the race
## detector, then the lab-based ones (package lab and the end-to-end tests in tests/e2e).
## -p 1: the lab and e2e packages each bring up labs, and only one lab fits on a machine.
## The Kubernetes builds for the static-pod lab and the SeaweedFS build for the S3 store
## (make kube-bins s3-bins: about 10-20 and 17 min of CPU with a cold Go cache) run at nice 19
## in the background meanwhile, soaking up the CPU the lab tests leave idle while they wait
## on hosts; the tests named *StaticPod* or *S3Lab* (in the lab packages and in
## internal/objstore, whose real-server tests run lab/bin/seaweedfs/weed) run last, once
## they are built; the ones that start their own SeaweedFS on 127.0.0.1 and need no lab
## (LATE_NOLAB_PKGS) run beside the lab ones.
LAB_PKGS := ./lab/ ./tests/e2e/
LATE_TESTS := StaticPod|S3Lab
LATE_NOLAB_PKGS := ./internal/objstore/ ./engine/
test: build lint $(LAB_PREREQS_BASE)
	@set -e; mkdir -p $(LAB_BIN); log=$(LAB_BIN)/late-bins.log; \
	echo "test: make kube-bins s3-bins in the background at nice 19 (log: $$log)"; \
	setsid -w nice -n 19 $(MAKE) --no-print-directory kube-bins s3-bins >$$log 2>&1 & kb=$$!; \
	trap 'kill -- -$$kb 2>/dev/null || true' EXIT; \
	$(GO) test -short -race -count=1 -timeout 30m -skip '$(LATE_TESTS)' ./...; \
	$(GO) test -p 1 -count=1 -timeout 60m -skip '$(LATE_TESTS)' $(LAB_PKGS); \
	echo "test: waiting for make kube-bins s3-bins"; \
	if ! wait $$kb; then tail -30 $$log >&2; echo "test: make kube-bins s3-bins failed (log: $$log)" >&2; exit 1; fi; \
	trap - EXIT; tail -3 $$log; \
	nolab=$(LAB_BIN)/late-nolab-tests.log; \
	$(GO) test -count=1 -timeout 30m -run '$(LATE_TESTS)' $(LATE_NOLAB_PKGS) >$$nolab 2>&1 & nl=$$!; \
	trap 'kill $$nl 2>/dev/null || true' EXIT; \
	$(GO) test -p 1 -count=1 -timeout 30m -run '$(LATE_TESTS)' $(LAB_PKGS); \
	rc=0; wait $$nl || rc=$$?; trap - EXIT; cat $$nolab; exit $$rc

## demo: bring up the lab, break its quorum, diagnose it, repair it with a plan scaffolded from the live cluster, prove every key survived
demo: build $(if $(filter static-pod,$(DEMO_LAYOUT)),$(LAB_PREREQS),$(LAB_PREREQS_BASE))
	lab/demo.sh $(BIN)

## e2e: only the end-to-end and crash tests on the lab (tests/e2e, harness in tests/framework)
e2e: build $(LAB_PREREQS)
	$(GO) test -count=1 -timeout 40m -v ./tests/e2e/

## unit: the tests that need no lab, with the race detector (needs cgo: gcc)
unit:
	$(GO) test -count=1 -short -race ./...

## lint: gofmt, go vet and staticcheck $(STATICCHECK_VERSION). staticcheck is installed into
## bin/tools when missing; if that fails (no Go module proxy) it is skipped with a
## warning, except under CI=true, where it fails the target.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if ! $(STATICCHECK) -version 2>/dev/null | grep -qF '$(patsubst v%,%,$(STATICCHECK_VERSION))'; then \
	  echo "lint: installing staticcheck $(STATICCHECK_VERSION) into $(TOOLS_BIN)"; \
	  if ! GOBIN=$(TOOLS_BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); then \
	    if [ "$$CI" = true ]; then echo "lint: could not install staticcheck $(STATICCHECK_VERSION)" >&2; exit 1; fi; \
	    echo "lint: WARNING: staticcheck not installed, skipped (set CI=true to make this an error)" >&2; \
	    echo "  hint: GOBIN=$(TOOLS_BIN) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)" >&2; \
	    exit 0; \
	  fi; \
	fi; \
	echo "$(STATICCHECK) ./..."; $(STATICCHECK) ./...

## fuzz: every fuzz target (the plan parser and compiler, the two shell quotings, the
## facts' env-file parser, diagnose over any facts file, what hosts print to the service watch), for a bounded time each. Fails when a target finds a
## crasher: go test writes it under the package's testdata/fuzz/, and once committed it
## runs as a seed in every ordinary go test.
FUZZTIME ?= 60s
FUZZ_DIRS := engine/testdata/fuzz internal/shellquote/testdata/fuzz internal/sshx/testdata/fuzz engine/facts/testdata/fuzz engine/diagnose/testdata/fuzz steps/testdata/fuzz internal/pki/testdata/fuzz
fuzz:
	@fail=0; \
	$(GO) test -run '^$$' -fuzz '^FuzzParseCompile$$' -fuzztime $(FUZZTIME) ./engine/ || fail=1; \
	$(GO) test -run '^$$' -fuzz '^FuzzQuote$$' -fuzztime $(FUZZTIME) ./internal/shellquote/ || fail=1; \
	$(GO) test -run '^$$' -fuzz '^FuzzQuote$$' -fuzztime $(FUZZTIME) ./internal/sshx/ || fail=1; \
	$(GO) test -run '^$$' -fuzz '^FuzzParseEnvFile$$' -fuzztime $(FUZZTIME) ./engine/facts/ || fail=1; \
	$(GO) test -run '^$$' -fuzz '^FuzzDiagnose$$' -fuzztime $(FUZZTIME) ./engine/diagnose/ || fail=1; \
	$(GO) test -run '^$$' -fuzz '^FuzzHostOutput$$' -fuzztime $(FUZZTIME) ./steps/ || fail=1; \
	$(GO) test -run '^$$' -fuzz '^FuzzParseCerts$$' -fuzztime $(FUZZTIME) ./internal/pki/ || fail=1; \
	new=$$(git status --porcelain --untracked-files=all -- $(FUZZ_DIRS) 2>/dev/null); \
	if [ -n "$$new" ]; then \
	  echo "fuzz: crashers not committed yet:"; echo "$$new"; \
	  echo "  hint: fix the bug, then commit the file: it stays a seed of go test"; fail=1; \
	fi; \
	if [ $$fail != 0 ]; then echo "fuzz: FAILED" >&2; fi; \
	exit $$fail

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

## bench-rto: recovery time on the lab (total loss 10k and 200k keys, quorum loss, lost host) of
## etcd-rescue beside the seed runbook typed by hand and Ansible, interleaved, BENCH_RUNS (3) runs
## each; prints medians, ratios, the runbook's critical-path limit and the goals (bench/rto/README.md).
## Root; installs ansible and bc from apt when missing (fails when it cannot). BENCH_SCENARIOS,
## BENCH_OUT (default /var/tmp/etcd-rescue-bench/DATE). About 45 min for 3 runs on 2 cores.
.PHONY: bench-rto
bench-rto: build $(LAB_PREREQS_BASE)
	@if ! command -v ansible-playbook >/dev/null || ! command -v bc >/dev/null; then \
	  echo "bench-rto: apt-get install -y ansible bc"; \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ansible bc; } || \
	    { echo "bench-rto: could not install ansible and bc from apt: the baseline cannot run" >&2; exit 1; }; \
	fi
	$(GO) build -o bin/bench-rto-analyze ./bench/rto/analyze
	bench/rto/bench.sh

## bench-ship: snapshot shipping against OpenSSH scp on the lab, both in the same run: a
## SHIP_MIB snapshot to h1 and to h1..h3, interleaved rounds, medians and ratios (bench/ship).
## Brings a lab up (3 members, 0 keys) and down; needs root like the lab.
SHIP_MIB ?= 1024
SHIP_ROUNDS ?= 3
bench-ship: build $(LAB_PREREQS_BASE)
	$(BIN) lab up --members 3 --keys 0 && { $(GO) run ./bench/ship -bin $(BIN) -size-mib $(SHIP_MIB) -rounds $(SHIP_ROUNDS); rc=$$?; $(BIN) lab down; exit $$rc; }

## bench-s3: snapshots to and from the lab's S3 store (a real SeaweedFS on this machine) beside cp of
## the same file, both in the same run: S3_MIB (1024) MiB of values written to etcd, then S3_ROUNDS (3)
## interleaved rounds of a backup (snapshot-save to s3://, read back and verified), a fetch (newest
## object, sha256 and trailer checked) and cp; medians, ratios, and etcd-rescue's peak memory (goal:
## under 100 MiB; exits 1 above it). Brings a one-member lab with --s3 up and down; root like the lab.
S3_MIB ?= 1024
S3_ROUNDS ?= 3
.PHONY: bench-s3
bench-s3: build $(LAB_PREREQS_BASE) s3-bins
	$(BIN) lab up --members 1 --keys 0 --s3 && { $(GO) run ./bench/s3 -bin $(BIN) -size-mib $(S3_MIB) -rounds $(S3_ROUNDS); rc=$$?; $(BIN) lab down; exit $$rc; }

## bench-state: a checkpoint write on the etcd state backend (etcdstate Save: the checkpoint and a ~1 KB
## journal chunk in one fenced transaction, on a real etcd STATE_ETCD started on 127.0.0.1 with its data
## beside the state dir) beside the file backend's durable (WriteFileAtomic) and lazy (WriteFile) writes,
## in the same run: STATE_WRITES (200) interleaved writes of each of a 40 steps x 3 hosts checkpoint;
## medians, p90s and the ratios etcd/file (bench/state). No lab, no root; about 10 s.
STATE_WRITES ?= 200
STATE_ETCD ?= v3.6.16
.PHONY: bench-state
bench-state: $(LAB_BIN)/$(STATE_ETCD)/etcd
	$(GO) run ./bench/state -etcd $(LAB_BIN)/$(STATE_ETCD)/etcd -writes $(STATE_WRITES)

## golden: rewrite the dry-run golden files after checking the change
golden:
	UPDATE_GOLDEN=1 $(GO) test -count=1 -run TestDryRunGolden ./engine/

clean:
	rm -rf bin
