"""Training: one model of the zoo on one fold of a sample store, written to a run directory.

:func:`train` fits a model with the weighted cross-entropy of the paper (log class weights from the
TRAINING samples' pixel counts), Adam, validation mean F1 over the classes after every epoch and
keeps the best epoch (the paper's model selection); :func:`dry_run` shows what a run would do without
training. The run's settings (:class:`~marker_excite.runs.run.TrainConfig`) and the :class:`~marker_excite.runs.run.Run`
read back by :func:`~marker_excite.runs.run.load_run` live in :mod:`marker_excite.runs.run`.

All epochs are one ``model.fit``; validation, best / last weights, early stopping, TensorBoard and the
resume checkpoint are its callbacks (:mod:`marker_excite.training.callbacks`).

Reproducibility: the data order and augmentation of epoch ``e`` depend only on ``(seed, e)``
(:func:`marker_excite.data.pipeline.epoch_dataset`); the model variables (including the Marker Sampling seed-generator states), the optimizer state and the
epoch are saved after every epoch, so ``resume=True`` continues an interrupted run to the same
weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from marker_excite.analysis.plots import training_curves
from marker_excite.config import ConfigError
from marker_excite.data import pipeline
from marker_excite.data.folds import explicit_fold, paper_folds, restrict_train
from marker_excite.data.store import SampleStore
from marker_excite.errors import UserInputError
from marker_excite.inference.evaluation import SliceScorer
from marker_excite.models.precision import dtype_policy, optimizer_for
from marker_excite.progress import Progress
from marker_excite.runs import directory as rd
from marker_excite.runs.run import Run, TrainConfig, load_run
from marker_excite.training.plan import TrainPlan, epoch_estimate_callback, make_plan, time_steps

#: The cosine schedule ends at this fraction of the initial learning rate.
COSINE_FINAL_FRACTION = 0.01


def learning_rate(cfg: TrainConfig, steps_per_epoch: int):
    """Adam's learning rate: a float, or a schedule over all ``epochs x steps_per_epoch`` steps (it follows
    the optimizer's step counter, which the checkpoint restores, so resumed runs continue the schedule)."""
    if cfg.lr_schedule == "constant":
        return cfg.learning_rate
    import keras

    return keras.optimizers.schedules.CosineDecay(
        cfg.learning_rate, decay_steps=cfg.epochs * steps_per_epoch, alpha=COSINE_FINAL_FRACTION
    )


# -- helpers ------------------------------------------------------------------------------------------
def _epochs_input(source, cfg: TrainConfig, epochs: range, steps: int):
    """What ``model.fit`` reads for ``epochs``: on TensorFlow the tf.data pipeline
    (:func:`~marker_excite.data.pipeline.epoch_dataset`), on other Keras backends (e.g. JAX on a GPU
    machine without TensorFlow) the same NumPy batches from a generator."""
    import keras

    if keras.backend.backend() == "tensorflow":
        return pipeline.epoch_dataset(source, cfg.batch_size, seed=cfg.seed, epochs=epochs, steps=steps)
    return pipeline.training_batches(source, cfg.batch_size, seed=cfg.seed, epochs=epochs, steps=steps)


def _strategy_scope():
    """The scope the model is built in: on TensorFlow, the strategy's (:func:`_strategy`); on other Keras
    backends (one device) a null context."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return contextlib.nullcontext()
    return _strategy().scope()


def _strategy():
    """The strategy in whose scope ``train`` was called (e.g. MultiWorkerMirroredStrategy), else
    MirroredStrategy over all GPUs when more than one is visible, else the default strategy."""
    import tensorflow as tf

    if tf.distribute.has_strategy():
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def markers_seen(store, samples, marker_panels, panel) -> list[str]:
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


def data_config(store, store_path: Path, fold, marker_panels, classes, counts, weights, panel) -> dict[str, Any]:
    """What the run was trained on; ``spacing`` (median voxel size of the training samples) lets
    ``predict`` resample new stacks to the training resolution without the store; ``markers_seen``
    (the panel's markers some training sample had) lets ``predict`` refuse markers never trained on."""
    spacing = np.median(np.array([store.info(n).spacing for n in fold.train], dtype=np.float64), axis=0)
    return {
        "store": str(store_path),
        "spacing": [round(float(s), 6) for s in spacing],
        "markers_seen": markers_seen(store, fold.train, marker_panels, panel),
        "fold": {"train": list(fold.train), "val": list(fold.val), "test": list(fold.test)},
        "marker_panels": {k: list(v) for k, v in (marker_panels or {}).items()},
        "loss_classes": ["background", *classes],
        "train_pixel_counts": [int(c) for c in counts],
        "class_weights": [float(w) for w in weights],
    }


def select_fold(store, cfg: TrainConfig):
    """The fold split, an explicit split (``val_samples`` given) or the fold training on ``train_samples``."""
    names = store.names()
    if not names:
        raise UserInputError(f"sample store {store.path} holds no samples")
    if cfg.val_samples is not None:
        return explicit_fold(names, cfg.train_samples or (), cfg.val_samples, cfg.test_samples or ())
    folds = paper_folds(names, n_folds=cfg.n_folds, n_val=cfg.n_val, n_test=cfg.n_test, seed=cfg.fold_seed)
    if cfg.train_samples is not None:
        return restrict_train(folds[cfg.fold], cfg.train_samples, f"fold {cfg.fold}")
    return folds[cfg.fold]


def _init_weights(model, model_config, init_from: str | os.PathLike) -> None:
    """Load the best weights of run ``init_from`` into ``model`` (same model config: architecture,
    panel and classes); :class:`UserInputError` naming the differing fields otherwise."""
    source = Path(init_from)
    if not rd.is_run_dir(source):
        raise rd.RunDirError(f"--init-from {source}: not a run directory (no {rd.MODEL_CONFIG})")
    from marker_excite.models.config import ModelConfig  # the models package imports keras

    stored = ModelConfig.with_defaults(rd.read_json(source / rd.MODEL_CONFIG, "model config"))
    given = model_config.to_dict()
    for config in (stored, given):  # the weights come from the source, not from the seed
        config.pop("seed", None)
    diffs = rd.config_differences(stored, given, "model_config")
    if diffs:
        raise UserInputError(
            f"cannot initialise from {source}: its model differs in {', '.join(diffs)} "
            "(the architecture, panel and classes must be the same)"
        )
    rd.load_weights(model, source / rd.BEST_WEIGHTS)


def train_panels(cfg: TrainConfig, store, fold) -> dict[str, tuple[str, ...]] | None:
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


def _plan(store, fold, model_config, train_config: TrainConfig) -> TrainPlan:
    """What a run of these configs does on ``fold``: patches per sample, steps per epoch, epochs."""
    return make_plan(store, fold, model_config.output_size, train_config.batch_size, train_config.epochs,
                     train_config.steps_per_epoch)  # fmt: skip


def check_classes(model_config, cfg: TrainConfig) -> None:
    """Refuse a model config and a training config that segment different classes."""
    if tuple(model_config.classes) != tuple(cfg.classes):
        raise ConfigError(
            f"classes differ: model config {list(model_config.classes)} vs training config {list(cfg.classes)}"
        )


# -- public API ---------------------------------------------------------------------------------------
def dry_run(model_config, train_config, store_path, n_steps: int = 3) -> TrainPlan:
    """The plan of a training run with its step time measured on ``n_steps`` steps of a throwaway model;
    nothing is written (``train --dry-run``). Raises the errors ``train`` would raise for the split."""
    import keras

    from marker_excite.models.losses import WeightedCrossEntropy, log_class_weights
    from marker_excite.models.zoo import build_model

    model_config.validate()
    train_config.validate()
    check_classes(model_config, train_config)
    with SampleStore(store_path, "r") as store:
        fold = select_fold(store, train_config)
        panels = train_panels(train_config, store, fold)
        plan = _plan(store, fold, model_config, train_config)
        if not sum(plan.train_patches.values()):
            raise UserInputError(f"the training samples {', '.join(fold.train)} have no annotated slice")
        counts = pipeline.class_pixel_counts(store, fold.train, train_config.classes)
        keras.utils.set_random_seed(train_config.seed)
        with dtype_policy(train_config.precision):
            model = build_model(model_config)
        model.compile(
            optimizer=optimizer_for(keras.optimizers.Adam(train_config.learning_rate), train_config.precision),
            loss=WeightedCrossEntropy(log_class_weights(counts)),
        )
        source = pipeline.PatchSource(
            store, fold.train, panel=model_config.panel, classes=train_config.classes,
            input_size=model_config.input_size, output_size=model_config.output_size,
            shuffle=True, augment=train_config.augment, marker_panels=panels,
            intensity=train_config.intensity_augment,
        )  # fmt: skip
        batches = source.stream(train_config.batch_size, train_config.seed, repeat=True)
        plan.seconds_per_step = time_steps(model, batches, n_steps)
    return plan


def train(
    run_dir: str | os.PathLike,
    model_config,
    train_config: TrainConfig,
    store_path: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    init_from: str | os.PathLike | None = None,
) -> Run:
    """Train ``model_config`` on fold ``train_config.fold`` of the store, writing ``run_dir``.

    Args:
        run_dir: output directory (created; must be empty or absent for a new run).
        model_config: a :class:`marker_excite.models.zoo.ModelConfig`.
        train_config: a :class:`TrainConfig` (classes must equal the model config's).
        store_path: the :class:`~marker_excite.data.store.SampleStore` file.
        resume: continue an interrupted run from its last completed epoch (configs must match, except
            a larger ``epochs``, which extends a finished run). A run without a checkpoint starts again
            at epoch 1 only when it has no trained epoch.
        overwrite: replace an existing run directory.
        progress: print the split, patches per sample and the estimated time per epoch, then progress.
        init_from: a run directory whose best weights start this run (same model config).

    Returns:
        the :class:`Run` with the best weights loaded.

    Raises:
        UserInputError: bad configs, a missing store, an existing run directory, a resume whose
            settings differ from the stored run (the message names the differing fields) or whose
            checkpoint is gone after trained epochs, or a run directory another training holds
            (:func:`~marker_excite.runs.directory.training_lock`).
    """
    import keras

    from marker_excite.models.losses import WeightedCrossEntropy, log_class_weights
    from marker_excite.models.zoo import ModelConfig, build_model
    from marker_excite.training import callbacks as cb

    model_config.validate()
    train_config.validate()
    check_classes(model_config, train_config)
    store_path = Path(store_path).resolve()
    if not store_path.is_file():
        raise UserInputError(f"sample store {store_path} does not exist")
    run_path = Path(run_dir)
    if resume and overwrite:
        raise UserInputError("give either --resume or --overwrite, not both")

    with SampleStore(store_path, "r") as store, contextlib.ExitStack() as held:
        fold = select_fold(store, train_config)
        panels = train_panels(train_config, store, fold)
        counts = pipeline.class_pixel_counts(store, fold.train, train_config.classes)
        weights = log_class_weights(counts)
        configs = {
            rd.MODEL_CONFIG: model_config.to_dict(),
            rd.TRAIN_CONFIG: train_config.to_dict(),
            rd.DATA_CONFIG: data_config(
                store, store_path, fold, panels, train_config.classes, counts, weights, model_config.panel
            ),
        }
        if init_from is not None and not resume:
            configs[rd.DATA_CONFIG]["init_from"] = str(Path(init_from).resolve())
        if resume:
            rd.check_resume(
                run_path,
                configs,
                may_grow={rd.TRAIN_CONFIG: ("epochs",)},
                defaults={rd.MODEL_CONFIG: ModelConfig.with_defaults, rd.TRAIN_CONFIG: TrainConfig.with_defaults},
                ignore={
                    rd.DATA_CONFIG: ("init_from", "markers_seen"),
                    # the weights and the Marker Sampling state come from the checkpoint: a run made before
                    # --seed also set the model's seed resumes with the same --seed
                    rd.MODEL_CONFIG: ("seed",) if rd.has_checkpoint(run_path) else (),
                },
            )
        held.enter_context(rd.training_lock(run_path))  # before anything is written or deleted there
        restart = resume and not rd.has_checkpoint(run_path)
        if restart:
            rd.check_nothing_trained(run_path)  # else starting again would overwrite trained epochs
            resume = False  # interrupted before the first epoch finished: start from scratch
        if resume or restart:
            rd.write_configs(run_path, {rd.TRAIN_CONFIG: configs[rd.TRAIN_CONFIG]})  # a larger epochs extends the run
        else:
            rd.prepare_new(run_path, overwrite=overwrite)
            rd.write_configs(run_path, configs)
            rd.write_configs(run_path, {rd.VERSIONS: rd.versions()})

        n_train = len(pipeline.patch_index(store, fold.train, model_config.output_size))
        if n_train == 0:
            raise UserInputError(f"the training samples {', '.join(fold.train)} have no annotated slice")
        steps = train_config.steps_per_epoch or math.ceil(n_train / train_config.batch_size)

        keras.utils.set_random_seed(train_config.seed)
        if train_config.deterministic and keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()
        with _strategy_scope():
            with dtype_policy(train_config.precision):
                model = build_model(model_config)
            if init_from is not None and not resume:  # before compile: the weights only, a fresh optimizer
                _init_weights(model, model_config, init_from)
            optimizer = optimizer_for(
                keras.optimizers.Adam(learning_rate=learning_rate(train_config, steps)), train_config.precision
            )
            loss = WeightedCrossEntropy(weights)
            model.compile(optimizer=optimizer, loss=loss)
            optimizer.build(model.trainable_variables)

        state: dict[str, Any] = {"epoch": 0, "best_epoch": None, "best_score": None, "stale_epochs": 0}
        history: list[dict[str, Any]] = []
        if resume:
            state = rd.load_checkpoint(run_path, model, optimizer)
            history = [r for r in rd.read_log(run_path / rd.LOG) if int(r["epoch"]) <= state["epoch"]]

        common = dict(
            panel=model_config.panel,
            classes=train_config.classes,
            input_size=model_config.input_size,
            output_size=model_config.output_size,
        )
        val_source = pipeline.PatchSource(store, fold.val, shuffle=False, **common)
        # one training source for the whole run: its slice cache lives across epochs
        train_source = pipeline.PatchSource(
            store, fold.train, shuffle=True, augment=train_config.augment, marker_panels=panels,
            intensity=train_config.intensity_augment, **common,
        )  # fmt: skip
        validator = SliceScorer(
            model,
            input_size=model_config.input_size,
            n_markers=model_config.panel.size,
            n_outputs=model_config.n_outputs,
            batch_size=max(4, train_config.batch_size),
            class_weights=weights,
        )
        log = Progress(None, enabled=progress)
        if resume:
            log.write(f"resuming {run_path} after epoch {state['epoch']}")
        elif restart:
            log.write(f"{run_path} has no checkpoint (interrupted during its first epoch): starting at epoch 1")
        plan = _plan(store, fold, model_config, train_config)
        for line in plan.lines():
            log.write(line)

        curves_title = f"{model_config.name}, fold {train_config.fold}"
        stop = cb.EarlyStop(train_config.patience, state, log.write)
        callbacks = [  # in this order: validation scores first, the resume checkpoint last
            cb.Validation(
                validator,
                val_source,
                train_config.classes,
                history,
                subsets=model_config.panel.all_subsets() if train_config.select_on == "all_subsets" else None,
            ),  # fmt: skip
            cb.EpochProgress(progress),
            *([epoch_estimate_callback(plan, log.write)] if progress else []),
            cb.BestWeights(run_path / rd.BEST_WEIGHTS, state),
            stop,
            cb.tensorboard(run_path / rd.TENSORBOARD),
            cb.EpochCheckpoint(run_path, state, history, curves_title),
        ]
        callbacks = [c for c in callbacks if c is not None]
        epochs = range(state["epoch"] + 1, train_config.epochs + 1)
        if epochs and stop.stopped():  # a resumed run that had stopped early
            stop.announce()
        elif epochs:
            # one fit for all epochs: epoch e's batches are seeded by (seed, e) (pipeline.epoch_dataset)
            train_ds = _epochs_input(train_source, train_config, epochs, steps)
            model.fit(
                train_ds,
                initial_epoch=state["epoch"],
                epochs=train_config.epochs,
                steps_per_epoch=steps,
                verbose=0,
                shuffle=False,
                callbacks=callbacks,
            )
        if history:
            training_curves(history, run_path / rd.CURVES, title=curves_title)
        if state["best_epoch"] is not None:
            log.write(f"best epoch {state['best_epoch']}: validation mean F1 {state['best_score']:.4f}")
    return load_run(run_path, model=model)
