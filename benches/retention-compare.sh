#!/usr/bin/env bash
# Retention: synvault `forget` + `prune` vs `restic forget --prune`, same history, same policy,
# in the same run (issue 10, acceptance item 7).
#
#   sudo benches/retention-compare.sh                          # 500 points over ~500 MB
#   sudo POINTS=20 TARGET_MB=30 benches/retention-compare.sh   # smoke run, a minute or two
#   sudo SYNVAULT_BIN=/path/to/synvault POINTS=250 benches/retention-compare.sh
#
# Environment knobs (all optional):
#   TARGET_MB     size of the source tree in MB (10^6 bytes)            (default 500)
#   POINTS        points (backups) in the history                       (default 500)
#   START         UTC time of the first point                           (default "2023-01-01 00:00:00")
#   SPAN_DAYS     days from the first point to the last                 (default 1095, three years)
#   SEED          seed of the changes between points (same seed = same history) (default 1)
#   APPENDS       files appended to per step (1-16 KiB each)            (default 3)
#   ADDS          small files added per step                            (default 1)
#   DELETES       files deleted per step                                (default 1)
#   POLICY        the retention rules, given to both tools
#                 (default "--keep-daily 7 --keep-weekly 5 --keep-monthly 12 --keep-yearly 3")
#   SV_PRUNE_ARGS extra arguments of `synvault prune` (default "--allow-deleting-most": it only
#                 skips the confirmation asked before removing more than half of the store;
#                 restic asks for none. The report says whether it would have been asked.)
#   IDLE_WAIT     seconds to wait, before the timed steps, for the CPUs to be under 10% busy
#                 (default 300; it times anyway after that, and warns)
#   WORK          work dir: source tree, repositories, logs   (default /var/tmp/synvault-retention)
#   SYNVAULT_BIN  use this binary instead of `cargo build --release`
#
# What it does:
#   1. History (not timed in the result; its duration is printed). Copies real files (< 4 MiB,
#      every k-th file of /usr/share, /usr/lib and /usr/include in path order, so the tree
#      spans all three) into $WORK/src until TARGET_MB is reached. Then POINTS times, at
#      times spread evenly from START over SPAN_DAYS: backs up $WORK/src into a synvault vault
#      (`synvault backup --time T`) and into a restic repository (`restic backup --time T`),
#      then changes the tree a little: APPENDS files get 1-16 KiB (a slice of a real file)
#      appended, ADDS new files are created (a line plus a copy of a real file < 256 KiB),
#      DELETES files are removed. The choices come from bash's RANDOM seeded with SEED and a
#      sorted file list, so the same SEED on the same machine gives the same history. Both
#      tools hold the same points at the same times (TZ=UTC, so restic's times are UTC too).
#   2. Timed, each step under /usr/bin/time -v (compare.sh's `measure`: wall seconds, peak
#      RSS, other-load warning): synvault `policy set $POLICY`, `forget --json`,
#      `prune --json $SV_PRUNE_ARGS`; then `restic forget --prune $POLICY` (restic's default
#      --max-unused 5%; synvault's default --max-unused is 10%).
#   3. Checks: points before/after for both, and that both kept the same point times (a
#      difference is printed, not fatal). Repository sizes (du -sb of the whole vault / repo)
#      before and after. synvault holds the writer lock for the whole of forget and of prune,
#      so the lock time reported is forget + prune wall time.
#   4. Prints a table and the targets of issue 10 (>= 5x faster than restic, peak RSS
#      <= 200 MiB, writer lock <= 5 s in total), and writes $WORK/retention.csv.
#
# Needs root (apt-get). See benches/README.md.
set -euo pipefail
export LC_ALL=C
export TZ=UTC # restic reads --time in local time and buckets by it; make both tools UTC

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# compare.sh reads these at load time.
export WORK=${WORK:-/var/tmp/synvault-retention}
export TOOLS="synvault restic"
export DATA_GB=1 # unused here; compare.sh only checks it is > 0

# Load compare.sh's settings and functions without running it: its last line is `main "$@"`.
[[ $(tail -n1 "$SCRIPT_DIR/compare.sh") == 'main "$@"' ]] ||
  { echo "compare.sh no longer ends with main \"\$@\"; update $0" >&2; exit 1; }
# shellcheck source=compare.sh
source <(sed '$d' "$SCRIPT_DIR/compare.sh")

TARGET_MB=${TARGET_MB:-500}
POINTS=${POINTS:-500}
START=${START:-"2023-01-01 00:00:00"}
SPAN_DAYS=${SPAN_DAYS:-1095}
SEED=${SEED:-1}
APPENDS=${APPENDS:-3}
ADDS=${ADDS:-1}
DELETES=${DELETES:-1}
POLICY=${POLICY:-"--keep-daily 7 --keep-weekly 5 --keep-monthly 12 --keep-yearly 3"}
SV_PRUNE_ARGS=${SV_PRUNE_ARGS:---allow-deleting-most}
IDLE_WAIT=${IDLE_WAIT:-300}
read -r -a POLICY_ARGS <<<"$POLICY"
read -r -a SV_PRUNE_EXTRA <<<"$SV_PRUNE_ARGS"

SRC=$WORK/src
POOL=$WORK/pool.txt        # real files the changes take their bytes from
RCSV=$WORK/retention.csv

check_args_ret() {
  [[ $EUID -eq 0 ]] || die "run as root (apt-get needs it)"
  [[ $TARGET_MB =~ ^[0-9]+$ && $TARGET_MB -gt 0 ]] || die "TARGET_MB must be a positive integer"
  [[ $POINTS =~ ^[0-9]+$ && $POINTS -ge 2 ]] || die "POINTS must be an integer >= 2"
  [[ $SEED =~ ^[0-9]+$ ]] || die "SEED must be a non-negative integer"
  [[ $WORK == /* && $WORK != / ]] || die "WORK must be an absolute path other than /"
  date -u -d "$START" +%s >/dev/null 2>&1 || die "START=$START is not a date"
}

install_deps_ret() {
  install_deps # compare.sh: time, restic
  if ! command -v jq >/dev/null; then
    log "installing jq"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null
  fi
}

prepare_work_ret() {
  mkdir -p "$WORK"
  rm -rf "$SRC" "$REPOS" "$LOGS" "$RESTIC_CACHE" "$RCSV" "$POOL" "$WORK/take.txt"
  mkdir -p "$SRC" "$REPOS" "$LOGS" "$RESTIC_CACHE"
  # Source + two repositories of at most about its size each, plus slack.
  local need avail
  need=$((TARGET_MB * 1000000 * 4))
  avail=$(df --output=avail -B1 "$WORK" | tail -n1)
  ((avail > need)) || die "need ~$(mb "$need") MB free in $WORK, have $(mb "$avail") MB"
}

# ---------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------
build_src() {
  local budget=$((TARGET_MB * 1000000)) k
  # "size<TAB>path" of regular files < 4 MiB, sorted by path (names with tab/newline skipped).
  (cd / && find usr/share usr/lib usr/include -xdev -type f -size -4096k \
    ! -name $'*\t*' ! -name $'*\n*' -printf '%s\t%p\n') | sort -t$'\t' -k2 >"$POOL"
  [[ -s $POOL ]] || die "no files found under /usr/share, /usr/lib, /usr/include"
  # Every k-th file, so the tree spans all three trees; k from the pool's total size.
  k=$(awk -F'\t' -v b="$budget" '{ s += $1 } END { k = int(s / b); print (k < 1 ? 1 : k) }' "$POOL")
  awk -F'\t' -v left="$budget" -v k="$k" \
    'NR % k == 0 { if (sum >= left) exit; sum += $1; print $2 }' "$POOL" >"$WORK/take.txt"
  # tar exit 1 = "file changed while reading" (e.g. apt running); harmless here.
  (tar -C / --verbatim-files-from -T "$WORK/take.txt" -cf - || [[ $? -eq 1 ]]) | tar -C "$SRC" -xf -
  R[src.files]=$(find "$SRC" -type f | wc -l)
  R[src.bytes]=$(file_bytes "$SRC")
  log "source tree: ${R[src.files]} files, $(mb "${R[src.bytes]}") MB (every k-th file of /usr, k = $k)"
  # The pool the changes draw from: path only, files of 1 B .. 256 KiB.
  awk -F'\t' '$1 > 0 && $1 <= 262144 { print "/" $2 }' "$POOL" >"$POOL.small"
  mapfile -t POOLFILES <"$POOL.small"
  ((${#POOLFILES[@]})) || die "no pool files of 1 B .. 256 KiB"
  # The files of the tree, in path order; kept up to date by change_step.
  mapfile -t FILES < <(cd "$SRC" && find . -type f | sort)
}

# rand N: REPLY = 0 .. N-1 (N up to 2^30). Not $(...): a subshell would not advance RANDOM.
rand() { REPLY=$(((RANDOM << 15 | RANDOM) % $1)); }

# change_step I: the deterministic change after point I.
change_step() {
  local i=$1 j f p n off size new
  for ((j = 0; j < APPENDS; j++)); do
    rand ${#FILES[@]}; f=$SRC/${FILES[REPLY]}
    rand ${#POOLFILES[@]}; p=${POOLFILES[REPLY]}
    size=$(stat -c %s "$p")
    rand 15361; n=$((1024 + REPLY))                      # 1-16 KiB
    rand "$size"; off=$REPLY
    printf 'point %d append %d\n' "$i" "$j" >>"$f"
    dd if="$p" of="$f" oflag=append conv=notrunc iflag=skip_bytes,count_bytes \
      skip="$off" count="$n" status=none
  done
  for ((j = 0; j < ADDS; j++)); do
    rand ${#POOLFILES[@]}; p=${POOLFILES[REPLY]}
    new=./added/p$i-$j-${p##*/}
    mkdir -p "$SRC/added"
    { printf 'added at point %d\n' "$i"; cat "$p"; } >"$SRC/$new"
    FILES+=("$new")
  done
  for ((j = 0; j < DELETES && ${#FILES[@]} > 1; j++)); do
    rand ${#FILES[@]}; n=$REPLY
    rm -f "$SRC/${FILES[n]}"
    FILES[n]=${FILES[-1]} # swap with the last, drop the last
    unset 'FILES[-1]'
  done
}

now() { date +%s.%N; }
add_time() { R[$1]=$(awk -v a="${R[$1]:-0}" -v b="$2" -v c="$3" 'BEGIN { printf "%.3f", a + c - b }'); }

build_history() {
  local i t0 t1 ts start step epoch
  start=$(date -u -d "$START" +%s)
  step=$(awk -v d="$SPAN_DAYS" -v p="$POINTS" 'BEGIN { printf "%.0f", d * 86400 / (p - 1) }')
  log "history: $POINTS points from $START UTC, one every $(awk -v s="$step" 'BEGIN { printf "%.2f", s / 86400 }') days"
  RANDOM=$SEED
  "$SYNVAULT_BIN" --vault "$SYNVAULT_REPO" init >"$LOGS/synvault-init.log" 2>&1
  restic "${RESTIC_FLAGS[@]}" init "${RESTIC_INIT_FLAGS[@]}" >"$LOGS/restic-init.log" 2>&1
  R[history.t0]=$(now)
  for ((i = 0; i < POINTS; i++)); do
    epoch=$((start + i * step))
    ts=$(date -u -d "@$epoch" '+%Y-%m-%d %H:%M:%S')
    ((i == 0)) || change_step "$i"
    t0=$(now)
    "$SYNVAULT_BIN" --vault "$SYNVAULT_REPO" backup --time "$ts" "$SRC" >>"$LOGS/history-synvault.log" 2>&1 ||
      die "synvault backup $i ($ts) failed; see $LOGS/history-synvault.log"
    t1=$(now)
    add_time history.synvault_s "$t0" "$t1"
    restic "${RESTIC_FLAGS[@]}" backup -q --time "$ts" "$SRC" >>"$LOGS/history-restic.log" 2>&1 ||
      die "restic backup $i ($ts) failed; see $LOGS/history-restic.log"
    add_time history.restic_s "$t1" "$(now)"
    if (((i + 1) % 25 == 0 || i + 1 == POINTS)); then
      log "history: $((i + 1))/$POINTS points ($ts), backups so far: synvault ${R[history.synvault_s]} s," \
        "restic ${R[history.restic_s]} s"
    fi
  done
  R[history.s]=$(awk -v a="${R[history.t0]}" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')
  R[src.files_end]=$(find "$SRC" -type f | wc -l)
  R[src.bytes_end]=$(file_bytes "$SRC")
  # names and sizes of the final tree: the same SEED on the same machine gives the same digest
  R[src.digest]=$(cd "$SRC" && find . -type f -printf '%P %s\n' | sort | md5sum | cut -c1-12)
  log "history built in ${R[history.s]} s (synvault backups ${R[history.synvault_s]} s, restic backups" \
    "${R[history.restic_s]} s); tree at the end: ${R[src.files_end]} files, $(mb "${R[src.bytes_end]}") MB"
}

# ---------------------------------------------------------------------------
# Point lists: "YYYY-MM-DDTHH:MM:SS" per line, sorted, for both tools.
# ---------------------------------------------------------------------------
synvault_times() { "$SYNVAULT_BIN" --vault "$SYNVAULT_REPO" points --json | jq -r '.[].time[0:19]' | sort; }
restic_times() { restic "${RESTIC_FLAGS[@]}" snapshots --json | jq -r '.[].time[0:19]' | sort; }

snapshot_state() { # snapshot_state before|after
  synvault_times >"$LOGS/synvault-points-$1.txt"
  restic_times >"$LOGS/restic-snapshots-$1.txt"
  R[synvault.points_$1]=$(wc -l <"$LOGS/synvault-points-$1.txt")
  R[restic.points_$1]=$(wc -l <"$LOGS/restic-snapshots-$1.txt")
  R[synvault.repo_$1]=$(du -sb "$SYNVAULT_REPO" | cut -f1)
  R[restic.repo_$1]=$(du -sb "$RESTIC_REPO" | cut -f1)
  log "$1: synvault ${R[synvault.points_$1]} points, $(mb "${R[synvault.repo_$1]}") MB;" \
    "restic ${R[restic.points_$1]} snapshots, $(mb "${R[restic.repo_$1]}") MB"
}

# ---------------------------------------------------------------------------
# Timed phase
# ---------------------------------------------------------------------------
retention_synvault() {
  local rep
  measure synvault-policy-set "$SYNVAULT_BIN" --vault "$SYNVAULT_REPO" policy set "${POLICY_ARGS[@]}"
  R[synvault.policy_s]=$WALL
  measure synvault-forget "$SYNVAULT_BIN" --vault "$SYNVAULT_REPO" forget --json
  R[synvault.forget_s]=$WALL
  R[synvault.forget_rss]=$(rss_mib synvault-forget)
  rep=$LOGS/synvault-forget.log
  sed -n '/^{$/,/^}$/p' "$rep" >"$LOGS/synvault-forget.json"
  if jq -e . "$LOGS/synvault-forget.json" >/dev/null 2>&1; then
    R[synvault.forgotten]=$(jq '(.forget // .).forgotten | length' "$LOGS/synvault-forget.json")
    R[synvault.kept]=$(jq '[(.forget // .).verdicts[] | select(.keep)] | length' "$LOGS/synvault-forget.json")
    log "synvault forget: kept ${R[synvault.kept]}, forgot ${R[synvault.forgotten]}"
  fi
  measure synvault-prune "$SYNVAULT_BIN" --vault "$SYNVAULT_REPO" prune --json "${SV_PRUNE_EXTRA[@]}"
  R[synvault.prune_s]=$WALL
  R[synvault.prune_rss]=$(rss_mib synvault-prune)
  rep=$LOGS/synvault-prune.log
  sed -n '/^{$/,/^}$/p' "$rep" >"$LOGS/synvault-prune.json"
  if jq -e . "$LOGS/synvault-prune.json" >/dev/null 2>&1; then
    R[synvault.prune_note]=$(jq -r '"packs unused \(.packs_unused), repacked \(.packs_repacked), written \(.packs_written); freed \(.bytes_freed / 1e6 * 10 | round / 10) MB, set aside \(.bytes_set_aside / 1e6 * 10 | round / 10) MB, unused left \(.bytes_unused_left / 1e6 * 10 | round / 10) MB; stored \(.bytes_stored_before / 1e6 * 10 | round / 10) -> \(.bytes_stored_after / 1e6 * 10 | round / 10) MB; removes_most \(.removes_most); own seconds \(.seconds * 100 | round / 100)"' \
      "$LOGS/synvault-prune.json")
    log "synvault prune: ${R[synvault.prune_note]}"
  fi
  R[synvault.seconds]=$(awk -v a="${R[synvault.forget_s]}" -v b="${R[synvault.prune_s]}" 'BEGIN { printf "%.2f", a + b }')
  R[synvault.rss]=$(awk -v a="${R[synvault.forget_rss]}" -v b="${R[synvault.prune_rss]}" 'BEGIN { print (a > b ? a : b) }')
}

retention_restic() {
  measure restic-forget-prune restic "${RESTIC_FLAGS[@]}" forget --prune "${POLICY_ARGS[@]}"
  R[restic.seconds]=$WALL
  R[restic.rss]=$(rss_mib restic-forget-prune)
}

rss_mib() { awk '/Maximum resident set size/ { printf "%.1f", $NF / 1024 }' "$LOGS/$1.time"; }

check_kept() {
  if cmp -s "$LOGS/synvault-points-after.txt" "$LOGS/restic-snapshots-after.txt"; then
    R[kept.same]="yes: both kept the same ${R[synvault.points_after]} point times"
  else
    diff "$LOGS/synvault-points-after.txt" "$LOGS/restic-snapshots-after.txt" >"$LOGS/kept-diff.txt" || true
    R[kept.same]="NO: the kept point times differ (< synvault only, > restic only):"$'\n'"$(cat "$LOGS/kept-diff.txt")"
  fi
  if ! cmp -s "$LOGS/synvault-points-before.txt" "$LOGS/restic-snapshots-before.txt"; then
    R[kept.same]+=$'\n'"NOTE: the histories differ before forget (see $LOGS/*-before.txt)"
  fi
}

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
# verdict VALUE OP LIMIT: "yes" when VALUE OP LIMIT holds, "NO" otherwise or when VALUE is missing.
verdict() {
  if [[ -n $1 && $1 != - ]] && awk -v v="$1" -v l="$3" "BEGIN { exit !(v $2 l) }"; then echo yes; else echo NO; fi
}

report_ret() {
  local sv rv ratio lock
  sv=$(synvault_version)
  rv=$(restic_version)
  ratio=$(div "${R[restic.seconds]}" "${R[synvault.seconds]}")
  lock=${R[synvault.seconds]}
  {
    echo "tool,command,seconds,forget_s,prune_s,peak_RSS_MiB,points_before,points_after,repo_MB_before,repo_MB_after,version"
    printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' synvault "forget + prune" "${R[synvault.seconds]}" \
      "${R[synvault.forget_s]}" "${R[synvault.prune_s]}" "${R[synvault.rss]}" \
      "${R[synvault.points_before]}" "${R[synvault.points_after]}" \
      "$(mb "${R[synvault.repo_before]}")" "$(mb "${R[synvault.repo_after]}")" "${sv//,/;}"
    printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' restic "forget --prune" "${R[restic.seconds]}" \
      - - "${R[restic.rss]}" \
      "${R[restic.points_before]}" "${R[restic.points_after]}" \
      "$(mb "${R[restic.repo_before]}")" "$(mb "${R[restic.repo_after]}")" "${rv//,/;} (${R[restic.note]})"
  } >"$RCSV"

  echo
  echo "History: $POINTS points from $START UTC over $SPAN_DAYS days, seed $SEED;" \
    "source tree ${R[src.files]} files, $(mb "${R[src.bytes]}") MB at the start," \
    "${R[src.files_end]} files, $(mb "${R[src.bytes_end]}") MB at the end;" \
    "per step $APPENDS appends, $ADDS adds, $DELETES deletes; final tree digest ${R[src.digest]}."
  echo "History build (not timed below): ${R[history.s]} s (synvault backups ${R[history.synvault_s]} s," \
    "restic backups ${R[history.restic_s]} s)."
  echo "Policy (both tools): $POLICY"
  [[ -z ${R[busy.warn]:-} ]] || echo "${R[busy.warn]}"
  echo "Host: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
  echo "Seconds are wall time; peak RSS in MiB (max of forget and prune for synvault); MB = 10^6 bytes;"
  echo "repo = du -sb of the whole vault (catalog included) / restic repository."
  echo
  cut -d, -f1-10 "$RCSV" | column -t -s,
  echo
  echo "synvault policy set: ${R[synvault.policy_s]} s (not in the total)"
  echo "synvault forget: kept ${R[synvault.kept]:-?}, forgot ${R[synvault.forgotten]:-?}"
  echo "synvault prune: ${R[synvault.prune_note]:-no JSON report}"
  echo "Kept points: ${R[kept.same]}"
  echo "Ratio restic_seconds / synvault_seconds: $ratio"
  echo
  echo "Targets (issue 10):"
  echo "  >= 5x faster than restic:        $ratio x            $(verdict "$ratio" '>=' 5)"
  echo "  peak RSS <= 200 MiB:             ${R[synvault.rss]} MiB     $(verdict "${R[synvault.rss]}" '<=' 200)"
  echo "  writer lock <= 5 s in total:     ${lock} s (forget ${R[synvault.forget_s]} + prune ${R[synvault.prune_s]}; the lock is held for the whole of each)   $(verdict "$lock" '<=' 5)"
  echo
  echo "synvault: $sv"
  echo "restic:   $rv (${R[restic.note]})"
  echo "CSV: $RCSV   logs: $LOGS"
}

main_ret() {
  check_args_ret
  install_deps_ret
  build_synvault
  prepare_work_ret
  cd "$WORK"
  restic_setup_flags
  build_src
  build_history
  warm_cache_repos
  wait_idle
  check_idle "before the timed steps"
  snapshot_state before
  retention_synvault
  retention_restic
  snapshot_state after
  check_kept
  check_idle "at end"
  report_ret
}

# Wait up to IDLE_WAIT seconds for 2 s with the CPUs under 10% busy (other jobs on the box).
wait_idle() {
  local t0=$SECONDS busy said=-30
  while busy=$(busy_pct); ((busy >= 10)); do
    if ((SECONDS - t0 >= IDLE_WAIT)); then
      log "machine still ${busy}% busy after ${IDLE_WAIT} s; timing anyway"
      return 0
    fi
    if ((SECONDS - said >= 30)); then # say so every 30 s, not every sample
      log "waiting for an idle machine (${busy}% busy)"
      said=$SECONDS
    fi
  done
  log "machine idle (${busy}% busy) after $((SECONDS - t0)) s of waiting"
}

# Read both repositories once (untimed), so neither tool is charged for cold reads.
warm_cache_repos() {
  log "warming page cache (both repositories)"
  tar -C "$REPOS" -cf - . | cat >/dev/null
}

main_ret "$@"
