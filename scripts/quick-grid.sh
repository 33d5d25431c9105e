#!/usr/bin/env bash
# The quick Fig. 5 grid (3 methods x 3 settings, alpha = 5%, one seed) and the clean-T-shirt run of
# Sec. 4.1, then the report into results/quick/. Usage: scripts/quick-grid.sh [extra overrides...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SWEEP=${SWEEP:-multirun/quick_fig5}
OUT=${OUT:-results/quick}
start=$(date +%s)
"$PY" -m itsr.run -m experiment=quick alpha=0.05 hydra.sweep.dir="$SWEEP" "$@" || echo "some jobs failed; the report lists them"
"$PY" -m itsr.run experiment=clean dataset.epochs.aae=80 hydra.run.dir="$SWEEP-clean" "$@" || true
echo "wall time: $(( $(date +%s) - start )) s"
"$PY" -m itsr.report "$SWEEP" "$SWEEP-clean" --out "$OUT/report.md"
