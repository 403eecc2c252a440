#!/usr/bin/env bash
# Compare synvault against restic and borg on the same data in the same run.
#
#   sudo benches/compare.sh                      # all tools, 4 GiB data set
#   TOOLS="restic borg" DATA_GB=0.3 benches/compare.sh
#
# Environment knobs (all optional):
#   TOOLS         tools to run, in this order          (default "synvault restic borg")
#   DATA_GB       data set size in GiB, may be a float (default 4)
#   WORK          work dir: data, repos, logs, results (default /var/tmp/synvault-bench)
#   SYNVAULT_BIN  use this binary instead of `cargo build --release`
#   CHANGE_PCT    share of bytes changed before the incremental (default 2)
#   LARGE_FILES   number of large files in the data set   (default 4)
#   SMALL_PCT     share of the data set made of small files (default 60)
#   VERIFY        1 = diff -r every restore against the data set (default 1, untimed)
#
# Needs root (apt-get, mounting the tmpfs). See benches/README.md.
set -euo pipefail
export LC_ALL=C # /usr/bin/time -v output is parsed; keep it unlocalised

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

TOOLS=${TOOLS:-"synvault restic borg"}
DATA_GB=${DATA_GB:-4}
WORK=${WORK:-/var/tmp/synvault-bench}
CHANGE_PCT=${CHANGE_PCT:-2}
LARGE_FILES=${LARGE_FILES:-4}
SMALL_PCT=${SMALL_PCT:-60}
VERIFY=${VERIFY:-1}
# Trees (relative to /) whose files < 1 MiB are copied repeatedly as the small-file part.
SMALL_SRC=${SMALL_SRC:-"usr/share usr/lib usr/include"}

DATA=$WORK/data          # the data set every tool backs up
REPOS=$WORK/repos        # one repository per tool
LOGS=$WORK/logs          # stdout/stderr and /usr/bin/time output of every step
TMPFS=$WORK/tmpfs        # restore targets (RAM, so restore measures the tool, not the disk)
CSV=$WORK/results.csv

# Fixed passphrases: the repositories are throwaway.
export SYNVAULT_PASSWORD=bench-passphrase
export RESTIC_PASSWORD=bench-passphrase
export BORG_PASSPHRASE=bench-passphrase
# Keep restic's and borg's caches/security state inside $WORK so every run starts clean
# and leftovers from an earlier run (same repo path, new repo id) cannot confuse borg.
export BORG_BASE_DIR=$WORK/borg-home
RESTIC_CACHE=$WORK/restic-cache

declare -A R # results, keyed "tool.metric"

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------------------
# Measurement helper: every timed number in this script comes from here.
#   measure NAME CMD...  runs CMD under /usr/bin/time -v, stdout+stderr to $LOGS/NAME.log.
#   Sets WALL (seconds) and RSS_MB (peak RSS of the largest process, MB).
#   A failing command aborts the whole run, showing the tail of its log.
# ---------------------------------------------------------------------------
measure() {
  local name=$1; shift
  local out=$LOGS/$name.log tv=$LOGS/$name.time
  # Flush dirty pages (e.g. the previous tool's repository writes) first, so writeback
  # left over from one step is not charged to the next. Not part of the timing.
  sync
  log "run  $name: $*"
  local busy0 busy1
  busy0=$(cpu_busy_jiffies)
  if ! /usr/bin/time -v -o "$tv" "$@" </dev/null >"$out" 2>&1; then
    log "FAILED: $name ($*); last lines of $out:"
    tail -n 30 "$out" >&2
    grep -E 'exit|status' "$tv" >&2 || true
    exit 1
  fi
  # "Elapsed (wall clock) time (h:mm:ss or m:ss): 1:02.34" -> seconds
  WALL=$(awk '/Elapsed \(wall clock\)/ { n = split($NF, p, ":"); s = 0
                for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.2f", s }' "$tv")
  RSS_MB=$(awk '/Maximum resident set size/ { printf "%.0f", $NF / 1024 }' "$tv")
  busy1=$(cpu_busy_jiffies)
  [[ -n $WALL && -n $RSS_MB ]] || die "could not parse $tv"
  # CPU used by anything other than the measured command (another build, steal, ...),
  # as % of all cores: system-wide busy time minus the command's own user+sys time.
  local other
  other=$(awk -v b0="$busy0" -v b1="$busy1" -v w="$WALL" -v n="$(nproc)" '
    /User time|System time/ { own += $NF }
    END { if (w <= 0) { print 0; exit }
          o = 100 * ((b1 - b0) / 100 - own) / (w * n); printf "%.0f", (o < 0 ? 0 : o) }' "$tv")
  log "done $name: ${WALL}s, peak RSS ${RSS_MB} MB," \
    "CPU $(awk -F': ' '/Percent of CPU/ { print $2 }' "$tv"), other load ${other}%"
  # Init steps are not reported, and under 0.5 s the 10 ms tick of /proc/stat is too
  # coarse to tell, so neither triggers the warning.
  if ((other > 15)) && [[ $name != *-init ]] && awk -v w="$WALL" 'BEGIN { exit !(w >= 0.5) }'; then
    R[busy.warn]+="WARNING: $name ran while other processes used ${other}% of the CPUs. "
    log "WARNING: other processes used ${other}% of the CPUs during $name; its numbers are skewed"
  fi
}

# Busy CPU time of the whole machine so far, in USER_HZ (1/100 s) ticks:
# user+nice+system+irq+softirq+steal from the "cpu" line of /proc/stat.
cpu_busy_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# Share of all CPUs busy (outside idle/iowait) over 2 s, in percent. On a 2-core box a
# concurrent compile halves a multi-threaded tool's speed, so we warn about it.
busy_pct() {
  local a b
  a=$(awk '/^cpu / { print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9 }' /proc/stat)
  sleep 2
  b=$(awk '/^cpu / { print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9 }' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ")
    d = y[2] - x[2]; printf "%.0f", (d > 0 ? 100 * (y[1] - x[1]) / d : 0) }'
}

check_idle() {
  local busy
  busy=$(busy_pct)
  if ((busy > 5)); then
    R[busy.warn]+="WARNING: other processes used ${busy}% of the CPUs ($1); numbers are unreliable. "
    log "WARNING: other processes use ${busy}% of the CPUs ($1); results will be skewed"
  fi
}

# Arithmetic helpers (bash has no floats). div prints "-" when an operand is missing.
calc() { awk "BEGIN { printf \"%.0f\", $* }"; }
# div A B [FMT]: A and B may be awk expressions ("$bytes/1e6"); our own numbers only.
div() {
  local a=$1 b=$2 fmt=${3:-%.2f}
  if [[ -z $a || -z $b || $a == - || $b == - ]]; then echo -; return; fi
  awk "BEGIN { b = ($b); if (b == 0) print \"-\"; else printf \"$fmt\", ($a) / b }"
}
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; } # bytes -> MB (10^6)
# Sum of regular file sizes (what MB/s is computed from; directories not counted).
file_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }'; }
data_bytes() { file_bytes "$DATA"; }

has_tool() { [[ " $TOOLS " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------
cleanup() {
  if mountpoint -q "$TMPFS" 2>/dev/null; then
    umount "$TMPFS" || umount -l "$TMPFS" || log "WARNING: could not unmount $TMPFS"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM # run the EXIT trap on Ctrl-C too

check_args() {
  [[ $EUID -eq 0 ]] || die "run as root (apt-get and mount -t tmpfs need it)"
  local t
  for t in $TOOLS; do
    [[ $t == synvault || $t == restic || $t == borg ]] || die "unknown tool '$t' in TOOLS"
  done
  [[ -n ${TOOLS// /} ]] || die "TOOLS is empty"
  awk -v g="$DATA_GB" 'BEGIN { exit !(g > 0) }' || die "DATA_GB must be > 0"
  # Refuse obviously dangerous work dirs: we rm -rf subdirectories of it.
  [[ $WORK == /* && $WORK != / ]] || die "WORK must be an absolute path other than /"
}

install_deps() {
  local pkgs=()
  [[ -x /usr/bin/time ]] || pkgs+=(time)
  has_tool restic && ! command -v restic >/dev/null && pkgs+=(restic)
  has_tool borg && ! command -v borg >/dev/null && pkgs+=(borgbackup)
  if ((${#pkgs[@]})); then
    log "installing ${pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  fi
}

build_synvault() {
  has_tool synvault || return 0
  if [[ -n ${SYNVAULT_BIN:-} ]]; then
    [[ -x $SYNVAULT_BIN ]] || die "SYNVAULT_BIN=$SYNVAULT_BIN is not executable"
  else
    log "cargo build --release in $REPO_ROOT"
    (cd "$REPO_ROOT" && cargo build --release)
    SYNVAULT_BIN=$REPO_ROOT/target/release/synvault
  fi
}

prepare_work() {
  cleanup # a tmpfs left mounted by a killed earlier run
  mkdir -p "$WORK"
  rm -rf "$DATA" "$REPOS" "$LOGS" "$TMPFS" "$BORG_BASE_DIR" "$RESTIC_CACHE" "$CSV"
  mkdir -p "$DATA" "$REPOS" "$LOGS" "$TMPFS" "$BORG_BASE_DIR" "$RESTIC_CACHE"
  # Rough space check: data set + one repository per tool (worst case: incompressible).
  local need avail ntools
  ntools=$(wc -w <<<"$TOOLS")
  need=$(calc "$DATA_GB * 1073741824 * (1.1 + $ntools)")
  avail=$(df --output=avail -B1 "$WORK" | tail -n1)
  ((avail > need)) || die "need ~$(mb "$need") MB free in $WORK, have $(mb "$avail") MB"
}

# ---------------------------------------------------------------------------
# Data set: ~SMALL_PCT% small files (real trees from /usr, copied repeatedly into
# numbered subdirs) + LARGE_FILES large files mixing /usr/lib binaries (compressible)
# with random data (incompressible). Repeated copies dedup in every tool alike.
# ---------------------------------------------------------------------------
build_small_files() {
  local budget=$1 pool=$WORK/small-pool.txt round=0 copied=0 left list
  # "size<TAB>path" for regular files < 1 MiB; names with tab/newline are skipped
  # because the lists below are line based.
  # shellcheck disable=SC2086 # SMALL_SRC is a space-separated list on purpose
  (cd / && find $SMALL_SRC -xdev -type f -size -1024k \
    ! -name $'*\t*' ! -name $'*\n*' -printf '%s\t%p\n') >"$pool"
  [[ -s $pool ]] || die "no small files found under $SMALL_SRC"
  while ((copied < budget)); do
    left=$((budget - copied))
    list=$WORK/small-list.$round
    # Take files in tree order until this round's share of the budget is used up.
    awk -F'\t' -v left="$left" '{ if (sum + $1 > left) exit; sum += $1; print $2 }' \
      "$pool" >"$list"
    [[ -s $list ]] || break # next file alone would overshoot
    mkdir -p "$DATA/small/$round"
    # tar exit 1 = "file changed while reading" (e.g. apt running); harmless here.
    (tar -C / --verbatim-files-from -T "$list" -cf - || [[ $? -eq 1 ]]) |
      tar -C "$DATA/small/$round" -xf -
    copied=$(file_bytes "$DATA/small")
    round=$((round + 1))
  done
  rm -f "$WORK"/small-list.*
  log "small files: $(find "$DATA/small" -type f | wc -l) files, $(mb "$copied") MB in $round copies"
}

build_large_files() {
  local total=$1 n=$LARGE_FILES i size f k bins
  mapfile -t bins < <(find /usr/lib -xdev -type f -size +1023k | sort)
  ((${#bins[@]})) || die "no binaries > 1 MiB under /usr/lib"
  size=$((total / n))
  mkdir -p "$DATA/large"
  for ((i = 0; i < n; i++)); do
    f=$DATA/large/blob$i.bin
    : >"$f"
    # Each file starts at a different binary so the files are not copies of each other.
    k=$((i * ${#bins[@]} / n))
    while (($(stat -c %s "$f") < size)); do
      head -c $((2 << 20)) /dev/urandom >>"$f"               # 2 MiB incompressible
      head -c $((4 << 20)) "${bins[k % ${#bins[@]}]}" >>"$f" # <=4 MiB compressible code
      k=$((k + 1))
    done
    truncate -s "$size" "$f"
  done
  log "large files: $n x $(mb "$size") MB"
}

build_data() {
  local total small
  total=$(calc "$DATA_GB * 1073741824")
  small=$(calc "$total * $SMALL_PCT / 100")
  log "building data set: $(mb "$total") MB in $DATA"
  echo "synvault bench data set root marker" >"$DATA/.synvault-bench-root"
  build_small_files "$small"
  build_large_files $((total - $(data_bytes)))
  R[data.files]=$(find "$DATA" -type f | wc -l)
  R[data.bytes0]=$(data_bytes)
  log "data set: ${R[data.files]} files, $(mb "${R[data.bytes0]}") MB"
}

# Read every file once so all tools read from page cache, not disk.
# NB: not `tar cf - . >/dev/null`: GNU tar notices its archive is /dev/null and then
# skips reading file contents entirely. Piping through cat forces the reads.
warm_cache() {
  log "warming page cache"
  tar -C "$DATA" -cf - . | cat >/dev/null
}

# ~CHANGE_PCT% of the bytes: half as in-place overwrites + appends in the large files,
# half as 4 KiB appends to a spread of small files (a changed small file is re-read and
# re-chunked whole, so its full size counts as changed). Applied once, before
# every tool's incremental, so all tools see the same change.
apply_change() {
  local budget f sz per_file over region n off j k changed=0 small_budget nsmall=0
  budget=$(calc "${R[data.bytes0]} * $CHANGE_PCT / 100")
  per_file=$((budget / 2 / LARGE_FILES))
  over=$((per_file / 2))                              # overwritten bytes per large file
  region=$((over < (1 << 20) ? over : (1 << 20)))     # in regions of <= 1 MiB
  ((region > 0)) || region=4096
  n=$(((over + region - 1) / region))
  for f in "$DATA"/large/*.bin; do
    sz=$(stat -c %s "$f")
    for ((j = 1; j <= n; j++)); do                    # spread evenly across the file
      off=$((sz * j / (n + 1) / 4096 * 4096))
      dd if=/dev/urandom of="$f" bs="$region" count=1 seek="$off" oflag=seek_bytes \
        iflag=fullblock conv=notrunc status=none
      changed=$((changed + region))
    done
    head -c $((per_file - over)) /dev/urandom >>"$f" # append the other half
    changed=$((changed + per_file - over))
  done
  small_budget=$((budget - changed))
  # Every k-th small file (path order), k chosen so the picks spread over the whole
  # small-file tree, until the small-file half of the budget is used up.
  # (Sorted into a file first: awk exiting early would SIGPIPE sort under pipefail.)
  find "$DATA/small" -type f -printf '%s\t%p\n' | sort -t$'\t' -k2 >"$WORK/small-files"
  k=$(awk -F'\t' -v b="$small_budget" '{ s += $1 } END { k = int(s / (b > 0 ? b : 1)); print (k < 1 ? 1 : k) }' \
    "$WORK/small-files")
  awk -F'\t' -v left="$small_budget" -v k="$k" \
    'NR % k == 0 { if (sum >= left) exit; sum += $1 + 4096; print }' \
    "$WORK/small-files" >"$WORK/change-list"
  while IFS=$'\t' read -r sz f; do
    head -c 4096 /dev/urandom >>"$f"
    changed=$((changed + sz + 4096))
    nsmall=$((nsmall + 1))
  done <"$WORK/change-list"
  R[data.changed]=$changed
  R[data.bytes1]=$(data_bytes)
  log "changed $(mb "$changed") MB ($(div "$changed * 100" "${R[data.bytes0]}" %.1f)% of the data set):" \
    "$n x $(mb "$region") MB overwrites + append of $(mb $((per_file - over))) MB in each large file," \
    "4 KiB appended to $nsmall small files"
}

# ---------------------------------------------------------------------------
# Tool adapters: <tool>_version, _init, _backup LABEL, _restore LABEL TARGET, _stats.
# Every adapter gets the same absolute path $DATA.
# ---------------------------------------------------------------------------
SYNVAULT_REPO=$REPOS/synvault
synvault_version() { "$SYNVAULT_BIN" --version 2>/dev/null | head -n1 || echo "synvault (unknown version)"; }
synvault_init() { measure synvault-init "$SYNVAULT_BIN" --vault "$SYNVAULT_REPO" init; }
# Same PATH again => synvault makes an incremental on its own.
synvault_backup() { measure "synvault-backup-$1" "$SYNVAULT_BIN" --vault "$SYNVAULT_REPO" backup "$DATA"; }
synvault_restore() { measure synvault-restore "$SYNVAULT_BIN" --vault "$SYNVAULT_REPO" restore latest --target "$2"; }
synvault_stats() { "$SYNVAULT_BIN" --vault "$SYNVAULT_REPO" stats --json >"$LOGS/synvault-stats.json"; }

RESTIC_REPO=$REPOS/restic
RESTIC_INIT_FLAGS=()
RESTIC_FLAGS=()
restic_version() { restic version | head -n1; }
restic_setup_flags() {
  # restic >= 0.14 has repository format 2 with zstd compression; older ones do not.
  RESTIC_FLAGS=(--repo "$RESTIC_REPO" --cache-dir "$RESTIC_CACHE")
  if restic help backup 2>/dev/null | grep -q -- '--compression'; then
    RESTIC_INIT_FLAGS=(--repository-version 2)
    RESTIC_FLAGS+=(--compression auto)
    R[restic.note]="compression auto; repo v2"
  else
    R[restic.note]="NO compression (restic too old)"
    log "WARNING: this restic has no --compression; restic repo is uncompressed"
  fi
}
restic_init() { measure restic-init restic "${RESTIC_FLAGS[@]}" init "${RESTIC_INIT_FLAGS[@]}"; }
# restic picks the previous snapshot of the same host+path as parent automatically.
restic_backup() { measure "restic-backup-$1" restic "${RESTIC_FLAGS[@]}" backup "$DATA"; }
restic_restore() { measure restic-restore restic "${RESTIC_FLAGS[@]}" restore latest --target "$2"; }
restic_stats() { restic "${RESTIC_FLAGS[@]}" stats --mode raw-data >"$LOGS/restic-stats.txt"; }

BORG_REPO=$REPOS/borg
borg_version() { borg --version; }
borg_init() {
  # repokey-blake2: the faster of borg's authenticated modes on most x86 CPUs.
  measure borg-init borg init -e repokey-blake2 "$BORG_REPO"
}
borg_backup() { measure "borg-backup-$1" borg create -C zstd,3 --stats "$BORG_REPO::$1" "$DATA"; }
# borg extract writes into the current directory; env -C avoids a wrapper shell
# (which would otherwise be the process /usr/bin/time measures).
borg_restore() { mkdir -p "$2" && measure borg-restore env -C "$2" borg extract "$BORG_REPO::$1"; }
borg_stats() { borg info "$BORG_REPO" >"$LOGS/borg-stats.txt"; }

repo_bytes() { du -sb "$REPOS/$1" | cut -f1; }

# ---------------------------------------------------------------------------
# Benchmark phases. Each phase runs every tool back to back on the same data state.
# ---------------------------------------------------------------------------
phase_full() {
  local t
  for t in $TOOLS; do
    "${t}_init"
    "${t}_backup" full
    R[$t.full_s]=$WALL
    R[$t.full_rss]=$RSS_MB
    R[$t.full_MBps]=$(div "${R[data.bytes0]}/1e6" "$WALL" %.1f)
  done
}

phase_unchanged() {
  local t
  for t in $TOOLS; do
    "${t}_backup" unchanged
    R[$t.unchanged_s]=$WALL
  done
}

phase_incremental() {
  local t
  for t in $TOOLS; do
    "${t}_backup" incr
    R[$t.incr_s]=$WALL
    R[$t.incr_rss]=$RSS_MB
    "${t}_stats"
    R[$t.repo_bytes]=$(repo_bytes "$t")
  done
}

mount_tmpfs() {
  local alloc size availkb
  # Size from allocated bytes (tmpfs also rounds every file up to a page) plus slack.
  alloc=$(du -s -B1 "$DATA" | cut -f1)
  size=$(calc "$alloc * 1.15 + 256 * 1048576")
  availkb=$(awk '/MemAvailable/ { print $2 }' /proc/meminfo)
  local need=$((size + ${R[data.bytes1]}))
  ((need < availkb * 1024)) ||
    log "WARNING: data set + tmpfs ($(mb "$need") MB) exceed MemAvailable; numbers may include disk reads"
  mount -t tmpfs -o "size=$size,mode=0755" synvault-bench "$TMPFS"
  log "tmpfs $TMPFS: $(mb "$size") MB"
}

# The tools restore $DATA under its full path (or not); find it via the marker file.
restored_root() {
  local m
  m=$(find "$1" -name .synvault-bench-root -print -quit)
  [[ -n $m ]] || die "restore into $1 produced no data set (marker file missing)"
  dirname "$m"
}

verify_restore() {
  [[ $VERIFY == 1 ]] || return 0
  local root
  root=$(restored_root "$1")
  diff -r "$DATA" "$root" >"$LOGS/verify-$2.log" 2>&1 ||
    die "$2 restore differs from the data set, see $LOGS/verify-$2.log"
  log "verified $2 restore: identical to the data set"
}

phase_restore() {
  local t target=$TMPFS/target
  # File-creation bound: plain cp -a of the same (current) data set into the same tmpfs.
  measure cp-a cp -a "$DATA" "$target"
  R[cp.restore_s]=$WALL
  R[cp.restore_rss]=$RSS_MB
  R[cp.restore_MBps]=$(div "${R[data.bytes1]}/1e6" "$WALL" %.1f)
  verify_restore "$target" cp-a
  rm -rf "$target"
  for t in $TOOLS; do
    "${t}_restore" incr "$target" # "latest" = the incremental after the change
    R[$t.restore_s]=$WALL
    R[$t.restore_rss]=$RSS_MB
    R[$t.restore_MBps]=$(div "${R[data.bytes1]}/1e6" "$WALL" %.1f)
    verify_restore "$target" "$t"
    rm -rf "$target" # the next tool starts from an empty target and an empty tmpfs
  done
}

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
report() {
  local t v cols ref=restic
  has_tool restic || ref=
  cols="tool,full_s,full_MBps,full_rss_MB,unchanged_s,incr_s,incr_rss_MB,restore_s,restore_MBps,restore_rss_MB,repo_MB"
  cols+=",backup_vs_restic,incr_vs_restic,unchanged_vs_restic,restore_vs_restic,restore_vs_cp,repo_vs_restic,version"
  {
    echo "$cols"
    for t in $TOOLS; do
      v=$("${t}_version")
      [[ $t == restic ]] && v+=" (${R[restic.note]})"
      v=${v//,/;} # keep the CSV splittable by cut/column
      printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' \
        "$t" "${R[$t.full_s]}" "${R[$t.full_MBps]}" "${R[$t.full_rss]}" \
        "${R[$t.unchanged_s]}" "${R[$t.incr_s]}" "${R[$t.incr_rss]}" \
        "${R[$t.restore_s]}" "${R[$t.restore_MBps]}" "${R[$t.restore_rss]}" \
        "$(mb "${R[$t.repo_bytes]}")" \
        "$(div "${R[$t.full_MBps]}" "${R[$ref.full_MBps]:-}")" \
        "$(div "${R[$t.incr_s]}" "${R[$ref.incr_s]:-}")" \
        "$(div "${R[$t.unchanged_s]}" "${R[$ref.unchanged_s]:-}")" \
        "$(div "${R[$t.restore_MBps]}" "${R[$ref.restore_MBps]:-}")" \
        "$(div "${R[$t.restore_s]}" "${R[cp.restore_s]}")" \
        "$(div "${R[$t.repo_bytes]}" "${R[$ref.repo_bytes]:-}")" \
        "$v"
    done
    printf 'cp-a,-,-,-,-,-,-,%s,%s,%s,-,-,-,-,%s,1.00,-,%s\n' \
      "${R[cp.restore_s]}" "${R[cp.restore_MBps]}" "${R[cp.restore_rss]}" \
      "$(div "${R[cp.restore_MBps]}" "${R[$ref.restore_MBps]:-}")" "$(cp --version | head -n1)"
  } >"$CSV"

  echo
  echo "Data set: ${R[data.files]} files, $(mb "${R[data.bytes0]}") MB (MB = 10^6 bytes);" \
    "change before incremental: $(mb "${R[data.changed]}") MB; restore size $(mb "${R[data.bytes1]}") MB"
  [[ -z ${R[busy.warn]:-} ]] || echo "${R[busy.warn]}"
  echo "Host: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
  echo "Times in seconds (wall), RSS = peak resident set of the tool process in MB."
  echo "Ratios: *_vs_restic = this tool / restic (MB/s: >1 is faster; times and size: <1 is better);"
  echo "        restore_vs_cp = restore time / cp -a time into the same tmpfs."
  echo
  echo "Measurements:"
  cut -d, -f1-11 "$CSV" | column -t -s,
  echo
  echo "Ratios:"
  cut -d, -f1,12-18 "$CSV" | column -t -s,
  echo
  echo "CSV: $CSV   logs: $LOGS"
}

main() {
  check_args
  install_deps
  build_synvault
  prepare_work
  cd "$WORK" # nothing below should write relative paths, but if it does, not into the checkout
  has_tool restic && restic_setup_flags
  build_data
  warm_cache
  check_idle "at start"
  phase_full
  phase_unchanged
  apply_change
  warm_cache # the changed files were just written, but re-read them all to be sure
  phase_incremental
  mount_tmpfs
  phase_restore
  check_idle "at end"
  report
}

main "$@"
