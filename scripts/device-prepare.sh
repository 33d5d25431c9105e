#!/bin/bash
# What scripts/device-paper-grid.sh needs carried to the GPU machine, which has torch, Lightning,
# scikit-learn and matplotlib but not hydra-core, omegaconf or their parser, and no network:
#   .whl/      hydra-core, omegaconf, antlr4-python3-runtime at the versions of this .venv (pure Python;
#              antlr4 4.9.3 exists only as a source archive, so it is built into a wheel here)
#   .devdata/  data.tar.gz: MNIST and Fashion-MNIST as fetched by `make data` (42 MB), and commit: the
#              HEAD the copy is made at (the copy has no .git; runs record it as their commit)
# Both folders are git-ignored; run from the repository root after `make data`.
# The device tool carries at most 64 MiB: the tracked tree (83 MB on 2026-12-03, 71 MB of it the committed
# runs' per-sample score CSVs), untracked files and the carried folders. With --strip-scores the score CSVs
# under results/ leave the working tree for the call (about 52 MiB then travels); they stay committed, and
# the command printed at the end restores exactly those files (scripts/paper_grid.py reads only
# metrics.json). Commit before: a device call should run committed code. The script prints the size
# that would travel.
set -eu
cd "$(dirname "$0")/.."
pip=.venv/bin/pip
[ -x "$pip" ] || { echo "device-prepare: no .venv; run 'make install' first" >&2; exit 2; }
[ -d data/mnist ] && [ -d data/fmnist ] || { echo "device-prepare: no data/mnist or data/fmnist; run 'make data' first" >&2; exit 2; }
version() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf .whl && mkdir -p .whl .devdata
"$pip" download -q --no-deps --only-binary=:all: -d .whl "hydra-core==$(version hydra-core)" "omegaconf==$(version omegaconf)"
"$pip" wheel -q --no-deps -w .whl "antlr4-python3-runtime==$(version antlr4-python3-runtime)"
tar czf .devdata/data.tar.gz -C data mnist fmnist
git rev-parse HEAD > .devdata/commit
git diff --quiet HEAD -- itsr conf scripts || echo "device-prepare: itsr/, conf/ or scripts/ differ from HEAD; the runs will record HEAD: commit first" >&2
if [ "${1:-}" = --strip-scores ]; then
    git ls-files -z results | grep -z -E '_scores\.csv$' | xargs -0 rm -f
    echo "score CSVs removed from the working tree; after the device call restore them with:"
    echo "    git ls-files -z --deleted results | xargs -0 -r git checkout --"
fi
.venv/bin/python - <<'PY'
import subprocess
from pathlib import Path
files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       capture_output=True, check=True).stdout.split(b"\0")
tree = sum(Path(f.decode()).stat().st_size for f in files if f and Path(f.decode()).is_file())
carried = sum(p.stat().st_size for d in (".whl", ".devdata") for p in Path(d).rglob("*") if p.is_file())
total, limit = tree + carried, 64 * 2**20
print(f"would travel: {total / 2**20:.1f} MiB (tree {tree / 2**20:.1f}, .whl + .devdata {carried / 2**20:.1f}); "
      f"the device tool carries {limit / 2**20:.0f} MiB" + ("" if total <= limit else ": too much, use --strip-scores"))
PY
