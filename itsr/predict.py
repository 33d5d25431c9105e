"""Score new images with a trained model and the thresholds saved with it.

    python -m itsr.predict MODEL INPUT... [--out scores.csv] [--montage worst.png]

MODEL is a run directory of `python -m itsr.run` (its model.pt) or a model.pt file; INPUT is image
files or folders (PNG, JPEG, BMP; nested folders allowed). Writes a CSV with the columns
path,rec_error,log_likelihood,score,is_anomaly (score: the criterion's single score, higher = more
anomalous, > 0 exactly when the image is flagged) and prints a summary. A PyOD peer's run (model=iforest,
...) writes path,detector_score,score,is_anomaly; its detector is a pickle (peer.joblib), loaded only when
MODEL is the run directory itself, and only if it is the file the run's model.pt recorded.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import torch

from itsr.atomic import write_bytes_atomic
from itsr.cli import program_name
from itsr.data.images import ImageSizeError, Preprocessing, find_images, load_images
from itsr.detector import LIKELIHOOD_SCORE, REC_SCORE
from itsr.errors import OptionError
from itsr.model_file import (
    THRESHOLD_SOURCES,
    ModelFileError,
    load_model,
    read_model_file,
    resolve_model_path,
    saved_detector,
)
from itsr.peers import PEER_CRITERIA, PEER_MODULE, SCORE_CRITERION, PeerError
from itsr.scoring import CRITERIA, check_percentile

MONTAGE_DEFAULT_COUNT = 16
BATCH_SIZE_DEFAULT = 1024  # images scored at once; memory only, the scores do not depend on it


class PredictError(RuntimeError):
    """Bad input for scoring; the message names the file and the fix."""


class FittedPeer:
    """A peer's fitted PyOD detector, scored like our networks (itsr.interface.ScoringModel.score)."""

    def __init__(self, detector):
        self.detector = detector

    def score(self, x: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        from itsr.peers.detector import criterion_scores

        return criterion_scores(self.detector, x)


def load_scorer(model: str | Path, payload: dict, thresholds: str):
    """(its saved decision rule, a function that gives what scores images): a network from model.pt, or a
    peer's detector from the pickle beside it, unpickled only when MODEL is the run directory (the user
    named it), never from a model.pt path alone, only if it is the file model.pt recorded, and only once
    the options have been checked against the saved rule."""
    if payload.get("module") != PEER_MODULE:
        module, detector, _ = load_model(model, payload, thresholds)
        return detector, lambda: module
    from itsr.peers.detector import load_peer

    if not Path(model).is_dir():
        raise PredictError(
            f"{model}: a {payload['model']} peer keeps its fitted detector as a pickle ({payload['peer_file']}) "
            "beside model.pt; itsr unpickles it only from a run directory you name: pass the run directory"
        )
    try:
        detector = saved_detector(resolve_model_path(model), payload, thresholds)
    except ModelFileError as error:
        raise PredictError(str(error)) from None
    return detector, lambda: FittedPeer(load_peer(Path(model), payload["peer_sha256"]))


def score_paths(
    model: str | Path,
    inputs: list[str | Path],
    criterion: str | None = None,
    rec_percentile: float | None = None,
    lik_percentile: float | None = None,
    batch_size: int = 1024,
    device: str | None = None,
    progress: bool = False,
    thresholds: str = "auto",
) -> dict:
    """Scores of every readable image, by a network or a PyOD peer alike; the result also lists skipped
    files and the thresholds used. thresholds: "train", "holdout" or "auto" (the held-out slice's where the
    model has one)."""
    payload = read_model_file(model)
    detector, load = load_scorer(model, payload, thresholds)
    name, peer = payload["model"], payload.get("module") == PEER_MODULE
    if lik_percentile is not None and detector.thresholds.t_prior is None:
        raise PredictError(
            f"--lik-percentile {lik_percentile:g}: this {name} model has no latent prior, so no "
            "likelihood threshold; only --rec-percentile applies"
        )
    criterion = criterion or detector.default_criterion
    if criterion not in detector.criteria:
        raise PredictError(f"--criterion {criterion}: this {name} model offers {detector.criteria}")
    if rec_percentile is not None and criterion in dict((r[0], r) for r in detector.extra_rules):
        raise PredictError(
            f"--rec-percentile re-thresholds the {detector.rec_criterion!r} criterion, not {criterion!r}"
        )
    prep = Preprocessing.from_dict(payload["preprocessing"])
    x, kept, skipped = _images(inputs, prep, progress)
    scorer = load()
    if not peer:
        scorer.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    scores = scorer.score(x, batch_size)
    detector = detector.refit(rec_percentile, lik_percentile)  # the saved scores at other percentiles, if asked
    return {
        "paths": kept,
        "skipped": skipped,
        "scores": {name: scores[name] for name in (REC_SCORE, LIKELIHOOD_SCORE, SCORE_CRITERION) if name in scores},
        "score": detector.scores_of(scores)[criterion],
        "is_anomaly": detector.decide_of(scores)[criterion],
        "reconstruction": None if peer else scorer.decode(scores["code"].to(scorer.device)).detach().cpu(),
        "inputs": x,
        "thresholds": detector.thresholds,
        "threshold_value": detector.reported_thresholds().get(criterion, detector.thresholds.t_rec),
        "threshold_source": "holdout" if thresholds != "train" and payload.get("holdout_detector") else "train",
        "criterion": criterion,
        "preprocessing": prep,
        **({"peer": name} if peer else {}),
    }


def _images(inputs: list[str | Path], prep: Preprocessing, progress: bool):
    paths = find_images(*inputs)
    if not paths:
        raise PredictError(f"no image files (.png, .jpg, .jpeg, .bmp) in {', '.join(map(str, inputs))}")
    x, kept, skipped = load_images(paths, prep, progress=progress)
    if not kept:
        raise PredictError(f"none of the {len(paths)} files is a readable image (see the warnings above)")
    return x, kept, skipped


# the CSV column of each score a model gives (a peer's raw score beside the criterion's "score")
SCORE_COLUMNS = {REC_SCORE: "rec_error", LIKELIHOOD_SCORE: "log_likelihood", SCORE_CRITERION: "detector_score"}


def write_predictions(path: Path, result: dict) -> None:
    """path, the model's raw scores (rec_error and log_likelihood, empty for a model without a prior; a
    peer's detector_score), the criterion's score and the decision."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = [SCORE_CRITERION] if "peer" in result else [REC_SCORE, LIKELIHOOD_SCORE]
    writer.writerow(["path", *(SCORE_COLUMNS[n] for n in names), "score", "is_anomaly"])
    for i, image in enumerate(result["paths"]):
        raw = [result["scores"].get(n) for n in names]
        writer.writerow(
            [
                str(image),
                *("" if values is None else repr(float(values[i])) for values in raw),
                repr(float(result["score"][i])),
                int(result["is_anomaly"][i]),
            ]
        )
    write_bytes_atomic(path, buffer.getvalue().encode())


def write_montage(path: Path, result: dict, count: int) -> None:
    """The most anomalous images (top row of each pair) above their reconstructions (a peer has none: one row
    per image row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prep: Preprocessing = result["preprocessing"]
    order = torch.argsort(result["score"], descending=True)[:count]
    columns = min(8, len(order))
    per_image = 1 if result["reconstruction"] is None else 2
    rows = per_image * ((len(order) + columns - 1) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.7 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    channels = 3 if prep.color == "rgb" else 1
    for k, i in enumerate(order.tolist()):
        r, c = per_image * (k // columns), k % columns
        pairs = [(r, result["inputs"][i])]
        if result["reconstruction"] is not None:
            pairs.append((r + 1, result["reconstruction"][i]))
        for row, image in pairs:
            pixels = image.reshape(channels, *prep.size).permute(1, 2, 0).squeeze(-1).clamp(0, 1).numpy()
            axes[row][c].imshow(pixels, cmap="gray" if channels == 1 else None, vmin=0, vmax=1)
        axes[r][c].set_title(f"{result['paths'][i].name[:14]}\nscore {float(result['score'][i]):.2f}", fontsize=7)
    below = "" if result["reconstruction"] is None else ": image above, reconstruction below"
    fig.suptitle(f"Most anomalous images (criterion {result['criterion']}){below}", fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def device_problem(device: str | None) -> str | None:
    """Why --device cannot be used here, or None when it can."""
    if device is None:
        return None
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        return f"--device {device}: not a device name; use cpu, cuda or cuda:N"
    if parsed.type == "cpu":
        return None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return f"--device {device}: no CUDA device is available here; use --device cpu"
        if parsed.index is not None and parsed.index >= count:
            return f"--device {device}: this machine has cuda:0..cuda:{count - 1}"
        return None
    return f"--device {device}: only cpu and cuda are supported"


def argument_problems(args: argparse.Namespace) -> list[str]:
    """Every bad option, each named with what is allowed; checked before any file is read."""
    problems = []
    for option, value in (("--rec-percentile", args.rec_percentile), ("--lik-percentile", args.lik_percentile)):
        try:
            if value is not None:
                check_percentile(option, value)  # also refuses nan
        except OptionError as error:
            problems.append(f"{option} {error.rule}, got {value:g}")
    for option, value in (("--batch-size", args.batch_size), ("--montage-count", args.montage_count)):
        if value < 1:
            problems.append(f"{option} must be a positive integer, got {value}")
    for option, target in (("--out", args.out), ("--montage", args.montage)):
        if target is None:
            continue
        if target.is_dir():
            problems.append(f"{option} {target} is a directory; give a file name")
        elif target.exists() and not args.overwrite:
            problems.append(f"{option} {target} exists; pass --overwrite to replace it")
    if args.montage is not None and args.montage.resolve() == args.out.resolve():
        problems.append(f"--out and --montage are the same file ({args.out})")
    device = device_problem(args.device)
    return problems + ([device] if device else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=program_name("itsr.predict"), description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="run directory of `python -m itsr.run`, or its model.pt")
    parser.add_argument("inputs", nargs="+", help="image files or folders")
    parser.add_argument("--out", type=Path, default=Path("scores.csv"), help="CSV to write (default: scores.csv)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument(
        "--criterion",
        choices=CRITERIA + PEER_CRITERIA,
        help="default: the model's (combined, or rec for the AE; score for a PyOD peer)",
    )
    parser.add_argument(
        "--rec-percentile",
        type=float,
        help="T_rec from this percentile of the errors the --thresholds source saved (training set or held-out "
        "slice; a peer: its scores) instead of the saved threshold (the paper: 90)",
    )
    parser.add_argument(
        "--lik-percentile",
        type=float,
        help="T_prior from this percentile of the log-likelihoods the --thresholds source saved "
        "instead of the saved threshold (the paper: 10)",
    )
    parser.add_argument(
        "--thresholds",
        choices=THRESHOLD_SOURCES,
        default="auto",
        help="train: the paper's rule (percentiles of the training scores); holdout: the same percentiles of the "
        "held-out slice's scores (a run with scoring.holdout_fraction > 0); auto (default): holdout where the model "
        "has one, else train",
    )
    parser.add_argument("--montage", type=Path, help="PNG grid of the most anomalous images and reconstructions")
    parser.add_argument("--montage-count", type=int, default=MONTAGE_DEFAULT_COUNT, help="images in the montage")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE_DEFAULT, help="images scored at once")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")
    args = parser.parse_args(argv)
    problems = argument_problems(args)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 2
    try:
        result = score_paths(
            args.model,
            args.inputs,
            args.criterion,
            args.rec_percentile,
            args.lik_percentile,
            args.batch_size,
            args.device,
            progress=True,
            thresholds=args.thresholds,
        )
    except (ModelFileError, PredictError, PeerError, ImageSizeError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        write_predictions(args.out, result)
        if args.montage:
            write_montage(args.montage, result, args.montage_count)
    except OSError as error:  # full disk, no permission: name the file; the atomic write left nothing half-written
        print(f"error: cannot write {error.filename or args.out}: {error.strerror or error}", file=sys.stderr)
        return 2
    n, flagged = len(result["paths"]), int(result["is_anomaly"].sum())
    th = result["thresholds"]
    threshold = f"threshold {result['threshold_value']:.5g}" if "peer" in result else f"T_rec {th.t_rec:.5g}"
    print(
        f"scored {n} images: {flagged} flagged as anomalous ({100 * flagged / n:.1f}%), criterion "
        f"{result['criterion']}, {threshold}"
        + (f", T_prior {th.t_prior:.4g}" if th.t_prior else "")
        + f" (thresholds from the {'held-out slice' if result['threshold_source'] == 'holdout' else 'training set'})"
    )
    if result["skipped"]:
        print(f"skipped {len(result['skipped'])} unreadable files:")
        for path, reason in result["skipped"]:
            print(f"  {path}: {reason}")
    print(f"written: {args.out}" + (f", {args.montage}" if args.montage else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
