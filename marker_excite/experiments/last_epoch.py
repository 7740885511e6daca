"""How much the model selection decides a comparison: every finished run evaluated with its LAST epoch.

The paper (and every job here) keeps the epoch with the best validation mean F1, measured on a
validation sample with all markers, and then tests the model on all 31 marker subsets. The all-marker
validation score says little about the subsets, so which epoch it picks adds noise to every comparison.
:func:`evaluate_last` evaluates each finished run's last-epoch weights (the end of the decayed schedule
of the ``cpu`` preset) exactly as the job evaluated its best weights and writes
``runs/<job>/evaluation.last.csv`` (small, committed with the results); the report measures every
homogeneous paired claim with the best and with the last epochs
(:func:`marker_excite.experiments.report.selection_lines`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from marker_excite.analysis.results import read_results, write_results
from marker_excite.experiments.runner import finished_run_dirs
from marker_excite.experiments.spec import EVALUATION_CSV, RUNS
from marker_excite.inference.evaluation import evaluate_run
from marker_excite.runs.directory import LAST_WEIGHTS
from marker_excite.runs.run import load_run

LAST_EVALUATION_CSV = "evaluation.last.csv"


def evaluate_last(
    out_dirs: Sequence[str | os.PathLike], *, models: Sequence[str] | None = None, progress: bool = True
) -> list[Path]:
    """Write ``evaluation.last.csv`` for every finished run in ``out_dirs`` (of ``models``, by label;
    None: all) whose last-epoch weights are here and that has none yet. Returns the files written."""
    import keras

    written = []
    for path in finished_run_dirs(out_dirs):
        target = path / LAST_EVALUATION_CSV
        best = read_results(path / EVALUATION_CSV)
        if target.is_file() or not (path / LAST_WEIGHTS).is_file() or not best:
            continue
        tags = {k: best[0][k] for k in ("model", "job", "case") if k in best[0]}
        if models is not None and tags["model"] not in models:
            continue
        try:
            run = load_run(path, weights="last")
            # the subsets the job evaluated: all of them, a UB model only its own panel
            own = [tuple(run.model_config.markers)] if run.name == "UB" else None
            rows = evaluate_run(run, subsets=own, progress=False)
        finally:
            keras.backend.clear_session()
        write_results([{**r, **tags} for r in rows], target)
        written.append(target)
        if progress:
            print(f"last epoch: {target}")
    return written


def last_epoch_rows(out_dir: str | os.PathLike) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """F1 rows of the runs in ``out_dir`` that have ``evaluation.last.csv``: (best-epoch rows, last-epoch rows)."""
    best, last = [], []
    for f in sorted((Path(out_dir) / RUNS).glob(f"*/{LAST_EVALUATION_CSV}")):
        best += read_results(f.parent / EVALUATION_CSV)
        last += read_results(f)
    return tuple([{**r, "case": r.get("case") or ""} for r in rows if r.get("metric") == "f1"] for rows in (best, last))
