#!/usr/bin/env bash
# Re-times `forget` + `prune` against `restic forget --prune` on copies of the 500-point history
# that benches/retention-compare.sh builds and keeps (HISTORY, default
# /var/tmp/synvault-retention-history/repos with synvault/ and restic/ in it), on an idle
# machine, in one run: the history takes half an hour to build, this takes seconds.
#
#   SV=target/release/synvault benches/retention-retime.sh
set -euo pipefail
export TZ=UTC SYNVAULT_PASSWORD=bench-passphrase RESTIC_PASSWORD=bench-passphrase
SV=${SV:-target/release/synvault}
HISTORY=${HISTORY:-/var/tmp/synvault-retention-history/repos}
R=${WORK:-/var/tmp/synvault-retention-retime}
[[ $R == /* && $R != / ]] || { echo "WORK must be absolute" >&2; exit 2; }
rm -rf "$R"; mkdir -p "$R"
cp -a "$HISTORY/synvault" "$R/sv"; cp -a "$HISTORY/synvault" "$R/sv1"; cp -a "$HISTORY/restic" "$R/restic"
POL="--keep-daily 7 --keep-weekly 5 --keep-monthly 12 --keep-yearly 3"
for v in sv sv1; do
  # shellcheck disable=SC2086
  "$SV" --vault "$R/$v" policy set $POL >/dev/null # also brings an older catalog's schema up to date
done
# Two commands (forget, then prune), and the one command that does both, as restic's does.
/usr/bin/time -v "$SV" --vault "$R/sv" forget --json >"$R/forget.json" 2>"$R/forget.time"
/usr/bin/time -v "$SV" --vault "$R/sv" prune --json --allow-deleting-most >"$R/prune.json" 2>"$R/prune.time"
/usr/bin/time -v "$SV" --vault "$R/sv1" forget --prune >/dev/null 2>"$R/forget-prune.time"
# shellcheck disable=SC2086
/usr/bin/time -v restic -r "$R/restic" --no-cache forget --prune $POL >"$R/restic.out" 2>"$R/restic.time"
for f in forget prune forget-prune restic; do
  echo "$f: $(grep 'Elapsed (wall' "$R/$f.time" | awk '{print $NF}') wall, $(grep 'Maximum resident' "$R/$f.time" | awk '{print $NF}') KiB peak"
done
jq -c '{lock_seconds, seconds, packs_unused, packs_repacked, bytes_freed, metadata_compacted}' "$R/prune.json"
echo "synvault points: $("$SV" --vault "$R/sv" points --json | jq length); restic snapshots: $(restic -r "$R/restic" --no-cache snapshots --json | jq length)"
