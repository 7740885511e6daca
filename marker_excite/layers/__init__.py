"""Marker-aware Keras layers, one module each, and the attention registry.

``sampling`` (MarkerSampling), ``marker_excite`` (MarkerExcite), ``squeeze_excite`` (SqueezeExcite),
``hemis`` (HeMISAbstraction and HeMIS's MarkerChannel / MarkerStack), ``registry`` (attention modules
by name, :data:`ATTENTION`). All layers use ``keras.ops`` only and are registered for serialisation
(package ``marker_excite``, e.g. ``marker_excite>MarkerExcite``), so a saved ``.keras`` model reloads
with ``keras.saving.load_model`` without ``custom_objects``.

May import: the basics and ``contract/``; by the layering also ``data/`` and ``analysis/`` (its own layer),
but never ``models/``, which builds on it.
"""

from marker_excite.layers.hemis import HeMISAbstraction, MarkerChannel, MarkerStack
from marker_excite.layers.marker_excite import MarkerExcite
from marker_excite.layers.registry import ATTENTION, AttentionModule
from marker_excite.layers.sampling import SAMPLING_MODES, MarkerSampling
from marker_excite.layers.squeeze_excite import SqueezeExcite

__all__ = [
    "ATTENTION",
    "SAMPLING_MODES",
    "AttentionModule",
    "HeMISAbstraction",
    "MarkerChannel",
    "MarkerExcite",
    "MarkerSampling",
    "MarkerStack",
    "SqueezeExcite",
]
