"""What a training run will do, printed before it starts: the split, patches per sample, the time per epoch.

:func:`make_plan` counts the patches of a fold; :meth:`TrainPlan.lines` is what ``train`` prints at the
start and ``train --dry-run`` prints before it exits. The time per epoch is estimated from timed
training steps (the first step, which traces the graph, is not counted): :class:`EpochEstimate` during
real training, :func:`time_steps` for a dry run (``training.dry_run``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from marker_excite.data.pipeline import patch_index
from marker_excite.progress import format_duration


@dataclass
class TrainPlan:
    """The split and the amount of work of one training run.

    Attributes:
        fold: the train / validation / test samples (``data.folds.Fold``).
        fixed_steps: steps per epoch when the training config fixes them (None: one pass).
        train_patches, val_patches: patches (annotated slices x output tiles) per sample.
        batch_size: patches per step.
        epochs: number of epochs of the run.
        seconds_per_step: measured time of one training step (None until measured).
    """

    fold: Any
    train_patches: dict[str, int]
    val_patches: dict[str, int]
    batch_size: int
    epochs: int
    seconds_per_step: float | None = None
    fixed_steps: int | None = None

    @property
    def steps_per_epoch(self) -> int:
        """Training steps per epoch: ``fixed_steps`` (``TrainConfig.steps_per_epoch``) or one pass over the
        training patches (the last partial batch is kept)."""
        return self.fixed_steps or -(-sum(self.train_patches.values()) // self.batch_size)

    def epoch_estimate(self) -> str:
        """``"~1:20 per epoch (..)"`` from the measured step time; ``""`` when not measured."""
        if self.seconds_per_step is None:
            return ""
        epoch = self.seconds_per_step * self.steps_per_epoch
        return (
            f"estimated time per epoch: ~{format_duration(epoch)} ({self.steps_per_epoch} steps x "
            f"{self.seconds_per_step:.3g} s; {self.epochs} epochs ~{format_duration(epoch * self.epochs)} "
            "plus validation)"
        )

    def lines(self) -> list[str]:
        """The plan as short lines: split, patches per sample, steps (and the estimate when measured)."""

        def patches(counts: dict[str, int]) -> str:
            return ", ".join(f"{s} {n}" for s, n in counts.items()) or "none"

        test = ", ".join(self.fold.test) or "none"
        out = [
            f"split: train {', '.join(self.fold.train)} | validation {', '.join(self.fold.val)} | test {test}",
            f"training patches per sample: {patches(self.train_patches)} "
            f"(total {sum(self.train_patches.values())}, {self.steps_per_epoch} steps of {self.batch_size})",
            f"validation patches per sample: {patches(self.val_patches)}",
        ]
        if self.seconds_per_step is not None:
            out.append(self.epoch_estimate())
        return out


def make_plan(
    store, fold, output_size: int, batch_size: int, epochs: int, steps_per_epoch: int | None = None
) -> TrainPlan:
    """Count the patches of each training and validation sample of ``fold`` in ``store``."""

    def counts(samples) -> dict[str, int]:
        found = Counter(p[0] for p in patch_index(store, samples, output_size))
        return {s: int(found.get(s, 0)) for s in samples}

    return TrainPlan(
        fold, counts(fold.train), counts(fold.val), int(batch_size), int(epochs), fixed_steps=steps_per_epoch
    )


def time_steps(model, batches: Iterator[tuple[Any, Any]], n_steps: int = 3) -> float:
    """Seconds per training step of ``model`` on ``batches`` (an endless iterator of ``(inputs, labels)``,
    e.g. :meth:`~marker_excite.data.pipeline.PatchSource.stream` with ``repeat=True``), timed over
    ``n_steps`` steps after a first (graph-tracing) step. Changes the model's weights: for dry runs only."""
    model.train_on_batch(*next(batches))
    start = time.perf_counter()
    for _ in range(n_steps):
        model.train_on_batch(*next(batches))
    return (time.perf_counter() - start) / n_steps


def epoch_estimate_callback(plan: TrainPlan, write: Callable[[str], None], n_steps: int = 5):
    """A Keras callback that times ``n_steps`` training steps after the first one (graph tracing),
    then writes the plan's time-per-epoch estimate once with ``write``."""
    import keras

    class EpochEstimate(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.done, self.start, self.count = False, None, 0

        def on_train_batch_end(self, batch, logs=None):
            if self.done:
                return
            if self.start is None:
                self.start = time.perf_counter()
                return
            self.count += 1
            if self.count >= n_steps or batch + 1 >= plan.steps_per_epoch:
                plan.seconds_per_step = (time.perf_counter() - self.start) / self.count
                write(plan.epoch_estimate())
                self.done = True

    return EpochEstimate()
