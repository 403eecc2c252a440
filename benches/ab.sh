#!/usr/bin/env bash
# A/B: two synvault binaries on the same data in the same run, rounds interleaved, so a change
# is judged against the build before it rather than against last week's figures.
#
#   sudo A=/path/old/synvault B=target/release/synvault benches/ab.sh
#
# Settings: A, B (binaries, required), DATA (a directory to back up; default: a generated set
# of SMALL_FILES files of 4-64 KiB plus LARGE_MB of random data), ROUNDS (3), WORK
# (/var/tmp/synvault-ab). Each round, for A then B (B then A on even rounds): a full backup
# into a fresh vault, a backup with nothing changed, a restore of `latest` into a tmpfs,
# `synvault bench reassembly latest` (its own MB/s figure), and a read of every file of
# `latest` through `synvault mount --point latest` ($WORK/mnt, fresh mount each time; timed
# `tar -cf - . | cat >/dev/null`, MB/s from the point's logical bytes; GNU tar does not read
# file contents when its archive is /dev/null, hence the pipe). It also records the size of
# the vault's packs/ (du -sb) after the full backup and after the unchanged one.
# Prints MB/s per step, the best of the rounds, and B/A; repository sizes and B/A.
# The tmpfs and the FUSE mount are unmounted on exit, also on error or Ctrl-C.
set -euo pipefail

: "${A:?set A to the baseline binary}" "${B:?set B to the binary under test}"
ROUNDS=${ROUNDS:-3}
WORK=${WORK:-/var/tmp/synvault-ab}
SMALL_FILES=${SMALL_FILES:-20000}
LARGE_MB=${LARGE_MB:-512}
[[ $WORK == /* && $WORK != / ]] || { echo "WORK must be absolute" >&2; exit 2; }

export SYNVAULT_PASSWORD=ab-bench
command -v bc >/dev/null || apt-get install -y -qq bc >/dev/null
command -v jq >/dev/null || apt-get install -y -qq jq >/dev/null
mkdir -p "$WORK"
TMPFS=$WORK/tmpfs
MNT=$WORK/mnt
MOUNT_PID=
unmount_fuse() {
  if mountpoint -q "$MNT" 2>/dev/null; then
    fusermount3 -u "$MNT" 2>/dev/null || umount "$MNT" 2>/dev/null || umount -l "$MNT" || true
  fi
  if [ -n "$MOUNT_PID" ]; then
    # the mount process ends on unmount; give it 10 s, then stop it
    for _ in $(seq 100); do kill -0 "$MOUNT_PID" 2>/dev/null || break; sleep 0.1; done
    kill "$MOUNT_PID" 2>/dev/null || true
    wait "$MOUNT_PID" 2>/dev/null || true
    MOUNT_PID=
  fi
}
cleanup() {
  unmount_fuse
  umount "$TMPFS" 2>/dev/null || true
}
mountpoint -q "$TMPFS" || { mkdir -p "$TMPFS"; mount -t tmpfs -o size=75% tmpfs "$TMPFS"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

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

# Mount `latest` of vault $1 with binary $2 on $MNT, read every file, unmount; prints seconds.
mount_read() {
  local vault=$1 bin=$2 t0 t1
  mkdir -p "$MNT"
  SYNVAULT_VAULT=$vault "$bin" mount --point latest "$MNT" >"$WORK/mount.log" 2>&1 &
  MOUNT_PID=$!
  for _ in $(seq 300); do
    mountpoint -q "$MNT" && break
    kill -0 "$MOUNT_PID" 2>/dev/null || { cat "$WORK/mount.log" >&2; echo "mount failed" >&2; return 1; }
    sleep 0.1
  done
  mountpoint -q "$MNT" || { echo "mount did not come up in 30 s" >&2; return 1; }
  t0=$(date +%s.%N)
  # (a command substitution runs without set -e: check by hand)
  tar -C "$MNT" -cf - . | cat >/dev/null || { echo "tar through the mount failed" >&2; unmount_fuse; return 1; }
  t1=$(date +%s.%N)
  unmount_fuse
  echo "$t1 - $t0" | bc -l
}

declare -A best size
run_one() {
  local name=$1 bin=$2 vault=$WORK/vault-$1 target=$TMPFS/restore
  rm -rf "$vault" "$target"
  SYNVAULT_VAULT=$vault "$bin" init >/dev/null
  sync; local full unchanged restore mount reasm lbytes
  full=$(SYNVAULT_VAULT=$vault secs "$bin" backup "$DATA")
  size[$name.full]=$(du -sb "$vault/packs" | cut -f1)
  unchanged=$(SYNVAULT_VAULT=$vault secs "$bin" backup "$DATA")
  size[$name.unchanged]=$(du -sb "$vault/packs" | cut -f1)
  restore=$(SYNVAULT_VAULT=$vault secs "$bin" restore latest --target "$target")
  rm -rf "$target"
  printf '%-2s full %8.1f MB/s  unchanged %6.2f s  restore %8.1f MB/s\n' \
    "$name" "$(mbps "$full")" "$unchanged" "$(mbps "$restore")"
  sync
  reasm=$(SYNVAULT_VAULT=$vault "$bin" bench reassembly latest --json | jq '.mb_per_s')
  # logical bytes of the newest point (the one mounted as latest)
  lbytes=$(SYNVAULT_VAULT=$vault "$bin" points --json | jq 'max_by(.time).bytes')
  mount=$(mount_read "$vault" "$bin")
  mount_mbps[$name]=$(echo "scale=1; $lbytes / 1000000 / $mount" | bc -l)
  printf '%-2s reassembly %8.1f MB/s  mount read %8.1f MB/s (%s MB in %.2f s)  packs/ %s B full, %s B unchanged\n' \
    "$name" "$reasm" "${mount_mbps[$name]}" "$((lbytes / 1000000))" "$mount" "${size[$name.full]}" "${size[$name.unchanged]}"
  for step in full unchanged restore; do
    local v=${!step} key=$name.$step
    if [ -z "${best[$key]:-}" ] || (($(echo "$v < ${best[$key]}" | bc -l))); then best[$key]=$v; fi
  done
  # MB/s figures: best is the highest
  for step in reasm mount; do
    local v key=$name.$step
    if [ "$step" = mount ]; then v=${mount_mbps[$name]}; else v=$reasm; fi
    if [ -z "${best[$key]:-}" ] || (($(echo "$v > ${best[$key]}" | bc -l))); then best[$key]=$v; fi
  done
}
declare -A mount_mbps

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
for step in reasm mount; do
  label=$([ "$step" = reasm ] && echo reassembly || echo mount)
  printf '  %-9s A %8.1f MB/s  B %8.1f MB/s  B/A %.3f\n' "$label" \
    "${best[A.$step]}" "${best[B.$step]}" "$(echo "${best[B.$step]} / ${best[A.$step]}" | bc -l)"
done
echo "repository (du -sb packs/, last round):"
for when in full unchanged; do
  printf '  after %-9s A %12d B  B %12d B  B/A %.4f\n' "$when" \
    "${size[A.$when]}" "${size[B.$when]}" "$(echo "${size[B.$when]} / ${size[A.$when]}" | bc -l)"
done
