"""Aggregation: every job's evaluation into one tidy table, relative metrics, statistics and figures."""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marker_excite.analysis import plots, stats
from marker_excite.analysis.results import read_results, relative, write_results
from marker_excite.atomic import write_json
from marker_excite.errors import UserInputError
from marker_excite.experiments.runner import is_done, job_run_dir, report_dir
from marker_excite.experiments.spec import (
    CASES,
    EVALUATION_CSV,
    FIGURES,
    RELATIVE_CSV,
    RESULTS_CSV,
    RUNS,
    STATS_JSON,
    Experiment,
    ExperimentError,
    GroupTest,
    Ranking,
    Relative,
    m_ub,
    ub_ratio,
)


def load_results(source: str | os.PathLike) -> list[dict[str, Any]]:
    """Tidy rows of a results CSV file, an experiment's report folder (its ``results.csv``) or an output
    folder (every ``runs/*/evaluation.csv``)."""

    path = Path(source)
    if path.is_file():
        return read_results(path)
    if (path / RESULTS_CSV).is_file():
        return read_results(path / RESULTS_CSV)
    files = sorted((path / RUNS).glob(f"*/{EVALUATION_CSV}"))
    if not files:
        raise ExperimentError(f"no results in {path}: neither {RESULTS_CSV} nor {RUNS}/*/{EVALUATION_CSV}")
    return [row for f in files for row in read_results(f)]


def relative_to(path: str | os.PathLike, folder: Path) -> str:
    """``path`` as written into a ``stats.json`` in ``folder``: relative to that folder (POSIX separators),
    so that a results tree stays readable after it is copied, cloned or moved."""
    return Path(os.path.relpath(Path(path).absolute(), folder.absolute())).as_posix()


def select(
    rows: Iterable[Mapping],
    *,
    model: str | None = None,
    cls: str | None = None,
    metric: str | None = "f1",
    case: str | None = None,
    subsets: Iterable[str] | None = None,
) -> list[Mapping]:
    """Rows matching every given field (``case=None`` keeps rows of any case; ``""`` only homogeneous ones)."""
    keep = None if subsets is None else set(subsets)
    return [
        r
        for r in rows
        if (model is None or r.get("model") == model)
        and (cls is None or r.get("class") == cls)
        and (metric is None or r.get("metric") == metric)
        and (case is None or (r.get("case") or "") == case)
        and (keep is None or r.get("subset") in keep)
    ]


def significance_summary(result, **extra: Any) -> dict[str, Any]:
    """A statistical test result as a JSON-ready dict (plus ``extra`` fields)."""
    d = dataclasses.asdict(result)
    if isinstance(d["n"], tuple):
        d["n"] = list(d["n"])
    return {**extra, **d}


def _ranking(a: Ranking, rows: list[Mapping], figures: Path) -> dict[str, Any]:

    sel = select(rows, model=a.model, case="")
    figure = plots.subset_ranking(sel, figures / f"{a.name}.png", title=f"{a.model}: subsets ranked by mean F1")
    classes = list(dict.fromkeys(r["class"] for r in sel))
    ranking = {
        c: [dict(subset=s, mean=m, sd=sd, n=n) for s, m, sd, n in plots.rank_subsets(sel, cls=c)] for c in classes
    }
    return {"kind": "ranking", "model": a.model, "figure": relative_to(figure, figures.parent), "ranking": ranking}


def _group_test(a: GroupTest, rows: list[Mapping], figures: Path) -> dict[str, Any]:

    sel = select(rows, model=a.model, cls=a.cls, case="")
    values = [[float(r["value"]) for r in sel if g.contains(r["subset"])] for g in a.groups]
    test = stats.mann_whitney(*values)
    figure = plots.grouped_comparison(
        sel, {g.label: g.contains for g in a.groups}, figures / f"{a.name}.png", cls=a.cls, title=f"{a.model}, {a.cls}"
    )
    means = {g.label: float(np.mean(v)) if v else None for g, v in zip(a.groups, values)}
    return {
        "kind": "groups",
        "model": a.model,
        "class": a.cls,
        "figure": relative_to(figure, figures.parent),
        "means": means,
        "test": significance_summary(test),
    }


def _relative(a: Relative, rows: list[Mapping], figures: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:

    subsets = None
    info: dict[str, Any] = {"kind": "relative", "models": list(a.models), "reference": a.reference}
    if a.case:
        table = CASES[a.case]
        subsets = [s.label for s in m_ub(table)]
        n_ub, n_total, ratio = ub_ratio(table)
        info.update(case=a.case, table=[s.label for s in table], m_ub=n_ub, m_total=n_total, ratio=ratio)
    case_filter = a.case if a.case else ""
    ref = select(rows, model=a.reference, case=a.reference_case, subsets=subsets if a.ub_only else None)
    model_rows = {m: select(rows, model=m, case=case_filter, subsets=subsets if a.ub_only else None) for m in a.models}
    missing = [m for m, r in model_rows.items() if not r] + ([a.reference] if not ref else [])
    if missing:
        raise ExperimentError(f"no results for {', '.join(missing)}")
    classes = list(dict.fromkeys(r["class"] for rs in model_rows.values() for r in rs))
    tests, relative_rows = [], []
    for m, mrows in model_rows.items():
        relative_rows += [{**r, "analysis": a.name, "case": a.case or ""} for r in relative(mrows, ref)]
        for c in [*classes, None] if len(classes) > 1 else classes:
            sel = [r for r in mrows if c is None or r["class"] == c]
            paired = stats.pair_rows(sel, ref)
            tests.append(
                significance_summary(
                    stats.wilcoxon(paired.a, paired.b),
                    model=m,
                    reference=a.reference,
                    **{"class": c or "all"},
                    mean_difference=float(np.mean(paired.differences)),
                )
            )
    pairwise = [
        significance_summary(stats.compare_paired(model_rows[x], model_rows[y]), model=x, versus=y)
        for x, y in itertools.combinations(a.models, 2)
    ]
    figure = plots.relative_boxplot(model_rows, ref, figures / f"{a.name}.png", reference=a.reference)
    info.update(figure=relative_to(figure, figures.parent), tests=tests, pairwise=pairwise)
    return info, relative_rows


@dataclass
class AggregateResult:
    """Files written by :func:`aggregate` and the job ids still missing."""

    results_csv: Path
    relative_csv: Path | None
    stats_json: Path
    figures: list[Path]
    missing: list[str]


def aggregate(
    exp: Experiment,
    out_dir: str | os.PathLike,
    *,
    external: Mapping[str, str | os.PathLike] | None = None,
    progress: bool = True,
) -> AggregateResult:
    """Collect the experiment's ``evaluation.csv`` files into ``results.csv``, draw its figures into
    ``figures/`` and write ``stats.json`` (and ``relative.csv``: every "Rel. to" difference), all in
    :func:`~marker_excite.experiments.runner.report_dir` (``out_dir/<experiment name>/``).

    ``external`` maps a reference model (``UB``) to another experiment's output folder or results CSV.
    Missing jobs are listed in ``stats.json`` and the available ones are used; an analysis that cannot
    be computed (a model or reference without results) is recorded with the reason instead of a figure.
    """
    out = Path(out_dir)
    done = [j for j in exp.jobs if is_done(out, j)]
    missing = [j.job_id for j in exp.jobs if not is_done(out, j)]
    if not done:
        raise ExperimentError(f"no finished job of {exp.name} in {out} (run the experiment first)")
    rows = [row for j in done for row in read_results(job_run_dir(out, j) / EVALUATION_CSV)]
    for r in rows:
        r["case"] = r.get("case") or ""
    report = report_dir(out, exp)
    results_csv = write_results(rows, report / RESULTS_CSV)
    extra_rows: list[dict[str, Any]] = []
    external_info = {}
    for name, source in (external or {}).items():
        ext = [r for r in load_results(source) if r.get("model") == name]
        for r in ext:
            r["case"] = r.get("case") or ""
        extra_rows += ext
        external_info[name] = {"source": relative_to(source, report), "rows": len(ext)}
    all_rows = rows + extra_rows
    figures_dir = report / FIGURES
    figures_dir.mkdir(parents=True, exist_ok=True)
    analyses: dict[str, Any] = {}
    relative_rows: list[dict[str, Any]] = []
    for a in exp.analyses:
        try:
            if isinstance(a, Ranking):
                analyses[a.name] = _ranking(a, all_rows, figures_dir)
            elif isinstance(a, GroupTest):
                analyses[a.name] = _group_test(a, all_rows, figures_dir)
            else:
                info, rel = _relative(a, all_rows, figures_dir)
                analyses[a.name] = info
                relative_rows += rel
        except UserInputError as exc:
            analyses[a.name] = {"kind": type(a).__name__.lower(), "skipped": str(exc)}
            if progress:
                print(f"[{exp.name}] {a.name} skipped: {exc}", file=sys.stderr)
    relative_csv = write_results(relative_rows, report / RELATIVE_CSV) if relative_rows else None
    summary = {
        "experiment": exp.name,
        "preset": dataclasses.asdict(exp.preset),
        "jobs": len(exp.jobs),
        "completed": len(done),
        "missing": missing,
        "external": external_info,
        "significance": "Wilcoxon signed-rank paired by (class, subset, fold); Mann-Whitney U for groups; "
        "* p<=0.05, ** p<=0.01, *** p<=0.001",
        "analyses": analyses,
    }
    stats_json = write_json(report / STATS_JSON, summary)
    figures = [report / v["figure"] for v in analyses.values() if "figure" in v]
    return AggregateResult(results_csv, relative_csv, stats_json, figures, missing)
