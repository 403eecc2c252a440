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
shopt -s inherit_errexit # a failing step inside $(...) stops the run instead of yielding a time

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
  tar -C "$MNT" -cf - . | cat >/dev/null || { echo "tar through the mount failed" >&2; unmount_fuse; return 1; }
  t1=$(date +%s.%N)
  unmount_fuse
  echo "$t1 - $t0" | bc -l
}

# Other load: a step is only fair to A or B if nothing else ran meanwhile (on 2 cores one
# compile halves a multi-threaded step). Before each step wait (up to IDLE_WAIT s) for a
# second in which the machine is under 10% busy; after it, OTHER = CPU the machine was busy
# minus the CPU of this script's own processes (bash `times`, children reaped), as % of all
# cores over the step. A step with OTHER > 15% is marked '*' and left out of the best of the
# rounds (unless every round of that step is marked; the summary then says so).
NCPU=$(nproc)
busy_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
# CPU (user+sys, centiseconds) of this shell's reaped children; `times` must run in this
# shell (a command substitution would report the subshell's own children).
own_cs() {
  times >"$WORK/times"
  OWN=$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] }
                      printf "%.0f", t * 100 }' "$WORK/times")
}
wait_idle() {
  local a b t0=$SECONDS
  while ((SECONDS - t0 < IDLE_WAIT)); do
    a=$(busy_jiffies); sleep 1; b=$(busy_jiffies)
    (((b - a) < 10 * NCPU)) && return 0 # under 10% of the cores' 100 ticks/s
  done
  return 0 # waited long enough: the step's other load will tell
}
# step VAR CMD...: wait for an idle machine, VAR=$(CMD), OTHER_<VAR> = other load in %.
step() {
  local var=$1 b0 b1 c0 w0 w1 out; shift
  wait_idle
  b0=$(busy_jiffies); own_cs; c0=$OWN; w0=$(date +%s.%N)
  out=$("$@")
  w1=$(date +%s.%N); own_cs; b1=$(busy_jiffies)
  printf -v "$var" '%s' "$out"
  printf -v "OTHER_$var" '%s' "$(awk -v b="$((b1 - b0))" -v o="$((OWN - c0))" -v w="$(echo "$w1 - $w0" | bc -l)" -v n="$NCPU" \
    'BEGIN { x = (w > 0 ? (b - o) / (w * n) : 0); printf "%.0f", (x < 0 ? 0 : x) }')"
}
IDLE_WAIT=${IDLE_WAIT:-60}

declare -A best best_all size mount_mbps nclean clean_values
# keep_best KEY VALUE lower|higher OTHER%
keep_best() {
  local key=$1 v=$2 dir=$3 other=$4 op='<'
  [ "$dir" = higher ] && op='>'
  if [ -z "${best_all[$key]:-}" ] || (($(echo "$v $op ${best_all[$key]}" | bc -l))); then best_all[$key]=$v; fi
  ((other > 15)) && return 0
  nclean[$key]=$((${nclean[$key]:-0} + 1))
  clean_values[$key]+="$v "
  if [ -z "${best[$key]:-}" ] || (($(echo "$v $op ${best[$key]}" | bc -l))); then best[$key]=$v; fi
}
mark() { (($1 > 15)) && echo "$1%*" || echo "$1%"; }

run_one() {
  local name=$1 bin=$2 vault=$WORK/vault-$1 target=$TMPFS/restore
  local -x SYNVAULT_VAULT=$vault
  rm -rf "$vault" "$target"
  "$bin" init >/dev/null
  sync; local full unchanged restore mount reasm lbytes
  step full secs "$bin" backup "$DATA"
  size[$name.full]=$(du -sb "$vault/packs" | cut -f1)
  step unchanged secs "$bin" backup "$DATA"
  size[$name.unchanged]=$(du -sb "$vault/packs" | cut -f1)
  step restore secs "$bin" restore latest --target "$target"
  rm -rf "$target"
  printf '%-2s full %8.1f MB/s  unchanged %6.2f s  restore %8.1f MB/s\n' \
    "$name" "$(mbps "$full")" "$unchanged" "$(mbps "$restore")"
  sync
  step reasm eval '"$bin" bench reassembly latest --json | jq .mb_per_s'
  # logical bytes of the newest point (the one mounted as latest)
  lbytes=$("$bin" points --json | jq 'max_by(.time).bytes')
  step mount mount_read "$vault" "$bin"
  mount_mbps[$name]=$(echo "scale=1; $lbytes / 1000000 / $mount" | bc -l)
  printf '%-2s reassembly %8.1f MB/s  mount read %8.1f MB/s (%s MB in %.2f s)  packs/ %s B full, %s B unchanged\n' \
    "$name" "$reasm" "${mount_mbps[$name]}" "$((lbytes / 1000000))" "$mount" "${size[$name.full]}" "${size[$name.unchanged]}"
  printf '%-2s other load: full %s  unchanged %s  restore %s  reassembly %s  mount %s\n' "$name" \
    "$(mark "$OTHER_full")" "$(mark "$OTHER_unchanged")" "$(mark "$OTHER_restore")" "$(mark "$OTHER_reasm")" "$(mark "$OTHER_mount")"
  keep_best "$name.full" "$full" lower "$OTHER_full"
  keep_best "$name.unchanged" "$unchanged" lower "$OTHER_unchanged"
  keep_best "$name.restore" "$restore" lower "$OTHER_restore"
  keep_best "$name.reasm" "$reasm" higher "$OTHER_reasm"
  keep_best "$name.mount" "${mount_mbps[$name]}" higher "$OTHER_mount"
}

for ((round = 1; round <= ROUNDS; round++)); do
  echo "round $round"
  if ((round % 2)); then run_one A "$A"; run_one B "$B"; else run_one B "$B"; run_one A "$A"; fi
done

# steps whose every round was under other load: fall back to the best of all rounds
fallback=
for key in "${!best_all[@]}"; do
  if [ -z "${best[$key]:-}" ]; then best[$key]=${best_all[$key]}; fallback+=" $key"; fi
done
clean() { echo "${nclean[A.$1]:-0}+${nclean[B.$1]:-0}"; }

echo "best of $ROUNDS rounds:"
for step in full restore; do
  printf '  %-9s A %8.1f MB/s  B %8.1f MB/s  B/A %.3f  (clean rounds A+B %s)\n' "$step" \
    "$(mbps "${best[A.$step]}")" "$(mbps "${best[B.$step]}")" \
    "$(echo "${best[A.$step]} / ${best[B.$step]}" | bc -l)" "$(clean "$step")"
done
printf '  %-9s A %8.2f s     B %8.2f s     B/A %.3f  (clean rounds A+B %s)\n' unchanged \
  "${best[A.unchanged]}" "${best[B.unchanged]}" "$(echo "${best[B.unchanged]} / ${best[A.unchanged]}" | bc -l)" "$(clean unchanged)"
for step in reasm mount; do
  label=$([ "$step" = reasm ] && echo reassembly || echo mount)
  printf '  %-9s A %8.1f MB/s  B %8.1f MB/s  B/A %.3f  (clean rounds A+B %s)\n' "$label" \
    "${best[A.$step]}" "${best[B.$step]}" "$(echo "${best[B.$step]} / ${best[A.$step]}" | bc -l)" "$(clean "$step")"
done
[ -z "$fallback" ] || echo "  WARNING: every round of$fallback ran under other load (>15%); its best is of all rounds"
# The best of a few rounds follows one lucky run on a noisy machine; the median of the clean
# rounds is printed beside it (same units, B/A oriented as above: above 1 is B faster).
median() { tr ' ' '\n' <<<"${clean_values[$1]:-}" | grep . | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2); else print 0 }'; }
echo "median of the clean rounds:"
for step in full restore unchanged reasm mount; do
  a=$(median "A.$step"); b=$(median "B.$step")
  case $step in
    full | restore | unchanged) ratio=$(echo "$a / $b" | bc -l) ;; # seconds: A/B is B's speed-up
    *) ratio=$(echo "$b / $a" | bc -l) ;;
  esac
  printf '  %-10s A %10.2f  B %10.2f  B faster by x%.3f\n' "$step" "$a" "$b" "$ratio"
done
echo "repository (du -sb packs/, last round):"
for when in full unchanged; do
  printf '  after %-9s A %12d B  B %12d B  B/A %.4f\n' "$when" \
    "${size[A.$when]}" "${size[B.$when]}" "$(echo "${size[B.$when]} / ${size[A.$when]}" | bc -l)"
done
