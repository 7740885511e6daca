"""The Keras callbacks of a training run: validation, progress, best weights, early stopping, TensorBoard
and the per-epoch checkpoint that makes a resume exact.

``training.train`` passes them, in the order of this module, to ONE ``model.fit`` over all epochs.
They share the run's ``state`` (the counters saved in the resume checkpoint: ``epoch``, ``best_epoch``,
``best_score``, ``stale_epochs``) and ``history`` (the rows of ``log.csv``).
:class:`Validation` runs first and adds the epoch's validation scores to Keras' epoch ``logs``, so every
later callback (and Keras' own, such as ``keras.callbacks.TensorBoard``) sees them.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from marker_excite.analysis.plots import training_curves
from marker_excite.models.metrics import f1_from_confusion
from marker_excite.progress import Progress
from marker_excite.runs.checkpoint import save_checkpoint, save_weights
from marker_excite.runs.directory import CURVES, LAST_WEIGHTS, LOG
from marker_excite.runs.log import write_log

#: ``curves.png`` is redrawn at most this often during training (seconds); ``train`` draws it at the end.
CURVES_EVERY_S = 60.0


class Validation(keras.callbacks.Callback):
    """After every epoch: validation loss and F1 per class over whole slices (``SliceScorer``), and the
    epoch's times; appends the ``log.csv`` row to ``history`` and adds its values to the epoch ``logs``.

    ``val_mean_f1`` (what picks the best epoch) is the mean F1 over the classes with all markers; with
    ``subsets`` it is the mean over those subsets and the classes instead (``val_subsets_mean_f1``, the
    all-marker mean kept as ``val_all_markers_mean_f1``)."""

    def __init__(self, scorer, source, classes: Sequence[str], history: list[dict[str, Any]], *, subsets=None) -> None:
        super().__init__()
        self.scorer, self.source, self.classes, self.history = scorer, source, tuple(classes), history
        self.subsets = list(subsets) if subsets else None
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        train_time = time.perf_counter() - self._start
        cm, val_loss = self.scorer.confusion_and_loss(self.source)
        f1 = f1_from_confusion(cm)[1:]
        row: dict[str, Any] = {"epoch": epoch + 1, "loss": float(logs["loss"]), "val_loss": float(val_loss)}
        row.update({f"val_f1_{c}": float(v) for c, v in zip(self.classes, f1)})
        row["val_mean_f1"] = float(np.mean(f1))
        if self.subsets:
            scored = self.scorer.subsets(self.source, self.subsets, progress=False).values()
            per_subset = [f1_from_confusion(cm)[1:] for cm, seen in scored if seen]
            row["val_all_markers_mean_f1"] = row["val_mean_f1"]
            row["val_subsets_mean_f1"] = row["val_mean_f1"] = float(np.mean(per_subset))
        row["time"] = time.perf_counter() - self._start
        row["train_time"] = train_time
        self.history.append(row)
        logs.update({k: v for k, v in row.items() if k != "epoch"})


class EpochProgress(keras.callbacks.Callback):
    """One progress line per epoch (``epoch 3/60 25/25 batches ... loss=.. val_mean_f1=..``), fed with
    the running training loss after every batch."""

    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled
        self._bar: Progress | None = None

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._bar = Progress(self.params["steps"], f"epoch {epoch + 1}/{self.params['epochs']}", unit="batch",
                             every=10.0, min_interval=30.0, enabled=self.enabled)  # fmt: skip

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self._bar.update(loss=float((logs or {}).get("loss", float("nan"))))

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self._bar.close(loss=logs["loss"], val_loss=logs["val_loss"], val_mean_f1=logs["val_mean_f1"])


class BestWeights(keras.callbacks.Callback):
    """Saves the weights of the epoch with the highest validation mean F1 (the paper's model selection)
    and counts the epochs since it in ``state``."""

    def __init__(self, path: Path, state: dict[str, Any]) -> None:
        super().__init__()
        self.path, self.state = path, state

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        score = logs["val_mean_f1"]
        if self.state["best_score"] is None or score > self.state["best_score"]:
            self.state.update(best_epoch=epoch + 1, best_score=score, stale_epochs=0)
            save_weights(self.model, self.path)
        else:
            self.state["stale_epochs"] += 1


class EarlyStop(keras.callbacks.Callback):
    """Stops training when validation mean F1 has not improved for ``patience`` epochs (None: never),
    as counted by :class:`BestWeights` (which runs before it)."""

    def __init__(self, patience: int | None, state: dict[str, Any], write: Callable[[str], None]) -> None:
        super().__init__()
        self.patience, self.state, self.write = patience, state, write

    def stopped(self) -> bool:
        """Whether the run has had ``patience`` epochs without improvement (also true of a resumed run)."""
        return self.patience is not None and self.state["stale_epochs"] >= self.patience

    def announce(self) -> None:
        """Say why the run stops."""
        self.write(f"early stop: no improvement of validation mean F1 for {self.patience} epochs")

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if self.stopped() and epoch + 1 < self.params["epochs"]:
            self.announce()
            self.model.stop_training = True


class ScalarSummaries(keras.callbacks.Callback):
    """The epoch ``logs`` as TensorBoard scalars, written with ``tf.summary.write`` (no tensorboard
    package needed), at step = epoch number (1-based, as in ``log.csv``)."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__()
        self.log_dir = log_dir
        self._writer = None

    def on_train_begin(self, logs=None) -> None:
        import tensorflow as tf

        self._writer = tf.summary.create_file_writer(str(self.log_dir))

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        metadata = summary_pb2.SummaryMetadata()
        metadata.plugin_data.plugin_name = "scalars"
        with self._writer.as_default():
            for key, value in logs.items():
                if isinstance(value, (int, float)):
                    tf.summary.write(
                        key,
                        tf.constant(float(value), tf.float32),
                        step=epoch + 1,
                        metadata=metadata.SerializeToString(),
                    )
        self._writer.flush()

    def on_train_end(self, logs=None) -> None:
        self._writer.close()


def tensorboard(log_dir: Path) -> keras.callbacks.Callback | None:
    """``keras.callbacks.TensorBoard`` (scalars in ``train/`` and ``validation/``, step = 0-based epoch
    index) when the tensorboard package is installed, else :class:`ScalarSummaries`; None (no TensorBoard
    logs; ``log.csv`` and ``curves.png`` hold the same numbers) on a Keras backend other than TensorFlow."""
    if keras.backend.backend() != "tensorflow":
        return None
    if importlib.util.find_spec("tensorboard") is not None:
        return keras.callbacks.TensorBoard(str(log_dir), write_graph=False)
    return ScalarSummaries(log_dir)


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch: the last weights, ``log.csv``, ``curves.png`` (at most every
    :data:`CURVES_EVERY_S`) and, last, the resume checkpoint (model and optimizer variables and
    ``state``), so an interrupted run continues from its last completed epoch to the same weights."""

    def __init__(self, run_dir: Path, state: dict[str, Any], history: list[dict[str, Any]], curves_title: str) -> None:
        super().__init__()
        self.run_dir, self.state, self.history, self.curves_title = run_dir, state, history, curves_title
        self._curves_drawn = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        save_weights(self.model, self.run_dir / LAST_WEIGHTS)
        write_log(self.run_dir / LOG, self.history)
        if time.perf_counter() - self._curves_drawn >= CURVES_EVERY_S:
            training_curves(self.history, self.run_dir / CURVES, title=self.curves_title)
            self._curves_drawn = time.perf_counter()
        self.state["epoch"] = epoch + 1
        save_checkpoint(self.run_dir, self.model, self.model.optimizer, self.state)
