"""The run directory contract: the files a run writes and the layout of metrics.json.

Light on purpose (no torch, Lightning or Hydra): the report reads thousands of run directories
through these names without loading a training stack.
"""

from __future__ import annotations

METRICS_FILE = "metrics.json"  # written last and atomically: if it exists, the run finished
METRICS_FORMAT = 1  # bump when the layout of metrics.json changes; the report checks it
FAILURE_FILE = "failed.json"  # a failed job's note (error type and message), shown by the report
TEST_SCORES_FILE = "test_scores.csv"  # per-sample test scores: every metric can be recomputed from them
TRAIN_SCORES_FILE = "train_scores.csv"  # per-sample training scores after training
CURVES_FILE = "curves.csv"  # test metrics and training errors every N epochs (Figs. 1, 4)
REFINEMENT_FILE = "refinement.csv"  # ITSR: one row per detection round
