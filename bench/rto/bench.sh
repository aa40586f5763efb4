#!/usr/bin/env bash
# make bench-rto: recovery time of etcd-rescue (A) beside the seed runbook
# typed by hand (B) and Ansible (C) on the lab, then the report (medians,
# ratios, the runbook's critical-path limit, the goals, where A's time goes).
#
#   BENCH_RUNS        runs per contender and scenario (default 3)
#   BENCH_SCENARIOS   any of: total-loss quorum-loss lost-host total-loss-200k
#                     (default all four, in that order)
#   BENCH_OUT         results dir (default /var/tmp/etcd-rescue-bench/DATE):
#                     rto.tsv, logs/, meta.txt, report.md
#   BENCH_ETCD        etcd version of the lab (default 3.5)
#   BENCH_200K_ANSIBLE=1  also C on total-loss-200k (left out by default)
#
# Scenarios and contenders (interleaved: for each run number A.. B C):
#   total-loss       10000 keys: A B C
#   quorum-loss      10000 keys: A-fnc A-snap B C
#   lost-host        10000 keys: A B C
#   total-loss-200k  200000 keys: A B
# The lab is brought down before and after, and on Ctrl-C. Exit 0 when
# every run recovered and passed lab verify; 1 otherwise (the report marks
# the failed runs); 2 when a prerequisite is missing.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RESCUE=${RESCUE:-$ROOT/bin/etcd-rescue}
ANALYZE=${ANALYZE:-$ROOT/bin/bench-rto-analyze}
RUNS=${BENCH_RUNS:-3}
SCENARIOS=${BENCH_SCENARIOS:-total-loss quorum-loss lost-host total-loss-200k}
ETCD=${BENCH_ETCD:-3.5}
OUTDIR=${BENCH_OUT:-/var/tmp/etcd-rescue-bench/$(date -u +%Y-%m-%dT%H%M%SZ)}
TSV=$OUTDIR/rto.tsv

for c in "$RESCUE" "$ANALYZE"; do
  [ -x "$c" ] || { echo "bench-rto: $c missing (make build)" >&2; exit 2; }
done
for c in ansible-playbook bc python3 ssh scp; do
  command -v "$c" >/dev/null || { echo "bench-rto: $c missing (apt-get install -y ansible bc)" >&2; exit 2; }
done
python3 -c 'import yaml' 2>/dev/null || { echo "bench-rto: python3 cannot import yaml (apt-get install -y python3-yaml)" >&2; exit 2; }
for s in $SCENARIOS; do
  case $s in total-loss | quorum-loss | lost-host | total-loss-200k) ;;
    *) echo "bench-rto: unknown scenario $s (total-loss quorum-loss lost-host total-loss-200k)" >&2; exit 2 ;;
  esac
done

mkdir -p "$OUTDIR"
lab_down() { "$RESCUE" lab down >>"$OUTDIR/lab-down.log" 2>&1; }
interrupted() {
  trap - INT TERM
  echo "bench-rto: interrupted; lab down" >&2
  lab_down
  exit 130
}
trap interrupted INT TERM
trap lab_down EXIT

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"
{
  echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit:    $commit"
  echo "command:   BENCH_RUNS=$RUNS BENCH_SCENARIOS=\"$SCENARIOS\" make bench-rto"
  echo "machine:   $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "lab:       3 members, etcd $("$ROOT/lab/bin/"v"$ETCD".*/etcd --version 2>/dev/null | awk 'NR==1 {print $3}'), nspawn hosts"
  echo "ansible:   $(ansible-playbook --version | head -1)"
} >"$OUTDIR/meta.txt"
cat "$OUTDIR/meta.txt"
echo "results:   $OUTDIR"

export RESCUE RESCUE_SRC=$ROOT
lab_down
t0=$(date +%s)
for s in $SCENARIOS; do
  case $s in
    total-loss) "$HERE/run-rto.sh" -s total-loss -c "A B C" -n "$RUNS" -k 10000 -e "$ETCD" -o "$TSV" ;;
    quorum-loss) "$HERE/run-rto.sh" -s quorum-loss -c "A-fnc A-snap B C" -n "$RUNS" -k 10000 -e "$ETCD" -o "$TSV" ;;
    lost-host) "$HERE/run-rto.sh" -s lost-host -c "A B C" -n "$RUNS" -k 10000 -e "$ETCD" -o "$TSV" ;;
    total-loss-200k)
      c="A B"
      [ "${BENCH_200K_ANSIBLE:-}" = 1 ] && c="A B C"
      "$HERE/run-rto.sh" -s total-loss -c "$c" -n "$RUNS" -k 200000 -e "$ETCD" -o "$TSV" ;;
  esac
done
lab_down
echo "bench-rto: $(($(date +%s) - t0)) s for the runs" | tee -a "$OUTDIR/meta.txt"
echo
"$ANALYZE" "$TSV" | tee "$OUTDIR/report.md"
rc=${PIPESTATUS[0]}
echo
echo "report: $OUTDIR/report.md"
exit "$rc"
