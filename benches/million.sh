#!/usr/bin/env bash
# A point of a million files (issue 11): full backup, unchanged incremental, `ls -r | wc -l`,
# and through the mount `find | wc -l` and `du -s`, with wall seconds and peak RSS; restic's
# full and unchanged backups of the same tree in the same run.
#
#   SV=target/release/synvault benches/million.sh     # FILES=1000000 (1,000 directories)
#
# Needs restic, /usr/bin/time and /dev/fuse (root). The tree is generated once from a fixed
# seed under $WORK/tree and kept for the next run (delete $WORK to start over).
set -euo pipefail
export TZ=UTC SYNVAULT_PASSWORD=bench-passphrase RESTIC_PASSWORD=bench-passphrase
SV=$(realpath "${SV:-target/release/synvault}")
FILES=${FILES:-1000000}
W=${WORK:-/var/tmp/synvault-million}
[[ $W == /* && $W != / ]] || { echo "WORK must be absolute" >&2; exit 2; }
command -v restic >/dev/null || { echo "needs restic" >&2; exit 2; }

mkdir -p "$W"
if [ ! -f "$W/tree.done" ]; then
  rm -rf "$W/tree"
  python3 - "$W/tree" "$FILES" <<'EOF'
import os, random, sys
root, files = sys.argv[1], int(sys.argv[2])
rng = random.Random(1_000_000)
per_dir = 1000
for d in range((files + per_dir - 1) // per_dir):
    path = os.path.join(root, f"d{d // 100:02}", f"d{d:04}")
    os.makedirs(path)
    for f in range(min(per_dir, files - d * per_dir)):
        with open(os.path.join(path, f"f{f:03}"), "wb") as out:
            out.write(rng.randbytes(rng.randint(16, 1024)))
EOF
  touch "$W/tree.done"
fi
rm -rf "$W/sv" "$W/restic" "$W/mnt"; mkdir -p "$W/mnt"

# Runs a command; prints "seconds s, peak MiB".
timed() {
  /usr/bin/time -f "%e %M" -o "$W/time" "$@" >"$W/out" 2>"$W/err" || { cat "$W/err" >&2; return 1; }
  awk '{printf "%7.1f s %6.0f MiB", $1, $2 / 1024}' "$W/time"
}
row() { printf '%-34s %s\n' "$1" "$2"; }

sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
"$SV" --vault "$W/sv" init >/dev/null
row "synvault backup (full)" "$(timed "$SV" --vault "$W/sv" backup "$W/tree")"
row "synvault backup (unchanged)" "$(timed "$SV" --vault "$W/sv" backup "$W/tree")"
row "synvault ls -r latest" "$(timed "$SV" --vault "$W/sv" ls -r latest), $(wc -l <"$W/out") lines"

sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
restic init -r "$W/restic" >/dev/null 2>&1
row "restic backup (full)" "$(timed restic -r "$W/restic" --no-cache backup "$W/tree")"
row "restic backup (unchanged)" "$(timed restic -r "$W/restic" --no-cache backup "$W/tree")"

"$SV" --vault "$W/sv" mount --point latest "$W/mnt" 2>"$W/mount.err" &
MOUNT_PID=$!
trap 'fusermount3 -u "$W/mnt" 2>/dev/null || umount "$W/mnt" 2>/dev/null || true' EXIT
until mountpoint -q "$W/mnt"; do
  kill -0 "$MOUNT_PID" 2>/dev/null || { cat "$W/mount.err" >&2; exit 1; }
  sleep 0.05
done
row "mount: find | wc -l" "$( { /usr/bin/time -f "%e s" find "$W/mnt" | wc -l >"$W/out"; } 2>&1 ), $(cat "$W/out") lines"
row "mount: du -s" "$( { /usr/bin/time -f "%e s" du -s "$W/mnt" >"$W/out"; } 2>&1 )"
row "mount: peak RSS after both" "$(awk '/VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$MOUNT_PID/status") (cache 256M default)"
fusermount3 -u "$W/mnt" 2>/dev/null || umount "$W/mnt"
wait "$MOUNT_PID" || true
