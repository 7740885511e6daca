"""marker_excite: one segmentation network for fluorescence microscopy that works with any subset of markers.

Implements Marker Sampling (MS) and Marker Excite (ME) from Gomariz et al., "Modality Attention and
Sampling Enables Deep Learning with Heterogeneous Marker Combinations in Fluorescence Microscopy".
TensorFlow is imported lazily: ``import marker_excite`` alone does not load it.
"""

import os as _os

__version__ = "0.1.0"

# TensorFlow's C++ log lines (start-up chatter, and runtime notes such as oneDNN's on CPUs without
# AVX-512) are noise for users; real failures still raise Python errors. An explicit setting wins.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from marker_excite.contract.markers import PAPER_MARKERS, MarkerError, MarkerPanel  # noqa: E402

__all__ = ["__version__", "MarkerPanel", "MarkerError", "PAPER_MARKERS"]
