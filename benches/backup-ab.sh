#!/usr/bin/env bash
# Full backup only, A against B: RUNS interleaved runs each (A, B, A, B, ...) into a fresh
# vault, wall seconds and user/sys CPU per run, then the median and the fastest of each.
# ab.sh keeps the best of a few rounds, which on a noisy machine follows one lucky run; this
# gives the middle of many as well.
#
#   A=/path/old/synvault B=target/release/synvault DATA=/var/tmp/synvault-ab/data benches/backup-ab.sh
set -euo pipefail
: "${A:?set A to the baseline binary}" "${B:?set B to the binary under test}" "${DATA:?set DATA}"
RUNS=${RUNS:-7}
WORK=${WORK:-/var/tmp/synvault-backup-ab}
[[ $WORK == /* && $WORK != / ]] || { echo "WORK must be absolute" >&2; exit 2; }
export SYNVAULT_PASSWORD=ab-bench
mkdir -p "$WORK"
: >"$WORK/runs"
for ((i = 0; i < RUNS; i++)); do
  for name in A B; do
    bin=${!name}
    rm -rf "$WORK/vault"
    "$bin" --vault "$WORK/vault" init >/dev/null
    sync
    /usr/bin/time -f "$name %e %U %S" -a -o "$WORK/runs" \
      "$bin" --vault "$WORK/vault" backup "$DATA" >/dev/null 2>"$WORK/err"
  done
done
rm -rf "$WORK/vault"
sort -k1,1 -k2,2n "$WORK/runs"
for name in A B; do
  grep "^$name " "$WORK/runs" | sort -k2,2n | awk -v n="$name" '
    { w[NR] = $2; cpu += $3 + $4 }
    END { printf "%s  median %.2f s  fastest %.2f s  mean CPU %.2f s\n", n, w[int((NR + 1) / 2)], w[1], cpu / NR }'
done
