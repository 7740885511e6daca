"""Longer training: does Marker Excite overtake Marker Sampling when the same network trains longer?

``experiments/gpu/longer_training.sh`` trains MS and MS-ME of the ``cpu`` preset (fold 0, sinusoids)
for the preset's epochs and for 10 times as many, once per seed, on one GPU with Keras' JAX backend,
into ``<root>/e<epochs>-seed<seed>/`` (each an ordinary experiment output folder). :func:`longer_lines`
turns those folders into the report section "Longer training": per arm and seed the mean test F1 of
both models over the 31 subsets, the paired MS-ME - MS difference (Wilcoxon over the subsets), the
best-validation epoch and how far the validation F1 fell from its peak by the end of training.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from marker_excite.analysis.results import read_results
from marker_excite.analysis.stats import wilcoxon
from marker_excite.experiments.spec import EVALUATION_CSV, RUNS
from marker_excite.runs.directory import LOG
from marker_excite.runs.log import read_log

#: Output folder names written by ``experiments/gpu/longer_training.sh``.
ARM_DIR = re.compile(r"^e(?P<epochs>\d+)-seed(?P<seed>\d+)$")
#: The compared models: (reference, model).
PAIR = ("MS", "MS-ME")


#: The job compared in every folder: class and fold of the runs.
JOB_SUFFIX = "__all__sinusoids__f0"


def _run(folder: Path, model: str) -> dict[str, Any] | None:
    """Test F1 per subset and validation-curve facts of ``model``'s fold-0 sinusoid run in ``folder``
    (None: not finished)."""
    run = folder / RUNS / f"{model}{JOB_SUFFIX}"
    rows = [r for r in read_results(run / EVALUATION_CSV) if r.get("metric") == "f1"] if run.is_dir() else []
    if not rows:
        return None
    val = np.array([float(r["val_mean_f1"]) for r in read_log(run / LOG)])
    return {
        "f1": {str(r["subset"]): float(r["value"]) for r in rows},
        "best_epoch": int(np.argmax(val)) + 1,
        "peak": float(val.max()),
        "final": float(val[-max(1, len(val) // 4) :].mean()),  # the last quarter of the epochs (at least one)
    }


def pair_row(folder: str | os.PathLike) -> dict[str, Any] | None:
    """MS vs MS-ME (:data:`PAIR`) in one output folder: mean F1s, their difference, the Wilcoxon test
    over the shared subsets, best epochs and validation drops (None: a model is not finished)."""
    ref, model = (_run(Path(folder), m) for m in PAIR)
    if ref is None or model is None:
        return None
    subsets = sorted(set(ref["f1"]) & set(model["f1"]))
    a = np.array([ref["f1"][s] for s in subsets])
    b = np.array([model["f1"][s] for s in subsets])
    return {
        "n": len(subsets),
        "ref_mean": float(a.mean()),
        "model_mean": float(b.mean()),
        "diff": float(b.mean() - a.mean()),
        "median": float(np.median(b - a)),
        "p": wilcoxon(b, a).pvalue,
        "best_epochs": (ref["best_epoch"], model["best_epoch"]),
        "drop": (ref["peak"] - ref["final"], model["peak"] - model["final"]),
    }


def arm_rows(root: str | os.PathLike) -> list[dict[str, Any]]:
    """:func:`pair_row` of every ``e<epochs>-seed<seed>`` folder of ``root`` with both models finished,
    with its ``epochs`` and ``seed``, sorted by (epochs, seed)."""
    rows = []
    for folder in sorted(Path(root).iterdir()) if Path(root).is_dir() else []:
        match = ARM_DIR.match(folder.name)
        row = pair_row(folder) if match and folder.is_dir() else None
        if row is not None:
            rows.append({"epochs": int(match["epochs"]), "seed": int(match["seed"]), **row})
    return sorted(rows, key=lambda r: (r["epochs"], r["seed"]))


def longer_lines(root: str | os.PathLike, reference: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """The report section for the arms in ``root`` (see module doc); ``reference``: :func:`pair_row` of the
    TensorFlow CPU runs with the preset's epochs (the report's seed replicates), for comparison."""
    rows = arm_rows(root)
    if not rows:
        return []
    ref, model = PAIR
    lines = [
        f"Output folder: {root} (`experiments/gpu/longer_training.sh`: {ref} and {model}, sinusoids, fold 0, the",
        "`cpu` preset's network, phantom and batches; one GPU, Keras' JAX backend). Mean test F1 over the",
        "subsets, the paired difference (median, Wilcoxon p over the subsets), the best-validation epochs",
        "and the drop of the validation mean F1 from its peak to the mean of the last quarter of the epochs.",
        "",
        f"| epochs | seed | {ref} | {model} | {model} - {ref}: mean (median, p, n) | best epoch {ref} / {model} | "
        f"validation drop {ref} / {model} |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['epochs']} | {r['seed']} | {r['ref_mean']:.3f} | {r['model_mean']:.3f} | {r['diff']:+.3f} "
            f"({r['median']:+.3f}, p {r['p']:.2g}, n {r['n']}) | {r['best_epochs'][0]} / {r['best_epochs'][1]} | "
            f"{r['drop'][0]:.3f} / {r['drop'][1]:.3f} |"
        )
    lines.append("")
    groups = [(f"{e} epochs", [r for r in rows if r["epochs"] == e]) for e in sorted({r["epochs"] for r in rows})]
    if reference:
        groups.append(("TensorFlow on the CPU, the preset's epochs (this report's seed replicates)", list(reference)))
    for name, group in groups:
        diffs = [r["diff"] for r in group]
        lines.append(
            f"- {name}: mean F1 {ref} {np.mean([r['ref_mean'] for r in group]):.3f}, {model} "
            f"{np.mean([r['model_mean'] for r in group]):.3f}; {model} - {ref} = {_mean_sd(diffs)} over "
            f"{len(diffs)} seeds ({sum(d < 0 for d in diffs)} negative)."
        )
    return lines


def longer_note(root: str | os.PathLike) -> str:
    """One line for the MS-ME vs MS claim's notes: the difference with the longest training in ``root``
    (``""`` when none finished)."""
    rows = arm_rows(root)
    if not rows:
        return ""
    longest = max(r["epochs"] for r in rows)
    diffs = [r["diff"] for r in rows if r["epochs"] == longest]
    return (
        f"trained {longest} epochs (GPU): {PAIR[1]} - {PAIR[0]} = {_mean_sd(diffs)} over {len(diffs)} seeds "
        "(section Longer training)"
    )


def _mean_sd(values: Sequence[float]) -> str:
    sd = f" +- {np.std(values, ddof=1):.3f} (SD)" if len(values) > 1 else ""
    return f"{np.mean(values):+.3f}{sd}"
