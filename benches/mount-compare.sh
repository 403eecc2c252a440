#!/usr/bin/env bash
# Mount read speed: synvault mount vs restic mount vs borg mount vs the FUSE ceiling of this
# machine (examples/fuse_ceiling.rs: the same tree shape, constant bytes from memory), on the
# same generated data, in the same run.
#
#   sudo benches/mount-compare.sh                       # everything, 3 rounds
#   sudo RUNS=1 TOOLS="synvault ceiling" benches/mount-compare.sh
#
# Settings: TOOLS (synvault restic borg ceiling), RUNS (3), WORK (/var/tmp/synvault-mount-bench),
# BIG_MB (1024), SMALL_FILES (20000, mean 16 KiB, half text half random), FIO_SECS (15),
# RSS_PASSES (4: GiB read with O_DIRECT through synvault's mount for the peak-RSS check),
# SYNVAULT_BIN / CEILING_BIN (skip the cargo build).
#
# Each measurement starts on a fresh mount (the kernel's page cache of the mount is empty);
# the repositories' own files are in the page cache for every tool alike. Per tool and
# measurement the best of RUNS rounds is reported; rounds interleave the tools so a burst
# of outside load does not land on one tool only.
#   seq   dd if=<big file> of=/dev/null bs=1M                      MB/s
#   tree  cd <small tree> && tar cf - . | wc -c                     seconds
#   rand  fio randread 4 KiB, psync, one job, FIO_SECS              IOPS
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

TOOLS=${TOOLS:-"synvault restic borg ceiling"}
RUNS=${RUNS:-3}
WORK=${WORK:-/var/tmp/synvault-mount-bench}
BIG_MB=${BIG_MB:-1024}
SMALL_FILES=${SMALL_FILES:-20000}
FIO_SECS=${FIO_SECS:-15}
RSS_PASSES=${RSS_PASSES:-4}
export SYNVAULT_PASSWORD=bench RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
has_tool() { [[ " $TOOLS " == *" $1 "* ]]; }

[[ $(id -u) == 0 ]] || die "run as root (mounts, drop_caches)"
[[ -e /dev/fuse ]] || die "no /dev/fuse"

# --- tools -----------------------------------------------------------------------------
missing=()
command -v fio >/dev/null || missing+=(fio)
command -v bc >/dev/null || missing+=(bc)
has_tool restic && ! command -v restic >/dev/null && missing+=(restic)
has_tool borg && ! command -v borg >/dev/null && missing+=(borgbackup python3-llfuse)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if has_tool borg && ! command -v borg >/dev/null; then
  log "borg did not install: leaving it out"; TOOLS=${TOOLS/borg/}
fi
if [[ -z ${SYNVAULT_BIN:-} || -z ${CEILING_BIN:-} ]]; then
  log "cargo build --release (synvault, fuse_ceiling)"
  cargo build --release --quiet --bin synvault --example fuse_ceiling
fi
SYNVAULT_BIN=${SYNVAULT_BIN:-$REPO/target/release/synvault}
CEILING_BIN=${CEILING_BIN:-$REPO/target/release/examples/fuse_ceiling}

# --- data ------------------------------------------------------------------------------
DATA=$WORK/data MNT=$WORK/mnt LOGS=$WORK/logs
mkdir -p "$WORK" "$MNT" "$LOGS"
if [[ ! -f $DATA/.complete ]]; then
  rm -rf "$DATA" && mkdir -p "$DATA/big"
  log "data: $BIG_MB MiB random file, $SMALL_FILES small files"
  head -c $((BIG_MB << 20)) /dev/urandom >"$DATA/big/big.bin"
  python3 - "$DATA/small" "$SMALL_FILES" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
words = [b"block", b"pack", b"catalog", b"restore", b"mount", b"point", b"vault", b"seed"]
text = b" ".join(rng.choice(words) for _ in range(1 << 20))
for i in range(n):
    d = os.path.join(root, "d%03d" % (i % 200), "s%d" % (i % 7))
    os.makedirs(d, exist_ok=True)
    size = int(rng.expovariate(1 / 16384))
    if i % 2:
        data = rng.randbytes(size)
    else:
        o = rng.randrange(0, len(text) - size - 1)
        data = text[o:o + size]
    with open(os.path.join(d, "f%05d.dat" % i), "wb") as f:
        f.write(data)
EOF
  touch "$DATA/.complete"
fi

# --- repositories ----------------------------------------------------------------------
SV=$WORK/repos/synvault RR=$WORK/repos/restic BR=$WORK/repos/borg
mkdir -p "$WORK/repos"
if has_tool synvault && [[ ! -f $SV/.complete ]]; then
  rm -rf "$SV"; log "synvault backup"
  "$SYNVAULT_BIN" --vault "$SV" init >/dev/null
  "$SYNVAULT_BIN" --vault "$SV" backup "$DATA" >"$LOGS/synvault-backup.log"
  touch "$SV/.complete"
fi
if has_tool restic && [[ ! -f $RR/.complete ]]; then
  rm -rf "$RR"; log "restic backup"
  restic -r "$RR" init >/dev/null
  restic -r "$RR" backup "$DATA" >"$LOGS/restic-backup.log"
  touch "$RR/.complete"
fi
if has_tool borg && [[ ! -f $BR/.complete ]]; then
  rm -rf "$BR"; log "borg backup"
  borg init -e repokey "$BR"
  (cd "$WORK" && borg create "$BR::a" data)
  touch "$BR/.complete"
fi
log "warming the page cache with the data and every repository"
find "$DATA" "$WORK/repos" -type f -exec cat {} + >/dev/null

# --- mounting --------------------------------------------------------------------------
PID=""
ROOT=""
start() { # tool -> PID, ROOT (the data directory inside the mount)
  local tool=$1
  case $tool in
    synvault) "$SYNVAULT_BIN" --vault "$SV" mount "$MNT" --point latest 2>"$LOGS/$tool-mount.log" &
              PID=$! ROOT=$MNT ;;
    restic)   restic -r "$RR" mount "$MNT" >"$LOGS/$tool-mount.log" 2>&1 &
              PID=$! ROOT=$MNT/snapshots/latest$DATA ;;
    borg)     borg mount -f "$BR::a" "$MNT" >"$LOGS/$tool-mount.log" 2>&1 &
              PID=$! ROOT=$MNT/data ;;
    ceiling)  "$CEILING_BIN" "$DATA" "$MNT" 2>"$LOGS/$tool-mount.log" &
              PID=$! ROOT=$MNT ;;
  esac
  for _ in $(seq 600); do
    [[ -f $ROOT/big/big.bin ]] && return 0
    kill -0 "$PID" 2>/dev/null || { cat "$LOGS/$tool-mount.log" >&2; die "$tool mount exited"; }
    sleep 0.1
  done
  die "$tool mount never showed $ROOT/big/big.bin"
}
stop() {
  fusermount -u "$MNT" 2>/dev/null || umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  mountpoint -q "$MNT" && umount -l "$MNT"
  PID=""
}
trap 'stop 2>/dev/null || true' EXIT

now() { date +%s.%N; }
declare -A BEST
keep() { # key value better(lt|gt)
  local cur=${BEST[$1]:-}
  if [[ -z $cur ]] || (( $(echo "$2 $3 $cur" | sed 's/lt/</;s/gt/>/' | bc -l) )); then BEST[$1]=$2; fi
}

seq_read() {
  local tool=$1 t0 t1
  start "$tool"; t0=$(now)
  dd if="$ROOT/big/big.bin" of=/dev/null bs=1M status=none
  t1=$(now); stop
  local mbs; mbs=$(echo "$BIG_MB * 1.048576 / ($t1 - $t0)" | bc -l)
  log "  $tool seq: $(printf %.0f "$mbs") MB/s"; keep "$tool.seq" "$mbs" gt
}
tree_read() {
  local tool=$1 t0 t1 bytes
  start "$tool"; t0=$(now)
  bytes=$(cd "$ROOT/small" && tar cf - . | wc -c)
  t1=$(now); stop
  local secs; secs=$(echo "$t1 - $t0" | bc -l)
  log "  $tool tree: $(printf %.2f "$secs") s ($bytes bytes of tar)"; keep "$tool.tree" "$secs" lt
}
rand_read() {
  local tool=$1 iops
  start "$tool"
  iops=$(fio --name=rand --filename="$ROOT/big/big.bin" --readonly --rw=randread --bs=4k \
    --ioengine=psync --numjobs=1 --time_based --runtime="$FIO_SECS" --invalidate=0 \
    --output-format=terse --terse-version=3 2>/dev/null | awk -F';' '{ print $8 }')
  stop
  log "  $tool rand: ${iops:-?} IOPS"; [[ -n $iops ]] && keep "$tool.rand" "$iops" gt
}
rss_check() {
  start synvault
  for _ in $(seq "$RSS_PASSES"); do
    dd if="$ROOT/big/big.bin" of=/dev/null bs=1M iflag=direct status=none
  done
  local hwm; hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$PID/status")
  stop
  RSS_MB=$((hwm / 1024))
  log "  synvault peak RSS after $((RSS_PASSES * BIG_MB)) MiB with O_DIRECT: $RSS_MB MiB"
}

load=$(cut -d' ' -f1 /proc/loadavg)
(( $(echo "$load > 0.5" | bc -l) )) && log "WARNING: load average $load: other work skews the figures"
for round in $(seq "$RUNS"); do
  log "round $round of $RUNS"
  for tool in $TOOLS; do seq_read "$tool"; done
  for tool in $TOOLS; do tree_read "$tool"; done
  for tool in $TOOLS; do rand_read "$tool"; done
done
has_tool synvault && rss_check

# --- report ----------------------------------------------------------------------------
fmt() { [[ -n ${1:-} ]] && printf "$2" "$1" || printf '%s' -; }
ratio() { [[ -n ${1:-} && -n ${2:-} ]] && printf '%.2f' "$(echo "$1 / $2" | bc -l)" || printf '%s' -; }
echo
echo "mount read speed, best of $RUNS rounds ($(nproc) cores, $(uname -r); $BIG_MB MiB file, $SMALL_FILES small files)"
printf '%-10s %12s %12s %12s\n' tool "seq MB/s" "tree s" "rand IOPS"
for tool in $TOOLS; do
  printf '%-10s %12s %12s %12s\n' "$tool" "$(fmt "${BEST[$tool.seq]:-}" %.0f)" \
    "$(fmt "${BEST[$tool.tree]:-}" %.2f)" "$(fmt "${BEST[$tool.rand]:-}" %.0f)"
done
echo
echo "synvault seq / restic seq:        $(ratio "${BEST[synvault.seq]:-}" "${BEST[restic.seq]:-}")x  (target >= 3.5)"
echo "synvault tree / ceiling tree:     $(ratio "${BEST[synvault.tree]:-}" "${BEST[ceiling.tree]:-}")x  (target <= 1.2)"
echo "borg tree / synvault tree:        $(ratio "${BEST[borg.tree]:-}" "${BEST[synvault.tree]:-}")x  (target > 1)"
echo "synvault rand / restic rand:      $(ratio "${BEST[synvault.rand]:-}" "${BEST[restic.rand]:-}")x"
[[ -n ${RSS_MB:-} ]] && echo "synvault peak RSS:                $RSS_MB MiB (bound: 256 MiB cache + 128 MiB)"
