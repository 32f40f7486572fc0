#!/usr/bin/env bash
# Copy the small result files of a reproduction study into docs/reproduction/study (to commit):
# the spec and manifest, and for every finished run or retraining job its settings, per-round
# results, summary and AutoAttack evaluations (replacing what was collected of the same job
# before). Never checkpoints (*.pt) or datasets.
#   bash docs/reproduction/collect.sh /work/study-out/reproduce
set -euo pipefail
src=${1:?usage: collect.sh STUDY_DIR}
dst="$(cd "$(dirname "$0")" && pwd)/study"
mkdir -p "$dst"
cp "$src/study.yaml" "$src/manifest.json" "$dst/"
for kind in runs retrain; do
  [ -d "$src/$kind" ] || continue
  for dir in "$src/$kind"/*/; do
    [ -f "$dir/done.json" ] || continue
    out="$dst/$kind/$(basename "$dir")"
    # the job as computed there: a recomputed job's older files (e.g. an evaluation of the model
    # an earlier computation trained) do not survive next to it
    rm -rf "$out" && mkdir -p "$out"
    find "$dir" -maxdepth 1 -type f \( -name '*.json' -o -name '*.parquet' \) ! -name '.*' ! -name 'earlier-*' -exec cp {} "$out/" \;
  done
done
echo "collected $(ls "$dst/runs" 2>/dev/null | wc -l) runs, $(ls "$dst/retrain" 2>/dev/null | wc -l) retraining jobs into $dst"
