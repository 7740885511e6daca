"""HeMIS (Havaei et al. 2016) adapted to the UNet geometry, and HeMIS-MS.

Each marker has its own backend: the UNet's first conv block applied to that single channel, with its
own weights. :class:`~marker_excite.layers.HeMISAbstraction` merges the backends of the AVAILABLE
markers by mean and variance (2F channels); the rest of the UNet is the frontend (the abstraction is the
top-level skip), so input and output sizes equal the UNet's (572 -> 388 at paper size). HeMIS-MS
prepends Marker Sampling: backends of dropped markers are excluded from the abstraction through the
sampled availability vector (they are not zero-fed into the moments).
"""

from __future__ import annotations

import keras

from marker_excite.layers import HeMISAbstraction, MarkerChannel, MarkerStack
from marker_excite.models.config import ModelConfig
from marker_excite.models.unet import UNetBuilder, model_name


def build_hemis(config: ModelConfig) -> keras.Model:
    """HeMIS (``config.sampling`` None) or HeMIS-MS (``"zero"``) with the UNet's two-input contract.

    Needs ``config.depth >= 2`` (the first level is replaced by the backends and the abstraction).
    """
    b = UNetBuilder(config)
    image, availability = b.inputs()
    x, avail = b.sample(image, availability)
    backends = [
        b.block(MarkerChannel(k, name=f"marker{k}")(x), b.widths[0], f"backend{k}") for k in range(len(config.markers))
    ]
    merged = HeMISAbstraction(name="abstraction")([MarkerStack(name="backends")(backends), avail])
    skips = [merged]
    x = keras.layers.MaxPooling2D(2, name="enc0_pool")(merged)
    x = b.encoder(x, avail, skips, start_level=1)
    x = b.decoder(x, avail, skips)
    return keras.Model([image, availability], b.head(x), name=model_name(config.name))
