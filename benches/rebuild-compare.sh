#!/usr/bin/env bash
# Catalog loss: `synvault catalog rebuild` vs `restic repair index` (`rebuild-index` in
# restic < 0.16) on the data set of compare.sh, in the same run.
#
#   sudo benches/rebuild-compare.sh                        # 1 GiB data set, 3 points each, ~2 min
#   sudo DATA_GB=4 SYNVAULT_BIN=/path/to/synvault benches/rebuild-compare.sh
#
# Environment knobs (all optional):
#   DATA_GB       data set size in GiB, may be a float (default 1)
#   WORK          work dir: data, repos, logs, results (default /var/tmp/synvault-rebuild)
#   SYNVAULT_BIN  use this binary instead of `cargo build --release`
#   CHANGE_PCT    share of bytes changed before each incremental (default 2)
#   LARGE_FILES   number of large files in the data set   (default 4)
#   SMALL_PCT     share of the data set made of small files (default 60)
#   RUNS          rebuilds per tool, interleaved; the fastest is reported (default 3)
#
# What it does: builds compare.sh's data set (its own functions, sourced from compare.sh, so
# the data is the same by construction), then makes three points with synvault and three
# snapshots with restic of the same data: a full backup, a change (compare.sh's
# apply_change), an incremental, another change, another incremental. Then:
#   synvault: deletes catalog.db, catalog.db-wal and catalog.db-shm and times
#             `synvault catalog rebuild --json`; checks points_recovered == 3, no point
#             lost, and that `synvault points` lists the same 3 ids as before the loss.
#   restic:   times `restic repair index` (or `rebuild-index`) twice: as is (the index is
#             still there, so only packs it does not list are read) and with
#             --read-all-packs (every pack header is read, the analogue of a rebuild from the
#             store alone); each run with --no-cache. Checks `restic snapshots` lists 3.
# Every timed step runs under /usr/bin/time -v (compare.sh's `measure`: wall seconds, peak
# RSS, other-load warning). The rebuilds are repeated RUNS times, the tools interleaved,
# and each tool's fastest run is reported (with that run's peak RSS; the highest peak RSS of
# all runs is printed as well). Prints a table and writes $WORK/rebuild.csv.
#
# Needs root (apt-get). See benches/README.md.
set -euo pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# compare.sh reads these at load time.
export DATA_GB=${DATA_GB:-1}
export WORK=${WORK:-/var/tmp/synvault-rebuild}
export TOOLS="synvault restic"

# Load compare.sh's settings and functions without running it: its last line is `main "$@"`.
[[ $(tail -n1 "$SCRIPT_DIR/compare.sh") == 'main "$@"' ]] ||
  { echo "compare.sh no longer ends with main \"\$@\"; update $0" >&2; exit 1; }
# shellcheck source=compare.sh
source <(sed '$d' "$SCRIPT_DIR/compare.sh")

RCSV=$WORK/rebuild.csv
POINTS=3
RUNS=${RUNS:-3}

# The subcommand this restic has: `repair index` (>= 0.16) or `rebuild-index`.
restic_rebuild_cmd() {
  if restic help repair 2>/dev/null | grep -q 'index'; then
    RESTIC_REBUILD=(repair index)
  else
    RESTIC_REBUILD=(rebuild-index)
  fi
}

# peak RSS in MiB of the last measured step (compare.sh's RSS_MB is KiB / 1024, i.e. MiB)
rss_mib() { awk '/Maximum resident set size/ { printf "%.1f", $NF / 1024 }' "$LOGS/$1.time"; }

# keep_fastest TOOL STEP: after `measure STEP`, keep the fastest run's seconds and RSS
keep_fastest() {
  local t=$1 rss
  rss=$(rss_mib "$2")
  R[$t.runs]+="$WALL "
  if [[ -z ${R[$t.rebuild_s]:-} ]] || awk -v a="$WALL" -v b="${R[$t.rebuild_s]}" 'BEGIN { exit !(a < b) }'; then
    R[$t.rebuild_s]=$WALL
    R[$t.rebuild_rss]=$rss
  fi
  if [[ -z ${R[$t.rss_max]:-} ]] || awk -v a="$rss" -v b="${R[$t.rss_max]}" 'BEGIN { exit !(a > b) }'; then
    R[$t.rss_max]=$rss
  fi
}

make_points() {
  local t
  for t in $TOOLS; do "${t}_init"; "${t}_backup" full; done
  apply_change
  warm_cache
  for t in $TOOLS; do "${t}_backup" incr1; done
  apply_change
  warm_cache
  for t in $TOOLS; do "${t}_backup" incr2; done
}

before_loss() {
  "$SYNVAULT_BIN" --vault "$SYNVAULT_REPO" points --json >"$LOGS/synvault-points-before.json"
  SV_BEFORE=$(jq -r '.[].id' "$LOGS/synvault-points-before.json" | sort | tr '\n' ' ')
  [[ $(wc -w <<<"$SV_BEFORE") -eq $POINTS ]] || die "synvault has $(wc -w <<<"$SV_BEFORE") points before the loss, expected $POINTS"
  R[synvault.repo_bytes]=$(du -sb "$SYNVAULT_REPO" | cut -f1)
  R[synvault.store_bytes]=$(du -sb "$SYNVAULT_REPO/packs" | cut -f1)
  R[synvault.catalog_bytes]=$(cat "$SYNVAULT_REPO"/catalog.db* | wc -c)
  R[restic.repo_bytes]=$(repo_bytes restic)
  R[restic.store_bytes]=$(du -sb "$RESTIC_REPO/data" | cut -f1)
  restic_rebuild_cmd
}

rebuild_synvault() {
  local i=$1 after rep name=synvault-rebuild-$1
  rm -f "$SYNVAULT_REPO/catalog.db" "$SYNVAULT_REPO/catalog.db-wal" "$SYNVAULT_REPO/catalog.db-shm"
  measure "$name" "$SYNVAULT_BIN" --vault "$SYNVAULT_REPO" catalog rebuild --json
  keep_fastest synvault "$name"
  rep=$LOGS/$name.log # stdout+stderr; the JSON report is the block from "{" to "}"
  sed -n '/^{$/,/^}$/p' "$rep" >"$LOGS/$name.json"
  jq -e . "$LOGS/$name.json" >/dev/null || die "no JSON report in $rep"
  R[synvault.note]=$(jq -r '"\(.points_recovered) points, \(.points_lost | length) lost, \(.packs) packs, \(.metadata_packs) metadata packs, \(.blocks) blocks"' \
    "$LOGS/$name.json")
  R[synvault.own]+="$(jq -r '.seconds * 100 | round / 100' "$LOGS/$name.json") "
  [[ $(jq '.points_recovered' "$LOGS/$name.json") -eq $POINTS ]] ||
    die "rebuild $i recovered $(jq '.points_recovered' "$LOGS/$name.json") points, expected $POINTS"
  [[ $(jq '.points_lost | length' "$LOGS/$name.json") -eq 0 ]] || die "rebuild $i lost points: see $rep"
  "$SYNVAULT_BIN" --vault "$SYNVAULT_REPO" points --json >"$LOGS/synvault-points-after-$i.json"
  after=$(jq -r '.[].id' "$LOGS/synvault-points-after-$i.json" | sort | tr '\n' ' ')
  [[ $after == "$SV_BEFORE" ]] || die "points after rebuild $i ($after) differ from before ($SV_BEFORE)"
  "$SYNVAULT_BIN" --vault "$SYNVAULT_REPO" points >"$LOGS/synvault-points-after-$i.txt"
  log "synvault rebuild $i: ${R[synvault.note]}; synvault points lists the same $POINTS ids"
}

rebuild_restic() {
  local i=$1 n mode name
  for mode in plain all; do
    local extra=()
    [[ $mode == all ]] && extra=(--read-all-packs)
    name=restic-rebuild-$mode-$i
    measure "$name" restic "${RESTIC_FLAGS[@]}" --no-cache "${RESTIC_REBUILD[@]}" "${extra[@]}"
    keep_fastest "restic-$mode" "$name"
    n=$(restic "${RESTIC_FLAGS[@]}" snapshots --json | jq length)
    [[ $n -eq $POINTS ]] || die "restic lists $n snapshots after $mode rebuild $i, expected $POINTS"
  done
  log "restic rebuild $i: ${RESTIC_REBUILD[*]} done, $POINTS snapshots listed"
}

rebuild_report() {
  local sv rv
  sv=$(synvault_version)
  rv=$(restic_version)
  {
    echo "tool,command,seconds,peak_RSS_MiB,max_RSS_MiB,runs_s,repo_MB,store_MB,version"
    printf '%s,%s,%s,%s,%s,%s,%s,%s,%s\n' synvault "catalog rebuild" "${R[synvault.rebuild_s]}" \
      "${R[synvault.rebuild_rss]}" "${R[synvault.rss_max]}" "${R[synvault.runs]% }" "$(mb "${R[synvault.repo_bytes]}")" \
      "$(mb "${R[synvault.store_bytes]}")" "${sv//,/;}"
    printf '%s,%s,%s,%s,%s,%s,%s,%s,%s\n' restic "${RESTIC_REBUILD[*]}" "${R[restic-plain.rebuild_s]}" \
      "${R[restic-plain.rebuild_rss]}" "${R[restic-plain.rss_max]}" "${R[restic-plain.runs]% }" "$(mb "${R[restic.repo_bytes]}")" \
      "$(mb "${R[restic.store_bytes]}")" "${rv//,/;} (${R[restic.note]})"
    printf '%s,%s,%s,%s,%s,%s,%s,%s,%s\n' restic "${RESTIC_REBUILD[*]} --read-all-packs" \
      "${R[restic-all.rebuild_s]}" "${R[restic-all.rebuild_rss]}" "${R[restic-all.rss_max]}" "${R[restic-all.runs]% }" "$(mb "${R[restic.repo_bytes]}")" \
      "$(mb "${R[restic.store_bytes]}")" "${rv//,/;}"
  } >"$RCSV"
  echo
  echo "Data set: ${R[data.files]} files, $(mb "${R[data.bytes0]}") MB at the full backup," \
    "$(mb "${R[data.bytes1]}") MB at the last; $POINTS points per tool (MB = 10^6 bytes)"
  [[ -z ${R[busy.warn]:-} ]] || echo "${R[busy.warn]}"
  echo "Host: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
  echo "seconds = wall time under /usr/bin/time -v of the fastest of $RUNS runs (runs_s: every run),"
  echo "peak_RSS_MiB = that run's peak RSS, max_RSS_MiB = the highest of all runs;"
  echo "repo_MB = du -sb of the whole repository before the loss (synvault with its catalog);"
  echo "store_MB = synvault's packs/ and restic's data/."
  echo "synvault rebuild: ${R[synvault.note]}; its own seconds per run: ${R[synvault.own]% }" \
    "(catalog was $(mb "${R[synvault.catalog_bytes]}") MB)"
  echo
  column -t -s, "$RCSV"
  echo
  echo "CSV: $RCSV   logs: $LOGS"
}

rebuild_main() {
  check_args
  install_deps
  command -v jq >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null; }
  build_synvault
  "$SYNVAULT_BIN" catalog rebuild --help >/dev/null 2>&1 ||
    die "$SYNVAULT_BIN has no \`catalog rebuild\` (older than 55ff403?)"
  prepare_work
  cd "$WORK"
  restic_setup_flags
  build_data
  warm_cache
  check_idle "at start"
  make_points
  before_loss
  local i
  for ((i = 1; i <= RUNS; i++)); do
    if ((i % 2)); then rebuild_synvault "$i"; rebuild_restic "$i"; else rebuild_restic "$i"; rebuild_synvault "$i"; fi
  done
  check_idle "at end"
  rebuild_report
}

rebuild_main "$@"
