#!/bin/bash
# The Fig. 5 grid's remaining runs (scripts/paper_grid.py) on a GPU machine lent through the device tool
# (one H200, 16 cores, no network; issue 24). Prepare here first, once per session:
#     bash scripts/device-prepare.sh      # .whl/ (hydra-core, omegaconf, antlr4) and .devdata/ (the IDX files)
# then, through the device tool, one call:
#     run(command="bash scripts/device-paper-grid.sh 520 60", carry=[".whl", ".devdata"], timeout_s=600)
# Arguments: DEADLINE_S (default 520): seconds after which unfinished runs get SIGTERM (each stops at its
# last checkpoint, writes no metrics.json, and is packed as unfinished with its curves and log tail);
# BENCH_S (default 0): seconds first given to `python -m itsr.bench` on the GPU (0: no benchmark).
# The runs share the GPU, JOBS at a time (default: the cores; one CPU thread each), shortest first.
# What comes back, in $OUT: paper_grid.tar.gz (finished runs' small files as scripts/collect_runs.py
# copies them, under runs/; unfinished runs' curves.csv and log tail under unfinished/), summary.txt
# (each run's status and wall time), bench.json and nvidia-smi.txt.
# A local try of the orchestration without a GPU:
#     OUT=/tmp/out PYTHON=.venv/bin/python TRAINER=default EXTRA="experiment=quick" JOBS=2 \
#         ITSR_DATA_DIR=data RUNS=/tmp/fake-runs WORK=/tmp/device-work bash scripts/device-paper-grid.sh 120
# (RUNS: the committed runs that scripts/paper_grid.py compares with, default results/paper/runs)
set -u
deadline=${1:-520}
bench_s=${2:-0}
start=$(date +%s)
out=${OUT:?OUT is unset: the device tool sets it; locally pass OUT=/some/dir}
python=${PYTHON:-python3}
trainer=${TRAINER:-gpu}
jobs=${JOBS:-$(nproc)}
work=${WORK:-outputs/device}
cd "$(dirname "$0")/.." || exit 2
mkdir -p "$out" "$work"

if [ -d .whl ]; then  # the packages the device image lacks (the device README's recipe)
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "device-paper-grid: installing .whl/ failed" >&2; exit 2; }
    export PYTHONPATH=/tmp/site:$PWD
fi
if [ -z "${ITSR_DATA_DIR:-}" ]; then
    [ -f .devdata/data.tar.gz ] || { echo "device-paper-grid: no .devdata/data.tar.gz; run scripts/device-prepare.sh here and carry .devdata" >&2; exit 2; }
    mkdir -p /tmp/itsr-data && tar xzf .devdata/data.tar.gz -C /tmp/itsr-data || exit 2
    export ITSR_DATA_DIR=/tmp/itsr-data
fi
export PYTHONPATH=${PYTHONPATH:-$PWD} OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 WANDB_MODE=offline PYTHONUNBUFFERED=1
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true

if [ "$bench_s" -gt 0 ]; then
    timeout -s TERM "$bench_s" "$python" -m itsr.bench --device cuda --epochs 3 --repeats 1 --skip-svm-scaling \
        --parallel-jobs 0 --k-runs 3 --out "$out/bench.json" > "$out/bench.log" 2>&1
    echo "bench: exit $? after $(( $(date +%s) - start )) s" >> "$out/summary.txt"
fi

"$python" scripts/paper_grid.py --runs "${RUNS:-results/paper/runs}" --format specs --order shortest > "$work/todo.txt" || exit 2
echo "$(wc -l < "$work/todo.txt") runs to do, $jobs at a time, deadline ${deadline}s" >> "$out/summary.txt"

run_one() {  # name model dataset seed: one run, stopped by SIGTERM at the deadline
    local name=$1 model=$2 dataset=$3 seed=$4
    local left=$(( deadline - ($(date +%s) - start) ))
    if [ "$left" -le 30 ]; then echo "$name not started (deadline)"; return; fi
    local t0=$(date +%s)
    timeout -s TERM "$left" "$python" -m itsr.run experiment=paper model="$model" dataset="$dataset" alpha=0.05 \
        seed="$seed" trainer="$trainer" trainer.precision=bf16-mixed scoring.holdout_fraction=0.1 threads=1 \
        hydra.run.dir="$work/$name" $EXTRA > "$work/$name.log" 2>&1
    echo "$name exit $? after $(( $(date +%s) - t0 )) s"
}
export -f run_one
export deadline start python trainer work EXTRA=${EXTRA:-}
xargs -P "$jobs" -L 1 bash -c 'run_one "$@"' _ < "$work/todo.txt" >> "$out/summary.txt"

pack=$(mktemp -d)
while read -r name model dataset seed; do
    stopped=false  # SIGTERM at the deadline: failed.json says RunStopped
    grep -qs RunStopped "$work/$name/failed.json" && stopped=true
    if [ -f "$work/$name/metrics.json" ] || { [ -f "$work/$name/failed.json" ] && ! $stopped; }; then
        "$python" scripts/collect_runs.py "$work/$name" --into "$pack/runs" --name "$name" >> "$out/summary.txt" 2>&1
    elif [ -d "$work/$name" ]; then  # stopped at the deadline: how far it got
        mkdir -p "$pack/unfinished/$name"
        cp "$work/$name/curves.csv" "$work/$name/config.yaml" "$work/$name/failed.json" "$pack/unfinished/$name/" 2>/dev/null
        tail -n 40 "$work/$name.log" > "$pack/unfinished/$name/log_tail.txt"
    fi
done < "$work/todo.txt"
tar czf "$out/paper_grid.tar.gz" -C "$pack" .
echo "packed after $(( $(date +%s) - start )) s" >> "$out/summary.txt"
cat "$out/summary.txt"
