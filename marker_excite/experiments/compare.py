"""``compare``: the paper's comparison on a user's own store and marker panel.

For a panel of K markers it trains MS, MS-ME, MZ and one UB per non-empty subset (2^K - 1) per class
and fold, evaluates every model on every subset it can see, adds an Otsu baseline per subset, and
writes the experiment tables (``results.csv``, ``relative.csv``, ``stats.json``, ``figures/``), the
same scores per test sample (``per_sample.csv``: the spread over samples and tests paired by sample,
which a single split needs) and ``report.md`` with two answers: "Which stains do I need?" (the UB ranking of the subsets) and "One
network or one per subset?" (MS and MS-ME vs each subset's UB and vs MZ). Jobs, sharding, workers,
resuming and aggregation are those of the paper's experiments (:mod:`marker_excite.experiments`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from marker_excite.analysis import stats
from marker_excite.analysis.results import read_results, write_results
from marker_excite.atomic import write_text
from marker_excite.contract.markers import MarkerPanel, duplicated_names
from marker_excite.data.folds import explicit_fold, paper_folds, select_fold
from marker_excite.data.store import SampleStore
from marker_excite.experiments.aggregate import select
from marker_excite.experiments.runner import is_done, job_run_dir, report_dir
from marker_excite.experiments.spec import (
    FIGURES,
    STATS_JSON,
    Experiment,
    ExperimentError,
    Job,
    Preset,
    Ranking,
    Relative,
)
from marker_excite.inference.evaluation import rows_from_confusion
from marker_excite.inference.tissue import otsu_threshold, smooth

COMPARE = "compare"
#: The networks that see the whole panel (one each per class and fold), in the order they run.
PANEL_MODELS: tuple[str, ...] = ("MS", "MZ", "MS-ME")
#: Label of the threshold baseline in results: Otsu on the mean of the subset's log, standardised channels.
OTSU = "Otsu"
OTSU_CSV = "otsu.csv"
#: Every job's scores per test sample (in its run directory) and all of them (in the report folder).
JOB_PER_SAMPLE_CSV = "evaluation_per_sample.csv"
PER_SAMPLE_CSV = "per_sample.csv"
REPORT_MD = "report.md"
#: The analyses: the UB ranking of the subsets, and ``model - reference`` per (class, subset, fold), one
#: analysis per pair so that a partial run reports every pair it has.
RANKING = "which_stains"
COMPARISONS: tuple[tuple[str, str], ...] = (
    ("MS", "UB"),
    ("MS-ME", "UB"),
    ("MS", "MZ"),
    ("MS-ME", "MZ"),
    ("MS-ME", "MS"),
    ("MS", OTSU),
)
#: Default of ``--tolerance``: subsets whose UB mean F1 is within this of the best are "as good".
DEFAULT_TOLERANCE = 0.02
_HIST_BINS = 256


def compare_jobs(p: Preset, classes: Sequence[str], folds: Sequence[int], panel: Sequence[str]) -> Experiment:
    """The comparison's :class:`Experiment`: per fold and class MS, every UB, MZ, MS-ME (in this order, so
    that a partial run answers "MS vs UB" first), with the analyses :func:`write_report` reads."""
    markers = MarkerPanel(tuple(panel))
    jobs: list[Job] = []
    for f in folds:
        for c in classes:
            jobs.append(Job("MS", (c,), f, panel=markers.names))
            jobs += [Job("UB", (c,), f, subset=s, panel=markers.names) for s in markers.all_subsets()]
            jobs += [Job(m, (c,), f, panel=markers.names) for m in PANEL_MODELS if m != "MS"]
    analyses = (Ranking(RANKING, "UB"), *(Relative(comparison_name(m, r), (m,), r) for m, r in COMPARISONS))
    return Experiment(COMPARE, p, tuple(jobs), analyses, external=(OTSU,))


def comparison_name(model: str, reference: str) -> str:
    """The analysis name of ``model - reference`` in ``stats.json`` and ``figures/``: ``ms-me_vs_ub``."""
    return f"{model.lower()}_vs_{reference.lower()}"


def compare_experiment(
    p: Preset,
    store: str | os.PathLike,
    *,
    markers: Sequence[str],
    classes: Sequence[str],
    n_folds: int | None = None,
    val: Sequence[str] | None = None,
    test: Sequence[str] | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    precision: str | None = None,
) -> Experiment:
    """The comparison on ``store``: ``markers`` (the panel, names as in the store), ``classes``, and either
    ``n_folds`` (k-fold cross-validation, every fold run) or an explicit split (``val`` and ``test``
    samples; every other sample trains). Checked against the store; raises :class:`ExperimentError`
    with one line naming the problem."""
    path = Path(store)
    if not path.is_file():
        raise ExperimentError(f"sample store {path} does not exist")
    if not markers or duplicated_names(markers):
        raise ExperimentError(f"--markers needs distinct marker names, got {', '.join(markers) or 'none'}")
    if not classes or len(set(classes)) != len(classes):
        raise ExperimentError(f"--classes needs distinct class names, got {', '.join(classes or []) or 'none'}")
    with SampleStore(path, "r") as opened:
        names = opened.names()
        infos = opened.infos()
    have = list(dict.fromkeys(m for info in infos for m in info.markers))
    MarkerPanel(tuple(have)).indices(markers)  # every marker in some sample (did-you-mean otherwise)
    for cls in classes:
        if not any(cls.lower() in (c.lower() for c in info.classes) for info in infos):
            labelled = sorted({c for info in infos for c in info.classes})
            raise ExperimentError(f"class {cls!r} is labelled in no sample of {path}; it has {', '.join(labelled)}")
    if (n_folds is None) == (val is None and test is None):
        raise ExperimentError("give either --folds K (k-fold cross-validation) or --val and --test (one split)")
    if n_folds is not None:
        paper_folds(names, n_folds=n_folds)  # enough samples for the folds (one clear error otherwise)
        p = p.replace(n_folds=int(n_folds), folds=tuple(range(n_folds)))
    else:
        if not val or not test:
            raise ExperimentError("an explicit split needs both --val and --test samples")
        train = [n for n in names if n not in set(val) | set(test)]
        fold = explicit_fold(names, train, val, test)
        p = p.replace(folds=(0,), train_samples=fold.train, val_samples=fold.val, test_samples=fold.test)
    p = p.overridden(epochs=epochs, seed=seed, precision=precision)
    return compare_jobs(p, tuple(classes), p.folds, tuple(markers))


# ---------------------------------------------------------------------------------------------------
# the Otsu baseline
# ---------------------------------------------------------------------------------------------------
def _panel(exp: Experiment) -> MarkerPanel:
    return MarkerPanel(next(j.panel for j in exp.jobs if j.subset is None))


def otsu_confusion(store: SampleStore, sample: str, cls: str, channels: Sequence[str]) -> np.ndarray | None:
    """The 2x2 confusion matrix (background, ``cls``) over a sample's annotated slices of the threshold
    baseline, or None when the sample lacks one of the channels.

    Each channel is log-transformed (``log(1 + x - min)``: fluorescence is heavy-tailed, and Otsu on raw
    intensities keeps only the brightest structures) and standardised over the sample's annotated
    slices; their mean is smoothed in-plane (Gaussian, sigma 2 px, :func:`marker_excite.inference.tissue.smooth`)
    and thresholded by Otsu's method over the whole sample, bright = foreground."""
    from marker_excite.models.metrics import confusion_matrix

    info = store.info(sample)
    lower = [m.lower() for m in info.markers]
    if any(c.lower() not in lower for c in channels):
        return None
    idx = [lower.index(c.lower()) for c in channels]
    read = [store.read_slice(sample, z) for z in info.annotated_slices]
    images = np.stack([image[idx].astype(np.float64) for image, _ in read], axis=1)  # [C, Z, Y, X]
    low = images.min(axis=(1, 2, 3), keepdims=True)
    logs = np.log1p(images - low)
    sd = logs.std(axis=(1, 2, 3), keepdims=True)
    norm = ((logs - logs.mean(axis=(1, 2, 3), keepdims=True)) / np.where(sd > 0, sd, 1.0)).mean(axis=0)
    norm = np.stack([smooth(plane) for plane in norm])
    lo, hi = float(norm.min()), float(norm.max())
    threshold = hi
    if hi > lo:
        edges = np.linspace(lo, hi, _HIST_BINS + 1)
        threshold = otsu_threshold(np.histogram(norm, bins=edges)[0], edges)
    truth = np.stack([labels[info.classes[info.class_index(cls)]] > 0 for _, labels in read])
    return confusion_matrix(truth.astype(np.int64), (norm > threshold).astype(np.int64), 2)


def otsu_rows(exp: Experiment, store_path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Tidy rows (model ``Otsu``) of the threshold baseline on every subset, class and fold: pooled over
    the test samples of each fold that have all the subset's markers (one confusion matrix over their
    voxels), and per test sample (``sample`` column)."""
    panel = _panel(exp)
    pooled: list[dict[str, Any]] = []
    per_sample: list[dict[str, Any]] = []
    with SampleStore(store_path, "r") as store:
        for job in (j for j in exp.jobs if j.model == "MS"):
            test = select_fold(store, job.train_config(exp.preset)).test
            cls = job.classes[0]
            for subset in panel.all_subsets():
                common = dict(model=OTSU, fold=job.fold, classes=(cls,), subset=subset.name, n_markers=len(subset))
                found = {s: otsu_confusion(store, s, cls, subset.names) for s in test}
                found = {s: cm for s, cm in found.items() if cm is not None}
                if found:
                    pooled += rows_from_confusion(sum(found.values()), **common, case="")
                    for s, cm in found.items():
                        per_sample += rows_from_confusion(cm, **common, case="", sample=s)
    return pooled, per_sample


def write_otsu(exp: Experiment, out_dir: str | os.PathLike, store_path: str | os.PathLike) -> tuple[Path, list]:
    """Write the pooled :func:`otsu_rows` to ``<out>/compare/otsu.csv`` (the ``Otsu`` reference of the
    aggregation); returns it and the per-sample rows."""
    pooled, per_sample = otsu_rows(exp, store_path)
    return write_results(pooled, report_dir(out_dir, exp) / OTSU_CSV), per_sample


def job_per_sample_rows(
    exp: Experiment, out_dir: str | os.PathLike, store_path: str | os.PathLike, *, progress: bool = True
) -> list[dict[str, Any]]:
    """Every finished job's scores on each of its test samples alone (``sample`` column), evaluated once
    and kept in ``runs/<job id>/evaluation_per_sample.csv`` (the pooled ``evaluation.csv`` stays the
    result: a per-sample F1 weighs a sample's few voxels as much as another's many)."""
    from marker_excite.inference.evaluation import evaluate_run
    from marker_excite.runs.run import load_run

    rows: list[dict[str, Any]] = []
    for job in exp.jobs:
        path = job_run_dir(out_dir, job) / JOB_PER_SAMPLE_CSV
        if is_done(out_dir, job) and not path.is_file():
            if progress:
                print(f"[{COMPARE}] {job.job_id}: scores per test sample", file=sys.stderr, flush=True)
            run = load_run(job_run_dir(out_dir, job))
            found = [
                {**r, "model": job.label, "job": job.job_id, "case": "", "sample": sample}
                for sample in run.fold.test
                for r in evaluate_run(run, store_path, subsets=job.eval_subsets, samples=[sample], progress=False)
            ]
            write_results(found, path)
        if path.is_file():
            rows += read_results(path)
    return rows


def write_per_sample(
    exp: Experiment,
    out_dir: str | os.PathLike,
    store_path: str | os.PathLike,
    otsu: Sequence[Mapping],
    *,
    progress: bool = True,
) -> Path:
    """``<out>/compare/per_sample.csv``: :func:`job_per_sample_rows` and the Otsu rows per sample."""
    rows = job_per_sample_rows(exp, out_dir, store_path, progress=progress) + list(otsu)
    return write_results(rows, report_dir(out_dir, exp) / PER_SAMPLE_CSV)


# ---------------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------------
def _means(rows: Sequence[Mapping], model: str, cls: str) -> dict[str, list[float]]:
    """F1 values per subset (one per fold, or per fold and sample) of one model and class."""
    out: dict[str, list[float]] = {}
    for r in select(rows, model=model, cls=cls):
        out.setdefault(str(r["subset"]), []).append(float(r["value"]))
    return out


def _fmt(values: Sequence[float] | None) -> str:
    return f"{np.mean(values):.3f}" if values else "–"


def _sd(values: Sequence[float] | None) -> str:
    return f"{np.std(values, ddof=1):.3f}" if values and len(values) > 1 else "–"


def paired_by_sample(per_sample: Sequence[Mapping], model: str, reference: str, cls: str, subset: str):
    """Wilcoxon signed-rank test of ``model - reference`` F1 on one subset, paired by (fold, test sample);
    None when they share no sample."""
    a = select(per_sample, model=model, cls=cls, subsets=[subset])
    b = select(per_sample, model=reference, cls=cls, subsets=[subset])
    try:
        paired = stats.pair_rows(a, b, keys=("class", "subset", "fold", "sample"))
    except stats.StatsError:
        return None
    return stats.wilcoxon(paired.a, paired.b)


def _diff(pooled: Mapping[str, dict], per_sample, model: str, reference: str, cls: str, subset: str) -> str:
    """``model - reference`` of the pooled F1 (mean over folds), with the stars of the per-sample test."""
    a, b = pooled[model].get(subset), pooled[reference].get(subset)
    if not a or not b:
        return "–"
    test = paired_by_sample(per_sample, model, reference, cls, subset)
    return f"{np.mean(a) - np.mean(b):+.3f}" + (f" {test.stars}" if test else "")


def smallest_within(ranking: Sequence[tuple[str, float]], sizes: Mapping[str, int], tolerance: float):
    """The subsets with the fewest markers among those whose mean F1 is within ``tolerance`` of the best
    (``ranking``: ``(subset, mean F1)`` pairs), best first."""
    best = max(m for _, m in ranking)
    close = [t for t in ranking if t[1] >= best - tolerance]
    fewest = min(sizes[t[0]] for t in close)
    return sorted((t for t in close if sizes[t[0]] == fewest), key=lambda t: -t[1])


def _split_text(p: Preset) -> str:
    if p.val_samples is not None:
        n = (len(p.train_samples or ()), len(p.val_samples), len(p.test_samples or ()))
        return f"one split: {n[0]} training, {n[1]} validation, {n[2]} test samples"
    return f"{p.n_folds}-fold cross-validation (every sample tested once)"


def _tests_text(summary: Mapping[str, Any], analysis: str, cls: str) -> list[str]:
    info = summary.get("analyses", {}).get(analysis, {})
    if "skipped" in info or "tests" not in info:
        return [f"- {analysis}: not computed ({info.get('skipped', 'no results yet')})"]
    return [
        f"- {t['model']} − {t['reference']}: mean {t['mean_difference']:+.3f} over {t['n']} (subset, fold) "
        f"pairs, Wilcoxon p = {t['pvalue']:.3g} ({t['stars']})" + (f"; {t['note']}" if t["note"] else "")
        for t in info["tests"]
        if t["class"] == cls
    ]


def write_report(exp: Experiment, out_dir: str | os.PathLike, *, tolerance: float = DEFAULT_TOLERANCE) -> Path:
    """Write ``<out>/compare/report.md`` from the aggregated ``results.csv``, ``otsu.csv``,
    ``per_sample.csv`` and ``stats.json``."""
    report = report_dir(out_dir, exp)
    rows = read_results(report / "results.csv") + read_results(report / OTSU_CSV)
    per_sample = read_results(report / PER_SAMPLE_CSV)
    summary = json.loads((report / STATS_JSON).read_text())
    panel = _panel(exp)
    sizes = {s.name: len(s) for s in panel.all_subsets()}
    order = [s.name for s in panel.all_subsets()]
    classes = list(dict.fromkeys(c for j in exp.jobs for c in j.classes))
    p = exp.preset
    lines = [
        "# Which stains do I need? One network or one per subset?",
        "",
        f"Panel: {', '.join(panel.names)} (K = {panel.size}, {len(order)} subsets); classes: {', '.join(classes)}; "
        f"{_split_text(p)}; preset `{p.name}` ({p.epochs} epochs, seed {p.seed}). Jobs finished: "
        f"{summary['completed']} of {summary['jobs']}. F1 = over all voxels of the test samples pooled, mean "
        f"over {len(p.folds)} fold(s); sd = over the test samples' own F1 (every fold's). Otsu = Otsu's "
        "threshold per sample on the mean of the subset's log-transformed, standardised channels, smoothed "
        "(sigma 2 px).",
        "",
    ]
    models = ("UB", "MS", "MS-ME", "MZ", OTSU)
    for cls in classes:
        pooled = {m: _means(rows, m, cls) for m in models}
        samples = {m: _means(per_sample, m, cls) for m in models}
        lines += [f"## Which stains do I need? ({cls})", ""]
        if not pooled["UB"]:
            lines += ["No UB results yet.", ""]
        else:
            ranking = sorted(((s, float(np.mean(v))) for s, v in pooled["UB"].items()), key=lambda t: (-t[1], t[0]))
            lines += [
                "| rank | subset | markers | UB F1 | sd over samples | samples | Otsu F1 |",
                "|---:|---|---:|---:|---:|---:|---:|",
            ]
            lines += [
                f"| {k} | {s} | {sizes.get(s, '?')} | {m:.3f} | {_sd(samples['UB'].get(s))} | "
                f"{len(samples['UB'].get(s, []))} | {_fmt(pooled[OTSU].get(s))} |"
                for k, (s, m) in enumerate(ranking, start=1)
            ]
            best = ranking[0]
            chosen = smallest_within(ranking, sizes, tolerance)
            lines += [
                "",
                f"Best: **{best[0]}** (F1 {best[1]:.3f}). Fewest markers within {tolerance:.3f} of the best: "
                + ", ".join(f"**{s}** (F1 {m:.3f})" for s, m in chosen)
                + ".",
                "",
            ]
        lines += [
            f"## One network or one per subset? ({cls})",
            "",
            "F1 per subset and differences; stars: Wilcoxon signed-rank test of the difference paired by test "
            "sample (* p<=0.05, ** p<=0.01, *** p<=0.001, n.s.).",
            "",
            "| subset | UB | MS | MS-ME | MZ | Otsu | MS − UB | MS-ME − UB | MS − MZ | MS-ME − MZ | MS-ME − MS "
            "| MS − Otsu |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        pairs = COMPARISONS
        for s in order:
            values = " | ".join(_fmt(pooled[m].get(s)) for m in models)
            diffs = " | ".join(_diff(pooled, per_sample, a, b, cls, s) for a, b in pairs)
            lines.append(f"| {s} | {values} | {diffs} |")
        lines += ["", "Over all subsets (Wilcoxon signed-rank over the (subset, fold) pairs of pooled F1):", ""]
        for model, reference in COMPARISONS:
            lines += _tests_text(summary, comparison_name(model, reference), cls)
        lines.append("")
    figures = [Path(a["figure"]) for a in summary["analyses"].values() if "figure" in a]  # this aggregation's
    if figures:
        lines += ["Figures: " + ", ".join(f"[{f.stem}]({FIGURES}/{f.name})" for f in figures), ""]
    return write_text(report / REPORT_MD, "\n".join(lines))
