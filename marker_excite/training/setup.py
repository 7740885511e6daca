"""What a training run and its dry run share: the checked configs, the split, the work and the class
weights on an open store, the training data and the compiled model.

:func:`prepare` makes a :class:`TrainingSetup`; ``training.trainer.train`` fits its model and writes a run
directory, ``training.trainer.dry_run`` times a few training steps of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marker_excite.config import ConfigError
from marker_excite.data import pipeline
from marker_excite.data.folds import Fold, select_fold
from marker_excite.data.store import SampleStore
from marker_excite.errors import UserInputError
from marker_excite.models.precision import dtype_policy, optimizer_for
from marker_excite.runs.run import TrainConfig
from marker_excite.training.plan import TrainPlan, make_plan


def check_configs(model_config, train_config: TrainConfig) -> None:
    """Validate both configs and refuse a pair that segments different classes."""
    model_config.validate()
    train_config.validate()
    if tuple(model_config.classes) != tuple(train_config.classes):
        raise ConfigError(
            f"classes differ: model config {list(model_config.classes)} vs training config {list(train_config.classes)}"
        )


def train_panels(cfg: TrainConfig, store: SampleStore, fold: Fold) -> dict[str, tuple[str, ...]] | None:
    """Marker panels of the fold's training samples (validated against the store)."""
    if not cfg.marker_panels:
        return None
    unknown = sorted(set(cfg.marker_panels) - set(store.names()))
    if unknown:
        raise UserInputError(
            f"marker_panels names sample(s) {', '.join(unknown)} that are not in the store {store.path}"
        )
    panels = {s: m for s, m in cfg.marker_panels.items() if s in fold.train}
    return panels or None


def markers_seen(store: SampleStore, samples: Sequence[str], marker_panels, panel) -> list[str]:
    """The markers of ``panel`` that at least one of ``samples`` gives the model in training (its stored
    channels, restricted by its ``marker_panels`` entry), in panel order."""
    given: set[str] = set()
    for name in samples:
        have = {m.lower() for m in store.info(name).markers}
        keep = marker_panels.get(name) if marker_panels else None
        if keep is not None:
            have &= {m.lower() for m in keep}
        given |= have
    return [m for m in panel.names if m.lower() in given]


@dataclass
class TrainingSetup:
    """One training run prepared on an open store.

    Attributes:
        model_config, train_config: the checked configs (:func:`check_configs`).
        store: the open sample store.
        fold: the split (:func:`~marker_excite.data.folds.select_fold`).
        panels: the marker panels of the training samples (None: every sample keeps all its markers).
        plan: patches per sample and steps per epoch (:class:`~marker_excite.training.plan.TrainPlan`).
        counts: the training samples' pixel counts per class, background first.
        weights: the loss's class weights (``log_class_weights(counts)``).
    """

    model_config: Any
    train_config: TrainConfig
    store: SampleStore
    fold: Fold
    panels: dict[str, tuple[str, ...]] | None
    plan: TrainPlan
    counts: np.ndarray
    weights: np.ndarray

    def _source(self, samples: Sequence[str], **options: Any) -> pipeline.PatchSource:
        mc = self.model_config
        return pipeline.PatchSource(
            self.store, samples, panel=mc.panel, classes=self.train_config.classes, input_size=mc.input_size,
            output_size=mc.output_size, **options,
        )  # fmt: skip

    def train_source(self) -> pipeline.PatchSource:
        """The training patches: shuffled, augmented, each sample showing the markers of its panel. One
        source serves the whole run (its slice cache lives across epochs)."""
        tc = self.train_config
        return self._source(
            self.fold.train, shuffle=True, augment=tc.augment, marker_panels=self.panels, intensity=tc.intensity_augment
        )

    def val_source(self) -> pipeline.PatchSource:
        """The validation patches, in order, with all their markers."""
        return self._source(self.fold.val, shuffle=False)

    def compiled_model(self, learning_rate, init: Callable[[Any], None] | None = None):
        """The model, seeded with ``train_config.seed`` and built in the training precision, compiled with
        Adam at ``learning_rate`` (a float or a schedule) and the weighted cross-entropy; ``init`` (e.g.
        loading another run's weights) is applied between build and compile, so the optimizer is fresh."""
        import keras

        from marker_excite.models.losses import WeightedCrossEntropy
        from marker_excite.models.zoo import build_model

        tc = self.train_config
        keras.utils.set_random_seed(tc.seed)
        with dtype_policy(tc.precision):
            model = build_model(self.model_config)
        if init is not None:
            init(model)
        optimizer = optimizer_for(keras.optimizers.Adam(learning_rate=learning_rate), tc.precision)
        model.compile(optimizer=optimizer, loss=WeightedCrossEntropy(self.weights))
        return model

    def data_config(self, store_path: Path) -> dict[str, Any]:
        """What the run was trained on (``data_config.json``); ``spacing`` (median voxel size of the training
        samples) lets ``predict`` resample new stacks to the training resolution without the store;
        ``markers_seen`` (the panel's markers some training sample had) lets ``predict`` refuse markers never
        trained on."""
        fold, store = self.fold, self.store
        spacing = np.median(np.array([store.info(n).spacing for n in fold.train], dtype=np.float64), axis=0)
        return {
            "store": str(store_path),
            "spacing": [round(float(s), 6) for s in spacing],
            "markers_seen": markers_seen(store, fold.train, self.panels, self.model_config.panel),
            "fold": {"train": list(fold.train), "val": list(fold.val), "test": list(fold.test)},
            "marker_panels": {k: list(v) for k, v in (self.panels or {}).items()},
            "loss_classes": ["background", *self.train_config.classes],
            "train_pixel_counts": [int(c) for c in self.counts],
            "class_weights": [float(w) for w in self.weights],
        }


def prepare(model_config, train_config: TrainConfig, store: SampleStore) -> TrainingSetup:
    """The split, marker panels, work and class weights of training ``model_config`` with ``train_config``
    (both checked by :func:`check_configs`) on ``store``.

    Raises:
        UserInputError: an empty store, a bad split or marker panels, or training samples without an
            annotated slice.
    """
    from marker_excite.models.losses import log_class_weights  # the models package imports keras

    fold = select_fold(store, train_config)
    panels = train_panels(train_config, store, fold)
    plan = make_plan(store, fold, model_config.output_size, train_config.batch_size, train_config.epochs,
                     train_config.steps_per_epoch)  # fmt: skip
    if not sum(plan.train_patches.values()):
        raise UserInputError(f"the training samples {', '.join(fold.train)} have no annotated slice")
    counts = pipeline.class_pixel_counts(store, fold.train, train_config.classes)
    return TrainingSetup(model_config, train_config, store, fold, panels, plan, counts, log_class_weights(counts))
