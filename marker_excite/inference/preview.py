"""A picture of one prediction (``predict --preview out.png``): the input markers next to what the model made of them.

Left: the markers fed to the model as a colour overlay (one colour per marker, named in a legend);
middle: the predicted label contours (one colour per class) over a grey version of the overlay;
right: one panel of probabilities per class. The view is one slice (``--preview-slice z``, default the
middle one) or the maximum intensity projection over z (``--preview-slice mip``; labels: a class is
drawn where any slice has it).

The picture is drawn after prediction from the input and the written outputs, one slice at a time
(a MIP keeps running maxima), so memory stays bounded by a few slices whatever the stack's depth.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marker_excite.analysis.plots import save_figure
from marker_excite.data.io import open_volume
from marker_excite.errors import UserInputError
from marker_excite.inference.whole_stack import PROBABILITY_DTYPES, plan_channels

#: Colours of the overlaid markers, in the order of the markers shown (blue first: usually DAPI).
MARKER_COLOURS: tuple[tuple[float, float, float], ...] = (
    (0.15, 0.35, 1.0), (0.0, 1.0, 0.2), (1.0, 0.1, 0.6), (1.0, 0.85, 0.0), (0.0, 0.9, 1.0),
    (1.0, 0.45, 0.0), (0.7, 0.3, 1.0), (1.0, 1.0, 1.0),
)  # fmt: skip
#: Colours of the class contours (label value 1, 2, ...).
CLASS_COLOURS: tuple[str, ...] = ("#ff3030", "#ffd000", "#30ff30", "#30d0ff", "#ff30ff", "#ffffff")
#: The value of ``--preview-slice`` that asks for a maximum intensity projection.
MIP = "mip"


@dataclass(frozen=True)
class PreviewData:
    """What a preview shows, all in the same plane.

    Attributes:
        image: the shown markers ``[M, Y, X]`` float32 (raw intensities).
        markers: their names.
        labels: per class a boolean mask ``[C, Y, X]`` (class 1 first).
        probabilities: per class ``[C, Y, X]`` in [0, 1], or None when only labels were written.
        classes: the class names.
        view: ``"slice z of N"`` or ``"MIP over N slices"``.
    """

    image: np.ndarray
    markers: tuple[str, ...]
    labels: np.ndarray
    probabilities: np.ndarray | None
    classes: tuple[str, ...]
    view: str


def parse_slice(text: str | int | None, n_slices: int) -> int | None:
    """``--preview-slice``: ``None`` -> the middle slice, ``"mip"`` -> None (projection), else a slice
    index in ``0..n_slices-1`` (negative counts from the end)."""
    if text is None:
        return n_slices // 2
    if str(text).strip().lower() == MIP:
        return None
    try:
        z = int(str(text).strip())
    except ValueError:
        raise UserInputError(f"--preview-slice must be a slice number or 'mip', got {text!r}") from None
    if not -n_slices <= z < n_slices:
        raise UserInputError(f"--preview-slice {z} is outside the stack's slices 0..{n_slices - 1}")
    return z % n_slices


def marker_composite(image: np.ndarray, colours: Sequence[Sequence[float]] = MARKER_COLOURS) -> np.ndarray:
    """RGB ``[Y, X, 3]`` in [0, 1]: each channel of ``image [M, Y, X]`` scaled from its 1st to its 99.5th
    percentile to [0, 1], times its colour, summed and clipped (a constant channel contributes nothing;
    colours repeat after the last one)."""
    image = np.asarray(image, np.float32)
    if image.ndim != 3:
        raise ValueError(f"expected [markers, Y, X], got shape {image.shape}")
    rgb = np.zeros((*image.shape[1:], 3), np.float32)
    for i, channel in enumerate(image):
        colour = colours[i % len(colours)]
        lo, hi = np.percentile(channel, [1.0, 99.5])
        if hi <= lo:
            continue
        scaled = np.clip((channel - lo) / (hi - lo), 0.0, 1.0)
        rgb += scaled[..., None] * np.asarray(colour, np.float32)
    return np.clip(rgb, 0.0, 1.0)


def subset_name(markers: Sequence[str]) -> str:
    """Marker names joined as in figure labels: ``DAPI+endomucin+CXCL12-GFP``."""
    return "+".join(markers)


def collect(
    volume,
    channels: Sequence[int],
    classes: Sequence[str],
    z: int | None,
    *,
    labels=None,
    probabilities=None,
    probability_scale: float = 1.0,
) -> PreviewData:
    """Read the view (slice ``z``, or the MIP when None) of the input and of the written outputs.

    Args:
        volume: the input stack (a :class:`~marker_excite.data.io.VolumeReader`).
        channels: the input channels to show (those fed to the model).
        classes: class names of label values 1, 2, ...
        labels: the written label volume (reader), or None.
        probabilities: the written probability volume (reader; channels background + classes), or None.
        probability_scale: divide stored probabilities by this (255 / 65535 for integer storage).
    """
    if labels is None and probabilities is None:
        raise UserInputError("a preview needs a written label or probability volume")
    nz = volume.shape_czyx[1]
    slices = range(nz) if z is None else [z]
    n_classes = len(classes)
    image = label_masks = probs = None
    for k in slices:
        raw = volume.read_slice(k)[list(channels)]
        image = raw if image is None else np.maximum(image, raw)
        p = None
        if probabilities is not None:
            p = probabilities.read_slice(k) / np.float32(probability_scale)
            probs = p[1:] if probs is None else np.maximum(probs, p[1:])
        lab = labels.read_slice(k)[0] if labels is not None else np.argmax(p, axis=0)
        masks = np.stack([lab == c for c in range(1, n_classes + 1)])
        label_masks = masks if label_masks is None else label_masks | masks
    view = f"slice {z} of {nz}" if z is not None else f"MIP over {nz} slices"
    names = tuple(volume.markers[c] for c in channels)
    return PreviewData(image, names, label_masks, probs, tuple(classes), view)  # type: ignore[arg-type]


def preview_figure(data: PreviewData, title: str | None = None):
    """The matplotlib figure of :class:`PreviewData` (see the module doc for its panels)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rgb = marker_composite(data.image)
    n_prob = 0 if data.probabilities is None else len(data.classes)
    height, width = rgb.shape[:2]
    panel = 3.6 * min(1.0, max(0.5, width / max(height, 1)))
    fig = Figure(figsize=(panel * (2 + n_prob) + 0.4, 4.0), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2 + n_prob, squeeze=False)[0]
    ax_in, ax_lab = axes[0], axes[1]
    ax_in.imshow(rgb, interpolation="nearest")
    ax_in.set_title("input markers", fontsize=9)
    ax_in.legend(handles=[Patch(color=MARKER_COLOURS[i % len(MARKER_COLOURS)], label=m) for i, m in enumerate(data.markers)],
                 loc="upper right", fontsize=7, framealpha=0.6)  # fmt: skip
    ax_lab.imshow(rgb.mean(axis=2), cmap="gray", interpolation="nearest")
    handles = []
    for c, (cls, mask) in enumerate(zip(data.classes, data.labels)):
        colour = CLASS_COLOURS[c % len(CLASS_COLOURS)]
        if mask.any() and not mask.all():
            ax_lab.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=0.8)
        handles.append(Patch(color=colour, label=f"{cls} ({100 * mask.mean():.1f}%)"))
    ax_lab.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.6)
    ax_lab.set_title("predicted labels", fontsize=9)
    for c in range(n_prob):
        ax = axes[2 + c]
        shown = ax.imshow(data.probabilities[c], vmin=0.0, vmax=1.0, cmap="magma", interpolation="nearest")  # type: ignore[index]
        ax.set_title(f"P({data.classes[c]})", fontsize=9)
        fig.colorbar(shown, ax=ax, shrink=0.7)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle((f"{title}: " if title else "") + f"{data.view}, markers {subset_name(data.markers)}", fontsize=10)
    return fig


def write_preview(
    path: str | os.PathLike,
    input_path: str | os.PathLike,
    outputs: Mapping[str, str | os.PathLike],
    spec,
    *,
    use: str | Sequence[str] | None = None,
    channel_names: Sequence[str] | str | None = None,
    spacing: Sequence[float] | None = None,
    z: int | None = None,
    probability_dtype: str = "float32",
) -> Path:
    """Draw the preview of a finished ``predict`` into ``path`` (PNG/PDF/SVG by suffix, atomically).

    ``outputs`` are the written volumes (``{"labels": ..., "probabilities": ...}``); ``spec`` is the
    model's :class:`~marker_excite.inference.whole_stack.ModelSpec`; ``use``, ``channel_names`` and ``spacing`` are
    the options the prediction ran with, so the same channels are shown; ``z`` is the slice shown
    (None: the MIP; see :func:`parse_slice`).
    """
    with ExitStack() as stack:
        volume = stack.enter_context(open_volume(input_path, markers=channel_names, spacing=spacing))
        plan = plan_channels(volume.markers, spec.panel, use)
        readers = {
            k: stack.enter_context(open_volume(v)) for k, v in outputs.items() if k in ("labels", "probabilities")
        }
        data = collect(volume, plan.used_channels, spec.classes, z, labels=readers.get("labels"),
                       probabilities=readers.get("probabilities"),
                       probability_scale=float(PROBABILITY_DTYPES[probability_dtype] or 1))  # fmt: skip
    return save_figure(preview_figure(data, title=Path(str(input_path)).name), path)
