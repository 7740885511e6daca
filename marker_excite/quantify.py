"""Volume fractions of the segmented classes within the tissue, per sample and region.

For every sample: ``fraction(class) = class_voxels / tissue_voxels`` where ``tissue_voxels`` counts the
voxels of the tissue mask and ``class_voxels`` the voxels labelled ``class`` INSIDE the tissue mask.
The tissue mask comes from a tissue model (a run/exported model whose classes include ``tissue``, or
whose foreground is tissue) or from the threshold fallback of :mod:`marker_excite.tissue` on DAPI.
Labels come from a model applied to each sample (:func:`quantify_store`) or from predicted label
volumes (:func:`quantify_files`). Everything streams slice by slice.

Output: a tidy CSV with columns :data:`COLUMNS` and a box plot of the fractions per region and class.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from marker_excite.atomic import check_output_path, write_text
from marker_excite.data.io import open_volume
from marker_excite.data.sample import TISSUE
from marker_excite.data.store import SampleStore
from marker_excite.errors import UserInputError
from marker_excite.inference import check_user_channel_names, predict_slices
from marker_excite.plots import save_figure
from marker_excite.predictor import as_predictor
from marker_excite.progress import Progress
from marker_excite.tissue import MIN_SIZE, SIGMA, threshold_masks

COLUMNS = ("sample", "region", "class", "tissue_voxels", "class_voxels", "fraction")


class FractionCounter:
    """Accumulates tissue and per-class voxel counts over label / tissue slices."""

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = tuple(classes)
        self.tissue_voxels = 0
        self.class_voxels = np.zeros(len(self.classes), dtype=np.int64)

    def update(self, labels: np.ndarray, tissue: np.ndarray) -> None:
        """Add one slice: ``labels`` int (0 background, c = c-th class), ``tissue`` bool, same shape."""
        labels, tissue = np.asarray(labels), np.asarray(tissue, dtype=bool)
        if labels.shape != tissue.shape:
            raise UserInputError(f"label slice {labels.shape} and tissue mask {tissue.shape} differ in shape")
        inside = labels[tissue].astype(np.int64)
        if inside.size and (inside.min() < 0 or inside.max() > len(self.classes)):
            raise UserInputError(
                f"label value {int(inside.max() if inside.max() > len(self.classes) else inside.min())} "
                f"is outside 0..{len(self.classes)} (classes: {', '.join(self.classes)})"
            )
        self.tissue_voxels += int(tissue.sum())
        self.class_voxels += np.bincount(inside, minlength=len(self.classes) + 1)[1:]

    def rows(self, sample: str, region: str | None) -> list[dict[str, Any]]:
        """One row per class (fraction NaN when the tissue mask is empty)."""
        t = self.tissue_voxels
        return [
            {
                "sample": sample,
                "region": region or "",
                "class": cls,
                "tissue_voxels": t,
                "class_voxels": int(n),
                "fraction": float(n) / t if t else float("nan"),
            }
            for cls, n in zip(self.classes, self.class_voxels)
        ]


def fractions(
    sample: str, region: str | None, classes: Sequence[str], labels: Iterable[np.ndarray], tissue: Iterable[np.ndarray]
) -> list[dict[str, Any]]:
    """Rows of one sample from matching iterables of label slices and tissue-mask slices."""
    counter = FractionCounter(classes)
    for lab, mask in zip(labels, tissue, strict=True):
        counter.update(lab, mask)
    return counter.rows(sample, region)


# -- tissue sources ---------------------------------------------------------------------------------
def _channel(markers: Sequence[str], name: str, where: str) -> int:
    low = [m.lower() for m in markers]
    if name.lower() not in low:
        raise UserInputError(
            f"{where} has no {name} channel for the threshold tissue mask (channels: {', '.join(markers)})"
        )
    return low.index(name.lower())


def tissue_slices(
    volume,
    tissue_model=None,
    *,
    dapi: str = "DAPI",
    sigma: float = SIGMA,
    min_size: int = MIN_SIZE,
    batch_size: int = 4,
    allow_unseen: bool = False,
) -> Iterator[np.ndarray]:
    """Tissue mask ``[Y, X]`` bool of each slice of ``volume``: from a tissue model or the DAPI threshold.

    A tissue model is given the stack's markers that are in its panel; the mask is its ``tissue``
    class (or all its foreground when it has no class named ``tissue``). ``allow_unseen``: see
    :func:`~marker_excite.inference.predict_slices`.
    """
    if tissue_model is None:
        yield from threshold_masks(
            volume,
            _channel(volume.markers, dapi, str(getattr(volume, "path", "stack"))),
            sigma=sigma,
            min_size=min_size,
        )
        return
    predictor = as_predictor(tissue_model)
    check_user_channel_names(volume, predictor)
    usable = _known_markers(volume.markers, predictor, str(getattr(volume, "path", "stack")))
    classes = predictor.spec.classes
    target = classes.index(TISSUE) + 1 if TISSUE in classes else None
    for _, probs in predict_slices(
        predictor, volume, markers=usable, batch_size=batch_size, progress=False, allow_unseen=allow_unseen
    ):
        labels = np.argmax(probs, axis=0)
        yield labels == target if target is not None else labels > 0


def _known_markers(stack_markers: Sequence[str], predictor, where: str) -> list[str]:
    panel = predictor.spec.panel
    known = [m for m in stack_markers if m in panel]
    if not known:
        raise UserInputError(
            f"{where} has none of the model's markers {', '.join(panel.names)} (it has {', '.join(stack_markers)})"
        )
    return known


def _label_slices(volume) -> Iterator[np.ndarray]:
    for z in range(volume.shape_czyx[1]):
        yield np.rint(volume.read_slice(z)[0]).astype(np.int64)


# -- workflows ------------------------------------------------------------------------------------
def quantify_store(
    store_path: str | os.PathLike,
    model,
    *,
    tissue_model=None,
    samples: Sequence[str] | None = None,
    markers: str | Sequence[str] | None = None,
    dapi: str = "DAPI",
    sigma: float = SIGMA,
    min_size: int = MIN_SIZE,
    batch_size: int = 4,
    progress: bool = True,
    allow_unseen: bool = False,
) -> list[dict[str, Any]]:
    """Predict every (or the given) sample of a store with ``model`` and measure its volume fractions.

    The region of each sample is its store attribute ``region``. Without ``markers`` each sample is
    segmented with all of its markers that the model knows (others are ignored). Markers a model never
    saw in training are refused unless ``allow_unseen`` (:func:`~marker_excite.model_spec.check_seen`).
    """
    predictor = as_predictor(model)
    tissue = as_predictor(tissue_model) if tissue_model is not None else None
    with SampleStore(store_path, "r") as store:
        names = list(samples) if samples else store.names()
        unknown = sorted(set(names) - set(store.names()))
        if unknown:
            raise UserInputError(
                f"sample(s) {', '.join(unknown)} not in store {store_path}; it has {', '.join(store.names())}"
            )
        regions = {n: store.info(n).region for n in names}
    rows: list[dict[str, Any]] = []
    with Progress(len(names), "quantify", unit="sample", enabled=progress) as bar:
        for name in names:
            with open_volume(f"{store_path}:{name}") as labels_vol, open_volume(f"{store_path}:{name}") as tissue_vol:
                use = (
                    markers
                    if markers is not None
                    else _known_markers(labels_vol.markers, predictor, f"sample {name!r}")
                )
                labels = (
                    np.argmax(p, axis=0)
                    for _, p in predict_slices(
                        predictor,
                        labels_vol,
                        markers=use,
                        batch_size=batch_size,
                        progress=False,
                        allow_unseen=allow_unseen,
                    )
                )
                masks = tissue_slices(tissue_vol, tissue, dapi=dapi, sigma=sigma, min_size=min_size,
                                      batch_size=batch_size, allow_unseen=allow_unseen)  # fmt: skip
                rows += fractions(name, regions[name], predictor.spec.classes, labels, masks)
            bar.update()
    return rows


def quantify_files(
    label_paths: Sequence[str | os.PathLike],
    image_paths: Sequence[str | os.PathLike],
    classes: Sequence[str],
    *,
    regions: Sequence[str | None] | None = None,
    tissue_model=None,
    channel_names: Sequence[str] | str | None = None,
    dapi: str = "DAPI",
    sigma: float = SIGMA,
    min_size: int = MIN_SIZE,
    batch_size: int = 4,
    allow_unseen: bool = False,
) -> list[dict[str, Any]]:
    """Volume fractions of predicted label volumes; the tissue mask comes from the matching image stacks.

    Sample names are the label files' names without suffixes; ``regions`` gives one region per file.
    With a tissue model, every name in ``channel_names`` must be one of its markers (``-`` skips a
    channel) and ``allow_unseen`` is as in :func:`quantify_store`.
    """
    if not label_paths:
        raise UserInputError("give at least one label volume")
    if len(image_paths) != len(label_paths):
        raise UserInputError(
            f"{len(label_paths)} label volume(s) but {len(image_paths)} image stack(s); give one image per label volume"
        )
    regions = list(regions) if regions is not None else [None] * len(label_paths)
    if len(regions) != len(label_paths):
        raise UserInputError(f"{len(label_paths)} label volume(s) but {len(regions)} region(s)")
    tissue = as_predictor(tissue_model) if tissue_model is not None else None
    rows: list[dict[str, Any]] = []
    for lab_path, img_path, region in zip(label_paths, image_paths, regions):
        with open_volume(lab_path) as lab, open_volume(img_path, markers=channel_names) as img:
            if lab.shape_czyx[0] != 1:
                raise UserInputError(f"{lab_path}: a label volume has one channel, this file has {lab.shape_czyx[0]}")
            if lab.shape_zyx != img.shape_zyx:
                raise UserInputError(
                    f"{lab_path} has shape {lab.shape_zyx} (Z, Y, X) but its image {img_path} has {img.shape_zyx}"
                )
            masks = tissue_slices(img, tissue, dapi=dapi, sigma=sigma, min_size=min_size, batch_size=batch_size,
                                  allow_unseen=allow_unseen)  # fmt: skip
            name = Path(lab_path).name.split(".")[0]
            rows += fractions(name, region, classes, _label_slices(lab), masks)
    return rows


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the rows as CSV (columns :data:`COLUMNS`) atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in COLUMNS})
    return write_text(path, buf.getvalue(), overwrite=overwrite)


def fraction_boxplot(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    truth: Mapping[tuple[str, str], float] | None = None,
    training: Collection[str] = (),
    overwrite: bool = False,
) -> Path:
    """Box plot of the volume fraction per region (one panel per class, samples as points).

    ``truth`` maps ``(sample, class)`` to a known true fraction (the phantom's ``fraction_<class>``),
    drawn as a red cross next to the sample's point; samples in ``training`` (the model saw them) are
    drawn as open squares, the others as filled dots.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    check_output_path(path, overwrite=overwrite)
    truth = truth or {}
    training = set(training)
    classes = list(dict.fromkeys(r["class"] for r in rows))
    regions = list(dict.fromkeys(r["region"] or "all" for r in rows))
    fig = Figure(figsize=(1.6 + 1.6 * len(regions) * len(classes), 3.4), layout="constrained")
    axes = fig.subplots(1, len(classes), squeeze=False)
    for ax, cls in zip(axes[0], classes):
        selected = [[r for r in rows if r["class"] == cls and (r["region"] or "all") == reg and np.isfinite(float(r["fraction"]))]
                    for reg in regions]  # fmt: skip
        ax.boxplot([[float(r["fraction"]) for r in sel] for sel in selected], tick_labels=regions, showfliers=False)
        for i, sel in enumerate(selected, start=1):
            for r in sel:
                seen = r["sample"] in training
                ax.plot(i - 0.08, float(r["fraction"]), "s" if seen else "o", markersize=4, alpha=0.8,
                        markerfacecolor="none" if seen else "k", markeredgecolor="k")  # fmt: skip
                if (r["sample"], cls) in truth:
                    ax.plot(i + 0.08, truth[(r["sample"], cls)], "x", color="tab:red", markersize=5)
        ax.set_title(cls)
        ax.set_ylabel("volume fraction of tissue")
        ax.set_ylim(bottom=0)
    handles = [Line2D([], [], marker="o", color="k", linestyle="", markersize=4, label="predicted")]
    if training:
        handles.append(Line2D([], [], marker="s", markerfacecolor="none", markeredgecolor="k", linestyle="",
                              markersize=4, label="predicted, training sample"))  # fmt: skip
    if truth:
        handles.append(Line2D([], [], marker="x", color="tab:red", linestyle="", markersize=5, label="true fraction"))
    axes[0][-1].legend(handles=handles, fontsize=7, loc="best")
    return save_figure(fig, path)


def store_truth(
    store_path: str | os.PathLike, samples: Iterable[str], classes: Sequence[str]
) -> dict[tuple[str, str], float]:
    """The known true fractions of a store's samples (attributes ``fraction_<class>``, set by the phantom)."""

    out: dict[tuple[str, str], float] = {}
    with SampleStore(store_path, "r") as store:
        for name in dict.fromkeys(samples):
            attrs = store.info(name).attrs
            out.update({(name, c): float(attrs[f"fraction_{c}"]) for c in classes if f"fraction_{c}" in attrs})
    return out
