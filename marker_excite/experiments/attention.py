"""What the Marker Excite modules of finished runs learned: their channel gates for every marker subset.

An ME module turns the marker-availability vector into one gate in (0, 1) per feature channel
(:meth:`marker_excite.layers.MarkerExcite.attention`). :func:`measure_run` evaluates every ME module of a
run's best weights on all ``2^K - 1`` availability vectors and compares them with the same network at
its initialisation (rebuilt from the run's model config, whose seed fixes the initial weights, exactly
as ``train`` builds it): how much the gates depend on the subset, how far training moved them, and how far the ME kernels
moved compared with the convolutions. :func:`analyse` writes this as ``attention.json`` next to each
run's ``evaluation.csv`` (a small file, committed with the results, so the report needs no weights);
:func:`attention_lines` is the report's section.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from marker_excite.atomic import write_text
from marker_excite.experiments.runner import finished_run_dirs
from marker_excite.experiments.spec import RUNS
from marker_excite.runs.directory import BEST_WEIGHTS, MODEL_CONFIG, read_json
from marker_excite.runs.run import load_run

ATTENTION_JSON = "attention.json"


def availability_matrix(n_markers: int) -> np.ndarray:
    """``[2^K - 1, K]`` float32: one row per non-empty subset, by size then lexicographically."""
    rows = [c for n in range(1, n_markers + 1) for c in itertools.combinations(range(n_markers), n)]
    out = np.zeros((len(rows), n_markers), "float32")
    for i, combo in enumerate(rows):
        out[i, list(combo)] = 1.0
    return out


def _me_layers(model) -> list:
    from marker_excite.layers import MarkerExcite

    return [layer for layer in model.layers if isinstance(layer, MarkerExcite)]


def _relative_change(trained, initial) -> float:
    initial = np.asarray(initial)
    return float(np.linalg.norm(np.asarray(trained) - initial) / max(float(np.linalg.norm(initial)), 1e-12))


def measure_run(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ME gates of a run's best weights vs its initialisation (None: the model has no ME module).

    Per module: ``channels``; ``gate_mean`` (over subsets and channels); ``subset_range`` and
    ``initial_subset_range`` (per channel, max - min of the gate over the subsets, averaged over channels);
    ``moved`` (mean |gate - initial gate|). Per run: the median relative change ||W - W0|| / ||W0|| of the
    ME kernels and of all other kernels.
    """
    import keras

    from marker_excite.models.zoo import build_model  # imports keras

    run = load_run(run_dir)
    trained_layers = _me_layers(run.model)
    if not trained_layers:
        return None
    keras.utils.set_random_seed(int(run.train_config.seed))
    initial_model = build_model(run.model_config)
    initial_layers = {layer.name: layer for layer in _me_layers(initial_model)}
    subsets = availability_matrix(len(run.model_config.markers))
    modules = []
    for layer in trained_layers:
        gates = np.asarray(layer.attention(subsets))
        initial = np.asarray(initial_layers[layer.name].attention(subsets))
        modules.append(
            dict(
                name=layer.name,
                channels=int(gates.shape[1]),
                gate_mean=float(gates.mean()),
                subset_range=float(np.mean(gates.max(0) - gates.min(0))),
                initial_subset_range=float(np.mean(initial.max(0) - initial.min(0))),
                moved=float(np.mean(np.abs(gates - initial))),
            )
        )
    initial_weights = {w.path: w for w in initial_model.weights}
    me_names = {layer.name for layer in trained_layers}
    me_change, other_change = [], []
    for w in run.model.weights:
        if not w.path.endswith("kernel") or w.path not in initial_weights:
            continue
        change = _relative_change(w, initial_weights[w.path])
        (me_change if w.path.split("/")[0] in me_names else other_change).append(change)
    return dict(
        model=run.name,
        seed=int(run.model_config.seed),  # the initial weights' seed
        train_seed=int(run.train_config.seed),
        subsets=int(len(subsets)),
        modules=modules,
        me_kernel_change=float(np.median(me_change)),
        other_kernel_change=float(np.median(other_change)) if other_change else None,
    )


def _has_marker_excite(run: Path) -> bool:
    """Whether the run's model config puts ME modules in the network (read without building it)."""
    cfg = read_json(run / MODEL_CONFIG, "model config")
    return cfg.get("attention") == "me" and bool(cfg.get("attention_positions"))


def analyse(out_dirs: Sequence[str | os.PathLike], *, overwrite: bool = False, progress: bool = True) -> list[Path]:
    """Write ``attention.json`` for every finished run with ME modules and its weights in ``out_dirs``.

    Runs whose weights are not here (results committed without weights) keep their existing file.
    Returns the files written."""
    import keras

    written = []
    for run in finished_run_dirs(out_dirs):
        target = run / ATTENTION_JSON
        if (target.is_file() and not overwrite) or not (run / BEST_WEIGHTS).is_file() or not _has_marker_excite(run):
            continue
        try:
            measured = measure_run(run)
        finally:
            keras.backend.clear_session()  # two models per run: free them before the next
        write_text(target, json.dumps(measured, indent=1) + "\n")
        written.append(target)
        if progress:
            print(f"attention: {target}")
    return written


def attention_lines(out_dirs: Sequence[str | os.PathLike]) -> list[str]:
    """Report section: one row per run with ``attention.json`` (medians over its ME modules)."""
    files = [f for out in out_dirs for f in sorted((Path(out) / RUNS).glob(f"*/{ATTENTION_JSON}"))]
    if not files:
        return ["No `attention.json` yet (`python experiments/attention_analysis.py --out DIR`)."]
    subsets = sorted({json.loads(f.read_text())["subsets"] for f in files})
    lines = [
        f"Gates of the ME modules for all {'/'.join(map(str, subsets))} availability vectors (medians over the "
        "run's modules):",
        "mean gate; per-channel range of the gate over the subsets, trained vs at initialisation; mean",
        "|gate - initial gate|; median relative change ||W - W0|| / ||W0|| of the ME kernels vs the other kernels.",
        "",
        "| run | seed | modules | mean gate | subset range: trained / initial | moved | kernel change: ME / other |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in files:
        a = json.loads(f.read_text())
        med = {k: float(np.median([m[k] for m in a["modules"]])) for k in a["modules"][0] if k != "name"}
        other = a["other_kernel_change"]
        lines.append(
            f"| {f.parent.name} | {a['seed']} | {len(a['modules'])} | {med['gate_mean']:.3f} | "
            f"{med['subset_range']:.3f} / {med['initial_subset_range']:.3f} | {med['moved']:.3f} | "
            f"{a['me_kernel_change']:.3f} / {'-' if other is None else f'{other:.3f}'} |"
        )
    return lines
