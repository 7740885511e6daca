"""The model contract: what a trained model expects and returns, its model card, and how a stack's
channels feed it. Pure Python and numpy (no TensorFlow), so every side -- training, evaluation,
inference, export, bioimage.io, ``info`` -- reads the same declaration.

* :class:`ModelSpec`: marker panel, classes, tile input / output size and margin, pixel size, the
  normalisation, the network's name and config, where the model came from
  (:class:`~marker_excite.contract.provenance.Provenance`) and the tensor signature (:data:`SIGNATURE`,
  declared once here)::

      image         float32 [N, S, S, K]   standardised tiles, K = the panel's markers in order
      availability  float32 [N, K]         1 for each marker present, 0 for a missing (zero) channel
      -> probabilities float32 [N, O, O, 1 + C]  softmax; channel 0 background, then the classes

* the model card (``model_card.json``): only the serialised form of a spec, written by
  :meth:`ModelSpec.card` and parsed back by :meth:`ModelSpec.from_card` (its inverse); :func:`read_spec`
  reads it from an exported model;
* :func:`plan_channels`: THE mapping of a stack's (or a stored sample's) channel names onto the
  model's panel, used by the training pipeline and by inference alike;
* the two input rules of every command: :func:`check_channel_names` (a channel name the user gave
  must be a marker of the model) and :func:`check_seen` / :func:`unseen_markers` (markers that no
  training sample had, :attr:`ModelSpec.markers_seen`, are refused unless allowed; the card's
  ``unseen_markers``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from marker_excite.config import read_json_object
from marker_excite.contract.markers import MarkerError, MarkerPanel
from marker_excite.contract.provenance import Provenance
from marker_excite.errors import UserInputError, did_you_mean

#: Names of the model's two inputs (in this order) and of its output.
IMAGE, AVAILABILITY, PROBABILITIES = "image", "availability", "probabilities"
#: The one dtype of every tensor of the signature.
DTYPE = "float32"
#: The tensor signature: tensor name -> axes (N batch, S input tile, O output tile, K markers, C classes).
SIGNATURE: dict[str, dict[str, tuple[str, ...]]] = {
    "inputs": {IMAGE: ("N", "S", "S", "K"), AVAILABILITY: ("N", "K")},
    "outputs": {PROBABILITIES: ("N", "O", "O", "1+C")},
}
#: Name of the SavedModel signature (and of the card's ``signature.name``).
SERVING_SIGNATURE = "serving_default"

CARD_NAME = "model_card.json"
CARD_FORMAT = "marker_excite.model_card"
CARD_VERSION = 1

#: How inputs are normalised (the per-sample per-channel z-score of ``data/stats.standardise``).
NORMALISATION: dict[str, str] = {
    "method": "per-sample per-channel z-score",
    "description": (
        "each channel of a stack is standardised with the mean and standard deviation of that channel over "
        "the whole stack (population std; a constant channel is only centred), BEFORE padding"
    ),
    "padding": "zeros (after standardisation), margin pixels on every side of the slice",
    "missing_markers": "zero channel and availability 0",
}
#: The card's rule for markers that no training sample had (``training.markers_seen``); ``predict``,
#: ``quantify``, ``evaluate``, ``export`` and the example script apply it (:func:`check_seen`).
UNSEEN_MARKERS = (
    "a marker outside training.markers_seen was an all-zero channel in every training sample, so what it does to "
    "the output is unknown: it is refused unless the user allows it (--allow-unseen); leave it out instead "
    "(zero channel, availability 0)"
)


def tensor_shapes(
    input_size: int, n_markers: int, output_size: int | None = None, n_outputs: int | None = None, batch: Any = None
) -> dict[str, tuple[Any, ...]]:
    """Shapes of the :data:`SIGNATURE` tensors for concrete sizes (``batch`` stands for N: ``None`` for
    TensorFlow, ``"N"`` for the card); the output only when ``output_size`` and ``n_outputs`` are given."""
    sizes = {"N": batch, "S": int(input_size), "K": int(n_markers)}
    if output_size is not None and n_outputs is not None:
        sizes.update({"O": int(output_size), "1+C": int(n_outputs)})
    return {
        name: tuple(sizes[axis] for axis in axes)
        for group in SIGNATURE.values()
        for name, axes in group.items()
        if all(axis in sizes for axis in axes)
    }


@dataclass(frozen=True)
class ModelSpec:
    """What a model expects and where it came from (see module doc); the model card is its serialised form.

    Attributes:
        markers: the panel's marker names, in input channel order.
        classes: the classes, in output order after the background.
        input_size, output_size: the square input tile and the centred output tile (pixels).
        spacing: the voxel size (z, y, x) in µm the model was trained at; None when unknown.
        name: the model's zoo name (``MS-ME`` ...).
        model_config: the network's full config (``ModelConfig.to_dict()``), as recorded.
        provenance: where it came from (training run, samples, markers seen, software); None when unknown.
    """

    markers: tuple[str, ...]
    classes: tuple[str, ...]
    input_size: int
    output_size: int
    spacing: tuple[float, float, float] | None = None
    name: str = ""
    model_config: Mapping[str, Any] = field(default_factory=dict)
    provenance: Provenance | None = None

    @classmethod
    def from_config(
        cls, config, spacing: Sequence[float] | None = None, provenance: Provenance | None = None
    ) -> ModelSpec:
        """THE spec of a :class:`~marker_excite.models.config.ModelConfig` (panel, classes, tile sizes,
        name and config) trained at ``spacing`` with ``provenance``."""
        return cls(
            markers=tuple(config.markers),
            classes=tuple(config.classes),
            input_size=int(config.input_size),
            output_size=int(config.output_size),
            spacing=tuple(float(s) for s in spacing) if spacing else None,  # type: ignore[arg-type]
            name=str(config.name),
            model_config=config.to_dict(),
            provenance=provenance,
        )

    @property
    def panel(self) -> MarkerPanel:
        return MarkerPanel(self.markers)

    @property
    def margin(self) -> int:
        """Padding per side of a slice (input minus output tile, halved)."""
        return (self.input_size - self.output_size) // 2

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of the probability channels: background, then the classes."""
        return ("background", *self.classes)

    @property
    def markers_seen(self) -> tuple[str, ...] | None:
        """The markers some training sample had (:attr:`Provenance.markers_seen`); None when not recorded."""
        return self.provenance.markers_seen if self.provenance is not None else None

    @property
    def normalisation(self) -> dict[str, str]:
        """How inputs are normalised (:data:`NORMALISATION`)."""
        return dict(NORMALISATION)

    def shapes(self, batch: Any = None) -> dict[str, tuple[Any, ...]]:
        """The :data:`SIGNATURE` shapes of this model (``batch`` for N)."""
        return tensor_shapes(self.input_size, len(self.markers), self.output_size, len(self.outputs), batch)

    def tile(self) -> dict[str, int]:
        """The card's ``tile`` entry: input and output tile size and margin (pixels)."""
        return {"input_size": self.input_size, "output_size": self.output_size, "margin": self.margin}

    def signature(self) -> dict[str, Any]:
        """The card's ``signature`` entry: name, inputs and output with dtype and shape."""
        shapes = self.shapes("N")
        return {
            "name": SERVING_SIGNATURE,
            **{
                group: {name: {"dtype": DTYPE, "shape": list(shapes[name])} for name in names}
                for group, names in SIGNATURE.items()
            },
        }

    def card(self) -> dict[str, Any]:
        """The model card (``model_card.json``): this spec serialised (a JSON-serialisable dict; keys in
        the card's fixed order). A spec without provenance has empty ``software`` and ``training``."""
        recorded = (
            self.provenance.card_entries(self.name) if self.provenance is not None else {"software": {}, "training": {}}
        )
        return {
            "format": CARD_FORMAT,
            "version": CARD_VERSION,
            "model": self.name,
            "markers": list(self.markers),
            "classes": list(self.classes),
            "outputs": list(self.outputs),
            "tile": self.tile(),
            "spacing_zyx_um": list(self.spacing) if self.spacing else None,
            "normalisation": self.normalisation,
            "unseen_markers": UNSEEN_MARKERS,
            "signature": self.signature(),
            "model_config": dict(self.model_config),
            **recorded,
        }

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> ModelSpec:
        """The spec a model card serialises (the inverse of :meth:`card`); cards written before a
        provenance field was recorded load with its default (:class:`Provenance`)."""
        try:
            tile = card["tile"]
            return cls(
                markers=tuple(card["markers"]),
                classes=tuple(card["classes"]),
                input_size=int(tile["input_size"]),
                output_size=int(tile["output_size"]),
                spacing=tuple(float(s) for s in card.get("spacing_zyx_um") or ()) or None,  # type: ignore[arg-type]
                name=str(card.get("model", "")),
                model_config=dict(card.get("model_config") or {}),
                provenance=Provenance.from_card(card),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserInputError(f"model card is incomplete or corrupt: {exc}") from None


def read_spec(path: str | os.PathLike) -> ModelSpec:
    """The spec of an exported model directory, from its ``model_card.json`` (checked by :func:`check_card`)."""
    p = Path(path) / CARD_NAME
    card = read_json_object(
        p, f"{Path(path)} has no {CARD_NAME}; is it a model exported by marker-excite?", UserInputError
    )
    if card.get("format") != CARD_FORMAT:
        raise UserInputError(f"{p} is not a marker_excite model card")
    return check_card(card, p)


def unseen_markers(spec: ModelSpec, markers: Iterable[str]) -> list[str]:
    """The ``markers`` that no training sample of the model had (:attr:`ModelSpec.markers_seen`, compared
    case-insensitively), in the given order; none for models that do not record it (older runs)."""
    seen = spec.markers_seen
    if seen is None:
        return []
    known = {str(m).lower() for m in seen}
    return [m for m in markers if str(m).lower() not in known]


def check_seen(spec: ModelSpec, markers: Iterable[str], *, leave_out: str = "--use") -> None:
    """THE rule for markers never seen in training (:data:`UNSEEN_MARKERS`): raise
    :class:`UserInputError` naming the ``markers`` the model never saw; ``leave_out`` names the option
    that leaves them out. Callers skip this check when the user gave ``--allow-unseen``."""
    unseen = unseen_markers(spec, markers)
    if unseen:
        seen = ", ".join(spec.markers_seen or ())
        raise UserInputError(
            f"the model never saw {', '.join(unseen)} in training (its training samples had {seen}); "
            f"leave {'it' if len(unseen) == 1 else 'them'} out with {leave_out}, or give --allow-unseen to feed "
            f"{'it' if len(unseen) == 1 else 'them'} anyway"
        )


def check_card(card: Mapping[str, Any], where: str | os.PathLike) -> ModelSpec:
    """The spec of a model card after checking that the card is complete and agrees with itself.

    ``outputs``, ``tile`` and ``signature`` must be what its markers, classes and tile sizes imply, and
    ``normalisation`` must name the normalisation this package applies (:data:`NORMALISATION`): a card
    declaring another one would make every prediction wrong without an error.

    Raises:
        UserInputError: one line naming ``where`` (the card's file) and the first problem.
    """
    try:
        spec = ModelSpec.from_card(card)
    except UserInputError as exc:
        raise UserInputError(f"{where}: {exc}") from None
    implied = {"outputs": list(spec.outputs), "tile": spec.tile(), "signature": spec.signature()}
    for key, value in implied.items():
        if key not in card:
            raise UserInputError(f"{where}: model card is incomplete: no {key!r}")
        if json.loads(json.dumps(card[key])) != value:
            raise UserInputError(
                f"{where}: model card {key!r} is {json.dumps(card[key])}, but its markers, classes and tile "
                f"imply {json.dumps(value)}"
            )
    normalisation = card.get("normalisation")
    if not isinstance(normalisation, Mapping) or any(key not in normalisation for key in NORMALISATION):
        raise UserInputError(
            f"{where}: model card is incomplete: 'normalisation' must give {', '.join(map(repr, NORMALISATION))}"
        )
    if normalisation["method"] != NORMALISATION["method"]:
        raise UserInputError(
            f"{where}: model card normalisation {normalisation['method']!r} is not the one marker_excite applies "
            f"({NORMALISATION['method']!r})"
        )
    return spec


# -- channels -> panel ----------------------------------------------------------------------------
def check_channel_names(names: Sequence[str], panel: MarkerPanel, *, model: str = "the model") -> None:
    """Refuse channel names that the USER gave (``--channel-names``) and that are not markers of
    ``panel``: a typo (``tubulinn``) or another name for a marker (``DAPI`` for ``DNA``) would otherwise
    be skipped and the model would run on fewer markers without a word. Channels named ``-`` are
    skipped by the reader and never reach this check. Raises :class:`MarkerError` with the closest name."""
    unknown = [n for n in names if n not in panel]
    if unknown:
        name = unknown[0]
        raise MarkerError(
            f"channel name {name!r}{did_you_mean(name, panel.names)} is not a marker of {model} "
            f"({', '.join(panel.names)}); name the channel '-' to skip it"
        )


@dataclass(frozen=True)
class ChannelPlan:
    """Which stack channel feeds which model input, and the availability vector."""

    pairs: tuple[tuple[int, int], ...]  # (stack channel, panel index)
    availability: np.ndarray  # (K,) float32
    skipped: tuple[str, ...] = ()  # stack channels outside the model's panel

    def skip_notice(self, panel: MarkerPanel) -> str:
        """One line naming the skipped stack channels (``""`` when none)."""
        if not self.skipped:
            return ""
        names = ", ".join(n + did_you_mean(n, panel.names) for n in self.skipped)
        return f"note: skipping stack channel(s) {names}: not in the model's panel ({', '.join(panel.names)})"

    @property
    def used_channels(self) -> list[int]:
        """The stack channels fed to the model, in :attr:`pairs` order."""
        return [c for c, _ in self.pairs]

    @property
    def panel_indices(self) -> list[int]:
        """The model inputs they feed, in :attr:`pairs` order."""
        return [k for _, k in self.pairs]

    @property
    def source(self) -> np.ndarray:
        """``(K,)`` int64: the stack channel feeding each model input, -1 for a zero channel."""
        out = np.full(len(self.availability), -1, np.int64)
        out[self.panel_indices] = self.used_channels
        return out


def plan_channels(
    stack_markers: Sequence[str],
    panel: MarkerPanel,
    markers: str | Sequence[str | int] | None = None,
    *,
    keep: Sequence[str] | None = None,
    given: Sequence[int] | None = None,
    sample: str | None = None,
) -> ChannelPlan:
    """Map a stack's channel names onto ``panel`` (by name, case-insensitive), the one mapping of
    training and inference.

    Stack channels outside the panel are skipped (listed in ``skipped``); markers of the panel that
    feed nothing are zero channels with availability 0.

    Args:
        stack_markers: the names of the stack's (or stored sample's) channels, in channel order.
        panel: the model's markers.
        markers: names or numbers of the panel (``"DAPI,collagen"``, ``"m_125"``, a list) to feed,
            every one of which must be in the stack (``predict --markers``).
        keep: the stack channels to use (a training sample's ``marker_panels`` entry); each must be one
            of the stack's channels, the others are left out.
        given: 0-based panel indices the model may be given (a training / evaluation ``subset``); a
            stack lacking some of them is not an error.
        sample: the name of a stored sample (training data) or None for a stack given to ``predict``;
            it only words the messages.

    Raises:
        MarkerError: naming the marker: duplicated channels, a requested or kept marker the stack
            lacks, and no channel left to feed the model.
    """
    names = [str(m).strip() for m in stack_markers]
    what = "the stack" if sample is None else f"sample {sample!r}"
    if not names:
        raise MarkerError(f"{what} declares no marker at all")
    lowered = [n.lower() for n in names]
    dups = sorted({n for n in names if lowered.count(n.lower()) > 1})
    if dups:
        raise MarkerError(f"marker given twice in {what}: {', '.join(dups)}")
    kept = set(lowered)
    if keep is not None:
        missing = [m for m in keep if m.lower() not in lowered]
        if missing:
            raise MarkerError(f"marker_panels: {what} has no marker(s) {', '.join(missing)}; it has {', '.join(names)}")
        kept = {m.lower() for m in keep}
    wanted = set(range(panel.size)) if given is None else {int(i) for i in given}
    if markers is not None:
        requested = set(panel.parse_subset(markers))
        have = {panel.index(n) for n in names if n in panel}
        absent = [panel.names[k] for k in sorted(requested - have)]
        if absent:
            raise MarkerError(f"marker(s) {', '.join(absent)} requested but {what} has {', '.join(names)}")
        wanted &= requested
    skipped = tuple(n for n in names if n not in panel)
    pairs = tuple(
        (c, panel.index(name))
        for c, name in enumerate(names)
        if name in panel and name.lower() in kept and panel.index(name) in wanted
    )
    if not pairs:
        if sample is not None:
            raise MarkerError(
                f"{what} gives none of the model's markers {', '.join(panel.names)} "
                f"(sample markers: {', '.join(names)}, after marker_panels / subset)"
            )
        raise MarkerError(
            f"none of the stack's markers {', '.join(names)}{did_you_mean(names[0], panel.names)} is in the model's "
            f"panel ({', '.join(panel.names)}); name the channels with --channel-names"
        )
    availability = np.zeros(panel.size, np.float32)
    availability[[k for _, k in pairs]] = 1.0
    return ChannelPlan(pairs, availability, skipped)
