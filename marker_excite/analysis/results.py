"""Tidy results tables: reading and writing them, and comparing models on them.

A results table has one row per (model, fold, class, subset, metric), the columns :data:`COLUMNS` (plus
extra keys such as ``sample``, ``reference``, ``case``), as :mod:`marker_excite.inference.evaluation`
writes them. :func:`write_results` / :func:`read_results` store them as CSV (the format of every committed
``evaluation.csv`` and ``results.csv``); :func:`relative` gives the paper's "Rel. to" rows and
:func:`compare_to_reference` tests every model against a reference model (paired Wilcoxon).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marker_excite.analysis.stats import PAIR_KEYS, StatsError, TestResult, pair_rows, wilcoxon
from marker_excite.atomic import write_text
from marker_excite.errors import UserInputError

#: Columns of the tidy table, in order (extra keys such as ``sample`` / ``reference`` follow).
COLUMNS: tuple[str, ...] = ("model", "fold", "class", "subset", "n_markers", "metric", "value")
_INT_COLUMNS = ("fold", "n_markers")


def relative(
    rows_model: Iterable[Mapping], rows_ref: Iterable[Mapping], *, metrics: Sequence[str] = ("f1",)
) -> list[dict[str, Any]]:
    """The paper's "Rel. to": ``Q_model - Q_ref`` per matched (class, subset, fold) for each metric.

    Rows keep the model's name and add ``reference`` (the reference model's name). Results present
    in only one table (e.g. subsets without a UB model) are left out.
    """
    rows_model, rows_ref = list(rows_model), list(rows_ref)
    ref_names = sorted({str(r["model"]) for r in rows_ref})
    by_key = {(str(r["class"]), str(r["subset"]), str(r["fold"])): r for r in rows_model}
    out: list[dict[str, Any]] = []
    for metric in metrics:
        paired = pair_rows(rows_model, rows_ref, metric=metric)
        for key, diff in zip(paired.keys, paired.differences):
            base = by_key[key]
            out.append(
                dict(
                    model=base["model"],
                    fold=base["fold"],
                    **{"class": base["class"]},
                    subset=base["subset"],
                    n_markers=base["n_markers"],
                    metric=metric,
                    value=float(diff),
                    reference="+".join(ref_names),
                )
            )
    return out


@dataclass(frozen=True)
class ReferenceComparison:
    """One model against a reference model on their matched (class, subset, fold) results."""

    model: str
    reference: str
    relative: list[dict[str, Any]]
    test: TestResult

    @property
    def mean_difference(self) -> float:
        """Mean of ``Q_model - Q_reference`` over the matched results."""
        return float(np.mean([r["value"] for r in self.relative]))


def compare_to_reference(
    rows: Iterable[Mapping], reference: str, *, metric: str = "f1"
) -> tuple[list[ReferenceComparison], dict[str, str]]:
    """Every other model of ``rows`` against ``reference`` ("Rel. to" rows + paired Wilcoxon test).

    Only models that share at least one (class, subset, fold) with the reference can be compared (a
    tissue model and a vessel model share none); the others are returned as ``{model: reason}``
    instead of failing the whole comparison. Raises :class:`StatsError` when ``reference`` has no
    rows for ``metric``.
    """
    rows = [r for r in rows if r.get("metric") == metric]
    by_model: dict[str, list[Mapping]] = {}
    for r in rows:
        by_model.setdefault(str(r["model"]), []).append(r)
    ref_rows = by_model.pop(reference, [])
    if not ref_rows:
        raise StatsError(f"no {metric} results of the reference model {reference!r} (models: {', '.join(by_model)})")
    ref_keys = {tuple(str(r[k]) for k in PAIR_KEYS) for r in ref_rows}
    compared: list[ReferenceComparison] = []
    skipped: dict[str, str] = {}
    for model, model_rows in sorted(by_model.items()):
        if not any(tuple(str(r[k]) for k in PAIR_KEYS) in ref_keys for r in model_rows):
            skipped[model] = (
                f"no ({', '.join(PAIR_KEYS)}) in common with {reference} "
                f"(classes {_class_list(model_rows)} vs {_class_list(ref_rows)})"
            )
            continue
        paired = pair_rows(model_rows, ref_rows, metric=metric)
        rel = relative(model_rows, ref_rows, metrics=(metric,))
        compared.append(ReferenceComparison(model, reference, rel, wilcoxon(paired.a, paired.b)))
    return compared, skipped


def _class_list(rows: Iterable[Mapping]) -> str:
    return ", ".join(sorted({str(r["class"]) for r in rows}))


def write_results(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Write tidy rows as CSV (columns :data:`COLUMNS`, then any extra keys), atomically."""
    if not rows:
        raise UserInputError(f"no results to write to {path}")
    extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in COLUMNS]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*COLUMNS, *extra], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(float(v)) if isinstance(v, (float, np.floating)) else v) for k, v in row.items()})
    return write_text(path, buf.getvalue(), overwrite=overwrite)


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a tidy CSV written by :func:`write_results` (``fold``/``n_markers`` int, ``value`` float)."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"results file {p} does not exist")
    with open(p, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserInputError(f"results file {p} lacks column(s) {', '.join(missing)}")
        rows: list[dict[str, Any]] = []
        for line, row in enumerate(reader, start=2):
            try:
                for c in _INT_COLUMNS:
                    row[c] = int(row[c])
                row["value"] = float(row["value"])
            except (TypeError, ValueError):
                raise UserInputError(f"results file {p}, line {line}: bad number in {dict(row)}") from None
            rows.append(row)
    return rows
