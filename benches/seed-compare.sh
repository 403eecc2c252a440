#!/usr/bin/env bash
# Seed disks against their baselines, on the same data in one run:
#   seed prepare  vs  a plain `synvault backup` of the same data   (target >= 0.9x)
#   seed import   vs  `cp -r` of the same disk directories          (target >= 0.8x)
# The data set is the one benches/compare.sh builds (run that first, or set DATA to any
# directory). Disk directories and vaults live under $WORK; page cache is warmed first.
set -euo pipefail

WORK=${WORK:-/var/tmp/synvault-bench}
DATA=${DATA:-$WORK/data}
SEED=${SEED_WORK:-$WORK/seed}
BIN=${SYNVAULT_BIN:-}
export SYNVAULT_PASSWORD=bench-passphrase

die() { echo "seed-compare: $*" >&2; exit 1; }
[ -d "$DATA" ] || die "no data set at $DATA (run benches/compare.sh first or set DATA)"
if [ -z "$BIN" ]; then
  cargo build --release --quiet
  BIN=$(pwd)/target/release/synvault
fi

# Wall seconds of a command (its output goes to $SEED/<name>.log).
timed() {
  local name=$1; shift
  sync
  local start end
  start=$(date +%s.%N)
  "$@" >"$SEED/$name.log" 2>&1 || { tail -5 "$SEED/$name.log"; die "$name failed"; }
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}
mbps() { echo "scale=1; $1 / 1000000 / $2" | bc -l; }

rm -rf "$SEED"
mkdir -p "$SEED"
bytes=$(du -sb --apparent-size "$DATA" | cut -f1)
tar cf - -C "$DATA" . | cat >/dev/null   # warm the page cache (tar skips reads into /dev/null)

"$BIN" --vault "$SEED/vault-backup" init >/dev/null
"$BIN" --vault "$SEED/vault-seed" init >/dev/null
t_backup=$(timed backup "$BIN" --vault "$SEED/vault-backup" backup "$DATA")
t_prepare=$(timed prepare "$BIN" --vault "$SEED/vault-seed" seed prepare --job bench \
  --disk "$SEED/disk1" --disk "$SEED/disk2" --disk-size "$(( bytes / 4 / 1048576 + 64 ))M" "$DATA")
disks=()
for d in "$SEED/disk1" "$SEED/disk2"; do [ -e "$d/synvault-journal.json" ] && disks+=("$d"); done
disk_bytes=$(du -sb "${disks[@]}" | awk '{ s += $1 } END { print s }')
mkdir -p "$SEED/cp-target"
t_cp=$(timed cp-r cp -r "${disks[@]}" "$SEED/cp-target")
rm -rf "$SEED/cp-target"
mkdir -p "$SEED/cp-target"
# The import makes its packs durable before the catalog names them; so does this copy.
t_cp_sync=$(timed cp-r-sync sh -c 'cp -r "$@" && sync' sh "${disks[@]}" "$SEED/cp-target")
rm -rf "$SEED/cp-target"
t_import=$(timed import "$BIN" --vault "$SEED/vault-seed" seed import --job bench "${disks[@]}")
grep -q imported "$SEED/import.log" || die "import did not complete the job"

printf '\nData set %s: %s bytes; seed disks: %s bytes on %s disks\n' "$DATA" "$bytes" "$disk_bytes" "${#disks[@]}"
printf '%-14s %8s %10s\n' step seconds MB/s
printf '%-14s %8.2f %10s\n' backup "$t_backup" "$(mbps "$bytes" "$t_backup")"
printf '%-14s %8.2f %10s\n' "seed prepare" "$t_prepare" "$(mbps "$bytes" "$t_prepare")"
printf '%-14s %8.2f %10s\n' "cp -r disks" "$t_cp" "$(mbps "$disk_bytes" "$t_cp")"
printf '%-14s %8.2f %10s\n' "cp -r + sync" "$t_cp_sync" "$(mbps "$disk_bytes" "$t_cp_sync")"
printf '%-14s %8.2f %10s\n' "seed import" "$t_import" "$(mbps "$disk_bytes" "$t_import")"
printf 'prepare vs backup: %.2fx throughput (target >= 0.9)\n' "$(echo "$t_backup / $t_prepare" | bc -l)"
printf 'import vs cp -r:   %.2fx throughput (target >= 0.8)\n' "$(echo "$t_cp / $t_import" | bc -l)"
printf 'import vs cp -r + sync: %.2fx throughput\n' "$(echo "$t_cp_sync / $t_import" | bc -l)"
