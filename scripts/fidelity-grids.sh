#!/usr/bin/env bash
# The open choices of the fidelity issue (part 2) that have no measurement yet: each variant is ITSR at the
# quick preset on MNIST 0 v 2 and T-shirt v Boot at alpha 5% and 1%, seeds SEEDS (12 runs with 3 seeds,
# 5-8 min each at one thread on this CPU), then compared seed by seed with the committed default runs.
# Usage: [SWEEP=multirun/fidelity] [SEEDS=0,1,2] scripts/fidelity-grids.sh VARIANT [VARIANT...] [-- overrides...]
#   VARIANT: fit_on_all      model.refinement.fit_on=all          (the SVM refits on every code each round)
#            no_code_bn      model.module.code_batch_norm=false   (no batch norm on the 2-D code layer)
#            slow_generator  model.module.lr_generator=5e-5       (the discriminator keeps 2e-4)
# e.g. scripts/fidelity-grids.sh fit_on_all -- hydra/launcher=parallel threads=1
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SEEDS=${SEEDS:-0,1,2}
SWEEP=${SWEEP:-multirun/fidelity}
BASELINE=results/quick/runs/q1_itsr_a0.05,results/quick/runs/q3_a0.01  # the defaults, after the fix
declare -A OVERRIDE=(
  [fit_on_all]="model.refinement.fit_on=all"
  [no_code_bn]="model.module.code_batch_norm=false"
  [slow_generator]="model.module.lr_generator=5e-5"
)
variants=()
while [[ $# -gt 0 && $1 != "--" ]]; do
  [[ -n ${OVERRIDE[$1]:-} ]] || { echo "unknown variant '$1'; choose from: ${!OVERRIDE[*]}" >&2; exit 2; }
  variants+=("$1"); shift
done
[[ ${1:-} == "--" ]] && shift
[[ ${#variants[@]} -gt 0 ]] || { echo "name at least one variant: ${!OVERRIDE[*]}" >&2; exit 2; }
labels=("discriminator=$BASELINE")
for variant in "${variants[@]}"; do
  start=$(date +%s)
  "$PY" -m itsr.run -m experiment=quick model=itsr dataset=mnist,fmnist_boot alpha=0.05,0.01 seed="$SEEDS" \
    ${OVERRIDE[$variant]} hydra.sweep.dir="$SWEEP/$variant" "$@" || echo "some $variant jobs failed"
  echo "$variant: wall time $(( $(date +%s) - start )) s"
  labels+=("$variant=$SWEEP/$variant")
done
"$PY" scripts/fidelity.py "${labels[@]}" --out "$SWEEP/fidelity.md"
echo "comparison: $SWEEP/fidelity.md"
