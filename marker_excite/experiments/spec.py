"""Experiment specification: presets, marker subsets and Cases, jobs, analyses, experiments (pure Python)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from marker_excite import presets
from marker_excite.contract.markers import PAPER_MARKERS, PAPER_PANEL, Subset
from marker_excite.errors import UserInputError
from marker_excite.models.precision import DEFAULT_PRECISION, POLICIES
from marker_excite.runs.run import preset_configs

if TYPE_CHECKING:
    from marker_excite.models.config import ModelConfig
    from marker_excite.runs.run import TrainConfig

EVALUATION_CSV = "evaluation.csv"
RESULTS_CSV = "results.csv"
RELATIVE_CSV = "relative.csv"
STATS_JSON = "stats.json"
FIGURES = "figures"
RUNS = "runs"


class ExperimentError(UserInputError):
    """An experiment definition or option that cannot be honoured (unknown model, class, fold, shard...)."""


# ---------------------------------------------------------------------------------------------------
# presets
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """The scale of an experiment.

    Attributes:
        name: ``paper`` / ``small`` / ``cpu`` (or a custom name).
        zoo_preset: the preset (:data:`marker_excite.presets.PRESETS`) of the network size.
        train_preset: the preset of the training schedule.
        phantom: the preset of the phantom generated when no store is given.
        epochs, batch_size: training schedule.
        n_folds: folds of the cross-validation split; ``folds``: the folds run by default.
        classes: classes run by default (each trained as its own model, as in the paper).
        augment: flips / rotations during training (off: the paper's protocol has none).
        seed: the seed of every job's training (``ModelConfig.seed``: initial weights, Marker Sampling
            draws; ``TrainConfig.seed``: data order); the data design (folds, the Case
            tables of Fig. 4, the Table 1 subsets) does not depend on it, so runs with another seed are
            replicates of the same experiment.
        model_overrides: extra :class:`ModelConfig` fields (e.g. a tiny network for tests).
        precision: ``TrainConfig.precision`` of every job (``fp32``, ``bf16``, ``fp16``).
        train_samples, val_samples, test_samples: an explicit split of named samples instead of the
            folds (``compare --val/--test``; :class:`~marker_excite.runs.run.TrainConfig` fields of the same
            names); None: the ``n_folds`` folds.
    """

    name: str
    zoo_preset: str
    train_preset: str
    phantom: str
    epochs: int
    batch_size: int
    n_folds: int = 4
    folds: tuple[int, ...] = (0, 1, 2, 3)
    classes: tuple[str, ...] = ("sinusoids", "arteries")
    augment: bool = False
    seed: int = 0
    model_overrides: Mapping[str, Any] = field(default_factory=dict)
    precision: str = DEFAULT_PRECISION
    train_samples: tuple[str, ...] | None = None
    val_samples: tuple[str, ...] | None = None
    test_samples: tuple[str, ...] | None = None

    def replace(self, **changes: Any) -> Preset:
        return dataclasses.replace(self, **changes)

    def overridden(self, *, epochs: int | None = None, seed: int | None = None, precision: str | None = None) -> Preset:
        """This preset with the command line's ``--epochs`` / ``--seed`` / ``--precision`` (None: keep),
        checked (one :class:`ExperimentError` line naming the bad value)."""
        p = self
        if epochs is not None:
            if epochs < 1:
                raise ExperimentError(f"epochs must be >= 1, got {epochs}")
            p = p.replace(epochs=int(epochs))
        if seed is not None:
            if seed < 0:
                raise ExperimentError(f"seed must be >= 0, got {seed}")
            p = p.replace(seed=int(seed))
        if precision is not None:
            if precision not in POLICIES:
                raise ExperimentError(f"precision must be one of {', '.join(POLICIES)}, got {precision!r}")
            p = p.replace(precision=precision)
        return p


#: The experiment at each preset of :data:`marker_excite.presets.PRESETS`: its network, schedule and phantom
#: (``paper``: the paper's setting on a GPU; ``small``: a quick CPU-sized check of one fold and class;
#: ``cpu``: the CPU reproduction protocol, converged small networks, see experiments/README.md).
PRESETS: dict[str, Preset] = {
    name: Preset(
        name,
        zoo_preset=name,
        train_preset=name,
        phantom=name,
        epochs=scale.schedule["epochs"],
        batch_size=scale.schedule["batch_size"],
        **scale.experiment,
    )
    for name, scale in presets.PRESETS.items()
}


def preset(name: str | Preset) -> Preset:
    """The :class:`Preset` called ``name`` (a Preset is returned as is)."""
    if isinstance(name, Preset):
        return name
    if name not in PRESETS:
        raise ExperimentError(f"unknown experiment preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


# ---------------------------------------------------------------------------------------------------
# marker subsets and the heterogeneous Cases (Fig. 4)
# ---------------------------------------------------------------------------------------------------
def all_subsets() -> list[Subset]:
    """All 31 non-empty subsets of the paper's markers, in :meth:`MarkerPanel.all_subsets` order."""
    return PAPER_PANEL.all_subsets()


def _table(*labels: str) -> tuple[Subset, ...]:
    return tuple(PAPER_PANEL.parse_subset(label) for label in labels)


#: Training-panel tables of Fig. 4, one row (a subset of the paper panel) per training sample s1..s5.
#: RECONSTRUCTED from the text (the figure's table is not in it); see experiments/README.md.
CASES: dict[str, tuple[Subset, ...]] = {
    # Cases 1-4: a fixed number of markers per sample, a different combination per sample
    "case1": _table("m_1", "m_2", "m_3", "m_4", "m_5"),
    "case2": _table("m_12", "m_23", "m_34", "m_45", "m_15"),
    # m_23 is trainable only with s1 or s2 (as the text says of Case 3)
    "case3": _table("m_123", "m_234", "m_345", "m_145", "m_125"),
    "case4": _table("m_2345", "m_1345", "m_1245", "m_1235", "m_1234"),
    # Case 5: two staining protocols (DAPI+endomucin+collagen, DAPI+endoglin+CXCL12-GFP)
    "case5": _table("m_124", "m_124", "m_124", "m_135", "m_135"),
    # Case 6: samples from different studies with varied panels
    "case6": _table("m_1245", "m_134", "m_23", "m_15", "m_4"),
}


def m_ub(table: Sequence[Subset]) -> list[Subset]:
    """M^UB: the subsets a conventional network can be trained on (contained in some sample's panel)."""
    return [s for s in all_subsets() if any(s <= row for row in table)]


def m_total(table: Sequence[Subset]) -> list[Subset]:
    """M^total: every subset of the union of the training panels (what MS / MS-ME can be applied to)."""
    union = set().union(*(row.indices for row in table))
    return [s for s in all_subsets() if set(s.indices) <= union]


def ub_ratio(table: Sequence[Subset]) -> tuple[int, int, float]:
    """``(|M^UB|, |M^total|, |M^UB| / |M^total|)`` of a training-panel table."""
    n_ub, n_total = len(m_ub(table)), len(m_total(table))
    return n_ub, n_total, n_ub / n_total


#: Seed of the data design drawn at random (Case table permutations, Table 1 subsets); not a training
#: seed, so seed replicates (``--seed``) keep the same design.
DESIGN_SEED = 0


def shuffled_table(case: str, fold: int) -> tuple[Subset, ...]:
    """The Case table permuted for ``fold`` (the paper shuffles M^train per cross-validation step).

    Deterministic in ``(case, fold)``; fold 0 is also a permutation, not the identity.
    """
    if case not in CASES:
        raise ExperimentError(f"unknown case {case!r}; choose one of {', '.join(CASES)}")
    table = CASES[case]
    rng = np.random.default_rng([DESIGN_SEED, int(fold), list(CASES).index(case)])
    return tuple(table[i] for i in rng.permutation(len(table)))


def assign_panels(table: Sequence[Subset], train_samples: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Training sample -> marker names: the i-th training sample gets row ``i mod len(table)``.

    Only the training samples get a panel: validation and test samples always keep all markers.
    """
    if not train_samples:
        raise ExperimentError("a heterogeneous case needs at least one training sample")
    return {s: table[i % len(table)].names for i, s in enumerate(train_samples)}


# ---------------------------------------------------------------------------------------------------
# jobs
# ---------------------------------------------------------------------------------------------------
def _file_safe(text: str) -> str:
    return text.replace("/", "-").replace(" ", "-")


def _slug(text: str) -> str:
    return _file_safe(text.replace("+", "plus"))


@dataclass(frozen=True)
class Job:
    """One training + evaluation.

    Attributes:
        model: zoo name (``UB``, ``MS-ME``, ``MS-ME-EB`` ...).
        classes: the classes trained together (one for the paper's per-class models).
        fold: cross-validation fold.
        subset: UB only: the marker subset (of the paper panel) the model is trained and evaluated on;
            None = all markers.
        case: heterogeneous Case of Fig. 4 (None: every training sample keeps all markers).
        panels: the Case table for this fold (row i = panel of the fold's i-th training sample). A UB
            job with a Case (the paper's per-Case upper bound) trains only on the fold's training samples
            whose Case panel contains its subset.
        label: the name in results and figures (defaults to ``model``; ``UB-joint`` for the
            two-class UB models of Fig. 1b,f).
        panel: the marker panel of the models that see every marker (the paper's five by default;
            a UB model's markers are its ``subset``'s).
    """

    model: str
    classes: tuple[str, ...]
    fold: int
    subset: Subset | None = None
    case: str | None = None
    panels: tuple[Subset, ...] | None = None
    label: str = ""
    panel: tuple[str, ...] = PAPER_MARKERS

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.model)

    @property
    def job_id(self) -> str:
        """Stable, unique, file-name safe id, e.g. ``UB__m_125__sinusoids__f0``, ``MS-ME__case3__arteries__f2``
        (a UB job of a custom panel: ``UB__cytoplasm+nuclear__cells__f0``, its subset's name).

        It depends only on the job's fields, so the same job in two experiments shares its run.
        """
        parts = [_slug(self.label), _file_safe(self.subset.name) if self.subset else "all"]
        if self.case:
            parts.append(self.case)
        parts += ["-".join(self.classes), f"f{self.fold}"]
        return "__".join(parts)

    @property
    def markers(self) -> tuple[str, ...]:
        """The model's marker vocabulary: the UB subset, else the job's whole panel."""
        return self.subset.names if self.subset else self.panel

    @property
    def eval_subsets(self) -> list[tuple[str, ...]] | None:
        """Subsets to evaluate: a UB model only on its own subset, every other model on all of them."""
        return [self.markers] if self.subset else None

    @property
    def case_upper_bound(self) -> bool:
        """A per-Case UB of Fig. 4: a subset's UNet trained on the samples whose Case panel contains it."""
        return self.subset is not None and self.panels is not None

    def marker_panels(self, train_samples: Sequence[str]) -> dict[str, tuple[str, ...]] | None:
        """Per-sample training panels of this fold (None when every sample keeps all markers)."""
        return assign_panels(self.panels, train_samples) if self.panels and not self.case_upper_bound else None

    def case_train_samples(self, train_samples: Sequence[str]) -> tuple[str, ...] | None:
        """Per-Case UB: the fold's training samples whose Case panel contains the subset (else None).

        "the marker combination m_23 in Case 3 is only trainable using samples s1 or s2"."""
        if not self.case_upper_bound:
            return None
        wanted = set(self.markers)
        chosen = tuple(s for s, names in assign_panels(self.panels, train_samples).items() if wanted <= set(names))
        if not chosen:
            raise ExperimentError(
                f"{self.job_id}: no training sample of the Case has all markers of {self.subset.label}"
            )
        return chosen

    def configs(self, p: Preset, train_samples: Sequence[str] | None = None) -> tuple[ModelConfig, TrainConfig]:
        """The model and training configs at preset ``p`` (:func:`~marker_excite.runs.run.preset_configs`).

        ``train_samples`` (the fold's training samples) assigns the Case panels (or, for a per-Case UB,
        the samples it trains on); without it neither is set (used to find the fold first, see
        :func:`run_job`).
        """
        return preset_configs(
            self.model,
            p.zoo_preset,
            schedule=p.train_preset,
            markers=self.markers,
            classes=self.classes,
            seed=p.seed,
            model_overrides=p.model_overrides,
            epochs=p.epochs,
            batch_size=p.batch_size,
            augment=p.augment,
            precision=p.precision,
            fold=self.fold,
            n_folds=p.n_folds,
            marker_panels=None if train_samples is None else self.marker_panels(train_samples),
            train_samples=(None if train_samples is None else self.case_train_samples(train_samples))
            or p.train_samples,
            val_samples=p.val_samples,
            test_samples=p.test_samples,
        )

    def model_config(self, p: Preset) -> ModelConfig:
        """The :class:`~marker_excite.models.config.ModelConfig` at preset ``p``."""
        return self.configs(p)[0]

    def train_config(self, p: Preset, train_samples: Sequence[str] | None = None) -> TrainConfig:
        """The :class:`~marker_excite.runs.run.TrainConfig` at preset ``p`` (``train_samples``: see :meth:`configs`)."""
        return self.configs(p, train_samples)[1]


# ---------------------------------------------------------------------------------------------------
# analyses (what aggregate() draws and tests)
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ranking:
    """Subsets of one model ranked by mean F1 over folds (Fig. 1c,g)."""

    name: str
    model: str = "UB"


@dataclass(frozen=True)
class Group:
    """Subsets holding ``all_of``, at least one of ``any_of`` and none of ``none_of`` (each optional).

    The three are subsets of the paper panel, given as :class:`~marker_excite.contract.markers.Subset` or by label
    (``Group("m2 or m3", any_of="m_23")``).
    """

    label: str
    all_of: Subset | None = None
    any_of: Subset | None = None
    none_of: Subset | None = None

    def __post_init__(self) -> None:
        for name in ("all_of", "any_of", "none_of"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, PAPER_PANEL.parse_subset(value))

    def contains(self, subset: Subset | str) -> bool:
        """Whether ``subset`` (a Subset of the paper panel or its label, e.g. ``m_125``) is in the group."""
        s = set(subset if isinstance(subset, Subset) else PAPER_PANEL.parse_subset(subset))
        return (
            (self.all_of is None or set(self.all_of) <= s)
            and (self.any_of is None or bool(s & set(self.any_of)))
            and (self.none_of is None or not s & set(self.none_of))
        )


@dataclass(frozen=True)
class GroupTest:
    """Two groups of subsets of one model and class compared with the Mann-Whitney U test (Fig. 1d,e,h,i)."""

    name: str
    cls: str
    groups: tuple[Group, Group]
    model: str = "UB"


@dataclass(frozen=True)
class Relative:
    """``Q_model - Q_reference`` per (class, subset, fold), paired Wilcoxon tests (Figs. 1b,f, 2, 3, 4).

    ``case`` selects the models' rows of one heterogeneous Case; ``ub_only`` keeps only the subsets
    of that Case's M^UB (the reference UB exists only there); ``reference_case`` selects the reference's
    rows of a Case (the per-Case UB) instead of the homogeneous ones.
    """

    name: str
    models: tuple[str, ...]
    reference: str
    case: str | None = None
    ub_only: bool = False
    reference_case: str = ""


Analysis = Ranking | GroupTest | Relative


@dataclass(frozen=True)
class Experiment:
    """A named list of jobs at a preset, with the analyses that summarise them.

    ``external`` names reference models whose results come from another experiment's output folder
    (``UB`` from ``fig1_upper_bound`` for Figs. 3e and 4): ``aggregate(..., external={"UB": path})``.
    """

    name: str
    preset: Preset
    jobs: tuple[Job, ...]
    analyses: tuple[Analysis, ...] = ()
    external: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        ids = [j.job_id for j in self.jobs]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ExperimentError(f"experiment {self.name}: duplicate job id(s) {', '.join(dup)}")

    def shard(self, index: int, count: int) -> list[Job]:
        """The jobs of shard ``index`` of ``count`` (1-based): every ``count``-th job from ``index``."""
        if count < 1 or not 1 <= index <= count:
            raise ExperimentError(f"shard must be i/n with 1 <= i <= n, got {index}/{count}")
        return list(self.jobs[index - 1 :: count])


def parse_shard(text: str) -> tuple[int, int]:
    """``'2/4'`` -> ``(2, 4)``; raises :class:`ExperimentError` for anything else."""
    try:
        i, n = (int(p) for p in str(text).split("/"))
    except ValueError:
        raise ExperimentError(f"--shard must look like 2/4 (shard 2 of 4), got {text!r}") from None
    if n < 1 or not 1 <= i <= n:
        raise ExperimentError(f"--shard {text}: need 1 <= i <= n")
    return i, n
