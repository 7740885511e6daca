"""bioimage.io model packages (model format 0.5) of a trained run: ``export RUN OUT.zip --format bioimageio``.

The zip holds ``rdf.yaml`` (the description; written as JSON, which is YAML), the TensorFlow
SavedModel weights (``tf_saved_model_bundle.zip``), a test input / output pair cut from a real slice
(``.npy``) and the same pair as TIFF sample tensors, a cover image, ``README.md`` and the run's
``model_card.json`` (:mod:`marker_excite.contract.model_spec`, which also declares the tensor names used here).

Both flavours have ONE input, because bioimage.io's runners (``bioimageio.core``, deepImageJ) call a
model with its inputs as positional arguments, which a two-input TensorFlow SavedModel does not accept:

* general: ``image [batch, y, x, channel]`` with 2K channels: the model's K markers (in panel order;
  a missing marker is a zero channel), then one constant plane per marker holding its availability
  (1 = present, 0 = missing; channel names ``availability <marker>``). The model z-scores the K marker
  channels per tile itself (over y and x, :data:`EPS`), since a declared preprocessing would also
  flatten the availability planes to zero;
* fixed markers (``fixed_markers=("DAPI", "collagen")``): ``image`` with exactly those channels; the
  availability vector is built into the weights; preprocessing ``zero_mean_unit_variance`` over y and
  x per channel is declared. This is what single-input consumers (deepImageJ, ilastik) run.

Declared: channel names, classes (output channels), pixel size (``scale`` in µm on y / x when the run
knows it), the preprocessing above, and the tile geometry:
the input is a fixed ``input_size`` tile (the network's 'same' up-convolutions make its border
depend on the tile size, so other sizes would not reproduce training), the output is
``input_size - 2 * margin`` pixels, centred (``size.offset``: valid convolutions), so consumers step
tiles by the output size. Markers that no training sample had are refused for ``fixed_markers``
unless allowed, and the card's rule for them (``unseen_markers``) is repeated in ``README.md``.
Everything declared is read from the run's :class:`~marker_excite.contract.model_spec.ModelSpec` and its
provenance; the zip's ``model_card.json`` is that spec serialised.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from marker_excite.atomic import atomic_path, check_output_path, scratch_directory
from marker_excite.contract.model_spec import (
    CARD_NAME,
    IMAGE,
    PROBABILITIES,
    UNSEEN_MARKERS,
    ModelSpec,
    check_seen,
    unseen_markers,
)
from marker_excite.data.io import open_volume
from marker_excite.data.resample import resample_slice
from marker_excite.errors import UserInputError
from marker_excite.runs.run import Run, load_run
from marker_excite.sharing.savedmodel import endpoint_archive, serving_archive

FORMAT_VERSION = "0.5.4"
EPS = 1e-6  # zero_mean_unit_variance: (x - mean) / (std + eps)
WEIGHTS = "tf_saved_model_bundle.zip"
#: The entries of the model card's training summary repeated in ``rdf.yaml`` (``config.marker_excite.training``).
RDF_TRAINING: tuple[str, ...] = (
    "model",
    "fold",
    "n_folds",
    "samples",
    "markers_seen",
    "epochs",
    "best_epoch",
    "best_val_mean_f1",
    "best_val_f1",
)
CITATION = {
    "text": (
        "Gomariz A, Portenier T, Helbling PM, Isringhausen S, Suessbier U, Nombela-Arrieta C, Goksel O. "
        "Modality attention and sampling enables deep learning with heterogeneous marker combinations in "
        "fluorescence microscopy. Nature Machine Intelligence (2021)."
    ),
    "url": "https://arxiv.org/abs/2008.12380",
}


def availability_channels(markers: Sequence[str]) -> list[str]:
    """Names of the general package's availability planes (``availability DAPI`` ...)."""
    return [f"availability {m}" for m in markers]


def pack(tile: np.ndarray, availability: np.ndarray) -> np.ndarray:
    """The general package's input: ``tile [N, Y, X, K]`` followed by one constant plane per entry of
    ``availability [N, K]`` -> ``[N, Y, X, 2K]`` float32."""
    planes = np.broadcast_to(availability[:, None, None, :], (*tile.shape[:3], availability.shape[-1]))
    return np.concatenate([tile, planes], axis=-1).astype(np.float32)


def packed_archive(model, spec: ModelSpec):
    """A ``keras.export.ExportArchive`` (endpoint ``serve``) of the general package: one input
    ``image [N, S, S, 2K]`` (:func:`pack` of the RAW markers and the availability), z-scored per tile
    and marker inside (as :func:`standardise_tile`), output ``probabilities`` (softmax)."""
    import keras
    import tensorflow as tf

    k = len(spec.markers)
    shape = spec.shapes()[IMAGE]

    def serve(image):
        raw = image[..., :k]
        mean = tf.reduce_mean(raw, axis=[1, 2], keepdims=True)
        std = tf.math.reduce_std(raw, axis=[1, 2], keepdims=True)
        availability = tf.reduce_mean(image[..., k:], axis=[1, 2])
        logits = model([(raw - mean) / (std + EPS), availability], training=False)
        return {PROBABILITIES: keras.ops.softmax(logits, axis=-1)}

    return endpoint_archive(model, serve, [tf.TensorSpec((*shape[:-1], 2 * k), tf.float32, name=IMAGE)])


def standardise_tile(tile: np.ndarray) -> np.ndarray:
    """The declared preprocessing of ``tile [N, Y, X, C]``: per sample and channel over y, x."""
    t = tile.astype(np.float64)
    mean = t.mean(axis=(1, 2), keepdims=True)
    std = t.std(axis=(1, 2), keepdims=True)
    return ((t - mean) / (std + EPS)).astype(np.float32)


def sample_tile(run: Run, sample: str | os.PathLike | None, markers: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """A raw ``[1, input_size, input_size, len(markers)]`` tile of a real stack, at the model's pixel size,
    and the availability ``[1, len(markers)]`` (1 where the stack has the marker).

    ``sample``: a stack file (anything ``predict`` reads; default the run's first test, else
    validation, sample in its store). The middle slice's centre is cut out (zero-padded when the
    slice is smaller than a tile); channels are taken by name, a marker the stack lacks is zero.
    """
    if sample is None:
        names = list(run.fold.test) or list(run.fold.val)
        if not names or not Path(run.store_path).is_file():
            raise UserInputError("give --sample STACK: the run's store is not available to cut the test tile from")
        sample = f"{run.store_path}:{names[0]}"
    size = run.model_config.input_size
    with open_volume(sample) as volume:
        lower = [m.lower() for m in volume.markers]
        if not any(m.lower() in lower for m in markers):
            raise UserInputError(
                f"sample {sample} has none of the markers {', '.join(markers)} (it has {', '.join(volume.markers)})"
            )
        raw = volume.read_slice(volume.shape_czyx[1] // 2).astype(np.float32)
        spacing, own = run.spacing, volume.spacing
    image = np.stack(
        [raw[lower.index(m.lower())] if m.lower() in lower else np.zeros(raw.shape[1:], np.float32) for m in markers]
    )
    if spacing is not None and not np.allclose(own[1:], spacing[1:], rtol=1e-6):
        image = resample_slice(image, own[1:], spacing[1:])
    pad = [(0, 0)] + [(max(0, size - n) // 2, max(0, size - n) - max(0, size - n) // 2) for n in image.shape[1:]]
    image = np.pad(image, pad)
    y0, x0 = ((n - size) // 2 for n in image.shape[1:])
    available = np.array([[float(m.lower() in lower) for m in markers]], np.float32)
    return image[None, :, y0 : y0 + size, x0 : x0 + size].transpose(0, 2, 3, 1).copy(), available


def _axes(
    size, channels: Sequence[str], scale: float | None, *, reference: tuple[str, int] | None = None
) -> list[dict[str, Any]]:
    """Axes ``batch, y, x, channel``: fixed ``size``, or ``reference = (tensor, offset)`` for outputs."""
    axes: list[dict[str, Any]] = [{"type": "batch"}]
    for axis in ("y", "x"):
        entry: dict[str, Any] = {"type": "space", "id": axis}
        if reference is None:
            entry["size"] = int(size)
        else:
            entry["size"] = {"tensor_id": reference[0], "axis_id": axis, "offset": int(reference[1])}
        if scale is not None:
            entry.update(unit="micrometer", scale=float(scale))
        axes.append(entry)
    axes.append({"type": "channel", "channel_names": list(channels)})
    return axes


def describe(
    spec: ModelSpec, fixed_markers: Sequence[str] | None, *, name: str, authors: Sequence[str]
) -> dict[str, Any]:
    """The ``rdf.yaml`` content (model format 0.5) of a model (``spec`` with its provenance)."""
    import tensorflow as tf

    card = spec.card()  # the rdf's config repeats some of the model card's entries verbatim
    scale = float(spec.spacing[2]) if spec.spacing else None
    image: dict[str, Any] = {
        "id": IMAGE,
        "test_tensor": {"source": f"test_input_{IMAGE}.npy"},
        "sample_tensor": {"source": f"sample_input_{IMAGE}.tif"},
        "data": {"type": "float32"},
    }
    if fixed_markers:
        image.update(
            description="fluorescence channels",
            axes=_axes(spec.input_size, fixed_markers, scale),
            preprocessing=[{"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"], "eps": EPS}}],
        )
    else:
        image.update(
            description="raw markers (missing: all-zero channel), then one constant plane per marker: 1 present, 0 missing",
            axes=_axes(spec.input_size, [*spec.markers, *availability_channels(spec.markers)], scale),
        )
    flavour = f"for the markers {', '.join(fixed_markers)}" if fixed_markers else "for any subset of its markers"
    return {
        "type": "model",
        "format_version": FORMAT_VERSION,
        "name": name,
        "description": (
            f"{spec.name} segmentation of {', '.join(spec.classes)} in fluorescence microscopy (Marker Sampling + "
            f"Marker Excite, Gomariz et al.), {flavour}."
        ),
        "cite": [CITATION],
        "license": "MIT",
        "documentation": "README.md",
        "covers": ["cover.png"],
        "tags": ["fluorescence-light-microscopy", "semantic-segmentation", "2d", "tensorflow", "unet", "marker-excite"],
        "inputs": [image],
        "outputs": [
            {
                "id": PROBABILITIES,
                "description": "softmax probabilities of background and the classes; labels = argmax",
                "axes": _axes(None, spec.outputs, scale, reference=(IMAGE, -2 * spec.margin)),
                "test_tensor": {"source": f"test_output_{PROBABILITIES}.npy"},
                "sample_tensor": {"source": f"sample_output_{PROBABILITIES}.tif"},
                "data": {"type": "float32"},
            }
        ],  # fmt: skip
        "weights": {
            "tensorflow_saved_model_bundle": {
                "source": WEIGHTS,
                "tensorflow_version": tf.__version__.split("+")[0],
                "comment": "SavedModel with endpoint 'serve' (and signature 'serving_default'), softmax included",
            }
        },
        "attachments": [{"source": CARD_NAME}],
        **({"authors": [{"name": a} for a in authors]} if authors else {}),
        "config": {
            "marker_excite": {
                "markers": list(spec.markers),
                "fixed_markers": list(fixed_markers) if fixed_markers else None,
                "classes": list(spec.classes),
                "tile": spec.tile(),
                "spacing_zyx_um": card["spacing_zyx_um"],
                "input": "markers then availability planes" if not fixed_markers else "fixed markers",
                "normalisation": spec.normalisation["description"],
                "unseen_markers": UNSEEN_MARKERS,
                "training": {key: card["training"][key] for key in RDF_TRAINING},
            }
        },
    }


def _readme(spec: ModelSpec, fixed_markers: Sequence[str] | None) -> str:
    """The package's ``README.md``: inputs, outputs, pixel size, tiles and training of ``spec`` (with provenance)."""
    training, spacing = spec.provenance, spec.spacing
    inputs = (
        f"one input `image` [batch, y, x, channel] with exactly the channels {', '.join(fixed_markers)} (in this "
        "order), each z-scored (declared preprocessing)"
        if fixed_markers
        else f"one input `image` [batch, y, x, channel]: the channels {', '.join(spec.markers)} (raw; a missing "
        "marker: all-zero channel), then one constant plane per marker in the same order, 1 where the marker is "
        "present and 0 where it is missing; the model z-scores the marker channels of each tile itself"
    )
    seen, unseen = training.markers_seen or spec.markers, unseen_markers(spec, spec.markers)
    lines = [
        f"# {spec.name}: {', '.join(spec.classes)}",
        "",
        "Trained with marker_excite (Marker Sampling + Marker Excite; Gomariz et al., Nature Machine Intelligence 2021, "
        "https://arxiv.org/abs/2008.12380).",
        "",
        f"- Inputs: {inputs}.",
        f"- Output `probabilities` [batch, y, x, channel]: softmax over {', '.join(spec.outputs)}; labels = argmax.",
        f"- Pixel size: {f'{spacing[2]} x {spacing[1]} µm (x, y)' if spacing else 'not recorded'}; resample images to it.",
        "- Normalisation: each channel z-scored with its mean and standard deviation over the whole image (stack), "
        "before zero padding.",
        f"- Tiles: input {spec.input_size} px, output {spec.output_size} px, centred (valid convolutions, margin "
        f"{spec.margin} px per side). Zero-pad the image by the margin and step tiles by {spec.output_size} px; "
        "other input sizes are not supported.",
        f"- Training: fold {training.fold} of {training.n_folds}, {training.epochs} epochs, best epoch "
        f"{training.best_epoch} (validation mean F1 {training.best_val_mean_f1}); samples: "
        + "; ".join(f"{part} {', '.join(names) or '-'}" for part, names in training.samples.items())
        + ".",
        f"- Markers seen in training: {', '.join(seen)}"
        + (f"; never seen: {', '.join(unseen)}. Leave those out (zero channel, availability 0): " if unseen else ". ")
        + f"the card's rule: {UNSEEN_MARKERS}.",
        "",
        "See model_card.json for the full card.",
        "",
        "# Validation",
        "",
        f"The weights are those of epoch {training.weights_epoch} ({training.weights}); the best "
        f"validation epoch {training.best_epoch} scored F1 "
        + ", ".join(f"{c} {v}" for c, v in training.best_val_f1.items())
        + f" with all markers on the validation samples {', '.join(training.samples.get('val') or ()) or '-'}. "
        "Scores per marker subset on the test samples: `marker-excite evaluate` on the run. The test tensors of this "
        "package were cut from a real slice; `bioimageio test` reproduces them from the weights.",
    ]
    return "\n".join(lines) + "\n"


def _cover(path: Path, tile: np.ndarray, markers: Sequence[str], probs: np.ndarray, outputs: Sequence[str]) -> None:
    """Input markers and predicted class probabilities side by side (2:1 PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(tile[0, :, :, i], m) for i, m in enumerate(markers)] + [
        (probs[0, :, :, c], f"P({o})") for c, o in enumerate(outputs) if c
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(8, 4), squeeze=False)
    for ax, (data, title) in zip(axes[0], panels):
        ax.imshow(data, cmap="gray" if not title.startswith("P(") else "magma")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.savefig(path, dpi=80)
    plt.close(fig)


def export_bioimageio(
    run: Run | str | os.PathLike,
    out_zip: str | os.PathLike,
    *,
    fixed_markers: Sequence[str] | None = None,
    sample: str | os.PathLike | None = None,
    authors: Sequence[str] = (),
    allow_unseen: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write ``run`` (a ``Run`` or run directory) as a bioimage.io model package ``out_zip`` (atomically).

    Args:
        fixed_markers: None for the general model (markers then availability planes); marker names for
            the fixed-marker flavour.
        sample: stack to cut the test tile from (default: a test sample of the run's store).
        authors: names for the package's ``authors`` (whoever trained the model); none: no ``authors`` entry.
        allow_unseen: accept ``fixed_markers`` that no training sample had (refused otherwise,
            :func:`~marker_excite.contract.model_spec.check_seen`).
    """
    import tensorflow as tf

    if isinstance(run, (str, os.PathLike)):
        run = load_run(run)
    out = Path(out_zip)
    if out.suffix.lower() != ".zip":
        raise UserInputError(f"bioimage.io output {out} must end in .zip")
    check_output_path(out, overwrite=overwrite)
    spec = run.exported_spec()
    panel = spec.panel
    if fixed_markers is not None:
        fixed_markers = [panel.names[i] for i in panel.indices(list(fixed_markers))]
        if not fixed_markers or len(set(fixed_markers)) != len(fixed_markers):
            raise UserInputError(f"--fixed-markers must name distinct markers of the model ({', '.join(panel.names)})")
        if not allow_unseen:
            check_seen(spec, fixed_markers, leave_out="--fixed-markers")
    markers = list(fixed_markers or spec.markers)
    raw, availability = sample_tile(run, sample, markers)
    if fixed_markers and not availability.all():
        missing = [m for m, a in zip(markers, availability[0]) if not a]
        raise UserInputError(f"the sample for the test tile lacks the fixed marker(s) {', '.join(missing)}")
    rdf = describe(spec, fixed_markers, name=f"{spec.name} {'-'.join(spec.classes)}", authors=authors)
    with scratch_directory(out) as tmp:  # named after ``out``: the next export sweeps it if this one is killed
        archive = serving_archive(run.model, spec, fixed_markers) if fixed_markers else packed_archive(run.model, spec)
        archive.write_out(str(tmp / "saved_model"), verbose=False)
        loaded = tf.saved_model.load(str(tmp / "saved_model"))  # keeps the variables alive
        image = raw if fixed_markers else pack(raw, availability)
        probs = loaded.serve(standardise_tile(raw) if fixed_markers else image)[PROBABILITIES].numpy()
        tensors = {IMAGE: ("input", image), PROBABILITIES: ("output", probs)}
        files = []
        for name, (kind, array) in tensors.items():
            np.save(tmp / f"test_{kind}_{name}.npy", array)
            tifffile.imwrite(tmp / f"sample_{kind}_{name}.tif", array[0])  # [y, x, channel]: for people to look at
            files += [f"test_{kind}_{name}.npy", f"sample_{kind}_{name}.tif"]
        _cover(tmp / "cover.png", raw, markers, probs, spec.outputs)
        (tmp / "README.md").write_text(_readme(spec, fixed_markers))
        (tmp / CARD_NAME).write_text(json.dumps(spec.card(), indent=2) + "\n")
        (tmp / "rdf.yaml").write_text(json.dumps(rdf, indent=2) + "\n")
        shutil.make_archive(str(tmp / "weights"), "zip", tmp / "saved_model")
        (tmp / "weights.zip").rename(tmp / WEIGHTS)
        with atomic_path(out, overwrite=overwrite, suffix=".zip") as part:
            with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as zf:
                for fname in ("rdf.yaml", "README.md", "cover.png", CARD_NAME, WEIGHTS, *files):
                    zf.write(tmp / fname, fname)
    return out
