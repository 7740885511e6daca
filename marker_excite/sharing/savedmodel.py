"""Export a trained run as a plain TensorFlow SavedModel plus a ``model_card.json``.

The SavedModel needs neither this package nor Keras to run: ``tf.saved_model.load(path)`` gives a
``serving_default`` signature (and the same function as ``.serve``) with the tensor signature of
:mod:`marker_excite.contract.model_spec` (inputs ``image [N, S, S, K]`` and ``availability [N, K]``, output
``probabilities [N, O, O, 1 + C]``, softmax included).

``model_card.json`` (next to ``saved_model.pb``) says what the model expects: the marker panel in
input order, the classes, the tile geometry, the pixel size, the normalisation and where it came from
(the run's :class:`~marker_excite.contract.model_spec.ModelSpec` serialised by
:meth:`~marker_excite.contract.model_spec.ModelSpec.card`). :func:`marker_excite.inference.predictor.load_predictor`
turns an exported model back into a predictor.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from marker_excite.atomic import atomic_directory, check_output_path
from marker_excite.contract.model_spec import AVAILABILITY, CARD_NAME, IMAGE, PROBABILITIES, ModelSpec
from marker_excite.errors import UserInputError
from marker_excite.runs.run import Run, load_run
from marker_excite.sharing.op_allowlist import SAVED_MODEL


def serving_archive(model, spec: ModelSpec, fixed_markers: Sequence[str] | None = None):
    """A ``keras.export.ExportArchive`` of the softmax forward pass of ``model`` (whose contract is
    ``spec``), endpoint ``serve``.

    ``fixed_markers=None``: inputs ``image [N, S, S, K]`` and ``availability [N, K]``. With marker
    names: one input ``image [N, S, S, len(fixed_markers)]`` holding exactly those channels (in that
    order); they are placed into the panel's channel order, the other channels zero, and the
    availability vector of that subset is built in.
    """
    import keras
    import tensorflow as tf

    shapes, k = spec.shapes(), len(spec.markers)
    if fixed_markers is None:

        def serve(image, availability):
            return {PROBABILITIES: keras.ops.softmax(model([image, availability], training=False), axis=-1)}

        signature = [tf.TensorSpec(shapes[name], tf.float32, name=name) for name in (IMAGE, AVAILABILITY)]
    else:
        panel = spec.panel
        index = [panel.index(m) for m in fixed_markers]
        placement = tf.constant(np.eye(k, dtype=np.float32)[index])  # [len(fixed), K]
        present = tf.constant(panel.availability(list(fixed_markers)).astype(np.float32))

        def serve(image):
            full = tf.einsum("nyxf,fk->nyxk", image, placement)
            availability = tf.broadcast_to(present, [tf.shape(image)[0], k])
            return {PROBABILITIES: keras.ops.softmax(model([full, availability], training=False), axis=-1)}

        signature = [tf.TensorSpec((*shapes[IMAGE][:-1], len(index)), tf.float32, name=IMAGE)]
    return endpoint_archive(model, serve, signature)


def endpoint_archive(model, serve, signature):
    """A ``keras.export.ExportArchive`` that tracks ``model`` and has ``serve`` (a function of the
    tensors of ``signature``, a list of ``tf.TensorSpec``) as its endpoint ``serve``."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serve, input_signature=signature)
    return archive


def export_run(run: Run | str | os.PathLike, out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``run`` (a ``Run`` or a run directory) as a SavedModel + ``model_card.json`` in ``out_dir``.

    Written to a temporary sibling directory and renamed into place; an existing ``out_dir`` is
    refused unless ``overwrite`` (and then only replaced when it is an exported model).
    """
    if isinstance(run, (str, os.PathLike)):
        run = load_run(run)
    final = check_output_path(out_dir, overwrite=overwrite)
    if final.exists() and not (final / SAVED_MODEL).is_file():
        raise UserInputError(f"{final} exists and is not an exported model; refusing to replace it")
    spec = run.exported_spec()
    archive = serving_archive(run.model, spec)
    with atomic_directory(final) as tmp:
        archive.write_out(str(tmp), verbose=False)
        (tmp / CARD_NAME).write_text(json.dumps(spec.card(), indent=2) + "\n")
    return final
