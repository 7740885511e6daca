"""A model ready for inference (:class:`Predictor`) and THE one way to obtain it, :func:`load_predictor`:
from a run directory, an exported SavedModel, a :class:`~marker_excite.runs.run.Run` or a Predictor.

Whether a path is a run directory or an exported model is decided here only (:func:`model_kind`).
An exported model is checked op by op against the ops of the package's own exports before it is
loaded (:mod:`marker_excite.sharing.op_allowlist`): a SavedModel is code.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from marker_excite.contract.model_spec import (
    AVAILABILITY,
    CARD_NAME,
    DTYPE,
    IMAGE,
    PROBABILITIES,
    SERVING_SIGNATURE,
    ModelSpec,
    read_spec,
)
from marker_excite.errors import UserInputError
from marker_excite.inference.forward import keras_forward
from marker_excite.runs import directory as rd
from marker_excite.runs.run import Run, load_run
from marker_excite.sharing.op_allowlist import SAVED_MODEL, check_saved_model


@dataclass
class Predictor:
    """A model ready for inference: ``probabilities(image [N,H,W,K], availability [N,K]) -> [N,h,w,1+C]``.

    Attributes:
        spec: what the model expects and where it came from (its model card is ``spec.card()``).
        source: the run directory or SavedModel it came from.
        fn: the batched forward pass returning softmax probabilities (numpy in, numpy out).
    """

    spec: ModelSpec
    source: Path
    fn: Callable[[np.ndarray, np.ndarray], np.ndarray] = field(repr=False)

    def probabilities(self, image: np.ndarray, availability: np.ndarray) -> np.ndarray:
        """Softmax probabilities ``[N, h, w, 1+C]`` float32 of a batch of input tiles."""
        return np.asarray(self.fn(np.asarray(image, np.float32), np.asarray(availability, np.float32)))


def model_kind(path: str | os.PathLike) -> Literal["exported", "run"]:
    """``"exported"`` for a SavedModel directory (``saved_model.pb``), ``"run"`` for a run directory
    (``model_config.json``); :class:`UserInputError` for anything else."""
    p = Path(path)
    if not p.exists():
        raise UserInputError(f"model {p} does not exist (give a run directory or an exported model)")
    if (p / SAVED_MODEL).is_file():
        return "exported"
    if rd.is_run_dir(p):
        return "run"
    raise UserInputError(f"{p} is neither a run directory (model_config.json) nor an exported model (saved_model.pb)")


def model_files(path: str | os.PathLike) -> list[Path]:
    """What a command reads from a model: the files of a run directory (results may be written next to
    them), the whole folder of an exported model; nothing for a path that is neither (refused when loaded)."""
    p = Path(path)
    if (p / SAVED_MODEL).is_file():
        return [p]
    return [p / name for name in rd.RUN_FILES] if rd.is_run_dir(p) else []


def load_predictor(source: Predictor | Run | str | os.PathLike, *, weights: str | None = None) -> Predictor:
    """THE way to obtain a model for inference: a :class:`Predictor` of ``source``.

    Args:
        source: a run directory or an exported SavedModel (a path; :func:`model_kind`), a
            :class:`~marker_excite.runs.run.Run` (the weights it was loaded with) or a Predictor (as is).
        weights: for a run directory, ``best`` (default) or ``last``; an exported model holds the
            weights it was exported with (only ``best`` is accepted), a Run the weights it was loaded
            with (another value is refused), a Predictor takes none.
    """
    if isinstance(source, Predictor):
        if weights is not None:
            raise UserInputError(f"a Predictor holds its weights; weights={weights!r} applies to a run directory")
        return source
    if isinstance(source, Run):
        if weights not in (None, source.weights):
            raise UserInputError(
                f"the run {source.run_dir} was loaded with its {source.weights} weights, not {weights}"
            )
        return _from_run(source)
    if isinstance(source, (str, os.PathLike)):
        if model_kind(source) == "run":
            return _from_run(load_run(source, weights=weights or "best"))
        if weights not in (None, "best"):
            raise UserInputError(
                f"{source} is an exported model: it holds the weights it was exported with (--weights {weights} "
                "applies to run directories; export the run with --weights last)"
            )
        return _load_exported(Path(source))
    raise TypeError(f"expected a Predictor, a Run or a path, got {type(source).__name__}")


def _from_run(run: Run) -> Predictor:
    """The Keras forward pass of a run's network (the weights it was loaded with)."""
    spec = run.spec
    return Predictor(
        spec=spec, source=Path(run.run_dir), fn=keras_forward(run.model, spec.input_size, len(spec.markers))
    )


def _load_exported(p: Path) -> Predictor:
    """An exported model (SavedModel + ``model_card.json``), after its op allowlist and signature checks."""
    import tensorflow as tf

    spec = read_spec(p)
    saved_model = check_saved_model(p)  # a SavedModel is code: run only graphs built like our own exports
    check_signature(saved_model, spec, p)
    try:
        loaded = tf.saved_model.load(str(p))
    except Exception as exc:  # noqa: BLE001 - TF raises many types for a corrupt SavedModel
        raise UserInputError(
            f"cannot load exported model {p}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    if SERVING_SIGNATURE not in loaded.signatures:
        raise UserInputError(f"exported model {p} has no {SERVING_SIGNATURE!r} signature")

    def fn(image: np.ndarray, availability: np.ndarray) -> np.ndarray:
        # ``loaded`` stays referenced here so its variables live as long as the predictor
        inputs = {IMAGE: tf.constant(image), AVAILABILITY: tf.constant(availability)}
        return loaded.signatures[SERVING_SIGNATURE](**inputs)[PROBABILITIES].numpy()

    return Predictor(spec=spec, source=p, fn=fn)


def check_signature(saved_model: Any, spec: ModelSpec, path: Path) -> None:
    """Raise :class:`UserInputError` unless the serving signature of the parsed ``saved_model`` takes and
    returns exactly the tensors of its model card (:meth:`ModelSpec.shapes`: names, float32, shapes)."""
    import tensorflow as tf

    signatures = saved_model.meta_graphs[0].signature_def
    if SERVING_SIGNATURE not in signatures:
        raise UserInputError(f"exported model {path} has no {SERVING_SIGNATURE!r} signature")
    signature = signatures[SERVING_SIGNATURE]
    found = {}
    for name, info in [*signature.inputs.items(), *signature.outputs.items()]:
        shape = info.tensor_shape
        dims = None if shape.unknown_rank else tuple(d.size if d.size >= 0 else None for d in shape.dim)
        found[name] = (tf.dtypes.as_dtype(info.dtype).name, dims)
    declared = {name: (DTYPE, dims) for name, dims in spec.shapes().items()}
    if found != declared:
        raise UserInputError(
            f"exported model {path} does not match its {CARD_NAME}: the card declares {_tensors_text(declared)}; "
            f"the model's {SERVING_SIGNATURE!r} signature has {_tensors_text(found)}"
        )


def _tensors_text(tensors: dict[str, tuple[str, Any]]) -> str:
    """``"name dtype [dims]"`` of each tensor, by name (``None`` for an unknown size or rank)."""
    return ", ".join(
        f"{name} {dtype} {list(dims) if dims is not None else dims}" for name, (dtype, dims) in sorted(tensors.items())
    )
