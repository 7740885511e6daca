"""The paper's models by name, built from a JSON-serialisable :class:`ModelConfig`.

| name | model |
| --- | --- |
| UB | plain UNet trained on ONE marker subset (its ``markers`` are that subset): the upper bound |
| MZ | plain UNet on the whole panel, missing markers fed as zeros (Marker Zero) |
| MS | UNet + Marker Sampling (zero mode) |
| MS-DO / MS-VR | MS with dropout scaling / variable-ratio scaling |
| MS-SE / MS-ME | MS + Squeeze-Excite / Marker Excite after every block (E+B+D) |
| MS+ | MS with widths x1.125 (rounded up), >= 20 % more parameters than the UNet |
| HeMIS / HeMIS-MS | per-marker backends + mean/variance abstraction (+ Marker Sampling) |
| MS-ME-<IEBD> | ME placement ablations: any non-empty combination of I/E/B/D in that order |
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any

import keras

from marker_excite.config import ConfigError, JsonConfig
from marker_excite.layers import ATTENTION, SAMPLING_MODES
from marker_excite.markers import PAPER_MARKERS, MarkerError, MarkerPanel
from marker_excite.models.geometry import GeometryError, UNetGeometry
from marker_excite.models.hemis import build_hemis
from marker_excite.models.unet import ATTENTION_POSITIONS, build_unet

#: The paper's models (Figs. 1-4).
BASE_NAMES: tuple[str, ...] = ("UB", "MZ", "MS", "MS-DO", "MS-VR", "MS-SE", "MS-ME", "MS+", "HeMIS", "HeMIS-MS")
#: ME placement ablations (Fig. 3f,g): every non-empty combination of I/E/B/D, in that order.
ABLATION_NAMES: tuple[str, ...] = tuple(
    "MS-ME-" + "".join(combo)
    for r in range(1, len(ATTENTION_POSITIONS) + 1)
    for combo in itertools.combinations(ATTENTION_POSITIONS, r)
)
ZOO_NAMES: tuple[str, ...] = BASE_NAMES + ABLATION_NAMES

#: Model sizes: ``paper`` (GPU, 572 -> 388 px) and ``small`` (CPU, 124 -> 84 px, margin 20).
PRESETS: dict[str, dict[str, int]] = {
    "paper": dict(depth=5, base_filters=32, input_size=572),
    "small": dict(depth=3, base_filters=16, input_size=124),
    "cpu": dict(depth=3, base_filters=16, input_size=124),
}

#: MS+ multiplies every width by this factor (rounded up): 32 -> 36 at paper size, +26.6 % parameters.
MS_PLUS_WIDTH_FACTOR = 1.125

BACKBONES: tuple[str, ...] = ("unet", "hemis")

_RECIPES: dict[str, dict[str, Any]] = {
    "UB": dict(backbone="unet", sampling=None, attention=None),
    "MZ": dict(backbone="unet", sampling=None, attention=None),
    "MS": dict(backbone="unet", sampling="zero", attention=None),
    "MS-DO": dict(backbone="unet", sampling="dropout", attention=None),
    "MS-VR": dict(backbone="unet", sampling="variable_ratio", attention=None),
    "MS-SE": dict(backbone="unet", sampling="zero", attention="se", attention_positions=("E", "B", "D")),
    "MS-ME": dict(backbone="unet", sampling="zero", attention="me", attention_positions=("E", "B", "D")),
    "MS+": dict(backbone="unet", sampling="zero", attention=None),
    "HeMIS": dict(backbone="hemis", sampling=None, attention=None),
    "HeMIS-MS": dict(backbone="hemis", sampling="zero", attention=None),
}


def canonical_name(name: str) -> str:
    """The zoo spelling of a model name (case-insensitive); ConfigError listing the valid names otherwise."""
    lookup = {n.lower(): n for n in ZOO_NAMES}
    key = str(name).strip().lower()
    if key not in lookup:
        raise ConfigError(
            f"unknown model {name!r}; choose one of {', '.join(BASE_NAMES)} "
            "or MS-ME-<positions> with positions a combination of I, E, B, D in that order (e.g. MS-ME-EB)"
        )
    return lookup[key]


def recipe(name: str) -> dict[str, Any]:
    """Backbone, sampling and attention fields that define a zoo model."""
    name = canonical_name(name)
    if name in ABLATION_NAMES:
        return dict(backbone="unet", sampling="zero", attention="me", attention_positions=tuple(name[len("MS-ME-"):]))
    return {"attention_positions": (), **_RECIPES[name]}


def widened_filters(base_filters: int) -> int:
    """MS+ width: ``ceil(base_filters * 1.125)`` (36 for 32, 18 for 16, 5 for 4)."""
    return int(math.ceil(base_filters * MS_PLUS_WIDTH_FACTOR))


@dataclass
class ModelConfig(JsonConfig):
    """Everything needed to rebuild a model; stored as ``model_config.json`` in a run directory.

    The fields define the network; ``name`` (a zoo name) labels it. The defaults are the paper's MS-ME.
    """

    name: str = "MS-ME"
    markers: tuple[str, ...] = PAPER_MARKERS
    classes: tuple[str, ...] = ("sinusoids",)
    input_size: int = 572
    depth: int = 5
    base_filters: int = 32
    kernel_size: int = 3
    backbone: str = "unet"
    sampling: str | None = "zero"
    sampling_rate: float = 0.5
    attention: str | None = "me"
    attention_positions: tuple[str, ...] = ("E", "B", "D")
    seed: int = 0

    def __post_init__(self) -> None:
        self.markers = tuple(self.markers)
        self.classes = tuple(self.classes)
        self.attention_positions = tuple(self.attention_positions)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field for any invalid value."""
        canonical_name(self.name)
        if not self.markers:
            raise ConfigError("model config markers: empty marker list; give at least one marker name")
        try:
            MarkerPanel(self.markers)
        except MarkerError as exc:
            raise ConfigError(f"model config markers: {exc}") from None
        if not self.classes:
            raise ConfigError("model config classes: empty class list; give at least one class (e.g. sinusoids)")
        if any(not str(c).strip() for c in self.classes) or len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"model config classes: names must be non-empty and unique, got {list(self.classes)}")
        if "background" in self.classes:
            raise ConfigError("model config classes: 'background' is implicit (output 0); do not list it")
        for field in ("depth", "base_filters"):
            if not isinstance(getattr(self, field), int) or getattr(self, field) < 1:
                raise ConfigError(f"model config {field} must be an integer >= 1, got {getattr(self, field)!r}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(f"model config kernel_size must be odd and >= 1, got {self.kernel_size}")
        if self.backbone not in BACKBONES:
            raise ConfigError(f"model config backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.sampling is not None and self.sampling not in SAMPLING_MODES:
            raise ConfigError(
                f"model config sampling must be null or one of {', '.join(SAMPLING_MODES)}, got {self.sampling!r}"
            )
        if not 0.0 < float(self.sampling_rate) < 1.0:
            raise ConfigError(f"model config sampling_rate must be in (0, 1), got {self.sampling_rate}")
        self._validate_attention()
        if self.backbone == "hemis":
            if self.depth < 2:
                raise ConfigError(f"model config depth: HeMIS needs depth >= 2, got {self.depth}")
            if self.attention is not None:
                raise ConfigError("model config attention: HeMIS models take no attention (set attention to null)")
            if self.sampling not in (None, "zero"):
                raise ConfigError(f"model config sampling: HeMIS supports null or 'zero', got {self.sampling!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"model config seed must be an integer >= 0, got {self.seed!r}")
        try:
            self.geometry.output_size(self.input_size)
        except GeometryError as exc:
            raise ConfigError(f"model config input_size: {exc}") from None

    def _validate_attention(self) -> None:
        if self.attention is not None and self.attention not in ATTENTION:
            raise ConfigError(
                f"model config attention must be null, {' or '.join(map(repr, ATTENTION))}, got {self.attention!r}"
            )
        bad = [p for p in self.attention_positions if p not in ATTENTION_POSITIONS]
        if bad:
            raise ConfigError(
                f"model config attention_positions: unknown position(s) {', '.join(map(repr, bad))}; "
                f"use {', '.join(ATTENTION_POSITIONS)} (input, encoder, bottleneck, decoder)"
            )
        if len(set(self.attention_positions)) != len(self.attention_positions):
            raise ConfigError(f"model config attention_positions: duplicated position in {list(self.attention_positions)}")
        if self.attention is None and self.attention_positions:
            raise ConfigError(
                "model config attention_positions given but attention is null; "
                f"set attention to {' or '.join(map(repr, ATTENTION))}"
            )
        if self.attention is not None and not self.attention_positions:
            raise ConfigError(f"model config attention {self.attention!r} needs at least one position of I, E, B, D")

    @property
    def panel(self) -> MarkerPanel:
        """The model's marker vocabulary."""
        return MarkerPanel(self.markers)

    @property
    def geometry(self) -> UNetGeometry:
        return UNetGeometry(depth=self.depth, kernel_size=self.kernel_size)

    @property
    def output_size(self) -> int:
        """Output tile size (388 for the paper's 572)."""
        return self.geometry.output_size(self.input_size)

    @property
    def margin(self) -> int:
        """Padding per side (92 at paper size)."""
        return self.geometry.margin(self.input_size)

    @property
    def n_outputs(self) -> int:
        """Number of logits: background + classes."""
        return 1 + len(self.classes)


def model_config(
    name: str = "MS-ME",
    *,
    preset: str = "paper",
    markers: tuple[str, ...] | list[str] = PAPER_MARKERS,
    classes: tuple[str, ...] | list[str] = ("sinusoids",),
    **overrides: Any,
) -> ModelConfig:
    """The validated config of a zoo model at a preset size.

    ``preset``: ``paper`` (depth 5, 32 filters, 572 px) or ``small`` (depth 3, 16 filters, 124 px).
    ``overrides`` replace any other field (e.g. ``depth=2, base_filters=4, input_size=44`` for tests).
    For ``MS+`` the given or preset ``base_filters`` is widened by :data:`MS_PLUS_WIDTH_FACTOR`.
    For ``UB`` pass the marker subset as ``markers``.
    """
    name = canonical_name(name)
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    known = {f.name for f in dataclasses.fields(ModelConfig)} - {"name", "markers", "classes"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown model config field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    fields: dict[str, Any] = {**PRESETS[preset], **recipe(name), **overrides}
    if name == "MS+":
        fields["base_filters"] = widened_filters(fields["base_filters"])
    cfg = ModelConfig(name=name, markers=tuple(markers), classes=tuple(classes), **fields)
    cfg.validate()
    return cfg


def build_model(config: ModelConfig) -> keras.Model:
    """The Keras model of ``config``: inputs ``image [B,H,W,K]``, ``availability [B,K]``; output ``logits``."""
    config.validate()
    if config.backbone == "hemis":
        return build_hemis(config)
    return build_unet(config)
