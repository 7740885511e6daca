"""bioimage.io model packages (model format 0.5) of a trained run: ``export RUN OUT.zip --format bioimageio``.

The zip holds ``rdf.yaml`` (the description; written as JSON, which is YAML), the TensorFlow
SavedModel weights (``tf_saved_model_bundle.zip``), a test input / output pair cut from a real slice,
a cover image, ``README.md`` and the run's ``model_card.json`` (:mod:`marker_excite.model_spec`, which also
declares the tensor names used here).

Two flavours:

* general: inputs ``image [batch, y, x, channel]`` (the model's markers, in panel order; a missing
  marker is a zero channel) and ``availability [batch, channel]`` (1 = marker present);
* fixed markers (``fixed_markers=("DAPI", "collagen")``): one input ``image`` with exactly those
  channels; the availability vector is built into the weights. This is what single-input consumers
  (deepImageJ, ilastik) run.

Declared: channel names, classes (output channels), pixel size (``scale`` in µm on y / x when the run
knows it), preprocessing ``zero_mean_unit_variance`` over y and x per channel, and the tile geometry:
the input is a fixed ``input_size`` tile (the network's 'same' up-convolutions make its border
depend on the tile size, so other sizes would not reproduce training), the output is
``input_size - 2 * margin`` pixels, centred (``size.offset``: valid convolutions), so consumers step
tiles by the output size.
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

from marker_excite.atomic import atomic_path, check_output_path, scratch_directory
from marker_excite.data.io import open_volume
from marker_excite.data.resample import resample_slice
from marker_excite.errors import UserInputError
from marker_excite.export import serving_archive
from marker_excite.model_spec import AVAILABILITY, CARD_NAME, IMAGE, PROBABILITIES, ModelSpec
from marker_excite.run import Run, load_run

FORMAT_VERSION = "0.5.4"
EPS = 1e-6  # zero_mean_unit_variance: (x - mean) / (std + eps)
WEIGHTS = "tf_saved_model_bundle.zip"
CITATION = {
    "text": (
        "Gomariz A, Portenier T, Helbling PM, Isringhausen S, Suessbier U, Nombela-Arrieta C, Goksel O. "
        "Modality attention and sampling enables deep learning with heterogeneous marker combinations in "
        "fluorescence microscopy. Nature Machine Intelligence (2021)."
    ),
    "url": "https://arxiv.org/abs/2008.12380",
}


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
        spacing, own = run.spacing_zyx, volume.spacing
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
    card: dict[str, Any], fixed_markers: Sequence[str] | None, *, name: str, authors: Sequence[str]
) -> dict[str, Any]:
    """The ``rdf.yaml`` content (model format 0.5) of an exported model card."""
    import tensorflow as tf

    spec = ModelSpec.from_card(card)
    tile = card["tile"]
    spacing = card.get("spacing_zyx_um")
    scale = float(spec.spacing_zyx[2]) if spec.spacing_zyx else None
    inputs_markers = list(fixed_markers) if fixed_markers else list(spec.markers)
    inputs: list[dict[str, Any]] = [{
        "id": IMAGE,
        "description": "fluorescence channels" + ("" if fixed_markers else "; a missing marker: all-zero channel, availability 0"),
        "axes": _axes(spec.input_size, inputs_markers, scale),
        "test_tensor": {"source": f"test_input_{IMAGE}.npy"},
        "data": {"type": "float32"},
        "preprocessing": [{"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"], "eps": EPS}}],
    }]  # fmt: skip
    if not fixed_markers:
        inputs.append({
            "id": AVAILABILITY,
            "description": "1 for each marker present in the image, 0 for a missing (all-zero) channel",
            "axes": [{"type": "batch"}, {"type": "channel", "channel_names": list(spec.markers)}],
            "test_tensor": {"source": f"test_input_{AVAILABILITY}.npy"},
            "data": {"type": "float32"},
        })  # fmt: skip
    flavour = f"for the markers {', '.join(fixed_markers)}" if fixed_markers else "for any subset of its markers"
    training = card["training"]
    return {
        "type": "model",
        "format_version": FORMAT_VERSION,
        "name": name,
        "description": (
            f"{card['model']} segmentation of {', '.join(card['classes'])} in fluorescence microscopy (Marker Sampling + "
            f"Marker Excite, Gomariz et al.), {flavour}."
        ),
        "cite": [CITATION],
        "license": "MIT",
        "documentation": "README.md",
        "covers": ["cover.png"],
        "tags": ["fluorescence-light-microscopy", "semantic-segmentation", "2d", "tensorflow", "unet", "marker-excite"],
        "inputs": inputs,
        "outputs": [
            {
                "id": PROBABILITIES,
                "description": "softmax probabilities of background and the classes; labels = argmax",
                "axes": _axes(None, spec.outputs, scale, reference=(IMAGE, -2 * spec.margin)),
                "test_tensor": {"source": f"test_output_{PROBABILITIES}.npy"},
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
                "tile": tile,
                "spacing_zyx_um": spacing,
                "normalisation": card["normalisation"]["description"],
                "training": {
                    k: training[k]
                    for k in (
                        "model",
                        "fold",
                        "n_folds",
                        "samples",
                        "epochs",
                        "best_epoch",
                        "best_val_mean_f1",
                        "best_val_f1",
                    )
                },
            }
        },
    }


def _readme(card: dict[str, Any], fixed_markers: Sequence[str] | None) -> str:
    tile, training = card["tile"], card["training"]
    spacing = card.get("spacing_zyx_um")
    inputs = (
        f"one input `image` [batch, y, x, channel] with exactly the channels {', '.join(fixed_markers)} (in this order)"
        if fixed_markers
        else f"`image` [batch, y, x, channel] with the channels {', '.join(card['markers'])} (a missing marker: all-zero "
        "channel) and `availability` [batch, channel] (1 = present, 0 = missing)"
    )
    lines = [
        f"# {card['model']}: {', '.join(card['classes'])}",
        "",
        "Trained with marker_excite (Marker Sampling + Marker Excite; Gomariz et al., Nature Machine Intelligence 2021, "
        "https://arxiv.org/abs/2008.12380).",
        "",
        f"- Inputs: {inputs}.",
        f"- Output `probabilities` [batch, y, x, channel]: softmax over {', '.join(card['outputs'])}; labels = argmax.",
        f"- Pixel size: {f'{spacing[2]} x {spacing[1]} µm (x, y)' if spacing else 'not recorded'}; resample images to it.",
        "- Normalisation: each channel z-scored with its mean and standard deviation over the whole image (stack), "
        "before zero padding.",
        f"- Tiles: input {tile['input_size']} px, output {tile['output_size']} px, centred (valid convolutions, margin "
        f"{tile['margin']} px per side). Zero-pad the image by the margin and step tiles by {tile['output_size']} px; "
        "other input sizes are not supported.",
        f"- Training: fold {training['fold']} of {training['n_folds']}, {training['epochs']} epochs, best epoch "
        f"{training['best_epoch']} (validation mean F1 {training['best_val_mean_f1']}); samples: "
        + "; ".join(f"{part} {', '.join(names) or '-'}" for part, names in training["samples"].items())
        + ".",
        "",
        "See model_card.json for the full card.",
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
    overwrite: bool = False,
) -> Path:
    """Write ``run`` (a ``Run`` or run directory) as a bioimage.io model package ``out_zip`` (atomically).

    Args:
        fixed_markers: None for the general two-input model; marker names for the single-input flavour.
        sample: stack to cut the test tile from (default: a test sample of the run's store).
        authors: names for the package's ``authors`` (whoever trained the model); none: no ``authors`` entry.
    """
    import tensorflow as tf

    if isinstance(run, (str, os.PathLike)):
        run = load_run(run)
    out = Path(out_zip)
    if out.suffix.lower() != ".zip":
        raise UserInputError(f"bioimage.io output {out} must end in .zip")
    check_output_path(out, overwrite=overwrite)
    card = run.card()
    spec = run.spec
    panel = spec.panel
    if fixed_markers is not None:
        fixed_markers = [panel.names[i] for i in panel.indices(list(fixed_markers))]
        if not fixed_markers or len(set(fixed_markers)) != len(fixed_markers):
            raise UserInputError(f"--fixed-markers must name distinct markers of the model ({', '.join(panel.names)})")
    markers = list(fixed_markers or spec.markers)
    raw, availability = sample_tile(run, sample, markers)
    if fixed_markers and not availability.all():
        missing = [m for m, a in zip(markers, availability[0]) if not a]
        raise UserInputError(f"the sample for the test tile lacks the fixed marker(s) {', '.join(missing)}")
    rdf = describe(card, fixed_markers, name=f"{card['model']} {'-'.join(card['classes'])}", authors=authors)
    with scratch_directory(out) as tmp:  # named after ``out``: the next export sweeps it if this one is killed
        serving_archive(run.model, spec, fixed_markers).write_out(str(tmp / "saved_model"), verbose=False)
        loaded = tf.saved_model.load(str(tmp / "saved_model"))  # keeps the variables alive
        serve = loaded.serve
        arrays = {f"test_input_{IMAGE}.npy": raw}
        if fixed_markers:
            probs = serve(standardise_tile(raw))[PROBABILITIES].numpy()
        else:
            arrays[f"test_input_{AVAILABILITY}.npy"] = availability
            probs = serve(standardise_tile(raw), availability)[PROBABILITIES].numpy()
        arrays[f"test_output_{PROBABILITIES}.npy"] = probs
        for fname, array in arrays.items():
            np.save(tmp / fname, array)
        _cover(tmp / "cover.png", raw, markers, probs, spec.outputs)
        (tmp / "README.md").write_text(_readme(card, fixed_markers))
        (tmp / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n")
        (tmp / "rdf.yaml").write_text(json.dumps(rdf, indent=2) + "\n")
        shutil.make_archive(str(tmp / "weights"), "zip", tmp / "saved_model")
        (tmp / "weights.zip").rename(tmp / WEIGHTS)
        with atomic_path(out, overwrite=overwrite, suffix=".zip") as part:
            with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as zf:
                for fname in ("rdf.yaml", "README.md", "cover.png", CARD_NAME, WEIGHTS, *arrays):
                    zf.write(tmp / fname, fname)
    return out
