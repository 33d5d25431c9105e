"""The robustness profile (`itsr.report --profile`), from metrics.json files with known numbers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from itsr.atomic import write_json_atomic
from itsr.refinement import candidate_lift, rank_stability
from itsr.report.profile import base_method
from itsr.results import METRICS_FORMAT
from tests.conftest import REPO_ROOT


def peer_run(root, model, setting, alpha, bacc, auroc, precision=None, seed=0, gap=3.0):
    values = {"tpr": bacc, "tnr": bacc, "bacc": bacc, "auroc": auroc, "ap": None}
    metrics = {
        "format_version": METRICS_FORMAT,
        "config": {"setting": setting, "alpha": alpha, "model": model, "seed": seed},
        "thresholds": {"score": 1.0, "contamination": 2.0},
        "n_train_anomalies": 0 if alpha == 0 else 100,
        "metrics": {s: {"score": dict(values), "contamination": dict(values)} for s in ("observed", "unobserved")},
    }
    if precision is not None:
        metrics["refinement"] = [{"round": 1, "precision": precision, "recall": 0.5, "score_gap": gap}]
    write_json_atomic(root / f"{model}_{setting}_{alpha}_{seed}" / "metrics.json", metrics)


def profile_report(runs, out) -> None:
    """`itsr.report RUNS --profile --out OUT`, through the command line, as a user runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "itsr.report", str(runs), "--profile", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


def refine_signals(root) -> str:
    """scripts/refine_signals.py over `root` (writing root/signals.md and root/s.csv): the report's text."""
    out = root / "signals.md"
    done = subprocess.run(
        [sys.executable, "scripts/refine_signals.py", str(root), "--out", str(out), "--csv", str(root / "s.csv")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return out.read_text()


def test_refined_methods_pair_with_their_plain_base() -> None:
    assert base_method("knn+itsr-score") == "knn" and base_method("ae+itsr-svm") == "ae"
    assert base_method("itsr") == "aae" and base_method("knn") is None


def test_the_profile_tells_gains_wins_failures_and_random_candidates(tmp_path) -> None:
    runs = tmp_path / "runs"
    # two class pairs at alpha 0.1: refinement helps KNN on one (+0.10), hurts it on the other (-0.05),
    # where its candidates were no better than random (precision 0.1 = alpha)
    peer_run(runs, "knn", "mnist_1v7", 0.1, 0.70, 0.80)
    peer_run(runs, "knn+itsr-score", "mnist_1v7", 0.1, 0.80, 0.90, precision=0.9, gap=8.0)
    peer_run(runs, "knn", "mnist_3v5", 0.1, 0.60, 0.70)
    peer_run(runs, "knn+itsr-score", "mnist_3v5", 0.1, 0.55, 0.65, precision=0.1, gap=2.4)
    peer_run(runs, "iforest", "mnist_1v7", 0.1, 0.75, 0.85)
    peer_run(runs, "iforest", "mnist_3v5", 0.1, 0.50, 0.60)
    peer_run(runs, "ocsvm", "mnist_3v5", 0.1, 0.58, 0.60)  # ran on one of the two pairs, lost it
    # a pair and alpha where every method ranks anomalies below normals
    peer_run(runs, "knn", "fmnist_6v0", 0.2, 0.40, 0.30)
    peer_run(runs, "iforest", "fmnist_6v0", 0.2, 0.45, 0.40)
    out = tmp_path / "profile" / "report.md"
    profile_report(runs, out)
    text = out.read_text()
    assert (out.parent / "profile_observed.png").stat().st_size > 1000
    # levels: KNN at 0.1 over its two pairs, 0.65 +- 0.071 BACC
    assert "| knn | 0.650 ± 0.071 / 0.750 ± 0.071 (2) |" in text
    # gain paired by pair: (+0.10 - 0.05) / 2 = +0.025, one pair helped, one hurt
    assert "| knn+itsr-score | 0.1 | 2 | +0.025 (-0.050, +0.100) | +0.025 | 1 | 1 |" in text
    # wins at 0.1: refined KNN takes mnist_1v7 (0.80), KNN takes mnist_3v5 (0.60 against 0.55 and 0.50)
    observed = text.split("## Unobserved split")[0]
    wins = observed.split("Which method wins")[1]
    assert "| knn | 1 |" in wins and "| knn+itsr-score | 1 |" in wins and "| iforest | 0 |" in wins
    # a method that ran on fewer pairs is counted out of its own pairs, not out of all of them
    assert "| ocsvm | 0 of 1 | – |" in wins and '"k of n": the method ran on n of the pairs only' in wins
    assert "| knn+itsr-score | 1 | – |" in wins  # not run at 0.2: no count, not a loss
    assert "- fmnist_6v0, α = 0.2: best AUROC 0.400" in observed
    assert "mnist_1v7, α = 0.1" not in observed.split("Where every method fails")[1]
    # precision: one of the two runs near random (0.1 <= 2 alpha), and that one hurt
    assert "| knn+itsr-score | 0.1 | 2 | 0.500 (0.100, 0.900) | 0.500 | 1 | 1 of 1 |" in text
    # the label-free signal: the helped run's first-round gap (8.0) above the hurt one's (2.4) separates them
    assert "| helped | 1 | 8.00 ± 0.00 (8.00, 8.00) |" in text and "| hurt | 1 | 2.40 ± 0.00 (2.40, 2.40) |" in text
    assert 'AUROC of the gap for "not hurt" against "hurt": 1.000' in text


def test_the_method_to_start_with_is_the_best_on_average_not_the_one_that_wins_most_pairs(tmp_path) -> None:
    runs = tmp_path / "runs"
    # KNN wins three of four pairs narrowly and fails the fourth; IsolationForest is never far from the best;
    # OCSVM ran on two pairs only and would win both: it must not compete, nor move anyone's shortfall
    for pair, knn, iforest in (("a", 0.9, 0.86), ("b", 0.9, 0.86), ("c", 0.9, 0.86), ("d", 0.5, 0.86)):
        peer_run(runs, "knn", f"mnist_{pair}", 0.05, knn, knn)
        peer_run(runs, "iforest", f"mnist_{pair}", 0.05, iforest, iforest)
    for pair in ("a", "d"):
        peer_run(runs, "ocsvm", f"mnist_{pair}", 0.05, 0.99, 0.99)
    out = tmp_path / "report.md"
    profile_report(runs, out)
    observed = out.read_text().split("## Unobserved split")[0].split("Which method to start with")[1]
    # IsolationForest: mean 0.86, 0.04 short on a-c, 0 on d; KNN: 3 wins, mean 0.80, 0.36 short on d
    assert "| 0.05 | 4 | iforest 0.860 | 0.030 / 0.040 | knn (3) | 0.800 | 0.090 / 0.360 | ocsvm (2) |" in observed


def test_the_profile_grid_runs_each_way_of_refining_a_network_as_its_own_sweep() -> None:
    """--refine-by svm,batch: the AE plain, and one sweep per way of finding candidates; a peer keeps its one
    sweep over refine=none,itsr (it refines by score only), with PyOD's default contamination."""
    out = subprocess.run(
        [sys.executable, "scripts/profile_grid.py", "--out", "/tmp/never", "--models", "ae,knn", "--paper-pairs-only"]
        + ["--refine-by", "svm,batch", "--dry-run", "--", "threads=1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    mnist = [line for line in out if "dataset=mnist " in line]
    assert [line.split("hydra.sweep.dir=/tmp/never/mnist/")[1].split()[0] for line in mnist] == [
        "ae",
        "ae+itsr-svm",
        "ae+itsr-batch",
        "knn",
    ]
    assert "refine=none " in mnist[0] and "refine=itsr model.refinement.by=batch" in mnist[2]
    assert "refine=none,itsr" in mnist[3] and "model.detector.contamination=0.1" in mnist[3]
    assert all(line.endswith("threads=1") for line in mnist)


def test_the_profile_grid_can_leave_out_the_papers_pairs() -> None:
    """--drawn-pairs-only: the 16 drawn pairs and none of the paper's (whose networks ran in their own sweeps);
    asking for only the paper's and only the drawn ones at once is refused by argparse, not run."""

    def grid(*flags):
        return subprocess.run(
            [sys.executable, "scripts/profile_grid.py", "--out", "/tmp/never", "--models", "ae", *flags, "--dry-run"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )

    everything, drawn = grid().stdout.splitlines()[0], grid("--drawn-pairs-only").stdout.splitlines()[0]
    all_pairs, drawn_pairs = everything.split(": ")[1].split(", "), drawn.split(": ")[1].split(", ")
    assert len(all_pairs) == 19 and len(drawn_pairs) == 16
    assert drawn_pairs == [pair for pair in all_pairs if pair not in ("mnist_0v2", "fmnist_0v9", "fmnist_0v2")]
    both = grid("--paper-pairs-only", "--drawn-pairs-only")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_the_profile_grid_leaves_out_runs_already_committed(tmp_path) -> None:
    """--committed DIR: a sweep whose runs are all collected under DIR/<setting>/<sweep> is not run again, one
    with some of them runs only the alphas lacking, and a peer's sweep over refine=none,itsr needs both runs
    of an (alpha, seed); an empty DIR leaves the grid whole."""
    committed = tmp_path / "committed"
    committed.mkdir()

    def collected(sweep, alpha, run="0"):
        config = {"setting": "mnist_3v1", "alpha": alpha, "seed": 0, "model": sweep}
        write_json_atomic(committed / "mnist_3v1" / sweep / f"{run}_a{alpha}" / "metrics.json", {"config": config})

    def grid(alphas):
        lines = subprocess.run(
            [sys.executable, "scripts/profile_grid.py", "--out", str(tmp_path / "out"), "--models", "ae,knn"]
            + ["--drawn-pairs-only", "--refine-by", "svm", "--alphas", alphas, "--committed", str(committed)]
            + ["--dry-run"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        sweeps = {
            line.split("hydra.sweep.dir=")[1].split()[0].split("/out/")[1]: line.split(" alpha=")[1].split()[0]
            for line in lines
            if "hydra.sweep.dir=" in line
        }
        return sweeps, lines

    whole, _ = grid("0.05,0.1")
    assert len(whole) == 48 and set(whole.values()) == {"0.05,0.1"}  # 16 drawn pairs x (ae, ae+itsr-svm, knn)
    collected("ae", 0.05)
    collected("ae+itsr-svm", 0.05)
    collected("ae+itsr-svm", 0.1)
    collected("knn", 0.05)  # the plain KNN only: its refined twin is missing
    sweeps, lines = grid("0.05,0.1")
    assert "committed, left out: mnist_3v1/ae+itsr-svm" in lines
    assert sweeps == {**{k: v for k, v in whole.items() if k != "mnist_3v1/ae+itsr-svm"}, "mnist_3v1/ae": "0.1"}
    sweeps, lines = grid("0.05")
    assert "mnist_3v1/ae" not in sweeps and sweeps["mnist_3v1/knn"] == "0.05" and len(sweeps) == 46


def test_the_profile_grid_refuses_a_committed_folder_it_cannot_read(tmp_path) -> None:
    """A mistyped --committed folder would silently rerun the whole grid, and a stray metrics.json would
    crash it: both are one-line refusals naming the path, before anything runs."""

    def grid(committed):
        return subprocess.run(
            [sys.executable, "scripts/profile_grid.py", "--out", str(tmp_path / "out"), "--models", "knn"]
            + ["--paper-pairs-only", "--committed", str(committed), "--dry-run"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )

    missing = grid(tmp_path / "no_such_runs")
    assert missing.returncode == 2 and "no_such_runs: no such folder" in missing.stderr
    stray = tmp_path / "runs" / "mnist" / "knn" / "0_knn" / "metrics.json"
    stray.parent.mkdir(parents=True)
    stray.write_text('{"config": {"seed": 0}}')
    bad = grid(tmp_path / "runs")
    assert bad.returncode == 1 and f"{stray} is not a finished run's metrics.json" in bad.stderr
    assert "Traceback" not in bad.stderr and "-m itsr.run" not in bad.stdout


def test_refine_compare_pairs_a_refined_network_with_its_base_at_equal_epochs(tmp_path) -> None:
    """The plain AE trains 150 epochs, the refined one 80: the base is read from its curves at epoch 80."""

    def network_run(name, model, epochs, bacc, held):
        values = {"tpr": bacc, "tnr": bacc, "bacc": bacc, "auroc": 0.9, "ap": None}
        metrics = {
            "format_version": METRICS_FORMAT,
            "config": {"setting": "mnist_0v2", "alpha": 0.05, "model": model, "seed": 0, "epochs": epochs},
            "criterion": "rec",
            "metrics": {s: {"rec": dict(values)} for s in ("observed", "unobserved")},
            "metrics_holdout": {s: {"rec": dict(values, bacc=held)} for s in ("observed", "unobserved")},
        }
        if "+" in model:
            metrics["refinement"] = [{"round": 1, "precision": 0.3, "recall": 0.6}]
        write_json_atomic(tmp_path / name / "metrics.json", metrics)

    network_run("plain", "ae", 150, bacc=0.50, held=0.86)  # memorised by epoch 150
    network_run("batch", "ae+itsr-batch", 80, bacc=0.79, held=0.90)
    columns = [f"{s}_rec_{k}" for s in ("observed", "unobserved") for k in ("bacc", "auroc", "bacc_holdout")]
    rows = [["epoch", *columns], ["80", "0.61", "0.9", "0.88", "0.61", "0.9", "0.88"]]
    (tmp_path / "plain" / "curves.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")
    out = tmp_path / "compare.md"
    subprocess.run(
        [sys.executable, "scripts/refine_compare.py", str(tmp_path), "--out", str(out)], cwd=REPO_ROOT, check=True
    )
    batch = next(line for line in out.read_text().splitlines() if "| ae+itsr-batch |" in line)
    assert "+0.180 (1 of 1 up) / +0.180 (1 of 1 up) (+0.020 (1 of 1 up)" in batch  # 0.79 - 0.61, 0.90 - 0.88
    assert "0.300 / 0.600" in batch


def test_candidate_lift_rises_when_the_left_out_samples_look_stranger_to_the_refitted_detector() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=1000)
    candidates = np.zeros(1000, dtype=bool)
    candidates[:50] = True
    base[:50] += 1.0  # A already stands a little above the rest
    stranger = base.copy()
    stranger[:50] += 2.0  # once left out of training, the refitted detector scores A higher still
    assert candidate_lift(base, stranger, candidates) > 1.5
    assert abs(candidate_lift(base, base.copy(), candidates)) < 1e-12  # nothing changed: no lift
    # the order of the kept samples: unchanged, reversed
    assert rank_stability(base, stranger, candidates) == 1.0
    reversed_ = base.copy()
    reversed_[~candidates] = -base[~candidates]
    assert rank_stability(base, reversed_, candidates) == -1.0


def scores_file(run_dir, scores, candidates=None) -> None:
    lines = ["label,anomaly,score" + (",candidate" if candidates is not None else "")]
    for i, s in enumerate(scores):
        lines.append(f"0,0,{s}" + (f",{int(candidates[i])}" if candidates is not None else ""))
    (run_dir / "train_scores.csv").write_text("\n".join(lines) + "\n")


def knn_pair(root, setting, base_bacc, refined_bacc, shift, rng) -> None:
    """A plain KNN run and its refined partner at 10%, with training scores: A (the first 20 of 200) moved
    `shift` standard deviations up under the refitted detector."""
    candidates = np.zeros(200, dtype=bool)
    candidates[:20] = True
    peer_run(root, "knn", setting, 0.1, base_bacc, 0.8)
    peer_run(root, "knn+itsr-score", setting, 0.1, refined_bacc, 0.8, precision=0.5)
    base = rng.normal(size=200)
    refined = base.copy()
    refined[:20] += shift
    scores_file(root / f"knn_{setting}_0.1_0", base)
    scores_file(root / f"knn+itsr-score_{setting}_0.1_0", refined, candidates)


HELPED = ("mnist_1v7", 0.70, 0.80, 3.0)  # A left out and then scored far above the rest: BACC +0.10
HURT = ("mnist_3v5", 0.60, 0.55, 0.0)  # A scored as before: BACC -0.05


def test_refine_signals_pairs_refined_runs_with_their_base_and_judges_each_signal(tmp_path) -> None:
    """Two refined KNN runs: where A was left out and then scored far above the rest, refinement helped; where
    A was scored as before, it hurt. The lift separates them (AUROC 1), and its best guard refines only the first."""
    rng = np.random.default_rng(1)
    for pair in (HELPED, HURT):
        knn_pair(tmp_path, *pair, rng)
    peer_run(tmp_path, "iforest", "mnist_1v7", 0.1, 0.7, 0.8)  # no refined partner: not paired
    text = refine_signals(tmp_path)
    assert "2 refined runs paired with their plain base (knn)" in text and "(1 runs)" in text
    assert "| candidate_lift | 1.000 (1 / 1) | 1.000 (1 / 1) |" in text
    lift_guard = next(line for line in text.splitlines() if line.startswith("| knn | candidate_lift |"))
    assert "| 1 of 2 | 0.025 → 0.050 |" in lift_guard  # (+0.10 - 0.05) / 2 refining both, 0.10 / 2 guarded
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 3
    # a directory without any paired run is an error that says so, not a traceback
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run(
        [sys.executable, "scripts/refine_signals.py", str(empty), "--out", str(empty / "signals.md")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "no refined run with its plain base" in done.stderr
    assert "Traceback" not in done.stderr


def run_signals(*args):
    return subprocess.run(
        [sys.executable, "scripts/refine_signals.py", *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True
    )


def test_refine_signals_merges_an_earlier_csv_so_a_grown_profile_needs_only_its_new_run_directories(tmp_path) -> None:
    """The helped run's signals come from an earlier signals.csv, the hurt run's from its directory: together
    they separate as in one pass; a run in both is recomputed, not counted twice; a bad --merge file is an
    error that names it."""
    rng = np.random.default_rng(1)
    first, second = tmp_path / "first", tmp_path / "second"
    knn_pair(first, *HELPED, rng)
    knn_pair(second, *HURT, rng)
    assert run_signals(first, "--out", tmp_path / "a.md", "--csv", tmp_path / "a.csv").returncode == 0
    merged = run_signals(second, "--out", tmp_path / "b.md", "--csv", tmp_path / "b.csv", "--merge", tmp_path / "a.csv")
    assert merged.returncode == 0, merged.stderr
    assert "2 paired runs, 1 of them kept from" in merged.stdout
    text = (tmp_path / "b.md").read_text()
    assert "2 refined runs paired with their plain base (knn)" in text and "(1 runs)" in text
    assert "| candidate_lift | 1.000 (1 / 1) | 1.000 (1 / 1) |" in text
    # the merged csv, merged again with the helped run's directory: that run recomputed, still 2 rows
    again = run_signals(first, "--out", tmp_path / "c.md", "--csv", tmp_path / "b.csv", "--merge", tmp_path / "b.csv")
    assert again.returncode == 0 and "2 paired runs, 1 of them kept from" in again.stdout
    assert len((tmp_path / "b.csv").read_text().splitlines()) == 3
    bad = tmp_path / "bad.csv"
    bad.write_text("run,method\nx,knn\n")
    for merge, says in ((bad, "lacks the columns"), (tmp_path / "none.csv", "no such file")):
        done = run_signals(second, "--out", tmp_path / "d.md", "--merge", merge)
        assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "d.md").exists()


def test_the_profile_gains_a_refined_network_over_its_base_at_equal_epochs(tmp_path) -> None:
    """The plain AE trained 150 epochs (memorised: 0.50), its refined run 80: the profile's gain reads the AE
    at epoch 80 from its curves (0.61), not at its end; a base without that row is left unpaired."""

    def network_run(name, model, setting, epochs, bacc):
        values = {"tpr": bacc, "tnr": bacc, "bacc": bacc, "auroc": 0.9, "ap": None}
        metrics = {
            "format_version": METRICS_FORMAT,
            "config": {"setting": setting, "alpha": 0.05, "model": model, "seed": 0, "epochs": epochs},
            "criterion": "rec",
            "metrics": {s: {"rec": dict(values)} for s in ("observed", "unobserved")},
        }
        if "+" in model:
            metrics["refinement"] = [{"round": 1, "precision": 0.3, "recall": 0.6, "score_gap": 1.0}]
        write_json_atomic(tmp_path / name / "metrics.json", metrics)

    network_run("plain", "ae", "mnist_0v2", 150, bacc=0.50)
    network_run("svm", "ae+itsr-svm", "mnist_0v2", 80, bacc=0.79)
    rows = [["epoch", "observed_rec_bacc", "unobserved_rec_bacc"], ["75", "0.7", "0.7"], ["80", "0.61", "0.65"]]
    (tmp_path / "plain" / "curves.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")
    network_run("plain_nocurves", "ae", "fmnist", 150, bacc=0.50)
    network_run("svm_nocurves", "ae+itsr-svm", "fmnist", 80, bacc=0.79)
    out = tmp_path / "report.md"
    profile_report(tmp_path, out)
    observed, unobserved = out.read_text().split("## Unobserved split")
    assert "| ae+itsr-svm | 0.05 | 1 | +0.180 (+0.180, +0.180) | – | 1 | 0 |" in observed
    assert "| ae+itsr-svm | 0.05 | 1 | +0.140 (+0.140, +0.140) |" in unobserved


def test_refine_signals_reads_a_networks_reconstruction_error_and_names_a_file_it_cannot_read(tmp_path) -> None:
    """ITSR against the AAE (same epochs): the signals come from `rec_error`; a scores file with neither a
    `score` nor a `rec_error` column is left out with its reason, not a traceback."""
    candidates = np.zeros(100, dtype=bool)
    candidates[:10] = True
    base = np.random.default_rng(2).normal(size=100)
    for setting, column in (("mnist_0v2", "rec_error"), ("fmnist", "something_else")):
        for model, bacc in (("aae", 0.7), ("itsr", 0.8)):
            peer_run(tmp_path, model, setting, 0.05, bacc, 0.8, precision=0.5 if model == "itsr" else None)
            scores = base + (3.0 * candidates if model == "itsr" else 0.0)
            lines = [f"label,anomaly,{column},candidate"] + [f"0,0,{s},{int(c)}" for s, c in zip(scores, candidates)]
            (tmp_path / f"{model}_{setting}_0.05_0" / "train_scores.csv").write_text("\n".join(lines) + "\n")
    text = refine_signals(tmp_path)
    assert "1 refined runs paired with their plain base (aae)" in text
    assert "itsr_fmnist_0.05_0: no score column (score, rec_error) in train_scores.csv" in text
    row = (tmp_path / "s.csv").read_text().splitlines()[1].split(",")
    assert float(row[-2]) > 2.0  # candidate lift: A moved 3 of the rest's standard deviations up


def test_refine_signals_tests_a_guard_fixed_in_advance_on_the_settings_it_was_not_chosen_on(tmp_path) -> None:
    """A lift guard chosen on MNIST 0 v 2 is judged on the other two settings only: there it refines the helped
    run and keeps the hurt run's base, so the mean observed gain rises from +0.025 to +0.050; read the other
    way round (<=) it keeps only the hurt run (-0.025). A malformed guard is an error that names it."""
    rng = np.random.default_rng(1)
    for pair in (HELPED, HURT, ("mnist_0v2", 0.50, 0.90, 3.0)):
        knn_pair(tmp_path, *pair, rng)
    done = run_signals(
        tmp_path,
        "--out",
        tmp_path / "g.md",
        "--guard",
        "knn:candidate_lift:>=:1.0",
        "--guard",
        "knn:candidate_lift:<=:1.0",
        "--guard-chosen-on",
        "mnist_0v2",
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "g.md").read_text()
    assert "Chosen on: mnist_0v2." in text
    ahead = next(line for line in text.splitlines() if line.startswith("| knn: refine where candidate_lift >= 1 |"))
    assert "| 2 (2) | 1 | 1.000 | 1 of 2 | 0.025 → 0.050 |" in ahead  # the chosen-on run (+0.40) is not counted
    behind = next(line for line in text.splitlines() if line.startswith("| knn: refine where candidate_lift <= 1 |"))
    assert "| 1 of 2 | 0.025 → -0.025 |" in behind
    for guard, says in (
        ("knn:candidate_lift:>:1", "the direction is <= or >="),
        ("knn:lift:>=:1", "unknown signal 'lift'"),
        ("knn:candidate_lift:>=", "give BASE:SIGNAL:<=|>=:THRESHOLD"),
    ):
        bad = run_signals(tmp_path, "--out", tmp_path / "b.md", "--guard", guard, "--guard-chosen-on", "mnist_0v2")
        assert bad.returncode == 2 and says in bad.stderr and "Traceback" not in bad.stderr
    alone = run_signals(tmp_path, "--out", tmp_path / "b.md", "--guard", "knn:candidate_lift:>=:1")
    assert alone.returncode == 2 and "--guard needs --guard-chosen-on" in alone.stderr
    assert not (tmp_path / "b.md").exists()
