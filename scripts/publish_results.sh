#!/usr/bin/env bash
# Copy what the leaderboard and the dashboard read from a results directory into a folder to commit:
# each finished job's job.json, status.json, metrics.csv, flatness measurements (analysis.csv, landscape.csv,
# interpolation.csv, barriers.csv) and sample images (at most 5 a job) -- no checkpoints, no logs; and each shared
# training run's run.json and status.json (its jobs' rows name it in their run_id column).
#   bash scripts/publish_results.sh ~/sema-results/tiny published/tiny
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 RESULTS_DIR DEST_DIR" >&2; exit 2; }
src=$1
dest=$2
[ -d "$src" ] || { echo "$0: $src is not a directory" >&2; exit 2; }
count=0
for status in "$src"/*/status.json; do
  job=$(dirname "$status")
  grep -q '"state": "done"' "$status" || continue
  out="$dest/$(basename "$job")"
  if [ -f "$job/run.json" ]; then  # a shared run: its jobs' rows are in their own folders
    mkdir -p "$out"
    cp "$job/run.json" "$job/status.json" "$out/"
    continue
  fi
  mkdir -p "$out"
  cp "$job/job.json" "$job/status.json" "$job/metrics.csv" "$out/"
  for measured in analysis.csv landscape.csv interpolation.csv barriers.csv; do  # suite analyze
    if [ -f "$job/$measured" ]; then cp "$job/$measured" "$out/"; fi
  done
  if [ -d "$job/samples" ]; then  # at most 5 per job, evenly spaced, ending with the last (video writes 100)
    rm -rf "$out/samples"
    mkdir -p "$out/samples"
    mapfile -t shots < <(ls "$job/samples" | sort)
    every=$(( (${#shots[@]} + 4) / 5 ))
    for i in "${!shots[@]}"; do
      if [ $(( (${#shots[@]} - 1 - i) % every )) -eq 0 ]; then cp "$job/samples/${shots[$i]}" "$out/samples/"; fi
    done
  fi
  count=$((count + 1))
done
echo "copied $count finished job(s) from $src to $dest"
