"""A training run: its settings (:class:`TrainConfig`; :func:`preset_configs` builds a run's configs from a
preset of :mod:`marker_excite.presets`) and the :class:`Run` read back from its directory.

:class:`Run` owns what its run directory holds -- the configs, the split, the voxel size it was trained
at, the software versions, the log and the network with its weights -- so nothing else re-reads run
files: the model's contract with its provenance (:attr:`Run.spec`, whose serialised form is the model
card) comes from it. ``training.train`` writes a run directory; :func:`load_run` reads one (file names
in :mod:`marker_excite.runs.directory`) for training, evaluation and export; inference obtains its
model through :func:`marker_excite.inference.predictor.load_predictor`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marker_excite.config import ConfigError, JsonConfig
from marker_excite.contract.markers import PAPER_MARKERS
from marker_excite.contract.model_spec import ModelSpec
from marker_excite.contract.provenance import Provenance
from marker_excite.data.folds import Fold
from marker_excite.errors import UserInputError
from marker_excite.models.precision import DEFAULT_PRECISION, POLICIES
from marker_excite.presets import PRESETS, RECIPES
from marker_excite.runs import directory as rd
from marker_excite.runs import environment
from marker_excite.runs.checkpoint import load_weights
from marker_excite.runs.log import read_log

if TYPE_CHECKING:
    from marker_excite.models.config import ModelConfig

#: Learning-rate schedules of :class:`TrainConfig`.
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")
#: What picks the best epoch (:attr:`TrainConfig.select_on`): the validation mean F1 with all markers, or
#: its mean over every non-empty subset of the panel (the model is meant for any subset).
SELECT_ON: tuple[str, ...] = ("all_markers", "all_subsets")


@dataclass
class TrainConfig(JsonConfig):
    """Training settings; stored as ``train_config.json`` in the run directory.

    Attributes:
        preset: name of the preset the values came from (informative).
        epochs: number of epochs (passes over all training patches).
        batch_size: patches per step (global batch over all GPUs).
        learning_rate: Adam learning rate (Keras default 0.001; other Adam settings are Keras defaults).
        augment: random flips / 90-degree rotations of training patches (off by default: the paper's
            protocol has no augmentation).
        intensity_augment: random gain per channel of a training patch, log-uniform in
            ``[1 / (1 + a), 1 + a]`` (0: none, the paper's protocol).
        select_on: what picks the best epoch: ``all_markers`` (validation mean F1 with every marker,
            the paper) or ``all_subsets`` (its mean over every non-empty marker subset, logged as
            ``val_subsets_mean_f1``; validation then costs 2^K times as much).
        seed: seed of the data order and augmentation (and of Keras' global generator). The initial
            weights and the Marker Sampling draws follow ``ModelConfig.seed``; ``train --seed`` and the
            experiments' ``--seed`` set both.
        fold, n_folds, n_val, n_test, fold_seed: the cross-validation split (``data/folds.paper_folds``;
            n_test None = near-equal test groups, the paper's 2 of 8 samples with 4 folds).
        train_samples, val_samples, test_samples: named samples instead of the fold split. With
            ``val_samples`` the split is explicit (``train_samples`` required, ``test_samples`` may be
            empty or None); with only ``train_samples`` the fold trains on those of its training samples.
        classes: the classes to segment, in output order (must equal the model config's classes).
        marker_panels: training sample -> markers it keeps (heterogeneous panels, the paper's Cases);
            samples not listed keep all their markers; validation and test samples always keep all.
        steps_per_epoch: training batches per epoch (None: one pass over all training patches). With a
            number, each epoch draws that many batches from a stream of shuffled passes seeded by
            ``(seed, epoch)``; validation and checkpoints follow every epoch.
        lr_schedule: ``constant`` (the paper: Adam's default rate throughout) or ``cosine`` (cosine
            decay from ``learning_rate`` to 1 % of it over all ``epochs x steps`` training steps).
        patience: stop when validation mean F1 has not improved for this many epochs (None: never).
        deterministic: make TensorFlow ops deterministic (bit-identical reruns and resumes).
        precision: ``fp32`` (float32 throughout, the default), ``bf16`` or ``fp16`` (Keras mixed
            precision: float32 variables, loss and scores; fp16 with loss scaling), see
            :mod:`marker_excite.models.precision`.
    """

    preset: str = "paper"
    epochs: int = 200
    batch_size: int = 2
    learning_rate: float = 1e-3
    augment: bool = False
    seed: int = 0
    fold: int = 0
    n_folds: int = 4
    n_val: int = 1
    n_test: int | None = None
    fold_seed: int = 0
    classes: tuple[str, ...] = ("sinusoids",)
    marker_panels: dict[str, tuple[str, ...]] | None = None
    steps_per_epoch: int | None = None
    lr_schedule: str = "constant"
    patience: int | None = None
    deterministic: bool = True
    train_samples: tuple[str, ...] | None = None
    val_samples: tuple[str, ...] | None = None
    test_samples: tuple[str, ...] | None = None
    precision: str = DEFAULT_PRECISION
    intensity_augment: float = 0.0
    select_on: str = "all_markers"

    def __post_init__(self) -> None:
        self.classes = tuple(self.classes)
        for name in ("train_samples", "val_samples", "test_samples"):
            if getattr(self, name) is not None:
                setattr(self, name, tuple(str(s) for s in getattr(self, name)))
        if self.marker_panels is not None:
            self.marker_panels = {str(k): tuple(v) for k, v in self.marker_panels.items()}

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field for any invalid value (schedule, split, options)."""
        self._validate_schedule()
        self._validate_split()
        self._validate_options()

    def _validate_schedule(self) -> None:
        """Epochs, batch, learning rate and its schedule, early stopping."""
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"train_config.{name} must be >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ConfigError(f"train_config.learning_rate must be > 0, got {self.learning_rate}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError(f"train_config.steps_per_epoch must be >= 1 or null, got {self.steps_per_epoch}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                f"train_config.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"train_config.patience must be >= 1 or null, got {self.patience}")

    def _validate_split(self) -> None:
        """Folds or an explicit split, and the classes."""
        if self.n_folds < 2:
            raise ConfigError(f"train_config.n_folds must be >= 2, got {self.n_folds}")
        if not 0 <= self.fold < self.n_folds:
            raise ConfigError(f"train_config.fold must be in 0..{self.n_folds - 1}, got {self.fold}")
        if self.n_val < 1 or (self.n_test is not None and self.n_test < 1):
            raise ConfigError(f"train_config.n_val and n_test must be >= 1, got {self.n_val} and {self.n_test}")
        if not self.classes:
            raise ConfigError("train_config.classes: give at least one class")
        if self.val_samples is not None and self.train_samples is None:
            raise ConfigError("train_config.val_samples needs train_samples too (an explicit split)")
        if self.test_samples is not None and self.val_samples is None:
            raise ConfigError("train_config.test_samples needs val_samples and train_samples (an explicit split)")

    def _validate_options(self) -> None:
        """Precision, augmentation, best-epoch rule, marker panels."""
        if self.precision not in POLICIES:
            raise ConfigError(f"train_config.precision must be one of {', '.join(POLICIES)}, got {self.precision!r}")
        if not self.intensity_augment >= 0:
            raise ConfigError(f"train_config.intensity_augment must be >= 0, got {self.intensity_augment}")
        if self.select_on not in SELECT_ON:
            raise ConfigError(f"train_config.select_on must be one of {', '.join(SELECT_ON)}, got {self.select_on!r}")
        for sample, markers in (self.marker_panels or {}).items():
            if not markers:
                raise ConfigError(f"train_config.marker_panels: sample {sample!r} keeps no marker")


def train_config(preset: str = "paper", **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from the schedule of a preset (:data:`marker_excite.presets.PRESETS`) with
    ``overrides`` applied."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown training preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values = dict(PRESETS[preset].schedule, preset=preset)
    values.update(overrides)
    cfg = TrainConfig(**values)
    cfg.validate()
    return cfg


def recipe_values(recipe: str, model: str) -> dict[str, Any]:
    """The :class:`TrainConfig` values of training recipe ``recipe`` (:data:`marker_excite.presets.RECIPES`)
    for zoo model ``model``: a UB network is used on its own markers only, so it keeps the best epoch on
    all of them."""
    if recipe not in RECIPES:
        raise ConfigError(f"unknown training recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    values = dict(RECIPES[recipe].values)
    if model == "UB":
        values.pop("select_on", None)
    return values


def preset_configs(
    model: str | ModelConfig,
    preset: str,
    *,
    schedule: str | None = None,
    markers: Sequence[str] = PAPER_MARKERS,
    classes: Sequence[str] = ("sinusoids",),
    seed: int | None = None,
    recipe: str | None = None,
    model_overrides: Mapping[str, Any] | None = None,
    **train_values: Any,
) -> tuple[ModelConfig, TrainConfig]:
    """The configs of a run at a preset (:data:`marker_excite.presets.PRESETS`): the one place where a
    preset becomes configs (``train`` and the experiments' jobs).

    Args:
        model: a zoo name (built at the preset's network size for ``markers`` and ``classes``, with
            ``model_overrides``), or a :class:`ModelConfig` used as it is (e.g. read from a file).
        preset: the network size, and the schedule unless ``schedule`` names another preset's.
        seed: the seed of all of a training's randomness: ``ModelConfig.seed`` (initial weights, Marker
            Sampling draws) and ``TrainConfig.seed`` (data order); None: their defaults.
        recipe: a training recipe (:func:`recipe_values`) under the ``train_values``.
        train_values: further :class:`TrainConfig` values (``fold``, ``epochs`` ...); its ``classes`` are
            the model's.
    """
    from marker_excite.models.zoo import model_config  # imports keras

    model_values = {**(model_overrides or {}), **({} if seed is None else {"seed": seed})}
    if isinstance(model, str):
        mcfg = model_config(model, preset=preset, markers=markers, classes=classes, **model_values)
    else:
        mcfg = dataclasses.replace(model, **model_values)
    values = recipe_values(recipe, mcfg.name) if recipe else {}
    values |= train_values | ({} if seed is None else {"seed": seed})
    return mcfg, train_config(schedule or preset, classes=tuple(mcfg.classes), **values)


@dataclass
class Run:
    """A trained run read back from its directory (see :func:`load_run`).

    Attributes:
        run_dir: the directory.
        model_config, train_config: the stored configs.
        store_path: the sample store it was trained on.
        fold: the train / validation / test samples.
        model: the Keras model with the BEST (or requested) weights loaded.
        history: rows of ``log.csv`` (one dict per epoch).
        class_weights: the loss weights used (background first).
        spacing: the voxel size (z, y, x) in µm it was trained at (median of the training samples), or None.
        versions: the software it was trained with (``versions.json``), or None.
        markers_seen: the markers of the panel that some training sample had (None: not recorded, runs
            made before this was recorded).
        weights: which weights ``model`` holds: ``best`` (best validation epoch) or ``last``.
    """

    run_dir: Path
    model_config: Any
    train_config: TrainConfig
    store_path: Path
    fold: Fold
    model: Any
    history: list[dict[str, Any]] = field(default_factory=list)
    class_weights: tuple[float, ...] = ()
    spacing: tuple[float, float, float] | None = None
    versions: dict[str, Any] | None = None
    markers_seen: tuple[str, ...] | None = None
    weights: str = "best"

    @property
    def name(self) -> str:
        """The zoo name of the model (``MS-ME`` ...)."""
        return str(self.model_config.name)

    @property
    def best_epoch(self) -> int | None:
        """The epoch with the highest validation mean F1 (None before the first epoch)."""
        if not self.history:
            return None
        return int(max(self.history, key=lambda r: (float(r["val_mean_f1"]), -int(r["epoch"])))["epoch"])

    @property
    def provenance(self) -> Provenance:
        """Where the model came from: split, samples, markers seen (all of the panel when not recorded),
        epochs, best validation scores, settings and ``versions`` (not exported: no ``exported_with``)."""
        best = self.best_epoch
        best_row = next((r for r in self.history if int(r["epoch"]) == best), None) if best is not None else None
        tc = self.train_config
        return Provenance(
            run=str(Path(self.run_dir).resolve()),
            store=str(self.store_path),
            split="explicit" if tc.val_samples is not None else "folds",
            fold=int(tc.fold),
            n_folds=int(tc.n_folds),
            samples={"train": self.fold.train, "val": self.fold.val, "test": self.fold.test},
            marker_panels=dict(tc.marker_panels or {}),
            markers_seen=self.markers_seen if self.markers_seen is not None else tuple(self.model_config.markers),
            epochs=len(self.history),
            epochs_planned=int(tc.epochs),
            best_epoch=best,
            weights=self.weights,
            weights_epoch=best if self.weights == "best" else len(self.history),
            best_val_mean_f1=float(best_row["val_mean_f1"]) if best_row else None,
            best_val_f1={k[len("val_f1_") :]: float(v) for k, v in (best_row or {}).items() if k.startswith("val_f1_")},
            batch_size=int(tc.batch_size),
            learning_rate=float(tc.learning_rate),
            seed=int(tc.seed),
            precision=tc.precision,
            trained_with=self.versions,
        )

    @property
    def spec(self) -> ModelSpec:
        """The model's contract (panel, classes, tiles, the voxel size it was trained at) and provenance."""
        return ModelSpec.from_config(self.model_config, self.spacing, self.provenance)

    def exported_spec(self) -> ModelSpec:
        """:attr:`spec` as an export records it: ``exported_with`` the running software (``versions()``)."""
        spec = self.spec
        return dataclasses.replace(
            spec, provenance=dataclasses.replace(spec.provenance, exported_with=environment.versions())
        )


def load_run(run_dir: str | os.PathLike, *, weights: str = "best", model=None) -> Run:
    """Read a run directory: configs, fold, history and the model with its ``best`` (or ``last``) weights.

    The reader of a run directory for training (resume, ``init_from``), evaluation and export. A Run
    is not an inference model: inference obtains one from a run directory (or an exported model)
    through :func:`marker_excite.inference.predictor.load_predictor`.
    ``model`` may pass an already built model of this run (its weights are replaced).
    Raises :class:`~marker_excite.runs.directory.RunDirError` (a UserInputError) naming the missing or
    corrupt file.
    """
    from marker_excite.models.zoo import ModelConfig, build_model  # imports keras

    path = Path(run_dir)
    if not path.is_dir():
        raise rd.RunDirError(f"run directory {path} does not exist")
    if not rd.is_run_dir(path):
        raise rd.RunDirError(f"{path} is not a run directory (no {rd.MODEL_CONFIG})")
    if weights not in ("best", "last"):
        raise UserInputError(f"weights must be 'best' or 'last', got {weights!r}")
    try:
        model_config = ModelConfig.from_dict(rd.read_json(path / rd.MODEL_CONFIG, "model config"))
        cfg = TrainConfig.from_dict(rd.read_json(path / rd.TRAIN_CONFIG, "training config"))
    except ConfigError as exc:
        raise rd.RunDirError(f"{path}: {exc}") from None
    data = rd.read_json(path / rd.DATA_CONFIG, "data config")
    try:
        fold = Fold(
            train=tuple(data["fold"]["train"]), val=tuple(data["fold"]["val"]), test=tuple(data["fold"]["test"])
        )
        store_path = Path(data["store"])
    except (KeyError, TypeError) as exc:
        raise rd.RunDirError(f"{path / rd.DATA_CONFIG} is corrupt: missing {exc}") from None
    if model is None:
        model = build_model(model_config)
    load_weights(model, path / (rd.BEST_WEIGHTS if weights == "best" else rd.LAST_WEIGHTS))
    return Run(
        run_dir=path,
        model_config=model_config,
        train_config=cfg,
        store_path=store_path,
        fold=fold,
        model=model,
        history=read_log(path / rd.LOG),
        class_weights=tuple(float(w) for w in data.get("class_weights", ())),
        spacing=tuple(float(s) for s in data["spacing"]) if data.get("spacing") else None,  # type: ignore[arg-type]
        versions=rd.read_json(path / rd.VERSIONS, "versions") if (path / rd.VERSIONS).is_file() else None,
        markers_seen=tuple(data["markers_seen"]) if isinstance(data.get("markers_seen"), list) else None,
        weights=weights,
    )
