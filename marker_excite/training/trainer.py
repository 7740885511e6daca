"""Training: one model of the zoo on one fold of a sample store, written to a run directory.

:func:`train` fits a model with the weighted cross-entropy of the paper (log class weights from the
TRAINING samples' pixel counts), Adam, validation mean F1 over the classes after every epoch and
keeps the best epoch (the paper's model selection); :func:`dry_run` shows what a run would do without
training. Both start from the same preparation (:func:`~marker_excite.training.setup.prepare`). The
run's settings (:class:`~marker_excite.runs.run.TrainConfig`) and the :class:`~marker_excite.runs.run.Run`
read back by :func:`~marker_excite.runs.run.load_run` live in :mod:`marker_excite.runs.run`.

All epochs are one ``model.fit``; validation, best / last weights, early stopping, TensorBoard and the
resume checkpoint are its callbacks (:mod:`marker_excite.training.callbacks`).

Reproducibility: the data order and augmentation of epoch ``e`` depend only on ``(seed, e)``
(:func:`marker_excite.data.pipeline.epoch_dataset`); the model variables (including the Marker Sampling
seed-generator states), the optimizer state and the epoch are saved after every epoch, so ``resume=True``
continues an interrupted run to the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import os
from functools import partial
from pathlib import Path
from typing import Any

from marker_excite.analysis.plots import training_curves
from marker_excite.data import pipeline
from marker_excite.data.store import SampleStore
from marker_excite.errors import UserInputError
from marker_excite.inference.evaluation import SliceScorer
from marker_excite.progress import Progress
from marker_excite.runs.checkpoint import has_checkpoint, load_checkpoint, load_weights
from marker_excite.runs.directory import (
    BEST_WEIGHTS,
    CURVES,
    DATA_CONFIG,
    LOG,
    MODEL_CONFIG,
    TENSORBOARD,
    TRAIN_CONFIG,
    VERSIONS,
    RunDirError,
    is_run_dir,
    prepare_new,
    read_json,
    training_lock,
    write_configs,
)
from marker_excite.runs.environment import versions
from marker_excite.runs.log import read_log
from marker_excite.runs.resume import check_nothing_trained, check_resume, config_differences
from marker_excite.runs.run import Run, TrainConfig, load_run
from marker_excite.training.plan import TrainPlan, epoch_estimate_callback, time_steps
from marker_excite.training.setup import TrainingSetup, check_configs, prepare

#: The cosine schedule ends at this fraction of the initial learning rate.
COSINE_FINAL_FRACTION = 0.01

#: How a training starts in its run directory: a new run, a resume from its checkpoint, or a resumed run
#: started again at epoch 1 (it was interrupted during its first epoch, before any checkpoint).
NEW, RESUME, RESTART = "new", "resume", "restart"


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


def _init_weights(model, model_config, init_from: str | os.PathLike) -> None:
    """Load the best weights of run ``init_from`` into ``model`` (same model config: architecture,
    panel and classes); :class:`UserInputError` naming the differing fields otherwise."""
    source = Path(init_from)
    if not is_run_dir(source):
        raise RunDirError(f"--init-from {source}: not a run directory (no {MODEL_CONFIG})")
    from marker_excite.models.config import ModelConfig  # the models package imports keras

    stored = ModelConfig.with_defaults(read_json(source / MODEL_CONFIG, "model config"))
    given = model_config.to_dict()
    for config in (stored, given):  # the weights come from the source, not from the seed
        config.pop("seed", None)
    diffs = config_differences(stored, given, "model_config")
    if diffs:
        raise UserInputError(
            f"cannot initialise from {source}: its model differs in {', '.join(diffs)} "
            "(the architecture, panel and classes must be the same)"
        )
    load_weights(model, source / BEST_WEIGHTS)


def _start(run_path: Path, configs: dict[str, dict[str, Any]], *, resume: bool, overwrite: bool) -> str:
    """Make the (locked) run directory ready and say how the training starts there (:data:`NEW`,
    :data:`RESUME`, :data:`RESTART`): a new run gets its configs and versions written, a continued one its
    training config (a larger ``epochs`` extends the run)."""
    if not resume:
        prepare_new(run_path, overwrite=overwrite)
        write_configs(run_path, configs)
        write_configs(run_path, {VERSIONS: versions()})
        return NEW
    start = RESUME if has_checkpoint(run_path) else RESTART
    if start == RESTART:
        check_nothing_trained(run_path)  # else starting again would overwrite trained epochs
    write_configs(run_path, {TRAIN_CONFIG: configs[TRAIN_CONFIG]})
    return start


def _callbacks(run_path: Path, setup: TrainingSetup, model, state: dict[str, Any], history: list, log: Progress, stop):
    """The callbacks of the one ``model.fit``, in this order: validation scores first, the resume
    checkpoint last (:mod:`marker_excite.training.callbacks`); ``stop`` is the run's early stopping."""
    from marker_excite.training import callbacks as cb

    mc, tc = setup.model_config, setup.train_config
    validator = SliceScorer(
        model,
        input_size=mc.input_size,
        n_markers=mc.panel.size,
        n_outputs=mc.n_outputs,
        batch_size=max(4, tc.batch_size),
        class_weights=setup.weights,
    )
    subsets = mc.panel.all_subsets() if tc.select_on == "all_subsets" else None
    callbacks = [
        cb.Validation(validator, setup.val_source(), tc.classes, history, subsets=subsets),
        cb.EpochProgress(log.enabled),
        *([epoch_estimate_callback(setup.plan, log.write)] if log.enabled else []),
        cb.BestWeights(run_path / BEST_WEIGHTS, state),
        stop,
        cb.tensorboard(run_path / TENSORBOARD),
        cb.EpochCheckpoint(run_path, state, history, _curves_title(setup)),
    ]
    return [c for c in callbacks if c is not None]


def _curves_title(setup: TrainingSetup) -> str:
    return f"{setup.model_config.name}, fold {setup.train_config.fold}"


def _compiled(setup: TrainingSetup, start: str, init_from: str | os.PathLike | None):
    """The run's model, compiled in the distribution strategy's scope with a built optimizer; a new or
    restarted run starts from ``init_from``'s weights when given (a resumed one from its checkpoint)."""
    import keras

    tc = setup.train_config
    if tc.deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    init = None
    if init_from is not None and start != RESUME:  # the weights only, a fresh optimizer
        init = partial(_init_weights, model_config=setup.model_config, init_from=init_from)
    with _strategy_scope():
        model = setup.compiled_model(learning_rate(tc, setup.plan.steps_per_epoch), init=init)
        model.optimizer.build(model.trainable_variables)
    return model


def _fit(run_path: Path, setup: TrainingSetup, start: str, *, init_from, progress: bool):
    """Fit the remaining epochs of the run in one ``model.fit`` (resumed from the checkpoint when ``start``
    is :data:`RESUME`), draw its curves and return the model."""
    from marker_excite.training import callbacks as cb

    tc = setup.train_config
    model = _compiled(setup, start, init_from)
    state: dict[str, Any] = {"epoch": 0, "best_epoch": None, "best_score": None, "stale_epochs": 0}
    history: list[dict[str, Any]] = []
    if start == RESUME:
        state = load_checkpoint(run_path, model, model.optimizer)
        history = [r for r in read_log(run_path / LOG) if int(r["epoch"]) <= state["epoch"]]
    train_source = setup.train_source()  # one source for the whole run: its slice cache lives across epochs
    log = Progress(None, enabled=progress)
    if start == RESUME:
        log.write(f"resuming {run_path} after epoch {state['epoch']}")
    elif start == RESTART:
        log.write(f"{run_path} has no checkpoint (interrupted during its first epoch): starting at epoch 1")
    for line in setup.plan.lines():
        log.write(line)
    stop = cb.EarlyStop(tc.patience, state, log.write)
    callbacks = _callbacks(run_path, setup, model, state, history, log, stop)
    epochs = range(state["epoch"] + 1, tc.epochs + 1)
    if epochs and stop.stopped():  # a resumed run that had stopped early
        stop.announce()
    elif epochs:
        # one fit for all epochs: epoch e's batches are seeded by (seed, e) (pipeline.epoch_dataset)
        steps = setup.plan.steps_per_epoch
        model.fit(
            _epochs_input(train_source, tc, epochs, steps),
            initial_epoch=state["epoch"],
            epochs=tc.epochs,
            steps_per_epoch=steps,
            verbose=0,
            shuffle=False,
            callbacks=callbacks,
        )
    if history:
        training_curves(history, run_path / CURVES, title=_curves_title(setup))
    if state["best_epoch"] is not None:
        log.write(f"best epoch {state['best_epoch']}: validation mean F1 {state['best_score']:.4f}")
    return model


# -- public API ---------------------------------------------------------------------------------------
def dry_run(model_config, train_config, store_path, n_steps: int = 3) -> TrainPlan:
    """The plan of a training run with its step time measured on ``n_steps`` steps of a throwaway model;
    nothing is written (``train --dry-run``). Raises the errors ``train`` would raise for the split."""
    check_configs(model_config, train_config)
    with SampleStore(store_path, "r") as store:
        setup = prepare(model_config, train_config, store)
        model = setup.compiled_model(train_config.learning_rate)
        batches = setup.train_source().stream(train_config.batch_size, train_config.seed, repeat=True)
        setup.plan.seconds_per_step = time_steps(model, batches, n_steps)
    return setup.plan


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
    check_configs(model_config, train_config)
    store_path = Path(store_path).resolve()
    if not store_path.is_file():
        raise UserInputError(f"sample store {store_path} does not exist")
    if resume and overwrite:
        raise UserInputError("give either --resume or --overwrite, not both")
    run_path = Path(run_dir)
    with SampleStore(store_path, "r") as store:
        setup = prepare(model_config, train_config, store)
        configs = {
            MODEL_CONFIG: model_config.to_dict(),
            TRAIN_CONFIG: train_config.to_dict(),
            DATA_CONFIG: setup.data_config(store_path),
        }
        if init_from is not None and not resume:
            configs[DATA_CONFIG]["init_from"] = str(Path(init_from).resolve())
        if resume:
            check_resume(run_path, configs)
        with training_lock(run_path):  # before anything is written or deleted there
            start = _start(run_path, configs, resume=resume, overwrite=overwrite)
            model = _fit(run_path, setup, start, init_from=init_from, progress=progress)
    return load_run(run_path, model=model)
