"""Streaming per-channel mean and standard deviation (float64, numerically stable).

Slices are merged with Chan et al.'s parallel update of (count, mean, M2), so a whole-organ stack is
summarised one slice at a time without loss of precision from sums of squares.
:func:`standardise` is the per-sample per-channel z-score of the paper, used by training, evaluation
and inference alike.
"""

from __future__ import annotations

import numpy as np


class RunningStats:
    """Per-channel running mean / variance over arrays shaped ``[C, ...]``."""

    def __init__(self, n_channels: int) -> None:
        self.count = 0
        self.mean = np.zeros(n_channels, dtype=np.float64)
        self._m2 = np.zeros(n_channels, dtype=np.float64)

    def update(self, block: np.ndarray) -> None:
        """Add the voxels of ``block`` (``[C, ...]``, any numeric dtype) to the statistics."""
        x = np.asarray(block).reshape(block.shape[0], -1)
        n = x.shape[1]
        if n == 0:
            return
        x = x.astype(np.float64, copy=False)
        b_mean = x.mean(axis=1)
        b_m2 = ((x - b_mean[:, None]) ** 2).sum(axis=1)
        total = self.count + n
        delta = b_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self._m2 = self._m2 + b_m2 + delta**2 * (self.count * n / total)
        self.count = total

    @property
    def var(self) -> np.ndarray:
        """Population variance per channel (0 before any update)."""
        return self._m2 / self.count if self.count else np.zeros_like(self._m2)

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per channel."""
        return np.sqrt(self.var)


def standardise(channels: np.ndarray, mean, std) -> np.ndarray:
    """Per-channel z-score ``(x - mean) / std`` of ``channels [C, ...]`` as float32.

    Computed in float64 from the float64 statistics, then rounded once, so every caller (the training
    pipeline, evaluation, ``predict``) gets bit-identical inputs for the same voxels. A channel whose
    ``std`` is 0 (constant) is only centred.
    """
    x = np.asarray(channels)
    shape = (-1,) + (1,) * (x.ndim - 1)
    mean = np.asarray(mean, np.float64).reshape(shape)
    std = np.asarray(std, np.float64).reshape(shape)
    std = np.where(std > 0, std, 1.0)
    return ((x - mean) / std).astype(np.float32)
