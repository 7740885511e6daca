"""The model config: every field that defines a network of the zoo, validated; the zoo's names.

:class:`ModelConfig` is stored as ``model_config.json`` in a run directory. The builders
(:mod:`~marker_excite.models.unet`, :mod:`~marker_excite.models.hemis`) read it and
:func:`marker_excite.models.zoo.build_model` dispatches to them; :func:`marker_excite.models.zoo.model_config`
makes the config of a zoo model by name.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from marker_excite.config import ConfigError, JsonConfig
from marker_excite.contract.markers import PAPER_MARKERS, MarkerError, MarkerPanel
from marker_excite.layers import ATTENTION, SAMPLING_MODES
from marker_excite.models.geometry import GeometryError, UNetGeometry

#: Attention positions in canonical order: input, encoder, bottleneck, decoder.
ATTENTION_POSITIONS: tuple[str, ...] = ("I", "E", "B", "D")

#: The paper's models (Figs. 1-4).
BASE_NAMES: tuple[str, ...] = ("UB", "MZ", "MS", "MS-DO", "MS-VR", "MS-SE", "MS-ME", "MS+", "HeMIS", "HeMIS-MS")
#: ME placement ablations (Fig. 3f,g): every non-empty combination of I/E/B/D, in that order.
ABLATION_NAMES: tuple[str, ...] = tuple(
    "MS-ME-" + "".join(combo)
    for r in range(1, len(ATTENTION_POSITIONS) + 1)
    for combo in itertools.combinations(ATTENTION_POSITIONS, r)
)
ZOO_NAMES: tuple[str, ...] = BASE_NAMES + ABLATION_NAMES

BACKBONES: tuple[str, ...] = ("unet", "hemis")


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


@dataclass
class ModelConfig(JsonConfig):
    """Everything needed to rebuild a model; stored as ``model_config.json`` in a run directory.

    The fields define the network; ``name`` (a zoo name) labels it. The defaults are the paper's MS-ME.
    ``seed`` fixes the initial weights and the Marker Sampling draws (the data order follows
    ``TrainConfig.seed``; ``train --seed`` sets both).
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
        self._validate_outputs()
        self._validate_network()
        self._validate_attention()
        self._validate_hemis()
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"model config seed must be an integer >= 0, got {self.seed!r}")
        try:
            self.geometry.output_size(self.input_size)
        except GeometryError as exc:
            raise ConfigError(f"model config input_size: {exc}") from None

    def _validate_outputs(self) -> None:
        """The markers in and the classes out."""
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

    def _validate_network(self) -> None:
        """Size, kernel, backbone and Marker Sampling."""
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

    def _validate_hemis(self) -> None:
        """What a HeMIS backbone does not support."""
        if self.backbone != "hemis":
            return
        if self.depth < 2:
            raise ConfigError(f"model config depth: HeMIS needs depth >= 2, got {self.depth}")
        if self.attention is not None:
            raise ConfigError("model config attention: HeMIS models take no attention (set attention to null)")
        if self.sampling not in (None, "zero"):
            raise ConfigError(f"model config sampling: HeMIS supports null or 'zero', got {self.sampling!r}")

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
            raise ConfigError(
                f"model config attention_positions: duplicated position in {list(self.attention_positions)}"
            )
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
