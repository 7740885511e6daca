"""Evaluation of a run on every marker subset, as a tidy results table.

For each non-empty subset of the model's panel (2^K - 1 of them, or the ones asked for) every
annotated slice of the test samples is segmented with only that subset's markers (the others are zero
images and 0 in the availability vector) exactly as ``predict`` does it (tiles, softmax, stitching
with overlaps averaged, argmax), and one confusion matrix is accumulated over ALL their voxels, each
voxel counted once; F1, precision, recall, TP, FP and FN per class come from that one matrix (not a
mean of per-patch or per-slice scores).

Rows are dicts with the columns ``model, fold, class, subset, n_markers, metric, value``
(:data:`~marker_excite.analysis.results.COLUMNS`; :mod:`marker_excite.analysis.results` writes, reads and
compares such tables); subsets are
named by :func:`~marker_excite.contract.markers.subset_name`: the paper's notation (``m_125``) relative to the
paper's five markers when the subset's markers are among them (so a UB model on DAPI+endomucin reports
``m_12``), else by marker names (``cytoplasm+nuclear``), so every model names a subset alike.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from marker_excite.config import split_list
from marker_excite.contract.markers import PAPER_MARKERS, MarkerPanel, Subset
from marker_excite.data import pipeline
from marker_excite.data.store import SampleStore
from marker_excite.data.tiling import predict_tiled
from marker_excite.errors import UserInputError
from marker_excite.inference.forward import keras_forward
from marker_excite.progress import Progress
from marker_excite.runs.run import Run

#: Metrics reported per (class, subset).
METRICS: tuple[str, ...] = ("f1", "precision", "recall", "tp", "fp", "fn")


def label_panel(markers: Sequence[str]) -> MarkerPanel:
    """The panel whose notation names subsets: the paper's markers if they contain all ``markers``."""
    paper = MarkerPanel(PAPER_MARKERS)
    return paper if all(m in paper for m in markers) else MarkerPanel(tuple(markers))


def parse_subsets(spec: str | Sequence[str | Sequence[str]], markers: Sequence[str]) -> list[Subset]:
    """Subsets given by the user, as :class:`Subset` of the model panel ``markers``.

    A string holds subsets separated by ``,`` or ``;``; each is an ``m_125`` label (in the notation
    of :func:`label_panel`) or marker names joined by ``+`` (``DAPI+collagen``). A sequence holds such
    strings or collections of marker names. Raises :class:`UserInputError` naming the bad entry.
    """
    model_panel = MarkerPanel(tuple(markers))
    names_panel = label_panel(markers)
    items: list[Any] = list(split_list(spec.replace(";", ","), what="subsets")) if isinstance(spec, str) else list(spec)
    out: list[Subset] = []
    for item in items:
        if isinstance(item, str):
            text = item.strip()
            if not text:
                raise UserInputError(f"empty subset in {spec!r}")
            names = list(names_panel.parse_subset(text.replace("+", ",")).names)
        else:
            names = list(item)
        missing = [n for n in names if n not in model_panel]
        if missing:
            raise UserInputError(
                f"subset {item!r} uses marker(s) {', '.join(missing)} that the model does not have "
                f"(its markers: {', '.join(model_panel.names)})"
            )
        subset = model_panel.parse_subset(names)
        if subset not in out:
            out.append(subset)
    if not out:
        raise UserInputError("no subsets given")
    return out


class SliceScorer:
    """Confusion matrices of a model over whole annotated slices, every voxel counted exactly once.

    Each slice is cut into tiles, run through the model (softmax), stitched with overlaps averaged and
    labelled by argmax with :func:`~marker_excite.data.tiling.predict_tiled` -- the same code and the
    same numbers as ``predict`` -- and then compared with the slice's labels. (Counting per tile would
    count the overlap of the last, pulled-back tile of every row and column twice.)

    Args:
        model: a Keras model with inputs ``image`` and ``availability``.
        input_size, n_markers, n_outputs: its tile size, panel size and 1 + number of classes.
        batch_size: tiles per forward pass.
        class_weights: loss weights ``[1 + C]``; with them :meth:`confusion_and_loss` also returns the
            voxel mean of the weighted cross-entropy of the stitched probabilities.
    """

    def __init__(
        self,
        model,
        *,
        input_size: int,
        n_markers: int,
        n_outputs: int,
        batch_size: int = 4,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        self.forward = keras_forward(model, int(input_size), int(n_markers))
        self.n_outputs = int(n_outputs)
        self.batch_size = int(batch_size)
        self.class_weights = None if class_weights is None else np.asarray(class_weights, np.float64)

    def probabilities(self, source, sample_i: int, padded: np.ndarray, availability: np.ndarray) -> np.ndarray:
        """Stitched probabilities ``[1 + C, Y, X]`` of one padded slice ``[Yp, Xp, K]`` of ``source``."""
        return predict_tiled(self.forward, source.plans[sample_i].layout, padded, availability, self.batch_size)

    def _slices(self, source) -> Iterable[tuple[int, np.ndarray, np.ndarray]]:
        """``(sample index, padded image [Yp, Xp, K], labels [Y, X])`` for every annotated slice."""
        for sample_i, z in source.slices:
            padded, label = source.load_slice(sample_i, z)[:2]
            y, x = source.plans[sample_i].layout.shape_yx
            yield sample_i, padded, label[:y, :x]

    def confusion_and_loss(self, source) -> tuple[np.ndarray, float]:
        """Confusion matrix over every voxel of the annotated slices of a
        :class:`~marker_excite.data.pipeline.PatchSource` (all their markers), and the voxel mean of the
        weighted cross-entropy (NaN without class weights). Used for validation during training."""
        from marker_excite.models.metrics import confusion_matrix

        cm = np.zeros((self.n_outputs, self.n_outputs), dtype=np.int64)
        total, count = 0.0, 0
        for sample_i, padded, label in self._slices(source):
            probs = self.probabilities(source, sample_i, padded, source.plans[sample_i].availability)
            cm += confusion_matrix(label, np.argmax(probs, axis=0), self.n_outputs)
            if self.class_weights is not None:
                p_true = np.take_along_axis(probs, label[None].astype(np.int64), axis=0)[0]
                total += float(np.sum(self.class_weights[label] * -np.log(np.maximum(p_true, 1e-7))))
            count += label.size
        loss = total / count if self.class_weights is not None and count else float("nan")
        return cm, loss

    def subsets(
        self, source, subsets: Sequence[Subset], *, progress: bool = True
    ) -> dict[Subset, tuple[np.ndarray, int]]:
        """Per subset: the confusion matrix over every slice whose sample has all the subset's markers
        (fed with only those markers), and the number of such slices. Each slice is read once."""
        from marker_excite.models.metrics import confusion_matrix

        k = source.panel.size
        masks = {s: np.isin(np.arange(k), s.indices).astype(np.float32) for s in subsets}
        result = {s: (np.zeros((self.n_outputs,) * 2, dtype=np.int64), 0) for s in subsets}
        with Progress(len(source.slices) * len(subsets), "evaluate", unit="slice", enabled=progress) as bar:
            for sample_i, padded, label in self._slices(source):
                available = source.plans[sample_i].availability
                for s, mask in masks.items():
                    bar.update()
                    if np.any(available[list(s.indices)] == 0):
                        continue  # the sample lacks a marker of this subset
                    probs = self.probabilities(source, sample_i, padded * mask, available * mask)
                    acc, seen = result[s]
                    result[s] = (acc + confusion_matrix(label, np.argmax(probs, axis=0), self.n_outputs), seen + 1)
        return result


def rows_from_confusion(
    cm: np.ndarray,
    *,
    model: str,
    fold: int,
    classes: Sequence[str],
    subset: str,
    n_markers: int,
    **extra: Any,
) -> list[dict[str, Any]]:
    """Tidy rows (one per class and metric in :data:`METRICS`) from a confusion matrix with background
    at index 0 and ``classes`` at 1..C."""
    from marker_excite.models.metrics import f1_from_confusion, precision_recall, tp_fp_fn

    cm = np.asarray(cm, dtype=np.int64)
    if cm.shape != (len(classes) + 1,) * 2:
        raise UserInputError(f"confusion matrix has shape {cm.shape}, expected {(len(classes) + 1,) * 2}")
    f1 = f1_from_confusion(cm)
    precision, recall = precision_recall(cm)
    tp, fp, fn = tp_fp_fn(cm)
    values = {"f1": f1, "precision": precision, "recall": recall, "tp": tp, "fp": fp, "fn": fn}
    rows = []
    for c, cls in enumerate(classes, start=1):
        for metric in METRICS:
            v = values[metric][c]
            rows.append(
                dict(
                    model=model,
                    fold=int(fold),
                    **{"class": cls},
                    subset=subset,
                    n_markers=int(n_markers),
                    metric=metric,
                    value=int(v) if metric in ("tp", "fp", "fn") else float(v),
                    **extra,
                )
            )
    return rows


def evaluate_model(
    model,
    model_config,
    store,
    samples: Sequence[str],
    *,
    fold: int,
    subsets: str | Sequence | None = None,
    batch_size: int = 4,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Evaluate a built model on ``samples`` of an open store for every subset (see module doc)."""
    markers = tuple(model_config.markers)
    panel = MarkerPanel(markers)
    chosen = panel.all_subsets() if subsets is None else parse_subsets(subsets, markers)
    source = pipeline.PatchSource(
        store, list(samples), panel=panel, classes=tuple(model_config.classes), input_size=model_config.input_size,
        output_size=model_config.output_size, shuffle=False, cache_bytes=0,
    )  # fmt: skip
    scorer = SliceScorer(
        model,
        input_size=model_config.input_size,
        n_markers=len(markers),
        n_outputs=model_config.n_outputs,
        batch_size=batch_size,
    )
    confusions = scorer.subsets(source, chosen, progress=progress)
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for subset, (cm, count) in confusions.items():
        if count == 0:
            skipped.append(subset.name)
            continue
        rows += rows_from_confusion(
            cm, model=model_config.name, fold=fold, classes=model_config.classes, subset=subset.name,
            n_markers=len(subset),
        )  # fmt: skip
    if skipped and progress:
        print(skipped_note(skipped), file=sys.stderr)
    return rows


def skipped_note(skipped: Sequence[str], shown: int = 5) -> str:
    """One line for the subsets left out because no test sample has all their markers (the first
    ``shown`` named)."""
    more = f" and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return (
        f"evaluate: {len(skipped)} subset(s) skipped, no test sample has all their markers: "
        f"{', '.join(skipped[:shown])}{more}"
    )


def evaluate_run(
    run: Run,
    store=None,
    *,
    subsets: str | Sequence | None = None,
    samples: Sequence[str] | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Evaluate a :class:`~marker_excite.runs.run.Run` on the TEST samples of its fold.

    Args:
        run: from :func:`marker_excite.runs.run.load_run`.
        store: an open SampleStore or a store path (default: the run's store).
        subsets: None for all 2^K-1 subsets of the model's panel, else subsets as in :func:`parse_subsets`.
        samples: override the samples (default: the fold's test samples).
        batch_size: patches per forward pass (default: max(4, training batch size)).
        progress: print progress.

    Returns tidy rows (see module doc), also for UB models (their panel is their own subset).
    """
    samples = list(samples) if samples is not None else list(run.fold.test)
    if not samples:
        raise UserInputError(f"run {run.run_dir} has no test samples to evaluate on")
    bs = int(batch_size or max(4, run.train_config.batch_size))
    kwargs = dict(fold=run.train_config.fold, subsets=subsets, batch_size=bs, progress=progress)
    if store is None or isinstance(store, (str, os.PathLike)):
        path = Path(store if store is not None else run.store_path)
        if not path.is_file():
            raise UserInputError(f"sample store {path} does not exist (give --store)")
        with SampleStore(path, "r") as opened:
            _check_samples(opened, samples)
            return evaluate_model(run.model, run.model_config, opened, samples, **kwargs)
    _check_samples(store, samples)
    return evaluate_model(run.model, run.model_config, store, samples, **kwargs)


def _check_samples(store, samples: Sequence[str]) -> None:
    missing = [s for s in samples if s not in store.names()]
    if missing:
        raise UserInputError(f"sample(s) {', '.join(missing)} not in the store {store.path}")
