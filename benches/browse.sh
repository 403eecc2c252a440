#!/usr/bin/env bash
# Point-in-time browsing on a long history (issue 14): a vault of POINTS points over FILES
# small files with about 1% of them changing between consecutive points; then `find` of a
# name pattern across all points, `diff` of two consecutive points, `log` of one file and
# `ls versions/<source>/<that file>` through a fresh mount, beside `restic find` and
# `restic diff` on a restic repository of the first RESTIC_POINTS points of the same history,
# in the same run. Wall seconds and peak RSS of each, as a table.
#
#   sudo benches/browse.sh                                  # 100,000 files, 1,000 points
#   sudo FILES=10000 POINTS=50 RESTIC_POINTS=50 benches/browse.sh   # a quick look
#
# Settings: FILES (100000, in leaf directories of 100 below 10 x 10 parents), POINTS (1000),
# RESTIC_POINTS (200), CHANGED_DIRS (10 leaf directories, all their files, per point),
# WORK (/var/tmp/synvault-browse), SYNVAULT_BIN (skip the cargo build), RUNS (3: each figure
# is the median of RUNS runs).
#
# The history: point 0 is the generated tree; before each next point CHANGED_DIRS leaf
# directories (7 in 10 picked from a hot tenth of them, the rest from all) get a small write
# (8 bytes at a random offset) to every file, 2 files are added and the 2 added 100 points
# before are deleted; the tracked file t0/m0/d0/f000000.dat is written every 10th point.
# Changes cluster in directories as real ones do; spread evenly over the tree, 1% of the
# files would touch most leaf directories in every point and `find` would read them all.
# Built once and kept (delete WORK to start over); the figures are taken on each run.
#
# synvault's find, log and diff read only the local catalog (no key); the rest of synvault
# unwraps the key with argon2id (64 MiB, 3 passes: about 0.15 s) and restic unwraps its key
# with scrypt: the "open" rows are that alone (`synvault points` listing no point, `restic
# cat config`), and the table shows restic's commands also without their open.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

FILES=${FILES:-100000}
POINTS=${POINTS:-1000}
RESTIC_POINTS=${RESTIC_POINTS:-200}
CHANGED_DIRS=${CHANGED_DIRS:-10}
RUNS=${RUNS:-3}
W=${WORK:-/var/tmp/synvault-browse}
export TZ=UTC SYNVAULT_PASSWORD=bench-passphrase RESTIC_PASSWORD=bench-passphrase
export RESTIC_CACHE_DIR=$W/restic-cache

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
[[ $W == /* && $W != / ]] || die "WORK must be absolute"
[[ $(id -u) == 0 ]] || die "run as root (mounts)"
[[ -e /dev/fuse ]] || die "no /dev/fuse"
for tool in restic python3 /usr/bin/time fusermount3; do
  command -v "$tool" >/dev/null || die "needs $tool"
done
if [[ -z ${SYNVAULT_BIN:-} ]]; then
  log "cargo build --release (synvault)"
  cargo build --release --quiet --bin synvault
  SYNVAULT_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/synvault
fi
SV=("$SYNVAULT_BIN" --vault "$W/synvault")
RR=(restic -r "$W/restic")
DATA=$W/data MNT=$W/mnt TRACKED=t0/m0/d0/f000000.dat
mkdir -p "$W" "$MNT"

# --- the history -------------------------------------------------------------------------
# `gen.py ROOT FILES POINT CHANGED_DIRS`: point 0 makes the tree, point i > 0 applies the
# changes made before point i.
cat >"$W/gen.py" <<'EOF'
import os, random, sys
root, files, point, changed_dirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
PER_DIR = 100
leaves = [os.path.join(f"t{d // 100}", f"m{d // 10 % 10}", f"d{d % 10}")
          for d in range((files + PER_DIR - 1) // PER_DIR)]
hot = random.Random(0).sample(range(len(leaves)), max(1, len(leaves) // 10))

def added(i):
    rng = random.Random(f"add {i}")
    return [os.path.join(root, leaves[rng.randrange(len(leaves))], f"n{i:05}-{k}.dat") for k in range(2)]

if point == 0:
    rng = random.Random(14)
    for n in range(files):
        d = os.path.join(root, leaves[n // PER_DIR])
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{n:06}.dat"), "wb") as f:
            f.write(rng.randbytes(rng.randint(64, 2048)))
    sys.exit()
rng = random.Random(f"change {point}")
picks = {hot[rng.randrange(len(hot))] if rng.random() < 0.7 else rng.randrange(len(leaves))
         for _ in range(changed_dirs)}
targets = [os.path.join(root, leaves[d], name) for d in picks
           for name in os.listdir(os.path.join(root, leaves[d]))]
if point % 10 == 0:
    targets.append(os.path.join(root, leaves[0], "f000000.dat"))
for path in targets:
    with open(path, "r+b") as f:
        size = f.seek(0, 2)
        f.seek(rng.randrange(max(1, size - 8)))
        f.write(rng.randbytes(8))
for path in added(point):
    with open(path, "wb") as f:
        f.write(rng.randbytes(rng.randint(64, 2048)))
if point > 100:
    for path in added(point - 100):
        if os.path.exists(path):  # gone already if this point is being made again
            os.remove(path)
EOF

stamp="$FILES files, $POINTS points, $CHANGED_DIRS directories changed per point, restic $RESTIC_POINTS"
if [[ $(cat "$W/.complete" 2>/dev/null) != "$stamp" ]]; then
  # .progress: the stamp, then each point backed up; an interrupted build goes on from there
  # (making a point's changes again writes the same bytes).
  if [[ $(head -1 "$W/.progress" 2>/dev/null) != "$stamp" ]]; then
    rm -rf "$DATA" "$W/synvault" "$W/restic" "$RESTIC_CACHE_DIR" "$W/.complete" "$W/backups.log"
    log "history: $stamp"
    python3 "$W/gen.py" "$DATA" "$FILES" 0 "$CHANGED_DIRS"
    "${SV[@]}" init >/dev/null
    "${RR[@]}" init >/dev/null
    echo "$stamp" >"$W/.progress"
  fi
  next=$(sed 1d "$W/.progress" | tail -1)
  next=$((${next:--1} + 1))
  log "history: from point $next of $POINTS"
  for ((i = next; i < POINTS; i++)); do
    ((i == 0)) || python3 "$W/gen.py" "$DATA" "$FILES" "$i" "$CHANGED_DIRS"
    t0=$(date +%s.%N)
    "${SV[@]}" backup "$DATA" >/dev/null
    t1=$(date +%s.%N)
    if ((i < RESTIC_POINTS)); then "${RR[@]}" backup -q "$DATA" >/dev/null; fi
    t2=$(date +%s.%N)
    echo "$i $(echo "$t1 - $t0" | bc) $(echo "$t2 - $t1" | bc)" >>"$W/backups.log"
    echo "$i" >>"$W/.progress"
    ((i % 50 == 0)) && log "  point $i: synvault backup $(echo "$t1 - $t0" | bc) s, restic $(echo "$t2 - $t1" | bc) s"
  done
  echo "$stamp" >"$W/.complete"
fi
rm -rf "$DATA.restic-view"

# --- measuring ---------------------------------------------------------------------------
# `measure NAME CMD...`: RUNS runs of CMD, the median wall seconds and the largest peak RSS.
declare -A SECS RSS
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
measure() {
  local name=$1 secs=() rss=0; shift
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -f "%e %M" -o "$W/time" "$@" >"$W/out.$name" 2>"$W/err" ||
      { cat "$W/err" >&2; die "$name failed: $*"; }
    read -r s m <"$W/time"
    secs+=("$s"); ((m > rss)) && rss=$m
  done
  SECS[$name]=$(printf '%s\n' "${secs[@]}" | median)
  RSS[$name]=$rss
}

# Oldest first (ties within a second keep the vault's order, which is by start time).
sv_points() { "${SV[@]}" points --json | python3 -c "
import json, sys
points = sorted(json.load(sys.stdin), key=lambda p: p['time'])
print($1)"; }
sv_ids=$(sv_points '" ".join(p["id"] for p in points)')
read -r -a IDS <<<"$sv_ids"
((${#IDS[@]} == POINTS)) || die "the vault holds ${#IDS[@]} points, not $POINTS"
rs_ids=$("${RR[@]}" snapshots --json | python3 -c '
import json, sys
print(" ".join(s["short_id"] for s in sorted(json.load(sys.stdin), key=lambda s: s["time"])))')
read -r -a RIDS <<<"$rs_ids"
R=${#RIDS[@]}
# Point R (the last restic holds, counting from 1) against the one before it, in both tools.
A=$((R - 2)) B=$((R - 1))
PATTERN='f0123*'
# synvault's first R points: up to the R-th point's time (whole seconds).
until=$(sv_points "points[$B]['time'][:19]")

log "measuring ($RUNS runs each)"
measure sv_open "${SV[@]}" points --since 2100-01-01
measure rs_open "${RR[@]}" cat config
measure sv_find "${SV[@]}" find "$PATTERN"
measure sv_find_r "${SV[@]}" find "$PATTERN" --until "$until"
measure sv_diff "${SV[@]}" diff "${IDS[$A]}" "${IDS[$B]}"
measure sv_diff_last "${SV[@]}" diff "${IDS[$((POINTS - 2))]}" "${IDS[$((POINTS - 1))]}"
measure sv_log "${SV[@]}" log "$DATA/$TRACKED"
measure rs_find "${RR[@]}" find "$PATTERN"
measure rs_diff "${RR[@]}" diff "${RIDS[$A]}" "${RIDS[$B]}"

# `ls versions/<source>/<the file>` on a fresh mount, RUNS times.
mount_ls() {
  "${SV[@]}" mount "$MNT" 2>"$W/mount.err" &
  local pid=$! t0 t1 source
  trap 'fusermount3 -u "$MNT" 2>/dev/null || true' EXIT
  until mountpoint -q "$MNT"; do
    kill -0 "$pid" 2>/dev/null || { cat "$W/mount.err" >&2; die "mount exited"; }
    sleep 0.05
  done
  source=$(ls "$MNT/versions")
  t0=$(date +%s.%N)
  ls "$MNT/versions/$source/$TRACKED" >"$W/out.versions"
  t1=$(date +%s.%N)
  fusermount3 -u "$MNT"
  wait "$pid" || true
  echo "$t1 - $t0" | bc
}
SECS[versions]=$(for _ in $(seq "$RUNS"); do mount_ls; done | median)

# --- report ------------------------------------------------------------------------------
lines() { wc -l <"$W/out.$1"; }
row() { # name, what, target: wall seconds, less the tool's open, peak RSS
  local s=${SECS[$1]} o=${SECS[${1%%_*}_open]}
  [[ $1 == sv_open || $1 == rs_* ]] || o=0 # synvault's find, diff and log open no key
  printf '%-58s %8.3f %9.3f %8.0f  %s\n' "$2" "$s" "$(echo "$s - $o" | bc -l)" \
    "$(echo "${RSS[$1]:-0} / 1024" | bc -l)" "$3"
}
echo
echo "$stamp; $(du -sh "$W/synvault" | cut -f1) synvault, $(du -sh "$W/restic" | cut -f1) restic"
echo "backups: synvault median $(cut -d' ' -f2 "$W/backups.log" | median) s, restic median $(awk -v n="$RESTIC_POINTS" '$1 < n {print $3}' "$W/backups.log" | median) s per incremental"
printf '%-58s %8s %9s %8s  %s\n' "command (median of $RUNS)" "wall s" "- open s" "peak MiB" "target / output"
row sv_open "synvault points --since 2100-01-01 (open)" ""
row sv_find "synvault find '$PATTERN', $POINTS points" "<= 1 s; $(tail -1 "$W/out.sv_find")"
row sv_find_r "synvault find '$PATTERN', first $R points" "$(tail -1 "$W/out.sv_find_r")"
row sv_diff "synvault diff points $A $B" "<= 0.2 s; $(tail -1 "$W/out.sv_diff")"
row sv_diff_last "synvault diff points $((POINTS - 2)) $((POINTS - 1))" "$(tail -1 "$W/out.sv_diff_last")"
row sv_log "synvault log $TRACKED" "<= 0.1 s; $(tail -1 "$W/out.sv_log")"
printf '%-58s %8.3f %9s %8s  %s\n' "ls versions/<source>/$TRACKED (fresh mount)" "${SECS[versions]}" "" "" \
  "<= 0.2 s; $(wc -l <"$W/out.versions") versions"
row rs_open "restic cat config (open)" ""
row rs_find "restic find '$PATTERN', $R snapshots" "$(lines rs_find) lines"
row rs_diff "restic diff snapshots $A $B" "$(tail -1 "$W/out.rs_diff")"
