#!/usr/bin/env bash
# The quick Fig. 5 grid (3 methods x 3 settings, alpha = 5%) and the clean-T-shirt run of Sec. 4.1,
# for each seed in SEEDS, then the report into OUT.
# Usage: [SEEDS=0,1,2] [SWEEP=multirun/quick_fig5] [OUT=results/quick] scripts/quick-grid.sh [overrides...]
# e.g. scripts/quick-grid.sh hydra/launcher=parallel threads=1   (two jobs at once, one core each)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SEEDS=${SEEDS:-0}
SWEEP=${SWEEP:-multirun/quick_fig5}
OUT=${OUT:-results/quick}
start=$(date +%s)
"$PY" -m itsr.run -m experiment=quick alpha=0.05 seed="$SEEDS" hydra.sweep.dir="$SWEEP" "$@" \
  || echo "some grid jobs failed; the report lists them"
"$PY" -m itsr.run -m experiment=clean dataset.epochs.aae=80 seed="$SEEDS" hydra.sweep.dir="$SWEEP-clean" "$@" \
  || echo "some clean runs failed; the report lists them"
echo "wall time: $(( $(date +%s) - start )) s"
"$PY" -m itsr.report "$SWEEP" "$SWEEP-clean" --out "$OUT/report.md" --overwrite
