#!/usr/bin/env bash
# `ls -lR | wc -l` through a fresh mount: synvault mount against restic mount, on the same
# tree of small real files, in one run (issue 12: synvault at least 2x faster).
#
#   sudo benches/mount-ls.sh                          # 60,000 files, 5 interleaved rounds
#   sudo FILES=5000 RUNS=1 benches/mount-ls.sh        # a quick look
#
# Settings: FILES (60000), DIRS (600 leaf directories, 20 under each of 30 parents), RUNS (5),
# WORK (/var/tmp/synvault-mount-ls), SYNVAULT_BIN (skip the cargo build).
#
# Each round mounts each tool fresh (the kernel knows nothing of the mount yet), waits until
# the tree shows, and times `ls -lR <the tree> | wc -l`, then unmounts. The repositories'
# files are in the page cache for both tools alike. Prints every round, the median of each
# tool, and restic's median over synvault's.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

FILES=${FILES:-60000}
DIRS=${DIRS:-600}
RUNS=${RUNS:-5}
WORK=${WORK:-/var/tmp/synvault-mount-ls}
export SYNVAULT_PASSWORD=bench RESTIC_PASSWORD=bench

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (mounts)"
[[ -e /dev/fuse ]] || die "no /dev/fuse"

# --- tools -----------------------------------------------------------------------------
missing=()
command -v restic >/dev/null || missing+=(restic)
command -v fusermount3 >/dev/null || missing+=(fuse3)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [[ -z ${SYNVAULT_BIN:-} ]]; then
  log "cargo build --release (synvault)"
  cargo build --release --quiet --bin synvault
  SYNVAULT_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/synvault
fi

# --- data and repositories -------------------------------------------------------------
DATA=$WORK/data MNT=$WORK/mnt LOGS=$WORK/logs SV=$WORK/synvault RR=$WORK/restic
mkdir -p "$WORK" "$MNT" "$LOGS"
stamp="$FILES files in $DIRS directories"
if [[ $(cat "$WORK/.complete" 2>/dev/null) != "$stamp" ]]; then
  rm -rf "$DATA" "$SV" "$RR" "$WORK/.complete"
  log "data: $stamp"
  python3 - "$DATA" "$FILES" "$DIRS" <<'EOF'
import os, random, sys
root, n, dirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(12)
words = [b"block", b"pack", b"catalog", b"restore", b"mount", b"point", b"vault", b"seed"]
text = b" ".join(rng.choice(words) for _ in range(1 << 16))
for i in range(n):
    leaf = i % dirs
    d = os.path.join(root, "top%02d" % (leaf % 30), "dir%03d" % leaf)
    os.makedirs(d, exist_ok=True)
    size = rng.randrange(0, 4096)
    o = rng.randrange(0, len(text) - size)
    with open(os.path.join(d, "file%05d.txt" % i), "wb") as f:
        f.write(text[o:o + size])
EOF
  log "synvault backup"
  "$SYNVAULT_BIN" --vault "$SV" init >/dev/null
  "$SYNVAULT_BIN" --vault "$SV" backup "$DATA" >"$LOGS/synvault-backup.log"
  log "restic backup"
  restic -r "$RR" init >/dev/null
  restic -r "$RR" backup "$DATA" >"$LOGS/restic-backup.log"
  echo "$stamp" >"$WORK/.complete"
fi
find "$WORK/synvault" "$WORK/restic" -type f -exec cat {} + >/dev/null

# --- mounting --------------------------------------------------------------------------
PID=""
ROOT=""
start() { # tool -> PID, ROOT (the tree inside the mount)
  local tool=$1
  case $tool in
    synvault) "$SYNVAULT_BIN" --vault "$SV" mount --point latest "$MNT" 2>"$LOGS/$tool-mount.log" &
              PID=$! ROOT=$MNT ;;
    restic)   restic -r "$RR" mount "$MNT" >"$LOGS/$tool-mount.log" 2>&1 &
              PID=$! ROOT=$MNT/snapshots/latest$DATA ;;
  esac
  for _ in $(seq 600); do
    [[ -d $ROOT/top00 ]] && return 0
    kill -0 "$PID" 2>/dev/null || { cat "$LOGS/$tool-mount.log" >&2; die "$tool mount exited"; }
    sleep 0.1
  done
  die "$tool mount never showed $ROOT/top00"
}
stop() {
  [[ -n $PID ]] || return 0
  fusermount3 -u "$MNT" 2>/dev/null || umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  if mountpoint -q "$MNT"; then umount -l "$MNT"; fi
  PID=""
}
trap 'stop 2>/dev/null || true' EXIT

declare -A SECS
declare -A LINES
list() { # tool: one timed `ls -lR | wc -l` on a fresh mount
  local tool=$1 t0 t1 lines
  start "$tool"
  t0=$(date +%s.%N)
  lines=$(cd "$ROOT" && ls -lR | wc -l)
  t1=$(date +%s.%N)
  stop
  local secs; secs=$(echo "$t1 - $t0" | bc -l)
  log "  $tool: $(printf %.3f "$secs") s, $lines lines"
  SECS[$tool]="${SECS[$tool]:-} $secs"
  LINES[$tool]=$lines
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

load=$(cut -d' ' -f1 /proc/loadavg)
(( $(echo "$load > 0.5" | bc -l) )) && log "WARNING: load average $load: other work skews the figures"
for round in $(seq "$RUNS"); do
  log "round $round of $RUNS"
  for tool in synvault restic; do list "$tool"; done
done
[[ ${LINES[synvault]} == "${LINES[restic]}" ]] ||
  log "WARNING: line counts differ: synvault ${LINES[synvault]}, restic ${LINES[restic]}"

# --- report ----------------------------------------------------------------------------
sv=$(echo "${SECS[synvault]}" | median)
rs=$(echo "${SECS[restic]}" | median)
echo "ls -lR | wc -l on a fresh mount, $stamp, median of $RUNS rounds"
printf '  synvault mount --point latest  %.3f s\n' "$sv"
printf '  restic mount                   %.3f s\n' "$rs"
printf '  restic / synvault              %.2fx\n' "$(echo "$rs / $sv" | bc -l)"
