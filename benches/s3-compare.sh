#!/usr/bin/env bash
# synvault and restic against the same local S3 server (moto's or s3s-fs), on the same data, in the same
# run: full backup, incremental, restore, and a sequential read through each tool's mount
# (cold, then warm for synvault). Then again with a round trip added on the server's side by
# benches/delay-proxy.py (netem is not available everywhere).
#
#   benches/s3-compare.sh                        # 512 MiB, no delay and 20 ms round trip
#   DATA_MB=256 RTT_MS="0 20 40" benches/s3-compare.sh
#
# Knobs: DATA_MB (default 512), RTT_MS (round trips to measure, default "0 20"), WORK (default
# /var/tmp/synvault-s3bench), SYNVAULT_BIN (else `cargo build --release`), SERVER (moto, the
# default, or s3s-fs), MOTO_SERVER (else moto_server on PATH, else installed into $WORK/venv
# from PyPI), S3S_FS (else s3s-fs on PATH, else `cargo install s3s-fs@0.14.1` into $WORK/s3s).
# Needs restic, curl, python3, FUSE (for the mount rows) and root (the restores go to a
# tmpfs). Prints one table; every figure is MB/s of the data set's bytes.
set -euo pipefail
export LC_ALL=C

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=benchbench AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
DATA_MB=${DATA_MB:-512}
RTT_MS=${RTT_MS:-"0 20"}
WORK=${WORK:-/var/tmp/synvault-s3bench}
PORT=19400
PROXY_PORT=19401

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

if [[ -z ${SYNVAULT_BIN:-} ]]; then
  (cd "$REPO_ROOT" && cargo build --release -q)
  SYNVAULT_BIN=$REPO_ROOT/target/release/synvault
fi
SERVER=${SERVER:-moto}
case $SERVER in
  moto)
    if [[ -z ${MOTO_SERVER:-} ]]; then
      MOTO_SERVER=$(command -v moto_server || true)
      if [[ -z $MOTO_SERVER ]]; then
        python3 -m venv "$WORK/venv"
        "$WORK/venv/bin/pip" install -q 'moto[server]==5.2.5'
        MOTO_SERVER=$WORK/venv/bin/moto_server
      fi
    fi
    SERVER_VERSION="moto $("$MOTO_SERVER" --version 2>/dev/null || echo 5.2.5)"
    ;;
  s3s-fs)
    if [[ -z ${S3S_FS:-} ]]; then
      S3S_FS=$(command -v s3s-fs || true)
      if [[ -z $S3S_FS ]]; then
        cargo install -q s3s-fs@0.14.1 --features binary --locked --root "$WORK/s3s"
        S3S_FS=$WORK/s3s/bin/s3s-fs
      fi
    fi
    SERVER_VERSION="s3s-fs $("$S3S_FS" --version | cut -d' ' -f2)"
    ;;
  *) echo "SERVER is moto or s3s-fs" >&2; exit 2 ;;
esac

# start_server: the S3 server on $PORT, with the buckets synvault and restic.
start_server() {
  case $SERVER in
    moto)
      "$MOTO_SERVER" -H 127.0.0.1 -p $PORT >"$WORK/server.log" 2>&1 &
      SERVER_PID=$!
      for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
      curl -sf -X PUT "http://127.0.0.1:$PORT/synvault" >/dev/null
      curl -sf -X PUT "http://127.0.0.1:$PORT/restic" >/dev/null
      ;;
    s3s-fs)
      rm -rf "$WORK/s3root" && mkdir -p "$WORK/s3root/synvault" "$WORK/s3root/restic"
      "$S3S_FS" --host 127.0.0.1 --port $PORT --access-key "$AWS_ACCESS_KEY_ID" \
        --secret-key "$AWS_SECRET_ACCESS_KEY" "$WORK/s3root" >"$WORK/server.log" 2>&1 &
      SERVER_PID=$!
      for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
      ;;
  esac
}

mkdir -p "$WORK/restore" "$WORK/state" "$WORK/mnt"
# Restores go to a tmpfs: on ext4, creating files just after thousands were deleted costs
# the next restore a second or more of kernel time (recently deleted inodes are skipped),
# which would fall on whichever tool restores first.
mountpoint -q "$WORK/restore" || mount -t tmpfs -o size=$((DATA_MB * 3))m tmpfs "$WORK/restore"

# The data set: 40% in four large incompressible files, the rest in small files (1-64 KiB,
# half of them compressible text) across 100 directories. Fixed seed: every round the same.
make_data() {
  log "generating $DATA_MB MiB"
  rm -rf "$WORK/data" && mkdir -p "$WORK/data"
  python3 - "$WORK/data" "$DATA_MB" <<'EOF'
import os, random, sys
root, total = sys.argv[1], int(sys.argv[2]) << 20
rng = random.Random(7)
large = total * 4 // 10
for i in range(4):
    with open(os.path.join(root, f"large{i}.bin"), "wb") as f:
        f.write(rng.randbytes(large // 4))
left, n = total - large, 0
while left > 0:
    d = os.path.join(root, f"dir{n % 100:03d}")
    os.makedirs(d, exist_ok=True)
    size = min(left, rng.randint(1, 64) << 10)
    body = rng.randbytes(size) if n % 2 else (b"log line %d of a text file\n" % n) * (size // 26 + 1)
    with open(os.path.join(d, f"f{n:06d}"), "wb") as f:
        f.write(body[:size])
    left -= size
    n += 1
EOF
}
make_data
BYTES=$(du -sb "$WORK/data" | cut -f1)

# 2% of the bytes change before the incremental: the head of one large file and every 50th
# small file.
change_data() {
  python3 - "$WORK/data" <<'EOF'
import os, random, sys
root = sys.argv[1]
rng = random.Random(8)
with open(os.path.join(root, "large0.bin"), "r+b") as f:
    f.write(rng.randbytes(os.path.getsize(os.path.join(root, "large0.bin")) // 25))
names = sorted(os.path.join(dp, n) for dp, _, ns in os.walk(root) for n in ns if n.startswith("f"))
for path in names[::50]:
    with open(path, "r+b") as f:
        f.write(rng.randbytes(min(4096, os.path.getsize(path))))
EOF
}

# CPU seconds a process has used so far (0 for none).
HZ=$(getconf CLK_TCK)
cpu_of() {
  if [[ -n ${1:-} && -r /proc/$1/stat ]]; then
    awk -v hz="$HZ" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"
  else echo 0; fi
}
# seconds CMD...: wall seconds of CMD, its output to $WORK/last.log; the CPU seconds of the
# command, the server and the proxy during it go to $WORK/step.cpu (who bounds a step on a
# small machine: the tool, or the server beside it).
seconds() {
  local t0 t1 s0 p0
  s0=$(cpu_of "$SERVER_PID") p0=$(cpu_of "$PROXY_PID")
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$WORK/client.cpu" "$@" >"$WORK/last.log" 2>&1 ||
    { log "FAILED: $*"; tail -20 "$WORK/last.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  printf '%.2f %.2f %.2f\n' "$(awk '{print $1 + $2}' "$WORK/client.cpu")" \
    "$(echo "$(cpu_of "$SERVER_PID") - $s0" | bc -l)" \
    "$(echo "$(cpu_of "$PROXY_PID") - $p0" | bc -l)" >"$WORK/step.cpu"
  echo "$t1 - $t0" | bc -l
}
mbps() { echo "scale=1; $BYTES / 1048576 / $1" | bc -l; }
mounted() { grep -q " $1 " /proc/self/mountinfo; }
wait_mounted() { for _ in $(seq 200); do mounted "$1" && return 0; sleep 0.1; done; return 1; }

export SYNVAULT_PASSWORD=bench RESTIC_PASSWORD=bench
declare -A R C
SERVER_PID= PROXY_PID=
stop_servers() {
  [[ -n $PROXY_PID ]] && kill "$PROXY_PID" 2>/dev/null || true
  [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  PROXY_PID= SERVER_PID=
}
trap 'stop_servers; rm -rf "$WORK/s3root"; fusermount3 -u "$WORK/mnt" 2>/dev/null || true
  umount "$WORK/restore" 2>/dev/null || true' EXIT

for rtt in $RTT_MS; do
  log "round trip ${rtt} ms"
  start_server
  endpoint=http://127.0.0.1:$PORT
  if [[ $rtt != 0 ]]; then
    python3 "$SCRIPT_DIR/delay-proxy.py" $PROXY_PORT $PORT "$(echo "$rtt / 2" | bc -l)" &
    PROXY_PID=$!
    sleep 1
    endpoint=http://127.0.0.1:$PROXY_PORT
  fi
  rm -rf "$WORK/state" "$WORK/restic-cache" && mkdir -p "$WORK/state"
  sv=("$SYNVAULT_BIN" --vault s3://synvault/v --endpoint "$endpoint" --catalog "$WORK/state/catalog"
      --cache-dir "$WORK/state/cache" -q)
  rs=(restic -r "s3:$endpoint/restic/r" --cache-dir "$WORK/restic-cache" -q)

  "${sv[@]}" init >/dev/null
  "${rs[@]}" init >/dev/null
  R[sv.full.$rtt]=$(mbps "$(seconds "${sv[@]}" backup "$WORK/data")")
  C[sv.full.$rtt]=$(cat "$WORK/step.cpu")
  R[rs.full.$rtt]=$(mbps "$(seconds "${rs[@]}" backup "$WORK/data")")
  C[rs.full.$rtt]=$(cat "$WORK/step.cpu")
  change_data
  R[sv.incr.$rtt]=$(mbps "$(seconds "${sv[@]}" backup "$WORK/data")")
  C[sv.incr.$rtt]=$(cat "$WORK/step.cpu")
  R[rs.incr.$rtt]=$(mbps "$(seconds "${rs[@]}" backup "$WORK/data")")
  C[rs.incr.$rtt]=$(cat "$WORK/step.cpu")
  rm -rf "$WORK/state/cache" "$WORK/restore"/*
  R[sv.restore.$rtt]=$(mbps "$(seconds "${sv[@]}" restore latest --target "$WORK/restore/sv")")
  C[sv.restore.$rtt]=$(cat "$WORK/step.cpu")
  R[rs.restore.$rtt]=$(mbps "$(seconds "${rs[@]}" restore latest --target "$WORK/restore/rs")")
  C[rs.restore.$rtt]=$(cat "$WORK/step.cpu")
  diff -rq "$WORK/data" "$WORK/restore/sv" >/dev/null || { log "synvault restore differs"; exit 1; }
  rm -rf "$WORK/restore"/*

  # Sequential read of the large files through each mount, the pack cache emptied first
  # (cold); then through a new mount with the packs in the pack cache (warm), beside a new
  # mount of the same point in a vault on local disk.
  large_bytes=$(du -cb "$WORK"/data/large*.bin | tail -1 | cut -f1)
  read_large() { # read_large VAULT_ARGS...: MB/s of one read of the large files, new mount
    "$@" mount "$WORK/mnt" --point latest & mpid=$!
    wait_mounted "$WORK/mnt"
    local t
    t=$(seconds sh -c "cat $WORK/mnt/large*.bin > /dev/null")
    kill -INT $mpid; wait $mpid || true
    echo "scale=1; $large_bytes / 1048576 / $t" | bc -l
  }
  rm -rf "$WORK/state/cache"
  R[sv.mount_cold.$rtt]=$(read_large "${sv[@]}")
  R[sv.mount_warm.$rtt]=$(read_large "${sv[@]}")
  rm -rf "$WORK/local-vault"
  local_sv=("$SYNVAULT_BIN" --vault "$WORK/local-vault" -q)
  "${local_sv[@]}" init >/dev/null
  "${local_sv[@]}" backup "$WORK/data" >/dev/null
  R[local.mount_warm.$rtt]=$(read_large "${local_sv[@]}")
  "${rs[@]}" mount "$WORK/mnt" & mpid=$!
  wait_mounted "$WORK/mnt"
  cold=$(seconds sh -c "cat $WORK/mnt/snapshots/latest/$WORK/data/large*.bin > /dev/null")
  kill -INT $mpid; wait $mpid || true
  R[rs.mount_cold.$rtt]=$(echo "scale=1; $large_bytes / 1048576 / $cold" | bc -l)
  R[rs.mount_warm.$rtt]=-
  stop_servers
  # The next round starts from the same data.
  make_data
done

printf '\n%s MiB, %s, restic %s, synvault %s\n' "$((BYTES >> 20))" \
  "$SERVER_VERSION" "$(restic version | cut -d' ' -f2)" \
  "$("$SYNVAULT_BIN" --version | cut -d' ' -f2)"
printf '%-16s %6s %12s %12s %8s\n' step rtt_ms synvault_MB/s restic_MB/s ratio
for rtt in $RTT_MS; do
  for step in full incr restore mount_cold mount_warm; do
    a=${R[sv.$step.$rtt]} b=${R[rs.$step.$rtt]}
    ratio=-
    [[ $b != - ]] && ratio=$(echo "scale=2; $a / $b" | bc -l)
    printf '%-16s %6s %12s %12s %8s\n' "$step" "$rtt" "$a" "$b" "$ratio"
  done
done
printf '\nCPU seconds during each step: the tool, the S3 server, the delay proxy (2 cores in all):\n'
printf '%-10s %6s %20s %20s\n' step rtt_ms synvault restic
for rtt in $RTT_MS; do
  for step in full incr restore; do
    printf '%-10s %6s %20s %20s\n' "$step" "$rtt" "${C[sv.$step.$rtt]}" "${C[rs.$step.$rtt]}"
  done
done
printf '\nwarm mount (new mount, packs cached) against a vault on local disk:\n'
printf '%6s %14s %14s %8s\n' rtt_ms bucket_MB/s local_MB/s ratio
for rtt in $RTT_MS; do
  a=${R[sv.mount_warm.$rtt]} b=${R[local.mount_warm.$rtt]}
  printf '%6s %14s %14s %8s\n' "$rtt" "$a" "$b" "$(echo "scale=2; $a / $b" | bc -l)"
done
