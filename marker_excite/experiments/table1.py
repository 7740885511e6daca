"""Table 1 / Fig. 5 on the phantom: F1 over the marker sets M2 and volume fractions vs the truth."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from marker_excite.analysis import stats
from marker_excite.analysis.results import write_results
from marker_excite.atomic import write_json
from marker_excite.config import read_json_object
from marker_excite.contract.markers import Subset
from marker_excite.data.store import SampleStore
from marker_excite.experiments.aggregate import load_results, relative_to, select, significance_summary
from marker_excite.experiments.paper import M2_GROUPS, TISSUE_MODEL
from marker_excite.experiments.runner import ensure_store, is_done, job_run_dir, report_dir
from marker_excite.experiments.spec import (
    DESIGN_SEED,
    FIGURES,
    STATS_JSON,
    Experiment,
    ExperimentError,
    all_subsets,
)
from marker_excite.inference import quantify
from marker_excite.runs.run import load_run


def m2_f1(rows: Iterable[Mapping], model: str = "MS-ME") -> dict[str, dict[str, float]]:
    """Table 1's F1: mean +- sd of ``model``'s F1 over the subsets of M2 (m2 or m3 for sinusoids, m4 for
    arteries) and all folds, per class present in ``rows``."""
    out = {}
    for cls, group in M2_GROUPS.items():
        values = [float(r["value"]) for r in select(rows, model=model, cls=cls, case="") if group.contains(r["subset"])]
        if values:
            out[cls] = {
                "mean": float(np.mean(values)),
                "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                "n": len(values),
                "group": group.label,
            }
    return out


def quantification_subset(cls: str, sample: str) -> Subset:
    """The M2 marker subset a test sample is quantified with (drawn per sample, like a lab's varied panels)."""
    choices = [s for s in all_subsets() if M2_GROUPS[cls].contains(s)]
    rng = np.random.default_rng([DESIGN_SEED, sum(map(ord, sample)), sum(map(ord, cls))])
    return choices[int(rng.integers(len(choices)))]


#: The paper's tissue F1 (percent, mean +- sd) of its m1-only tissue UNet.
PAPER_TISSUE_F1 = (88.7, 6.8)


def tissue_f1(rows: Iterable[Mapping]) -> dict[str, Any] | None:
    """F1 of the tissue networks on m_1 over the folds (mean +- sd), next to the paper's value."""
    values = [float(r["value"]) for r in select(rows, model=TISSUE_MODEL, cls="tissue") if r["subset"] == "m_1"]
    if not values:
        return None
    return {
        "mean": float(np.mean(values)),
        "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        "n": len(values),
        "paper_percent": {"mean": PAPER_TISSUE_F1[0], "sd": PAPER_TISSUE_F1[1]},
    }


def quantify_experiment(
    exp: Experiment, out_dir: str | os.PathLike, store: str | os.PathLike | None = None, *, progress: bool = True
) -> Path:
    """Table 1 / Fig. 5 on the phantom: each fold's MS-ME segments its TEST samples with an M2 marker
    subset; volume fractions inside the tissue mask of the fold's m1-only tissue UNet (as in the paper;
    the DAPI threshold of :mod:`marker_excite.inference.tissue` when that run is not finished, column
    ``tissue_mask``) are compared with the phantom's true fractions (sample attributes
    ``fraction_<class>``).

    Writes ``quantification.csv`` (sample, region, class, markers, fraction, true_fraction, error,
    tissue_mask), ``figures/fig5c.png`` and adds ``table1`` (with the tissue networks' F1) to
    ``stats.json``. Returns the CSV path.
    """
    out = Path(out_dir)
    store_path = ensure_store(exp.preset, out, store, progress=progress)
    rows: list[dict[str, Any]] = []
    tissue_runs = {j.fold: job_run_dir(out, j) for j in exp.jobs if j.label == TISSUE_MODEL and is_done(out, j)}
    for job in (j for j in exp.jobs if j.model == "MS-ME" and is_done(out, j) and len(j.classes) == 1):
        run = load_run(job_run_dir(out, job))
        tissue_run = load_run(tissue_runs[job.fold]) if job.fold in tissue_runs else None
        cls = job.classes[0]
        with SampleStore(store_path, "r") as st:
            truth = {s: (st.info(s).region, st.info(s).attrs.get(f"fraction_{cls}")) for s in run.fold.test}
        for sample in run.fold.test:
            subset = quantification_subset(cls, sample)
            for r in quantify.quantify_store(
                store_path,
                run,
                tissue=quantify.TissueSource(model=tissue_run) if tissue_run is not None else None,
                samples=[sample],
                markers=list(subset.names),
                progress=False,
            ):
                true = truth[sample][1]
                rows.append(
                    dict(
                        model=job.label,
                        fold=job.fold,
                        **{"class": cls},
                        subset=subset.label,
                        n_markers=len(subset),
                        metric="fraction",
                        value=float(r["fraction"]),
                        sample=sample,
                        region=r["region"],
                        true_fraction=float(true) if true is not None else float("nan"),
                        tissue_mask=TISSUE_MODEL if tissue_run is not None else "DAPI threshold",
                    )
                )
    if not rows:
        raise ExperimentError(f"no finished MS-ME run in {out} to quantify with")
    for r in rows:
        r["error"] = r["value"] - r["true_fraction"]
    report = report_dir(out, exp)
    csv_path = write_results(rows, report / "quantification.csv")
    figure = quantify.fraction_boxplot(
        [dict(r, fraction=r["value"]) for r in rows], report / FIGURES / "fig5c.png", overwrite=True
    )
    results = load_results(report)
    table: dict[str, Any] = {
        "f1_over_M2": m2_f1(results),
        "tissue_f1": tissue_f1(results),
        "figure": relative_to(figure, report),
        "fractions": {},
    }
    for cls in dict.fromkeys(r["class"] for r in rows):
        sel = [r for r in rows if r["class"] == cls]
        by_region = {}
        for region in dict.fromkeys(r["region"] for r in sel):
            values = [r for r in sel if r["region"] == region]
            by_region[region or "all"] = {
                "n": len(values),
                "fraction_mean": float(np.mean([r["value"] for r in values])),
                "true_fraction_mean": float(np.mean([r["true_fraction"] for r in values])),
                "mean_abs_error": float(np.mean([abs(r["error"]) for r in values])),
            }
        entry: dict[str, Any] = {"regions": by_region}
        regions = list(by_region)
        if len(regions) == 2:
            a, b = ([r["value"] for r in sel if (r["region"] or "all") == g] for g in regions)
            entry["region_test"] = significance_summary(stats.mann_whitney(a, b), groups=regions)
        table["fractions"][cls] = entry
    stats_path = report / STATS_JSON
    summary = read_json_object(stats_path, "") if stats_path.is_file() else {}
    summary["table1"] = table
    write_json(stats_path, summary)
    return csv_path
