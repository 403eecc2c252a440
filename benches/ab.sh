#!/usr/bin/env bash
# A/B: two synvault binaries on the same data in the same run, rounds interleaved, so a change
# is judged against the build before it rather than against last week's figures.
#
#   sudo A=/path/old/synvault B=target/release/synvault benches/ab.sh
#
# Settings: A, B (binaries, required), DATA (a directory to back up; default: a generated set
# of SMALL_FILES files of 4-64 KiB plus LARGE_MB of random data), ROUNDS (3), WORK
# (/var/tmp/synvault-ab). Each round, for A then B (B then A on even rounds): a full backup
# into a fresh vault, a backup with nothing changed, and a restore of `latest` into a tmpfs.
# Prints MB/s per step, the best of the rounds, and B/A.
set -euo pipefail

: "${A:?set A to the baseline binary}" "${B:?set B to the binary under test}"
ROUNDS=${ROUNDS:-3}
WORK=${WORK:-/var/tmp/synvault-ab}
SMALL_FILES=${SMALL_FILES:-20000}
LARGE_MB=${LARGE_MB:-512}
[[ $WORK == /* && $WORK != / ]] || { echo "WORK must be absolute" >&2; exit 2; }

export SYNVAULT_PASSWORD=ab-bench
command -v bc >/dev/null || apt-get install -y -qq bc >/dev/null
mkdir -p "$WORK"
TMPFS=$WORK/tmpfs
mountpoint -q "$TMPFS" || { mkdir -p "$TMPFS"; mount -t tmpfs -o size=75% tmpfs "$TMPFS"; }
trap 'umount "$TMPFS" 2>/dev/null || true' EXIT

make_data() {
  local d=$WORK/data
  [ -e "$d/.done" ] && { echo "$d"; return; }
  rm -rf "$d"; mkdir -p "$d/small" "$d/large"
  python3 - "$d" "$SMALL_FILES" "$LARGE_MB" <<'PY'
import os, random, sys
root, n, large_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(42)
words = [bytes(rng.choice(b"abcdefghij klmnop\n") for _ in range(64)) for _ in range(512)]
for i in range(n):
    sub = os.path.join(root, "small", f"d{i // 200:03}")
    os.makedirs(sub, exist_ok=True)
    size = rng.randint(4 << 10, 64 << 10)
    body = b"".join(rng.choice(words) for _ in range(size // 64 + 1))[:size]
    open(os.path.join(sub, f"f{i:06}"), "wb").write(body)
with open(os.path.join(root, "large", "random.bin"), "wb") as f:
    for _ in range(large_mb):
        f.write(rng.randbytes(1 << 20))
PY
  touch "$d/.done"
  echo "$d"
}

DATA=${DATA:-$(make_data)}
BYTES=$(du -sb --exclude=.done "$DATA" | cut -f1)
echo "data: $DATA, $((BYTES / 1000000)) MB"

secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
mbps() { echo "scale=1; $BYTES / 1000000 / $1" | bc -l; }

declare -A best
run_one() {
  local name=$1 bin=$2 vault=$WORK/vault-$1 target=$TMPFS/restore
  rm -rf "$vault" "$target"
  SYNVAULT_VAULT=$vault "$bin" init >/dev/null
  sync; local full unchanged restore
  full=$(SYNVAULT_VAULT=$vault secs "$bin" backup "$DATA")
  unchanged=$(SYNVAULT_VAULT=$vault secs "$bin" backup "$DATA")
  restore=$(SYNVAULT_VAULT=$vault secs "$bin" restore latest --target "$target")
  rm -rf "$target"
  printf '%-2s full %8.1f MB/s  unchanged %6.2f s  restore %8.1f MB/s\n' \
    "$name" "$(mbps "$full")" "$unchanged" "$(mbps "$restore")"
  for step in full unchanged restore; do
    local v=${!step} key=$name.$step
    if [ -z "${best[$key]:-}" ] || (($(echo "$v < ${best[$key]}" | bc -l))); then best[$key]=$v; fi
  done
}

for ((round = 1; round <= ROUNDS; round++)); do
  echo "round $round"
  if ((round % 2)); then run_one A "$A"; run_one B "$B"; else run_one B "$B"; run_one A "$A"; fi
done

echo "best of $ROUNDS rounds:"
for step in full restore; do
  printf '  %-9s A %8.1f MB/s  B %8.1f MB/s  B/A %.3f\n' "$step" \
    "$(mbps "${best[A.$step]}")" "$(mbps "${best[B.$step]}")" \
    "$(echo "${best[A.$step]} / ${best[B.$step]}" | bc -l)"
done
printf '  %-9s A %8.2f s     B %8.2f s     B/A %.3f\n' unchanged \
  "${best[A.unchanged]}" "${best[B.unchanged]}" "$(echo "${best[B.unchanged]} / ${best[A.unchanged]}" | bc -l)"
