"""The paper's models by name: :func:`model_config` makes the validated
:class:`~marker_excite.models.config.ModelConfig` of a zoo name, :func:`build_model` builds its network.

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
import math
from typing import Any

import keras

from marker_excite.config import ConfigError
from marker_excite.contract.markers import PAPER_MARKERS
from marker_excite.models.config import ABLATION_NAMES, ModelConfig, canonical_name
from marker_excite.models.hemis import build_hemis
from marker_excite.models.unet import build_unet
from marker_excite.presets import PRESETS

#: MS+ multiplies every width by this factor (rounded up): 32 -> 36 at paper size, +26.6 % parameters.
MS_PLUS_WIDTH_FACTOR = 1.125

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


def recipe(name: str) -> dict[str, Any]:
    """Backbone, sampling and attention fields that define a zoo model."""
    name = canonical_name(name)
    if name in ABLATION_NAMES:
        return dict(backbone="unet", sampling="zero", attention="me", attention_positions=tuple(name[len("MS-ME-") :]))
    return {"attention_positions": (), **_RECIPES[name]}


def widened_filters(base_filters: int) -> int:
    """MS+ width: ``ceil(base_filters * 1.125)`` (36 for 32, 18 for 16, 5 for 4)."""
    return int(math.ceil(base_filters * MS_PLUS_WIDTH_FACTOR))


def model_config(
    name: str = "MS-ME",
    *,
    preset: str = "paper",
    markers: tuple[str, ...] | list[str] = PAPER_MARKERS,
    classes: tuple[str, ...] | list[str] = ("sinusoids",),
    **overrides: Any,
) -> ModelConfig:
    """The validated config of a zoo model at a preset's network size.

    ``preset``: a name of :data:`marker_excite.presets.PRESETS`, e.g. ``paper`` (depth 5, 32 filters,
    572 px) or ``small`` / ``cpu`` (depth 3, 16 filters, 124 px).
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
    fields: dict[str, Any] = {**PRESETS[preset].network, **recipe(name), **overrides}
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
