#!/usr/bin/env bash
# lab/demo.sh [BINARY] — what `make demo` runs.
#
# A guided tour for a newcomer: bring up a real 3-member etcd cluster on this
# machine (the lab: real sshd, real systemd, real etcd), break its quorum the
# way a bad day does, and repair it the way the on-call engineer would at
# 3 a.m.: diagnose, a plan scaffolded from the live cluster (`new
# --from-facts`, the same recovery as examples/quorum-loss-force-new-cluster.yaml),
# review, apply — then prove that the cluster is healthy and that every key
# written before the disaster survived.
#
# BINARY is the etcd-rescue to use (default: bin/etcd-rescue, built here if
# no argument is given). Needs root on Linux; `make demo` installs the lab's
# prerequisites first (apt packages, etcd builds, the hosts' rootfs).
#
# Environment:
#   DEMO_LAYOUT=static-pod   the Kubernetes tour instead: every host a kubeadm-style
#                            control-plane node (real kubelet + containerd, etcd and
#                            kube-apiserver as static pods, 200 ConfigMaps); total loss
#                            repaired with examples/static-pod-restore.yaml
#   DEMO_ETCD=3.6            etcd version of the lab (default 3.5)
#   ETCD_RESCUE_LAB_STATE    the lab's state dir (default /var/tmp/etcd-rescue-lab)
#   DEMO_KEEP_LAB=1          leave the repaired lab up at the end to look around
#                            (then: bin/etcd-rescue lab down)
set -euo pipefail

cd "$(dirname "$0")/.."          # the checkout: examples/ and lab/bin are found from here
ETCD=${DEMO_ETCD:-3.5}
LAYOUT=${DEMO_LAYOUT:-systemd}
case $LAYOUT in systemd|static-pod) ;; *) echo "demo: DEMO_LAYOUT=$LAYOUT: want systemd or static-pod" >&2; exit 2 ;; esac

if [ -t 1 ]; then B=$'\e[1m' G=$'\e[32m' R=$'\e[31m' N=$'\e[0m'; else B= G= R= N=; fi
step=0
say() { # a numbered heading and what it is for
	step=$((step + 1))
	printf '\n%s== %d. %s%s\n' "$B" "$step" "$1" "$N"
	shift
	for line in "$@"; do printf '   %s\n' "$line"; done
}
run() { # show the command, then run it
	printf '%s$ %s%s\n' "$B" "$*" "$N"
	"$@"
}
die() { printf '%sdemo: %s%s\n' "$R" "$*" "$N" >&2; exit 1; }

[ "$(uname -s)" = Linux ] || die "the lab needs Linux"
[ "$(id -u)" = 0 ] || die "the lab needs root (network namespaces, systemd-nspawn): sudo make demo"

if [ $# -ge 1 ]; then
	BIN=$1
	say "Use the etcd-rescue binary $BIN"
else
	BIN=bin/etcd-rescue
	say "Build etcd-rescue" "One static Go binary: it validates plans, shows them as a dry-run and runs them over SSH."
	run go build -o "$BIN" ./cmd/etcd-rescue
fi
[ -x "$BIN" ] || die "$BIN is not an executable (build it with: make build)"
case $BIN in /*) ;; *) BIN=./$BIN ;; esac

LAB_STATE=${ETCD_RESCUE_LAB_STATE:-/var/tmp/etcd-rescue-lab}
export ETCD_RESCUE_LAB_STATE=$LAB_STATE
RUNS=$(mktemp -d /tmp/etcd-rescue-demo-runs.XXXXXX)   # the run's checkpoint; kept for a look afterwards

lab_up=0
DONE=
cleanup() {
	rc=$?
	if [ "$lab_up" = 1 ]; then
		if [ "${DEMO_KEEP_LAB:-}" = 1 ] && [ "$rc" = 0 ]; then
			printf '\nThe lab is still up (DEMO_KEEP_LAB=1): %s lab status; %s lab down when done.\n' "$BIN" "$BIN"
		else
			say "Take the lab down" "Kills only what the lab started, removes its namespaces, mounts and state. Runs even when the demo failed."
			run "$BIN" lab down || true
		fi
	fi
	if [ "$rc" = 0 ]; then
		printf '\n%sDemo complete: %s%s\n' "$G" "$DONE" "$N"
	else
		printf '\n%sDemo failed (exit %d); the output above says where.%s\n' "$R" "$rc" "$N" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$LAYOUT" = static-pod ]; then
	DONE="total loss under Kubernetes, plan applied, every key and ConfigMap intact, every API server ready."
	say "Bring up the lab: 3 kubeadm-style control-plane nodes, etcd $ETCD" \
		"Each host is a network namespace on this machine with its own IP (10.77.0.11-13) and real sshd." \
		"A real kubelet (standalone) runs containerd + runc and the static pods in /etc/kubernetes/manifests:" \
		"etcd (TLS, data in /var/lib/etcd) and kube-apiserver, laid out as kubeadm does. The lab writes 1000" \
		"etcd keys and 200 ConfigMaps through the API server and records their fingerprints."
	run "$BIN" lab up --layout static-pod --etcd "$ETCD"
	lab_up=1
	INV=$("$BIN" lab inventory)

	say "Look at the healthy control plane" "Every host, its etcd and kube-apiserver pods, the member list, the keys and ConfigMaps."
	run "$BIN" lab status

	say "Break it: lose every member's data" \
		"On every host the etcd pod is stopped and its data dir deleted; the API servers lose their storage." \
		"What is left is last night's snapshot. This is seed runbook 001: restore a kubeadm cluster's etcd."
	run "$BIN" lab break total-loss

	say "Verify fails: this is the disaster" "lab verify exits 0 only when etcd, every ConfigMap and every API server's /readyz are good."
	if run "$BIN" lab verify; then die "lab verify passed right after the break: the lab did not break"; fi
	echo "(lab verify failed, as it must: the reasons are listed above)"

	PLAN=examples/static-pod-restore.yaml
	say "Review the plan: $PLAN with the lab's inventory" \
		"The example for kubeadm clusters: stop the control plane (the kubelet stops the pods once their" \
		"manifests are parked; crictl must show no container), set the data aside, restore every member from" \
		"the same snapshot with a revision bump, start etcd, check the data, start the control plane, wait" \
		"for /readyz on every API server, and prove that a watch from before the disaster gets 410 Gone," \
		"so every controller and informer relists instead of trusting its cache."
	run "$BIN" validate "$PLAN" --inventory "$INV"
	run "$BIN" plan "$PLAN" --inventory "$INV"

	say "Apply it" "Over SSH, checkpointing every step in $RUNS (kill it at any point and 'resume' continues)."
	run "$BIN" apply "$PLAN" --inventory "$INV" --yes --state-dir "$RUNS"

	say "The proof: verify passes" "All members healthy, all keys and all 200 ConfigMaps intact through the API servers, /readyz OK."
	run "$BIN" lab verify
	run "$BIN" lab status
	echo
	echo "The run's record: $BIN status --state-dir $RUNS"
	exit 0
fi

DONE="quorum lost, plan applied, every key intact."

say "Bring up the lab: 3 etcd $ETCD members on 3 hosts" \
	"Each host is a network namespace on this machine with its own IP (10.77.0.11-13), real sshd and" \
	"systemd; etcd runs as etcd.service. The lab writes 1000 keys and records their fingerprint, and" \
	"writes an inventory (hosts, ssh key, members) for the plans. Nothing leaves 10.77.0.0/24."
run "$BIN" lab up --etcd "$ETCD"
lab_up=1
INV=$("$BIN" lab inventory)

say "Look at the healthy cluster" "Every host, its etcd, the member list, the keys against the fingerprint."
run "$BIN" lab status

say "Break it: lose the quorum" \
	"etcd2 and etcd3 are stopped and their data dirs deleted. etcd1 keeps the data but, alone out of 3," \
	"has no quorum: no leader, no reads through consensus, no writes. This is seed runbook 002 case 3."
run "$BIN" lab break quorum-loss

say "Verify fails: this is the disaster" "lab verify exits 0 only when every member is healthy and every key is intact."
if run "$BIN" lab verify; then die "lab verify passed right after the break: the lab did not break"; fi
echo "(lab verify failed, as it must: the reasons are listed above)"

say "Diagnose" \
	"Read-only: every host over SSH (addresses, etcd service, data dir, settings) and every member" \
	"through its client API (member list, raft index, revision, leader). It names the situation with" \
	"its evidence, picks the survivor, and prints the command that writes the plan. Exit 1: broken."
rc=0
run "$BIN" diagnose --inventory "$INV" || rc=$?
[ "$rc" = 1 ] || die "diagnose exited $rc on a broken cluster (want 1)"

PLAN=$RUNS/quorum-loss.yaml
say "Write the plan from the live cluster" \
	"The command diagnose printed, with the plan going to $PLAN. Every choice it made (the survivor," \
	"the members to fence) is a comment in the file; the plan names the lab's inventory."
run "$BIN" new quorum-loss --inventory "$INV" --from-facts -o "$PLAN"

say "Validate and review the dry-run" \
	"validate checks the plan without touching anything. The dry-run shows every command that will run," \
	"per host, in order; '!' marks what changes data or membership. The plan fences etcd2/etcd3, restarts" \
	"etcd1 once with --force-new-cluster (then without it), moves the others' data dirs aside (never" \
	"deletes them) and re-adds them one at a time as learners."
run "$BIN" validate "$PLAN"
run "$BIN" plan "$PLAN"

say "Apply it" \
	"Over SSH, checkpointing every step in $RUNS (kill it at any point and 'resume' continues)." \
	"At the end it prints the time each step took: the engine's, and the part spent in SSH and the etcd API."
run "$BIN" apply "$PLAN" --yes --state-dir "$RUNS"

say "The proof: verify passes" "All 3 members healthy with one leader, the member list equals the inventory, all 1000 keys intact."
run "$BIN" lab verify
run "$BIN" lab status
echo
echo "The run's record: $BIN status --state-dir $RUNS   (and $RUNS/runs/*/events.jsonl: every command, its exit status and time)"
