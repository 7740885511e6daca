"""Functional valid-padding UNet with optional Marker Sampling and attention (ME, SE, ...) at I/E/B/D.

Architecture (paper defaults: depth 5, widths 32..512, 572 -> 388 px): per level a block of two valid
``kernel_size`` convolutions + ReLU, 2x2 max-pooling; the up path is nearest x2 up-sampling, a 2x2
'same' convolution WITHOUT activation (linear, as in the authors' code), concatenation with the
centre-cropped skip and a block; a 1x1 convolution gives the logits (background + classes). No batch normalisation. Sizes come from
:class:`~marker_excite.models.geometry.UNetGeometry`.

Attention positions: ``I`` on the (sampled) input, ``E`` after each encoder block (before the skip and
the pooling), ``B`` after the bottleneck block, ``D`` after each decoder block.
"""

from __future__ import annotations

import keras

from marker_excite.contract.model_spec import AVAILABILITY, IMAGE
from marker_excite.layers import ATTENTION, MarkerSampling
from marker_excite.models.config import ModelConfig


class UNetBuilder:
    """Builds the pieces of a UNet for one :class:`ModelConfig` (shared by the UNet and HeMIS builders).

    Every layer gets a deterministic name and, for trainable kernels, a seed derived from
    ``config.seed``, so the same config gives the same initial weights.
    """

    def __init__(self, config: ModelConfig):
        self.config = config
        self.geometry = config.geometry
        self.output_size = self.geometry.output_size(config.input_size)  # raises GeometryError
        self.crops = self.geometry.skip_crops(config.input_size)
        self.widths = [config.base_filters * 2**level for level in range(config.depth)]
        self._next_seed = config.seed * 1000

    def seed(self) -> int:
        """A fresh seed for the next initialised layer (steps of 2: ME/SE layers use ``seed`` and ``seed + 1``)."""
        self._next_seed += 2
        return self._next_seed

    def conv(self, x, filters: int, kernel: int, name: str, padding: str = "valid", activation: str | None = "relu"):
        """Conv2D (+ ReLU unless ``activation`` says otherwise) with a seeded Glorot-uniform kernel."""
        return keras.layers.Conv2D(
            filters,
            kernel,
            padding=padding,
            activation=activation,
            kernel_initializer=keras.initializers.GlorotUniform(seed=self.seed()),
            name=name,
        )(x)

    def block(self, x, filters: int, name: str):
        """``convs_per_block`` valid convolutions + ReLU."""
        for i in range(self.geometry.convs_per_block):
            x = self.conv(x, filters, self.config.kernel_size, f"{name}_conv{i + 1}")
        return x

    def inputs(self) -> tuple[keras.KerasTensor, keras.KerasTensor]:
        """The two model inputs ``image [H, W, K]`` and ``availability [K]``."""
        k, s = len(self.config.markers), self.config.input_size
        return keras.Input((s, s, k), name=IMAGE), keras.Input((k,), name=AVAILABILITY)

    def sample(self, image, availability):
        """Marker Sampling on the input when the config asks for it; else the inputs unchanged."""
        if self.config.sampling is None:
            return image, availability
        layer = MarkerSampling(
            self.config.sampling, self.config.sampling_rate, seed=self.config.seed, name="marker_sampling"
        )
        return layer([image, availability])

    def attend(self, x, availability, position: str, name: str):
        """Apply the configured attention module (:data:`~marker_excite.layers.ATTENTION`, layer named
        ``<name>_<attention>``) if ``position`` is one of the config's positions."""
        cfg = self.config
        if cfg.attention is None or position not in cfg.attention_positions:
            return x
        return ATTENTION[cfg.attention].apply(x, availability, seed=self.seed(), name=f"{name}_{cfg.attention}")

    def encoder(self, x, availability, skips: list, start_level: int = 0):
        """Encoder levels ``start_level .. depth-2`` then the bottleneck; appends skips; returns bottleneck."""
        for level in range(start_level, self.config.depth - 1):
            x = self.block(x, self.widths[level], f"enc{level}")
            x = self.attend(x, availability, "E", f"enc{level}")
            skips.append(x)
            x = keras.layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
        x = self.block(x, self.widths[-1], "bottleneck")
        return self.attend(x, availability, "B", "bottleneck")

    def decoder(self, x, availability, skips: list):
        """Decoder levels ``depth-2 .. 0`` using the (uncropped) skips of the encoder."""
        for level in reversed(range(self.config.depth - 1)):
            x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"dec{level}_upsample")(x)
            # the authors' up-path: nearest x2 up-sampling, then a LINEAR 2x2 'same' convolution
            x = self.conv(x, self.widths[level], 2, f"dec{level}_upconv", padding="same", activation=None)
            c = self.crops[level]
            skip = keras.layers.Cropping2D(c, name=f"dec{level}_crop")(skips[level]) if c else skips[level]
            x = keras.layers.Concatenate(name=f"dec{level}_concat")([skip, x])
            x = self.block(x, self.widths[level], f"dec{level}")
            x = self.attend(x, availability, "D", f"dec{level}")
        return x

    def head(self, x):
        """1x1 convolution to ``1 + C`` logits (layer and output named ``logits``), float32 under any
        dtype policy (mixed precision: the softmax, the loss and the scores see float32 logits)."""
        return keras.layers.Conv2D(
            self.config.n_outputs,
            1,
            kernel_initializer=keras.initializers.GlorotUniform(seed=self.seed()),
            name="logits",
            dtype="float32",
        )(x)


def build_unet(config: ModelConfig) -> keras.Model:
    """The UNet (optionally with Marker Sampling and ME/SE attention) described by ``config``.

    Inputs ``image [B, H, W, K]`` and ``availability [B, K]``; output ``logits [B, h, w, 1 + C]``.
    Plain UNets (no sampling, no ME) ignore ``availability``. Raises ``GeometryError`` for an input
    size the network cannot process.
    """
    b = UNetBuilder(config)
    image, availability = b.inputs()
    x, avail = b.sample(image, availability)
    x = b.attend(x, avail, "I", "input")
    skips: list = []
    x = b.encoder(x, avail, skips)
    x = b.decoder(x, avail, skips)
    return keras.Model([image, availability], b.head(x), name=model_name(config.name))


def model_name(zoo_name: str) -> str:
    """A Keras-safe model name for a zoo name (``MS+`` -> ``ms_plus``, ``MS-ME-EB`` -> ``ms_me_eb``)."""
    return zoo_name.lower().replace("+", "_plus").replace("-", "_")
