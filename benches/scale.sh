#!/usr/bin/env bash
# How the cost of everyday commands grows with the vault (issue 11): wall seconds and peak RSS
# of ls, cat, restore, backup, points, stats and the mount, on one real vault whose catalog is
# grown with synthetic rows (blocks in packs, file versions, points) where the data itself
# does not matter, at each of SCALES blocks. The cost should be flat, not linear.
#
#   SV=target/release/synvault benches/scale.sh            # SCALES="100000 1000000 10000000"
#   SCALES="100000" POINTS=1000 BIG_MIB=64 benches/scale.sh  # a quick run
#
# Needs sqlite3 and /usr/bin/time; the mount rows need /dev/fuse (root). Prints one table.
set -euo pipefail
export TZ=UTC SYNVAULT_PASSWORD=bench-passphrase
SV=$(realpath "${SV:-target/release/synvault}")
SCALES=${SCALES:-"100000 1000000 10000000"}
POINTS=${POINTS:-1000}       # points in the vault (the real one plus synthetic ones)
BIG_MIB=${BIG_MIB:-1024}     # the large file read through the mount
CACHE=${CACHE:-256M}         # the mount's --cache-size
W=${WORK:-/var/tmp/synvault-scale}
[[ $W == /* && $W != / ]] || { echo "WORK must be absolute" >&2; exit 2; }
for tool in sqlite3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done

rm -rf "$W"; mkdir -p "$W"
# The real data: 4,400 small files in 110 directories, and one large file.
python3 - "$W/src" "$BIG_MIB" <<'EOF'
import os, random, sys
root, big = sys.argv[1], int(sys.argv[2])
rng = random.Random(11)
for d in range(110):
    path = os.path.join(root, f"dir{d:03}")
    os.makedirs(path)
    for f in range(40):
        with open(os.path.join(path, f"f{f:02}.txt"), "wb") as out:
            out.write(rng.randbytes(rng.randint(200, 6000)))
with open(os.path.join(root, "big.bin"), "wb") as out:
    chunk = rng.randbytes(1 << 20)
    for i in range(big):
        out.write(bytes([i & 255]) + chunk[1:])
EOF
mkdir -p "$W/small"; head -c 80000 /dev/urandom >"$W/small/new.bin"
"$SV" --vault "$W/base" init >/dev/null
"$SV" --vault "$W/base" backup "$W/src" >/dev/null
read -r POINT POINT_TIME < <("$SV" --vault "$W/base" points --json |
  python3 -c 'import json,sys; p = json.load(sys.stdin)[0]; print(p["id"], p["time"])')

# Grows the catalog of vault $1 to $2 blocks (and a quarter as many file versions, one pack
# per 32 blocks) and $POINTS points, all synthetic.
grow() {
  local db=$1/catalog.db n=$2
  sqlite3 "$db" >/dev/null <<EOF
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
BEGIN;
CREATE TEMP TABLE n(x INTEGER PRIMARY KEY);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $n)
INSERT INTO n SELECT x FROM c;
CREATE TEMP TABLE first(id INTEGER);
INSERT INTO first SELECT COALESCE(MAX(id), 0) + 1 FROM packs;
INSERT INTO packs (id, name, size, state, seed_job, kind)
  SELECT (SELECT id FROM first) + x, randomblob(32), 33554432, 'stored', NULL, 'data'
  FROM n WHERE x <= ($n + 31) / 32;
INSERT INTO blocks (id, pack, offset, stored_len, raw_len)
  SELECT randomblob(32), (SELECT id FROM first) + 1 + (x - 1) / 32, ((x - 1) % 32) * 1048576,
         1048576, 1048576
  FROM n;
INSERT INTO contents (id, size, block_list) SELECT randomblob(32), 1048576, X'' FROM n
  WHERE x % 4 = 0;
COMMIT;
EOF
  python3 - "$POINTS" "$POINT" <<'EOF' | sqlite3 "$db"
import sys
points, real = int(sys.argv[1]), sys.argv[2]
print("BEGIN;")
print(f"CREATE TEMP TABLE tmpl AS SELECT * FROM points WHERE id = '{real}';")
for i in range(1, points):
    print(f"UPDATE tmpl SET id = printf('%016x', {i} + 1048576), "
          f"started_ns = (SELECT started_ns FROM points WHERE id = '{real}') - {i} * 86400000000000, "
          f"finished_ns = (SELECT finished_ns FROM points WHERE id = '{real}') - {i} * 86400000000000;")
    print("INSERT INTO points SELECT * FROM tmpl;")
print("COMMIT;")
EOF
}

# Runs a command; prints "seconds peak-MiB".
timed() {
  /usr/bin/time -f "%e %M" -o "$W/time" "$@" >/dev/null 2>"$W/err" || { cat "$W/err" >&2; return 1; }
  awk '{printf "%.2f s %5.0f MiB", $1, $2 / 1024}' "$W/time"
}

# Mounts vault $1 on $2 with --cache-size; sets MOUNT_PID and READY (seconds until the
# layout answers).
mount_ready() {
  local start end
  start=$(date +%s.%N)
  "$SV" --vault "$1" mount --cache-size "$CACHE" "$2" >/dev/null 2>"$W/mount.err" &
  MOUNT_PID=$!
  until [ -e "$2/latest" ]; do
    kill -0 "$MOUNT_PID" 2>/dev/null || { cat "$W/mount.err" >&2; return 1; }
    sleep 0.01
  done
  end=$(date +%s.%N)
  READY=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.2f", b - a}')
}

unmount() {
  fusermount3 -u "$1" 2>/dev/null || fusermount -u "$1" 2>/dev/null || umount "$1" 2>/dev/null || true
  wait "$MOUNT_PID" 2>/dev/null || true
}
MOUNT_PID=
trap 'for m in "$W"/mnt-*; do [ -d "$m" ] && unmount "$m"; done' EXIT

printf '%-11s %-22s %s\n' "blocks" "command" "wall, peak RSS"
for n in $SCALES; do
  v="$W/v$n"; cp -a "$W/base" "$v"; grow "$v" "$n"
  "$SV" --vault "$v" points >/dev/null # brings the schema up to date; warms the page cache
  row() { printf '%-11s %-22s %s\n' "$n" "$1" "$2"; }
  row "ls POINT" "$(timed "$SV" --vault "$v" ls "$POINT")"
  row "ls -r POINT" "$(timed "$SV" --vault "$v" ls -r "$POINT")"
  row "cat small file" "$(timed "$SV" --vault "$v" cat "$POINT:dir050/f07.txt")"
  rm -rf "$W/restored"
  row "restore a directory" "$(timed "$SV" --vault "$v" restore "$POINT:dir050" --target "$W/restored")"
  row "backup 80 KiB" "$(timed "$SV" --vault "$v" backup "$W/small")"
  row "points ($POINTS)" "$(timed "$SV" --vault "$v" points)"
  row "points --json" "$(timed "$SV" --vault "$v" points --json)"
  row "stats" "$(timed "$SV" --vault "$v" stats)"
  if [ -c /dev/fuse ]; then
    m="$W/mnt-$n"; mkdir -p "$m"
    mount_ready "$v" "$m"
    list=$( { /usr/bin/time -f "%e" ls "$m/points" >/dev/null; } 2>&1 )
    read_s=$( { /usr/bin/time -f "%e" cat "$m/points/$POINT_TIME/big.bin" >/dev/null; } 2>&1 )
    hwm=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$MOUNT_PID/status")
    unmount "$m"
    row "mount: ready" "${READY} s"
    row "mount: ls points/" "${list} s"
    row "mount: read ${BIG_MIB} MiB" "${read_s} s, mount peak ${hwm} MiB (cache ${CACHE})"
  fi
  rm -rf "$v"
done
