"""Attention modules by name: the values of ``ModelConfig.attention`` and how a UNet applies each.

A new attention layer is one file in this package plus one line in :data:`ATTENTION`.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from marker_excite.layers.marker_excite import MarkerExcite
from marker_excite.layers.squeeze_excite import SqueezeExcite


@dataclass(frozen=True)
class AttentionModule:
    """An attention layer class and its call convention.

    ``layer`` is constructed as ``layer(seed=..., name=...)``; with ``uses_availability`` it is called on
    ``[features, availability]`` (like Marker Excite), otherwise on the features alone (like SE).
    """

    layer: type[keras.layers.Layer]
    uses_availability: bool

    def apply(self, features, availability, *, seed: int, name: str):
        """A new layer named ``name`` with ``seed``, applied to ``features`` (and ``availability``)."""
        layer = self.layer(seed=seed, name=name)
        return layer([features, availability]) if self.uses_availability else layer(features)


#: ``ModelConfig.attention`` value -> module; the key is also the suffix of the layers' names (``enc0_me``).
ATTENTION: dict[str, AttentionModule] = {
    "me": AttentionModule(MarkerExcite, uses_availability=True),
    "se": AttentionModule(SqueezeExcite, uses_availability=False),
}
