"""Volume fractions of the segmented classes within the tissue, per sample and region.

For every sample: ``fraction(class) = class_voxels / tissue_voxels`` where ``tissue_voxels`` counts the
voxels of the tissue mask and ``class_voxels`` the voxels labelled ``class`` INSIDE the tissue mask.
The tissue mask (a :class:`TissueSource`) is the threshold fallback of :mod:`marker_excite.inference.tissue` on any
named marker (DAPI by default), a tissue model (a run/exported model whose classes include ``tissue``, or
whose foreground is tissue), mask volumes given by the user (non-zero = tissue), or a label class of the
store's samples (the phantom's true ``tissue``). Labels come from a model applied to each sample
(:func:`quantify_store`) or from predicted label volumes (:func:`quantify_files`). Everything streams
slice by slice.

Output: a tidy CSV with columns :data:`COLUMNS` (``tissue_mask`` names the mask used; a sample whose tissue
mask is empty gets fraction ``nan`` and ``note`` says why) and a plot of the fractions per region and class.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marker_excite.analysis.plots import save_figure
from marker_excite.atomic import check_output_path, write_text
from marker_excite.data.io import open_volume
from marker_excite.data.sample import TISSUE
from marker_excite.data.store import SampleStore
from marker_excite.errors import UserInputError
from marker_excite.inference.predictor import load_predictor
from marker_excite.inference.tissue import MIN_SIZE, SIGMA, threshold_masks
from marker_excite.inference.whole_stack import check_user_channel_names, predict_slices
from marker_excite.progress import Progress

COLUMNS = ("sample", "region", "class", "tissue_voxels", "class_voxels", "fraction", "tissue_mask", "note")
#: ``note`` of the rows of a sample whose tissue mask holds no voxel (their fraction is ``nan``).
EMPTY_TISSUE = "empty tissue mask: no tissue voxel, no fraction"


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

    def rows(self, sample: str, region: str | None, tissue_mask: str = "") -> list[dict[str, Any]]:
        """One row per class; ``tissue_mask`` names the mask. An empty tissue mask gives fraction NaN
        with ``note`` :data:`EMPTY_TISSUE` (flagged, never a bare NaN)."""
        t = self.tissue_voxels
        return [
            {
                "sample": sample,
                "region": region or "",
                "class": cls,
                "tissue_voxels": t,
                "class_voxels": int(n),
                "fraction": float(n) / t if t else float("nan"),
                "tissue_mask": tissue_mask,
                "note": "" if t else EMPTY_TISSUE,
            }
            for cls, n in zip(self.classes, self.class_voxels)
        ]


def fractions(
    sample: str,
    region: str | None,
    classes: Sequence[str],
    labels: Iterable[np.ndarray],
    tissue: Iterable[np.ndarray],
    tissue_mask: str = "",
) -> list[dict[str, Any]]:
    """Rows of one sample from matching iterables of label slices and tissue-mask slices."""
    counter = FractionCounter(classes)
    for lab, mask in zip(labels, tissue, strict=True):
        counter.update(lab, mask)
    return counter.rows(sample, region, tissue_mask)


def empty_tissue_samples(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The samples whose tissue mask was empty (flagged rows), in order."""
    return list(dict.fromkeys(r["sample"] for r in rows if r.get("note") == EMPTY_TISSUE))


# -- tissue sources ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TissueSource:
    """Where the tissue mask of each sample comes from: ONE of a threshold on ``marker`` (the default,
    DAPI), a tissue ``model``, mask volumes ``masks`` (one per sample, non-zero = tissue) or the store's
    label class ``label``. ``sigma`` / ``min_size`` tune the threshold (see :mod:`marker_excite.inference.tissue`)."""

    marker: str = "DAPI"
    model: Any = None
    masks: tuple[str, ...] = ()
    label: str | None = None
    sigma: float = SIGMA
    min_size: int = MIN_SIZE

    def __post_init__(self) -> None:
        given = [
            n for n, v in (("a tissue model", self.model), ("mask files", self.masks), ("a label", self.label)) if v
        ]
        if len(given) > 1:
            raise UserInputError(f"give one tissue mask source, not {' and '.join(given)}")
        if self.model is not None:
            object.__setattr__(self, "model", load_predictor(self.model))
        object.__setattr__(self, "masks", tuple(str(m) for m in self.masks))

    @property
    def description(self) -> str:
        """The mask in words (the CSV's ``tissue_mask`` column, the plot and the printed summary)."""
        if self.model is not None:
            return f"tissue model {Path(str(self.model.source)).name}"
        if self.masks:
            return "mask files"
        if self.label:
            return f"store label {self.label!r}"
        return f"Otsu threshold on {self.marker}"

    def check_count(self, n: int, what: str) -> None:
        """Mask files must be one per sample / label volume."""
        if self.masks and len(self.masks) != n:
            raise UserInputError(f"{len(self.masks)} tissue mask file(s) for {n} {what}; give one per {what[:-1]}")


def _channel(markers: Sequence[str], name: str, where: str) -> int:
    low = [m.lower() for m in markers]
    if name.lower() not in low:
        raise UserInputError(
            f"{where} has no {name} channel for the threshold tissue mask (channels: {', '.join(markers)}); "
            "name another marker with --tissue-marker, or give --tissue-model / --tissue-mask"
        )
    return low.index(name.lower())


def tissue_slices(
    volume,
    source: TissueSource | None = None,
    *,
    index: int = 0,
    store: SampleStore | None = None,
    sample: str | None = None,
    batch_size: int = 4,
    allow_unseen: bool = False,
) -> Iterator[np.ndarray]:
    """Tissue mask ``[Y, X]`` bool of each slice of ``volume`` from ``source`` (default: DAPI threshold).

    ``index`` picks the mask file of this sample; a ``label`` source reads ``sample`` of the open ``store``. A tissue model is given the stack's markers that are in its panel; the mask is
    its ``tissue`` class (or all its foreground when it has no class named ``tissue``); ``allow_unseen``:
    see :func:`~marker_excite.inference.whole_stack.predict_slices`.
    """
    source = source or TissueSource()
    where = str(getattr(volume, "path", "stack"))
    if source.masks:
        yield from _mask_file_slices(source.masks[index], volume.shape_zyx)
    elif source.label:
        if store is None or sample is None:
            raise UserInputError(f"a tissue mask from the label {source.label!r} needs a sample store (--store)")
        yield from _label_slices_of_store(store, sample, source.label)
    elif source.model is not None:
        predictor = source.model
        check_user_channel_names(volume, predictor)
        usable = _known_markers(volume.markers, predictor, where)
        classes = predictor.spec.classes
        target = classes.index(TISSUE) + 1 if TISSUE in classes else None
        for _, probs in predict_slices(
            predictor, volume, markers=usable, batch_size=batch_size, progress=False, allow_unseen=allow_unseen
        ):
            labels = np.argmax(probs, axis=0)
            yield labels == target if target is not None else labels > 0
    else:
        channel = _channel(volume.markers, source.marker, where)
        yield from threshold_masks(volume, channel, sigma=source.sigma, min_size=source.min_size)


def _mask_file_slices(path: str, shape_zyx: tuple[int, int, int]) -> Iterator[np.ndarray]:
    with open_volume(path) as mask:
        if mask.shape_czyx[0] != 1 or mask.shape_zyx != tuple(shape_zyx):
            raise UserInputError(
                f"tissue mask {path} has shape {mask.shape_czyx} (C, Z, Y, X); the image needs one channel of "
                f"{tuple(shape_zyx)} (Z, Y, X)"
            )
        for z in range(mask.shape_zyx[0]):
            yield mask.read_slice(z)[0] != 0


def _label_slices_of_store(store: SampleStore, sample: str, label: str) -> Iterator[np.ndarray]:
    info = store.info(sample)
    if label not in info.classes:
        raise UserInputError(
            f"sample {sample!r} has no label {label!r} for the tissue mask (labels: {', '.join(info.classes) or 'none'})"
        )
    for z in range(info.shape_zyx[0]):
        mask = store.read_slice(sample, z)[1][label] > 0
        if not info.annotated[z] and not mask.any():
            raise UserInputError(
                f"sample {sample!r}: slice {z} is not annotated and has no {label!r} label; a tissue mask from a "
                "label needs it on every slice (give --tissue-mask or --tissue-model instead)"
            )
        yield mask


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
    tissue: TissueSource | None = None,
    samples: Sequence[str] | None = None,
    markers: str | Sequence[str] | None = None,
    batch_size: int = 4,
    progress: bool = True,
    allow_unseen: bool = False,
) -> list[dict[str, Any]]:
    """Predict every (or the given) sample of a store with ``model`` and measure its volume fractions.

    The region of each sample is its store attribute ``region``; ``tissue`` gives the tissue mask
    (default: Otsu threshold on DAPI; mask files: one per quantified sample, in order). Without
    ``markers`` each sample is segmented with all of its markers that the model knows (others are ignored).
    Markers a model never saw in training are refused unless ``allow_unseen``
    (:func:`~marker_excite.contract.model_spec.check_seen`).
    """
    predictor = load_predictor(model)
    tissue = tissue or TissueSource()
    with SampleStore(store_path, "r") as store:
        names = list(samples) if samples else store.names()
        unknown = sorted(set(names) - set(store.names()))
        if unknown:
            raise UserInputError(
                f"sample(s) {', '.join(unknown)} not in store {store_path}; it has {', '.join(store.names())}"
            )
        tissue.check_count(len(names), "samples")
        regions = {n: store.info(n).region for n in names}
        rows: list[dict[str, Any]] = []
        with Progress(len(names), "quantify", unit="sample", enabled=progress) as bar:
            for i, name in enumerate(names):
                volume = store.volume(name)
                use = markers if markers is not None else _known_markers(volume.markers, predictor, f"sample {name!r}")
                labels = (
                    np.argmax(p, axis=0)
                    for _, p in predict_slices(
                        predictor, volume, markers=use, batch_size=batch_size, progress=False, allow_unseen=allow_unseen
                    )
                )
                masks = tissue_slices(volume, tissue, index=i, store=store, sample=name,
                                      batch_size=batch_size, allow_unseen=allow_unseen)  # fmt: skip
                rows += fractions(name, regions[name], predictor.spec.classes, labels, masks, tissue.description)
                bar.update()
    return rows


def quantify_files(
    label_paths: Sequence[str | os.PathLike],
    image_paths: Sequence[str | os.PathLike] | None,
    classes: Sequence[str],
    *,
    regions: Sequence[str | None] | None = None,
    tissue: TissueSource | None = None,
    channel_names: Sequence[str] | str | None = None,
    batch_size: int = 4,
    allow_unseen: bool = False,
) -> list[dict[str, Any]]:
    """Volume fractions of predicted label volumes; the tissue mask comes from the matching image stacks
    (``tissue``, default Otsu threshold on DAPI) or from mask files (one per label volume).

    Sample names are the label files' names without suffixes; ``regions`` gives one region per file.
    With a tissue model, every name in ``channel_names`` must be one of its markers (``-`` skips a
    channel) and ``allow_unseen`` is as in :func:`quantify_store`.
    """
    if not label_paths:
        raise UserInputError("give at least one label volume")
    tissue = tissue or TissueSource()
    tissue.check_count(len(label_paths), "label volumes")
    image_paths = list(image_paths or [])
    if not image_paths and not tissue.masks:
        raise UserInputError("give one image stack per label volume (for the tissue mask), or tissue mask files")
    if image_paths and len(image_paths) != len(label_paths):
        raise UserInputError(
            f"{len(label_paths)} label volume(s) but {len(image_paths)} image stack(s); give one image per label volume"
        )
    regions = list(regions) if regions is not None else [None] * len(label_paths)
    if len(regions) != len(label_paths):
        raise UserInputError(f"{len(label_paths)} label volume(s) but {len(regions)} region(s)")
    rows: list[dict[str, Any]] = []
    for i, (lab_path, region) in enumerate(zip(label_paths, regions)):
        name = Path(lab_path).name.split(".")[0]
        with open_volume(lab_path) as lab:
            if lab.shape_czyx[0] != 1:
                raise UserInputError(f"{lab_path}: a label volume has one channel, this file has {lab.shape_czyx[0]}")
            if not image_paths:  # the user's tissue masks
                masks = _mask_file_slices(tissue.masks[i], lab.shape_zyx)
                rows += fractions(name, region, classes, _label_slices(lab), masks, tissue.description)
                continue
            with open_volume(image_paths[i], markers=channel_names) as img:
                if lab.shape_zyx != img.shape_zyx:
                    raise UserInputError(
                        f"{lab_path} has shape {lab.shape_zyx} (Z, Y, X) but its image {image_paths[i]} has "
                        f"{img.shape_zyx}"
                    )
                masks = tissue_slices(img, tissue, index=i, batch_size=batch_size, allow_unseen=allow_unseen)
                rows += fractions(name, region, classes, _label_slices(lab), masks, tissue.description)
    return rows


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the rows as CSV (columns :data:`COLUMNS`) atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        values = {k: row.get(k, "") for k in COLUMNS}
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in values.items()})
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

    Each sample has its own x position inside its region's box: its predicted fraction is a dot
    (an open square for the samples in ``training``, which the model saw); ``truth`` maps
    ``(sample, class)`` to a known true fraction (the phantom's ``fraction_<class>``), drawn as a red
    cross at the same x and joined to the prediction by a thin line. A sample whose tissue mask is
    empty (no fraction) is a red triangle on the x axis. The title names the tissue mask used.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    check_output_path(path, overwrite=overwrite)
    truth = truth or {}
    training = set(training)
    classes = list(dict.fromkeys(r["class"] for r in rows))
    regions = list(dict.fromkeys(r["region"] or "all" for r in rows))
    fig = Figure(figsize=(1.6 + 1.6 * len(regions) * len(classes), 3.6), layout="constrained")
    axes = fig.subplots(1, len(classes), squeeze=False)
    empty = False
    for ax, cls in zip(axes[0], classes):
        by_region = [[r for r in rows if r["class"] == cls and (r["region"] or "all") == reg] for reg in regions]
        measured = [[float(r["fraction"]) for r in sel if np.isfinite(float(r["fraction"]))] for sel in by_region]
        ax.boxplot(measured, tick_labels=regions, showfliers=False, widths=0.7)
        for i, sel in enumerate(by_region, start=1):
            xs = np.linspace(i - 0.25, i + 0.25, len(sel)) if len(sel) > 1 else [float(i)]
            for x, r in zip(xs, sel):
                fraction = float(r["fraction"])
                if not np.isfinite(fraction):
                    ax.plot(x, 0, "^", color="tab:red", markersize=6, clip_on=False)
                    empty = True
                    continue
                true = truth.get((r["sample"], cls))
                if true is not None:
                    ax.plot([x, x], [fraction, true], "-", color="tab:red", linewidth=0.8, alpha=0.6)
                seen = r["sample"] in training
                ax.plot(x, fraction, "s" if seen else "o", markersize=4, alpha=0.8,
                        markerfacecolor="none" if seen else "k", markeredgecolor="k")  # fmt: skip
                if true is not None:
                    ax.plot(x, true, "x", color="tab:red", markersize=5)
        ax.set_title(cls)
        ax.set_ylabel("volume fraction of tissue")
        ax.set_ylim(bottom=0)
    masks = [m for m in dict.fromkeys(str(r.get("tissue_mask") or "") for r in rows) if m]
    if masks:
        fig.suptitle(f"tissue mask: {', '.join(masks)}", fontsize=9)
    handles = [Line2D([], [], marker="o", color="k", linestyle="", markersize=4, label="predicted")]
    if training:
        handles.append(Line2D([], [], marker="s", markerfacecolor="none", markeredgecolor="k", linestyle="",
                              markersize=4, label="predicted, training sample"))  # fmt: skip
    if truth:
        handles.append(Line2D([], [], marker="x", color="tab:red", linestyle="-", linewidth=0.8, markersize=5,
                              label="true fraction (same sample)"))  # fmt: skip
    if empty:
        handles.append(Line2D([], [], marker="^", color="tab:red", linestyle="", markersize=6,
                              label="empty tissue mask (no fraction)"))  # fmt: skip
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
