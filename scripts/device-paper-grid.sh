#!/bin/bash
# The Fig. 5 grid's remaining runs (scripts/paper_grid.py) on a GPU machine lent through the device tool
# (one H200, 16 cores, no network; issue 24). Prepare here first, in the session that has the GPU:
#     bash scripts/device-prepare.sh --strip-scores   # .whl/, .devdata/ (data, commit); score CSVs out of the tree
# then, through the device tool, one call:
#     run(command="bash scripts/device-paper-grid.sh 500 60", carry=[".whl", ".devdata"], timeout_s=600)
# and afterwards restore the score CSVs (device-prepare.sh prints the command).
# Arguments: DEADLINE_S (default 500): seconds after which unfinished runs get SIGTERM (SIGKILL 20 s later);
# BENCH_S (default 0): seconds first given to `python -m itsr.bench` on the GPU (0: no benchmark).
# First a preflight (imports, then a 1-epoch-per-phase ITSR run on the GPU): if it fails, nothing else
# runs and its log comes back. Then the runs share the GPU, JOBS at a time (one CPU thread each), shortest
# first (scripts/paper_grid.py --order shortest); runs beyond JOBS start as others end. Without MPS the
# processes' kernels take turns on the GPU, so a few jobs already fill it and more only delay every run
# past the deadline: JOBS defaults to 4, and to MPS_JOBS (default 8) when MPS=1 started NVIDIA's
# multi-process service and a CUDA process ran under it (else the script says so and goes on without it;
# on the H200, 2026-12-04, 9 runs under MPS each kept the single-process speed).
# SKIP: comma-separated run names to leave out (those training on the CPU queue meanwhile). BENCH_EXTRA:
# more arguments for the benchmark, e.g. "--compile default,reduce-overhead --k-runs 0" (the step's cost
# compiled; results/bench/README.md). EXTRA: more overrides for every run, e.g.
# "compile.enabled=true +compile.options.mode=reduce-overhead". Checkpoints do not come back
# (about 40 MB each), so a run stopped at the deadline starts over in a later call: with 15 minutes of
# device time a session gets the runs that finish within DEADLINE_S.
# What comes back, in $OUT: paper_grid.tar.gz with runs/ (finished runs' small files, as
# scripts/collect_runs.py copies them: unpack into results/paper/runs/ after a look), failed/ (failed
# runs' failed.json and config), unfinished/ (curves.csv and failed.json of runs stopped at the deadline)
# and logs/ (every run's log tail); summary.txt (each run's exit status and wall time), bench.json,
# nvidia-smi.txt.
# A local try of the orchestration without a GPU (tiny epochs, a fake results folder):
#     OUT=/tmp/out PYTHON=.venv/bin/python TRAINER=default PRECISION=32-true JOBS=2 ITSR_DATA_DIR=data \
#         RUNS=/tmp/fake-runs WORK=/tmp/device-work EXTRA="dataset.epochs.aae=2 ..." bash scripts/device-paper-grid.sh 120
set -u
deadline=${1:-500}
bench_s=${2:-0}
for value in "$deadline" "$bench_s"; do
    [[ $value =~ ^[0-9]+$ ]] || { echo "device-paper-grid: '$value' is not a number of seconds; usage: device-paper-grid.sh [DEADLINE_S] [BENCH_S]" >&2; exit 2; }
done
start=$(date +%s)
[ -n "${OUT:-}" ] || { echo "device-paper-grid: OUT is unset: the device tool sets it; locally pass OUT=/some/dir" >&2; exit 2; }
absolute() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
out=$(absolute "$OUT")
runs=$(absolute "${RUNS:-results/paper/runs}")
work=$(absolute "${WORK:-outputs/device}")
python=${PYTHON:-python3}
case $python in */*) python=$(absolute "$python") ;; esac
trainer=${TRAINER:-gpu}
precision=${PRECISION:-bf16-mixed}  # the grid's (scripts/paper_grid.py); a local try on a CPU without bf16: 32-true
# a grid run's overrides come from scripts/paper_grid.py --format args; PRECISION, when set, overrides theirs
precision_override=${PRECISION:+trainer.precision=$PRECISION}
jobs=${JOBS:-4}
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
[ -f .devdata/commit ] && [ ! -d .git ] && export ITSR_CODE_COMMIT=$(cat .devdata/commit)  # provenance without .git
export PYTHONPATH=${PYTHONPATH:-$PWD} OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 WANDB_MODE=offline PYTHONUNBUFFERED=1
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
summary=$out/summary.txt
: > "$summary"

if [ "${MPS:-0}" = 1 ]; then  # concurrent kernels from the runs' processes, if the image allows it
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    if timeout 20 nvidia-cuda-mps-control -d >> "$out/mps.log" 2>&1 \
        && timeout 60 "$python" -c "import torch; torch.ones(1, device='cuda').sum().item(); print('cuda under MPS: ok')" \
            >> "$out/mps.log" 2>&1; then
        jobs=${JOBS:-${MPS_JOBS:-8}}
        echo "mps: on, $jobs jobs" >> "$summary"
    else
        echo quit | timeout 10 nvidia-cuda-mps-control >> "$out/mps.log" 2>&1
        unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
        echo "mps: could not start (mps.log), $jobs jobs without it" >> "$summary"
    fi
fi

# preflight: one tiny run through the whole pipeline on the target device; nothing else if it fails
"$python" -c "import hydra, omegaconf, torch, pytorch_lightning, itsr.run; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
    > "$out/preflight.log" 2>&1 \
    && timeout -k 20 -s TERM 180 "$python" -m itsr.run experiment=quick model=itsr trainer="$trainer" \
        trainer.precision="$precision" threads=1 dataset.epochs.itsr_pretrain=1 dataset.epochs.itsr_round=1 \
        dataset.epochs.itsr_retrain=1 model.refinement.rounds=1 hydra.run.dir="$work/preflight" \
        >> "$out/preflight.log" 2>&1
status=$?
echo "preflight: exit $status after $(( $(date +%s) - start )) s" >> "$summary"
if [ $status -ne 0 ]; then cat "$summary"; tail -n 30 "$out/preflight.log"; exit 1; fi

if [ "$bench_s" -gt 0 ]; then
    timeout -k 20 -s TERM "$bench_s" "$python" -m itsr.bench --device cuda --epochs 3 --repeats 1 --skip-svm-scaling \
        --parallel-jobs 0 --k-runs 3 ${BENCH_EXTRA:-} --out "$out/bench.json" > "$out/bench.log" 2>&1
    echo "bench: exit $? after $(( $(date +%s) - start )) s" >> "$summary"
fi

"$python" scripts/paper_grid.py --runs "$runs" --format args --order shortest --skip "${SKIP:-}" > "$work/todo.txt" || exit 2
echo "$(grep -c . "$work/todo.txt") runs to do, $jobs at a time, deadline ${deadline}s" >> "$summary"

run_one() {  # name override...: one run, stopped by SIGTERM at the deadline
    local name=$1; shift
    local left=$(( deadline - ($(date +%s) - start) ))
    if [ "$left" -le 30 ]; then echo "$name not started (deadline)"; return; fi
    local t0=$(date +%s)
    timeout -k 20 -s TERM "$left" "$python" -m itsr.run "$@" trainer="$trainer" $precision_override \
        threads=1 hydra.run.dir="$work/$name" $EXTRA > "$work/$name.log" 2>&1
    echo "$name exit $? after $(( $(date +%s) - t0 )) s"
}
export -f run_one
export deadline start python trainer precision_override work EXTRA=${EXTRA:-}
xargs -r -P "$jobs" -L 1 bash -c 'run_one "$@"' _ < "$work/todo.txt" >> "$summary"

pack=$(mktemp -d)
mkdir -p "$pack/logs"
tail -n 60 "$out/preflight.log" > "$pack/logs/preflight.log"
while read -r name _; do
    [ -n "$name" ] || continue
    [ -f "$work/$name.log" ] && tail -n 60 "$work/$name.log" > "$pack/logs/$name.log"
    if [ -f "$work/$name/metrics.json" ] && [ ! -f "$work/$name/failed.json" ]; then
        "$python" scripts/collect_runs.py "$work/$name" --into "$pack/runs" --name "$name" >> "$summary" 2>&1
    elif grep -qs RunStopped "$work/$name/failed.json"; then  # stopped at the deadline: how far it got
        mkdir -p "$pack/unfinished/$name"
        cp "$work/$name/curves.csv" "$work/$name/config.yaml" "$work/$name/failed.json" "$pack/unfinished/$name/" 2>/dev/null
    elif [ -d "$work/$name" ]; then  # failed, or killed without a word: never among the finished runs
        mkdir -p "$pack/failed/$name"
        cp "$work/$name/failed.json" "$work/$name/config.yaml" "$pack/failed/$name/" 2>/dev/null
    fi
done < "$work/todo.txt"
tar czf "$out/paper_grid.tar.gz" -C "$pack" .
echo "packed after $(( $(date +%s) - start )) s" >> "$summary"
cat "$summary"
