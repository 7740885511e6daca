"""The paper's figure types, drawn from tidy result rows (matplotlib, Agg, written atomically as PNG).

* :func:`subset_ranking` - marker subsets ranked by mean score, mean +- sd over folds (Fig. 1c,g).
* :func:`relative_boxplot` - per-subset differences to a reference model with Wilcoxon stars
  (Fig. 2b,c and 3c-g, "Rel. to").
* :func:`grouped_comparison` - groups of subsets (e.g. with / without a marker) with Mann-Whitney
  stars (Fig. 1d,e,h,i).
* :func:`training_curves` - loss and validation F1 per epoch of a run.

Rows are dicts with ``model, fold, class, subset, n_markers, metric, value`` (see
:mod:`marker_excite.analysis.results`). Every function returns the written path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from marker_excite.analysis.stats import mann_whitney, pair_rows, wilcoxon
from marker_excite.atomic import atomic_path
from marker_excite.contract.markers import PAPER_MARKERS, MarkerError, MarkerPanel
from marker_excite.errors import UserInputError

Rows = Sequence[Mapping]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write a matplotlib figure atomically (temp file + rename); the format comes from the suffix."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return Path(path)


def _select(rows: Iterable[Mapping], metric: str, cls: str | None = None, model: str | None = None) -> list[Mapping]:
    return [
        r
        for r in rows
        if r.get("metric") == metric
        and (cls is None or r.get("class") == cls)
        and (model is None or r.get("model") == model)
    ]


def _classes(rows: Iterable[Mapping]) -> list[str]:
    return list(dict.fromkeys(str(r["class"]) for r in rows))


def subset_names(label: str, markers: Sequence[str] = PAPER_MARKERS) -> str:
    """A subset label in the paper's notation as marker names: ``m_125`` -> ``DAPI+endomucin+CXCL12-GFP``
    (relative to ``markers``); a label that is not a subset of ``markers`` is returned unchanged."""
    try:
        indices = MarkerPanel(tuple(markers)).parse_subset(str(label))
    except MarkerError:
        return str(label)
    return "+".join(markers[i] for i in indices)


def rank_subsets(rows: Rows, *, metric: str = "f1", cls: str | None = None) -> list[tuple[str, float, float, int]]:
    """``(subset, mean, sd, n)`` per subset over folds (sample sd, 0 for one fold), by ascending mean."""
    values: dict[str, list[float]] = {}
    for r in _select(rows, metric, cls):
        values.setdefault(str(r["subset"]), []).append(float(r["value"]))
    if not values:
        raise UserInputError(f"no rows with metric {metric!r}" + (f" and class {cls!r}" if cls else ""))
    ranked = [
        (s, float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)) for s, v in values.items()
    ]
    return sorted(ranked, key=lambda t: (t[1], t[0]))


def subset_ranking(
    rows: Rows,
    path: str | os.PathLike,
    *,
    metric: str = "f1",
    classes: Sequence[str] | None = None,
    title: str | None = None,
    markers: Sequence[str] = PAPER_MARKERS,
    note: str | None = None,
) -> Path:
    """Bar chart of marker subsets sorted by ascending mean ``metric``, error bars = sd over folds.

    One panel per class (Fig. 1c for sinusoids, 1g for arteries). Subsets are labelled with the names
    of ``markers`` (the panel their ``m_125`` notation refers to); ``note`` (e.g. what the scores rest
    on) is printed under the title.
    """
    classes = list(classes) if classes else _classes(_select(rows, metric))
    if not classes:
        raise UserInputError(f"no rows with metric {metric!r} to plot")
    n_subsets = max(len(rank_subsets(rows, metric=metric, cls=c)) for c in classes)
    longest = max(len(subset_names(str(r["subset"]), markers)) for r in _select(rows, metric))
    fig = _figure(max(5.0, 0.32 * n_subsets + 1.5), (1.2 + 0.065 * longest) * len(classes) + 2.0)
    axes = fig.subplots(len(classes), 1, squeeze=False)[:, 0]
    for ax, cls in zip(axes, classes):
        ranked = rank_subsets(rows, metric=metric, cls=cls)
        x = np.arange(len(ranked))
        means = [t[1] for t in ranked]
        sds = [t[2] for t in ranked]
        ax.bar(x, means, yerr=sds if any(sds) else None, color="#4c72b0", capsize=2, ecolor="0.3")
        ax.set_xticks(x, [subset_names(t[0], markers) for t in ranked], rotation=90, fontsize=8)
        ax.set_ylabel(metric.upper() if len(metric) <= 3 else metric)
        ax.set_xlim(-0.6, len(ranked) - 0.4)
        folds = max(t[3] for t in ranked)
        ax.set_title(f"{cls}" + (f" (mean ± sd over {folds} folds)" if folds > 1 else ""), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    if title or note:
        fig.suptitle("\n".join(t for t in (title, note) if t), fontsize=10)
    return save_figure(fig, path)


def _star_text(ax, x: float, y: float, text: str) -> None:
    ax.text(x, y, text, ha="center", va="bottom", fontsize=9)


def relative_boxplot(
    model_rows: Mapping[str, Rows],
    reference_rows: Rows,
    path: str | os.PathLike,
    *,
    reference: str = "reference",
    metric: str = "f1",
    classes: Sequence[str] | None = None,
    pooled: bool = True,
) -> Path:
    """Box plots of ``Q_model - Q_reference`` per matched (class, subset, fold), one box per model.

    One panel per class plus, with ``pooled`` and more than one class, a panel pooling all classes
    (the paper's tests aggregate sinusoids and arteries). Stars: paired Wilcoxon signed-rank test of
    each box against zero difference.
    """
    if not model_rows:
        raise UserInputError("relative_boxplot: give at least one model")
    all_rows = [r for rows in model_rows.values() for r in rows]
    classes = list(classes) if classes else _classes(_select(all_rows, metric))
    panels: list[tuple[str, list[str] | None]] = [(c, [c]) for c in classes]
    if pooled and len(classes) > 1:
        panels.append(("all classes", None))
    fig = _figure(max(3.0, 1.0 + 1.1 * len(model_rows)) * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, cls_filter) in zip(axes, panels):
        data, names, marks = [], [], []
        for name, rows in model_rows.items():
            sel = [r for r in rows if cls_filter is None or r.get("class") in cls_filter]
            ref = [r for r in reference_rows if cls_filter is None or r.get("class") in cls_filter]
            paired = pair_rows(sel, ref, metric=metric)
            diff = paired.differences
            data.append(diff)
            names.append(name)
            marks.append(wilcoxon(diff).stars)
        ax.boxplot(data, whis=1.5, widths=0.6)
        ax.axhline(0.0, color="0.4", linestyle="--", linewidth=1)
        ax.set_xticks(np.arange(1, len(names) + 1), names, rotation=30, ha="right")
        top = max(float(np.max(d)) for d in data)
        span = max(top - min(float(np.min(d)) for d in data), 1e-3)
        for i, mark in enumerate(marks, start=1):
            _star_text(ax, i, top + 0.05 * span, mark)
        ax.set_ylim(top=top + 0.2 * span)
        ax.set_title(label, fontsize=10)
        ax.set_ylabel(f"{metric} rel. to {reference}")
        ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


SubsetGroup = Callable[[str], bool] | Iterable[str]


def _member(group: SubsetGroup) -> Callable[[str], bool]:
    if callable(group):
        return group
    names = {str(s) for s in group}
    return lambda subset: subset in names


def grouped_comparison(
    rows: Rows,
    groups: Mapping[str, SubsetGroup],
    path: str | os.PathLike,
    *,
    metric: str = "f1",
    cls: str | None = None,
    title: str | None = None,
) -> Path:
    """Box plots of ``metric`` for groups of subsets, Mann-Whitney U stars between neighbouring groups.

    ``groups`` maps a label to the subsets it holds, either as a list of subset labels or as a
    predicate on the label (e.g. ``lambda s: "2" in s or "3" in s`` for "with m2 or m3", Fig. 1d).
    """
    if len(groups) < 2:
        raise UserInputError("grouped_comparison: give at least two groups")
    sel = _select(rows, metric, cls)
    data = []
    for label, group in groups.items():
        member = _member(group)
        values = np.array([float(r["value"]) for r in sel if member(str(r["subset"]))])
        if values.size == 0:
            raise UserInputError(f"grouped_comparison: group {label!r} matches no rows with metric {metric!r}")
        data.append(values)
    fig = _figure(1.0 + 1.3 * len(groups), 3.6)
    ax = fig.subplots()
    ax.boxplot(data, whis=1.5, widths=0.6)
    ax.set_xticks(np.arange(1, len(groups) + 1), [f"{k}\n(n={len(d)})" for k, d in zip(groups, data)])
    top = max(float(np.max(d)) for d in data)
    span = max(top - min(float(np.min(d)) for d in data), 1e-3)
    for i in range(len(data) - 1):
        y = top + (0.06 + 0.1 * i) * span
        ax.plot([i + 1, i + 1, i + 2, i + 2], [y - 0.02 * span, y, y, y - 0.02 * span], color="0.2", linewidth=1)
        _star_text(ax, i + 1.5, y, mann_whitney(data[i], data[i + 1]).stars)
    ax.set_ylim(top=top + (0.15 + 0.1 * len(data)) * span)
    ax.set_ylabel(metric)
    ax.set_title(title or (cls or ""), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def training_curves(history: Sequence[Mapping], path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Loss / validation loss and validation F1 (one line per class; their mean when there are several)
    per epoch, best epoch marked.

    ``history`` is a run's ``log.csv`` rows (``epoch, loss, val_loss, val_f1_<class>..., val_mean_f1``).
    """
    from matplotlib.ticker import MaxNLocator

    if not history:
        raise UserInputError("training_curves: the history is empty (no completed epoch)")
    epochs = [int(r["epoch"]) for r in history]
    fig = _figure(9.0, 3.4)
    ax_loss, ax_f1 = fig.subplots(1, 2)
    for key, style in (("loss", "-"), ("val_loss", "--")):
        if key in history[0]:
            ax_loss.plot(epochs, [float(r[key]) for r in history], style, label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("weighted cross-entropy")
    ax_loss.legend(fontsize=8)
    f1_keys = [k for k in history[0] if k.startswith("val_f1_")]
    for key in f1_keys:
        ax_f1.plot(epochs, [float(r[key]) for r in history], "-", marker="." if len(epochs) < 30 else None,
                   label=key[len("val_f1_"):])  # fmt: skip
    if "val_mean_f1" in history[0]:
        mean = [float(r["val_mean_f1"]) for r in history]
        if len(f1_keys) != 1:  # with one class the mean is that class's line
            ax_f1.plot(epochs, mean, "k--", linewidth=1.5, label="mean")
        best = int(np.nanargmax(mean))
        ax_f1.axvline(epochs[best], color="tab:red", linestyle=":", label=f"best (epoch {epochs[best]})")
    ax_f1.set_xlabel("epoch")
    ax_f1.set_ylabel("validation F1")
    ax_f1.set_ylim(0, 1)
    ax_f1.legend(fontsize=8)
    for ax in (ax_loss, ax_f1):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs only, never "2.5"
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
