"""The paper's models by name, built from a JSON-serialisable :class:`ModelConfig`.

| name | model |
| --- | --- |
| UB | plain UNet trained on ONE marker subset (its ``markers`` are that subset) - the upper bound |
| MZ | plain UNet on the whole panel, missing markers fed as zeros (Marker Zero) |
| MS | UNet + Marker Sampling (zero mode) |
| MS-DO / MS-VR | MS with dropout scaling / variable-ratio scaling |
| MS-SE / MS-ME | MS + Squeeze-Excite / Marker Excite after every block (E+B+D) |
| MS+ | MS with widths increased until parameters grow by >= 20 % |
| HeMIS / HeMIS-MS | per-marker backends + mean/variance abstraction (+ Marker Sampling) |
| MS-ME-<I,E,B,D> | ME placement ablations, any combination of I/E/B/D in that order (e.g. MS-ME-EB) |
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import keras

from marker_excite.config import ConfigError, JsonConfig
from marker_excite.data.sample import PAPER_CLASSES
from marker_excite.markers import PAPER_MARKERS, MarkerPanel
from marker_excite.models.geometry import GeometryError, UNetGeometry
from marker_excite.models.hemis import build_hemis
from marker_excite.models.unet import ATTENTION_POSITIONS, build_unet

BASE_NAMES = ("UB", "MZ", "MS", "MS-DO", "MS-VR", "MS-SE", "MS-ME", "MS+", "HeMIS", "HeMIS-MS")
ABLATION_NAMES = tuple(
    "MS-ME-" + "".join(p for p, on in zip(ATTENTION_POSITIONS, bits) if on)
    for bits in __import__("itertools").product((0, 1), repeat=4)
    if any(bits)
)
ZOO_NAMES: tuple[str, ...] = BASE_NAMES + ABLATION_NAMES

PRESETS: dict[str, dict[str, int]] = {
    "paper": dict(depth=5, base_filters=32, input_size=572),
    "small": dict(depth=3, base_filters=16, input_size=124),
}

#: MS+ must have at least this many more parameters than the UNet it is compared to.
MS_PLUS_MIN_GAIN = 0.20

_ABLATION = re.compile(r"^MS-ME-(I?E?B?D?)$")


def _recipe(name: str) -> dict[str, Any]:
    """Backbone, sampling and attention of a zoo name."""
    m = _ABLATION.match(name)
    if m and m.group(1):
        return dict(backbone="unet", sampling="zero", attention="me", attention_positions=tuple(m.group(1)))
    table: dict[str, dict[str, Any]] = {
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
    if name not in table:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(BASE_NAMES)} or MS-ME-<I/E/B/D letters>")
    recipe = dict(table[name])
    recipe.setdefault("attention_positions", ())
    return recipe


def widened_filters(base_filters: int, min_gain: float = MS_PLUS_MIN_GAIN) -> int:
    """Smallest width whose parameter count (quadratic in width) exceeds the base by ``min_gain``."""
    return int(math.ceil(base_filters * math.sqrt(1.0 + min_gain) + 1e-9))


@dataclass
class ModelConfig(JsonConfig):
    """Everything needed to rebuild a model; stored as ``model_config.json`` in a run directory."""

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
        if self.name not in ZOO_NAMES:
            raise ConfigError(f"model_config.name: unknown model {self.name!r}; choose one of {', '.join(BASE_NAMES)} or MS-ME-<IEBD>")
        if not self.markers:
            raise ConfigError("model_config.markers: empty marker set")
        self.panel  # noqa: B018 - raises MarkerError on duplicates
        if not self.classes:
            raise ConfigError("model_config.classes: give at least one class")
        if len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"model_config.classes: duplicated class in {list(self.classes)}")
        if self.backbone not in ("unet", "hemis"):
            raise ConfigError(f"model_config.backbone must be 'unet' or 'hemis', got {self.backbone!r}")
        if self.sampling not in (None, "zero", "dropout", "variable_ratio"):
            raise ConfigError(f"model_config.sampling must be None, 'zero', 'dropout' or 'variable_ratio', got {self.sampling!r}")
        if not 0.0 < self.sampling_rate < 1.0:
            raise ConfigError(f"model_config.sampling_rate must be in (0, 1), got {self.sampling_rate}")
        if self.attention not in (None, "me", "se"):
            raise ConfigError(f"model_config.attention must be None, 'me' or 'se', got {self.attention!r}")
        bad = [p for p in self.attention_positions if p not in ATTENTION_POSITIONS]
        if bad:
            raise ConfigError(f"model_config.attention_positions: unknown position(s) {bad}; use I, E, B, D")
        if self.base_filters < 1 or self.depth < 1:
            raise ConfigError("model_config: base_filters and depth must be >= 1")
        try:
            self.geometry.output_size(self.input_size)
        except GeometryError as exc:
            raise ConfigError(f"model_config.input_size: {exc}") from None

    @property
    def panel(self) -> MarkerPanel:
        return MarkerPanel(self.markers)

    @property
    def geometry(self) -> UNetGeometry:
        return UNetGeometry(depth=self.depth, kernel_size=self.kernel_size)

    @property
    def output_size(self) -> int:
        return self.geometry.output_size(self.input_size)

    @property
    def margin(self) -> int:
        return self.geometry.margin(self.input_size)

    @property
    def n_outputs(self) -> int:
        return 1 + len(self.classes)


def model_config(
    name: str = "MS-ME",
    *,
    preset: str = "paper",
    markers: tuple[str, ...] | list[str] = PAPER_MARKERS,
    classes: tuple[str, ...] | list[str] = (PAPER_CLASSES[0],),
    **overrides: Any,
) -> ModelConfig:
    """The config of a zoo model at a preset size (``paper``: 5 levels, 572 px; ``small``: 3 levels, 124 px).

    ``overrides`` replace any field (e.g. ``depth=2, base_filters=4, input_size=...`` for tests).
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    fields: dict[str, Any] = dict(PRESETS[preset])
    fields.update(_recipe(name))
    fields.update(name=name, markers=tuple(markers), classes=tuple(classes))
    fields.update(overrides)
    if name == "MS+" and "base_filters" not in overrides:
        fields["base_filters"] = widened_filters(PRESETS[preset]["base_filters"])
    elif name == "MS+":
        fields["base_filters"] = widened_filters(overrides["base_filters"])
    cfg = ModelConfig(**fields)
    cfg.validate()
    return cfg


def build_model(config: ModelConfig) -> keras.Model:
    """Build the Keras model described by ``config`` (two inputs ``image``, ``availability``; output ``logits``)."""
    config.validate()
    common = dict(
        n_markers=len(config.markers),
        n_outputs=config.n_outputs,
        input_size=config.input_size,
        depth=config.depth,
        base_filters=config.base_filters,
        kernel_size=config.kernel_size,
        sampling=config.sampling,
        sampling_rate=config.sampling_rate,
        seed=config.seed,
        name=re.sub(r"[^A-Za-z0-9_]", "_", config.name),
    )
    if config.backbone == "hemis":
        return build_hemis(**common)
    return build_unet(**common, attention=config.attention, attention_positions=config.attention_positions)
