"""The report's provenance table: which code and config made each group of runs, and which groups mix."""

from __future__ import annotations

from collections import defaultdict

from itsr.provenance import CONFIG_FILE, config_fingerprint
from itsr.report.runs import Run

NOT_RECORDED = "not recorded"  # runs made before metrics.json carried a provenance block


def run_commit(run: Run) -> str:
    code = run.metrics.get("provenance", {}).get("code")
    if not code:
        return NOT_RECORDED
    if not code.get("commit"):
        return "no git checkout"
    return code["commit"][:7] + ("+dirty" if code.get("dirty") else "")


def run_fingerprint(run: Run) -> str:
    """The config fingerprint under this version's rules, from the run's config.yaml where it has one: a
    rule that changed since (2026-12-03: the seed's copies left out) then does not split one cell's runs.
    Without config.yaml, the fingerprint the run recorded."""
    path = run.path / CONFIG_FILE
    if path.is_file():
        from omegaconf import OmegaConf

        try:
            config = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
            if isinstance(config, dict):
                return config_fingerprint(config)
        except Exception:  # unreadable or not YAML (OmegaConf raises several types): what the run recorded
            pass
    return run.metrics.get("provenance", {}).get("config_fingerprint") or NOT_RECORDED


def run_precision(run: Run) -> str:
    return str(run.metrics.get("provenance", {}).get("precision") or NOT_RECORDED)


def provenance_table(runs: list[Run]) -> list[str]:
    """One row per (setting, alpha, model): commits, config fingerprints, precisions, and a flag when a
    group mixes commits or configs (its mean then averages over different code or settings)."""
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.setting, run.alpha, run.model)].append(run)
    lines = [
        "## Provenance",
        "",
        "Commit (`+dirty`: tracked files differed from it), config fingerprint (every config value that can change "
        "a result; seeds, paths and threads left out) and precision of each group's runs; ⚠ marks a group that "
        "mixes commits or configs.",
        "",
        "| setting | α | method | runs | commits | configs | precision | |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (setting, alpha, model), members in sorted(groups.items()):
        commits = sorted({run_commit(r) for r in members})
        prints = sorted({run_fingerprint(r) for r in members})
        precisions = sorted({run_precision(r) for r in members})
        mixed = len(commits) > 1 or len(prints) > 1
        lines.append(
            f"| {setting} | {alpha:g} | {model} | {len(members)} | {', '.join(commits)} | {', '.join(prints)} | "
            f"{', '.join(precisions)} | {'⚠ mixed' if mixed else ''} |"
        )
    lines.append("")
    return lines
