"""Export a trained run as a plain TensorFlow SavedModel plus a ``model_card.json``.

The SavedModel needs neither this package nor Keras to run: ``tf.saved_model.load(path)`` gives a
``serving_default`` signature (and the same function as ``.serve``)::

    image         float32 [N, H, W, K]   standardised tiles (H = W = the card's tile input_size)
    availability  float32 [N, K]         1 for each marker present, 0 for a missing (zero) channel
    -> {"probabilities": float32 [N, h, w, 1 + C]}   softmax; channel 0 background, then the classes

``model_card.json`` (next to ``saved_model.pb``) says what the model expects: the marker panel in
input order, the classes, the tile geometry, the pixel size, the normalisation and a training summary.
:func:`load_exported` turns an exported model back into a :class:`~marker_excite.inference.Predictor`,
after checking every op of its graph against the ops of the package's own exports
(:mod:`marker_excite.saved_model_ops`): a SavedModel is code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from marker_excite.config import read_json_object
from marker_excite.errors import UserInputError
from marker_excite.saved_model_ops import check_saved_model

CARD_NAME = "model_card.json"
CARD_FORMAT = "marker_excite.model_card"
CARD_VERSION = 1
SIGNATURE = "serving_default"

NORMALISATION = {
    "method": "per-sample per-channel z-score",
    "description": (
        "each channel of a stack is standardised with the mean and standard deviation of that channel over "
        "the whole stack (population std; a constant channel is only centred), BEFORE padding"
    ),
    "padding": "zeros (after standardisation), margin pixels on every side of the slice",
    "missing_markers": "zero channel and availability 0",
}


def training_spacing(run) -> tuple[float, float, float] | None:
    """Voxel size (z, y, x) µm the run was trained at (``spacing`` in ``data_config.json``), or None."""
    from marker_excite import run_dir as rd

    data = rd.read_json(Path(run.run_dir) / rd.DATA_CONFIG, "data config")
    if not data.get("spacing"):
        return None
    return tuple(float(s) for s in data["spacing"])  # type: ignore[return-value]


def training_summary(run) -> dict[str, Any]:
    """Samples, fold, epochs and best validation scores of a run (for the model card / ``info``)."""
    history = run.history
    best = run.best_epoch
    best_row = next((r for r in history if int(r["epoch"]) == best), None) if best is not None else None
    tc = run.train_config
    return {
        "run": str(Path(run.run_dir).resolve()),
        "model": run.model_config.name,
        "store": str(run.store_path),
        "fold": int(tc.fold),
        "n_folds": int(tc.n_folds),
        "samples": {"train": list(run.fold.train), "val": list(run.fold.val), "test": list(run.fold.test)},
        "marker_panels": {k: list(v) for k, v in (tc.marker_panels or {}).items()},
        "epochs": len(history),
        "epochs_planned": int(tc.epochs),
        "best_epoch": best,
        "best_val_mean_f1": float(best_row["val_mean_f1"]) if best_row else None,
        "best_val_f1": {k[len("val_f1_"):]: float(v) for k, v in (best_row or {}).items() if k.startswith("val_f1_")},
        "batch_size": int(tc.batch_size),
        "learning_rate": float(tc.learning_rate),
        "seed": int(tc.seed),
    }


def model_card(run) -> dict[str, Any]:
    """The model card of a :class:`~marker_excite.training.Run` (a JSON-serialisable dict)."""
    from marker_excite import run_dir as rd

    cfg = run.model_config
    spacing = training_spacing(run)
    versions_path = Path(run.run_dir) / rd.VERSIONS
    trained_with = json.loads(versions_path.read_text()) if versions_path.is_file() else None
    k, n_out = len(cfg.markers), cfg.n_outputs
    return {
        "format": CARD_FORMAT,
        "version": CARD_VERSION,
        "model": cfg.name,
        "markers": list(cfg.markers),
        "classes": list(cfg.classes),
        "outputs": ["background", *cfg.classes],
        "tile": {"input_size": int(cfg.input_size), "output_size": int(cfg.output_size), "margin": int(cfg.margin)},
        "spacing_zyx_um": list(spacing) if spacing else None,
        "normalisation": NORMALISATION,
        "signature": {
            "name": SIGNATURE,
            "inputs": {
                "image": {"dtype": "float32", "shape": ["N", cfg.input_size, cfg.input_size, k]},
                "availability": {"dtype": "float32", "shape": ["N", k]},
            },
            "outputs": {"probabilities": {"dtype": "float32", "shape": ["N", cfg.output_size, cfg.output_size, n_out]}},
        },
        "model_config": cfg.to_dict(),
        "software": {"exported_with": rd.versions(), "trained_with": trained_with},
        "training": training_summary(run),
    }


def serving_archive(model, cfg, fixed_markers: Sequence[str] | None = None):
    """A ``keras.export.ExportArchive`` of the softmax forward pass of ``model`` (built from the model
    config ``cfg``), endpoint ``serve``.

    ``fixed_markers=None``: inputs ``image [N, H, W, K]`` and ``availability [N, K]``. With marker
    names: one input ``image [N, H, W, len(fixed_markers)]`` holding exactly those channels (in that
    order); they are placed into the panel's channel order, the other channels zero, and the
    availability vector of that subset is built in.
    """
    import keras
    import tensorflow as tf

    k, size = len(cfg.markers), cfg.input_size
    archive = keras.export.ExportArchive()
    archive.track(model)
    if fixed_markers is None:

        def serve(image, availability):
            return {"probabilities": keras.ops.softmax(model([image, availability], training=False), axis=-1)}

        signature = [tf.TensorSpec([None, size, size, k], tf.float32, name="image"),
                     tf.TensorSpec([None, k], tf.float32, name="availability")]  # fmt: skip
    else:
        from marker_excite.markers import MarkerPanel

        panel = MarkerPanel(cfg.markers)
        index = [panel.index(m) for m in fixed_markers]
        placement = tf.constant(np.eye(k, dtype=np.float32)[index])  # [len(fixed), K]
        present = tf.constant(panel.availability(list(fixed_markers)).astype(np.float32))

        def serve(image):
            full = tf.einsum("nyxf,fk->nyxk", image, placement)
            availability = tf.broadcast_to(present, [tf.shape(image)[0], k])
            return {"probabilities": keras.ops.softmax(model([full, availability], training=False), axis=-1)}

        signature = [tf.TensorSpec([None, size, size, len(index)], tf.float32, name="image")]
    archive.add_endpoint("serve", serve, input_signature=signature)
    return archive


def export_run(run, out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``run`` (a ``Run`` or a run directory) as a SavedModel + ``model_card.json`` in ``out_dir``.

    Written to a temporary sibling directory and renamed into place; an existing ``out_dir`` is
    refused unless ``overwrite`` (and then only replaced when it is an exported model).
    """
    from marker_excite.atomic import atomic_directory, check_output_path

    if isinstance(run, (str, os.PathLike)):
        from marker_excite.training import load_run

        run = load_run(run)
    final = check_output_path(out_dir, overwrite=overwrite)
    if final.exists() and not (final / "saved_model.pb").is_file():
        raise UserInputError(f"{final} exists and is not an exported model; refusing to replace it")
    card = model_card(run)
    archive = serving_archive(run.model, run.model_config)
    with atomic_directory(final) as tmp:
        archive.write_out(str(tmp), verbose=False)
        (tmp / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n")
    return final


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """The ``model_card.json`` of an exported model directory."""
    p = Path(path) / CARD_NAME
    card = read_json_object(p, f"{Path(path)} has no {CARD_NAME}; is it a model exported by marker-excite?", UserInputError)
    if card.get("format") != CARD_FORMAT:
        raise UserInputError(f"{p} is not a marker_excite model card")
    return card


def load_exported(path: str | os.PathLike):
    """An exported model as a :class:`~marker_excite.inference.Predictor` (used by ``predict``)."""
    import tensorflow as tf

    from marker_excite.inference import ModelSpec, Predictor

    p = Path(path)
    if not (p / "saved_model.pb").is_file():
        raise UserInputError(f"{p} is not a SavedModel directory (no saved_model.pb)")
    card = read_card(p)
    spec = ModelSpec.from_card(card)
    check_saved_model(p)  # a SavedModel is code: run only graphs made of the ops our own exports use
    try:
        loaded = tf.saved_model.load(str(p))
    except Exception as exc:  # noqa: BLE001 - TF raises many types for a corrupt SavedModel
        raise UserInputError(f"cannot load exported model {p}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if SIGNATURE not in loaded.signatures:
        raise UserInputError(f"exported model {p} has no {SIGNATURE!r} signature")

    def fn(image: np.ndarray, availability: np.ndarray) -> np.ndarray:
        # ``loaded`` stays referenced here so its variables live as long as the predictor
        out = loaded.signatures[SIGNATURE](image=tf.constant(image), availability=tf.constant(availability))
        return out["probabilities"].numpy()

    return Predictor(spec=spec, card=card, source=p, fn=fn)
