"""The paper's experiments as data: job lists, sharding, resumable execution and aggregation.

An :class:`Experiment` is a list of :class:`Job` s (one training + evaluation each) plus the
:class:`Analysis` items that turn their results into the paper's figures and tests. Building, listing and
sharding jobs is pure Python (TensorFlow is imported only to validate user-given model names and to
run jobs), so job lists can be inspected, counted and sharded anywhere.

* :func:`experiment` builds one of :data:`EXPERIMENTS` (``fig1_upper_bound`` ... ``table1_quantification``)
  at a :data:`PRESETS` size (``paper``: GPU, the paper's schedule; ``small``: CPU, minutes).
* :func:`run_jobs` trains each job into ``out/runs/<job_id>/`` (``training.train``) and evaluates it
  (``evaluation.evaluate_run``) into ``out/runs/<job_id>/evaluation.csv``. A job whose
  ``evaluation.csv`` exists is skipped; a job interrupted mid-training resumes from its last epoch.
  ``shard=(i, n)`` runs every n-th job starting at the i-th (1-based), so n machines split the work.
* :func:`aggregate` collects all ``evaluation.csv`` into one tidy ``results.csv``, draws the figures
  (``plots.py``) and writes ``stats.json`` (Wilcoxon signed-rank paired by (class, subset, fold),
  Mann-Whitney U for groups of subsets, significance stars; ``stats.py``).

Heterogeneous training panels (Fig. 4, Cases 1-6) are reconstructed from the paper's text; see
:data:`CASES` and ``experiments/README.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from marker_excite.atomic import write_json
from marker_excite.errors import UserInputError
from marker_excite.markers import PAPER_MARKERS, MarkerPanel

PAPER_PANEL = MarkerPanel(PAPER_MARKERS)
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
        name: ``paper`` / ``small`` (or a custom name).
        zoo_preset: model size preset of :func:`marker_excite.models.zoo.model_config`.
        train_preset: schedule preset of :func:`marker_excite.training.train_config`.
        phantom: preset of :func:`marker_excite.data.synthetic.write_dataset` used when no store is given.
        epochs, batch_size: training schedule.
        n_folds: folds of the cross-validation split; ``folds``: the folds run by default.
        classes: classes run by default (each trained as its own model, as in the paper).
        augment: flips / rotations during training.
        seed: training seed (weights, data order, Marker Sampling).
        model_overrides: extra :class:`ModelConfig` fields (e.g. a tiny network for tests).
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
    augment: bool = True
    seed: int = 0
    model_overrides: Mapping[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> "Preset":
        return dataclasses.replace(self, **changes)


#: ``paper``: the paper's setting (GPU). ``small``: a CPU-sized version (see experiments/README.md).
PRESETS: dict[str, Preset] = {
    "paper": Preset("paper", zoo_preset="paper", train_preset="paper", phantom="paper", epochs=200, batch_size=2),
    "small": Preset(
        "small", zoo_preset="small", train_preset="small", phantom="small", epochs=20, batch_size=8,
        folds=(0,), classes=("sinusoids",),
    ),
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
Subset = tuple[int, ...]  # 1-based marker numbers of the paper panel, sorted: (1, 2, 5) == m_125


def subset_label(subset: Iterable[int]) -> str:
    """``(1, 2, 5)`` -> ``'m_125'`` (1-based numbers of the paper's five markers)."""
    return PAPER_PANEL.subset_label(i - 1 for i in subset)


def parse_label(label: str) -> Subset:
    """``'m_125'`` -> ``(1, 2, 5)``."""
    return tuple(i + 1 for i in PAPER_PANEL.parse_subset(label))


def all_subsets(k: int = len(PAPER_MARKERS)) -> list[Subset]:
    """All 2^k - 1 non-empty subsets of markers 1..k, by size then lexicographically."""
    return [tuple(c) for r in range(1, k + 1) for c in itertools.combinations(range(1, k + 1), r)]


def subset_names(subset: Subset) -> tuple[str, ...]:
    """Marker names of a subset of the paper panel, in panel order."""
    return tuple(PAPER_MARKERS[i - 1] for i in subset)


#: Training-panel tables of Fig. 4, one row (marker numbers) per training sample s1..s5.
#: RECONSTRUCTED from the text (the figure's table is not in it); see experiments/README.md.
CASES: dict[str, tuple[Subset, ...]] = {
    # Cases 1-4: a fixed number of markers per sample, a different combination per sample
    "case1": ((1,), (2,), (3,), (4,), (5,)),
    "case2": ((1, 2), (2, 3), (3, 4), (4, 5), (1, 5)),
    # m_23 is trainable only with s1 or s2 (as the text says of Case 3)
    "case3": ((1, 2, 3), (2, 3, 4), (3, 4, 5), (1, 4, 5), (1, 2, 5)),
    "case4": ((2, 3, 4, 5), (1, 3, 4, 5), (1, 2, 4, 5), (1, 2, 3, 5), (1, 2, 3, 4)),
    # Case 5: two staining protocols (DAPI+endomucin+collagen, DAPI+endoglin+CXCL12-GFP)
    "case5": ((1, 2, 4), (1, 2, 4), (1, 2, 4), (1, 3, 5), (1, 3, 5)),
    # Case 6: samples from different studies with varied panels
    "case6": ((1, 2, 4, 5), (1, 3, 4), (2, 3), (1, 5), (4,)),
}


def m_ub(table: Sequence[Subset]) -> list[Subset]:
    """M^UB: the subsets a conventional network can be trained on (contained in some sample's panel)."""
    return [s for s in all_subsets() if any(set(s) <= set(row) for row in table)]


def m_total(table: Sequence[Subset]) -> list[Subset]:
    """M^total: every subset of the union of the training panels (what MS / MS-ME can be applied to)."""
    union = set().union(*(set(row) for row in table))
    return [s for s in all_subsets() if set(s) <= union]


def ub_ratio(table: Sequence[Subset]) -> tuple[int, int, float]:
    """``(|M^UB|, |M^total|, |M^UB| / |M^total|)`` of a training-panel table."""
    n_ub, n_total = len(m_ub(table)), len(m_total(table))
    return n_ub, n_total, n_ub / n_total


def shuffled_table(case: str, fold: int, seed: int = 0) -> tuple[Subset, ...]:
    """The Case table permuted for ``fold`` (the paper shuffles M^train per cross-validation step).

    Deterministic in ``(case, fold, seed)``; fold 0 of seed 0 is also a permutation, not the identity.
    """
    if case not in CASES:
        raise ExperimentError(f"unknown case {case!r}; choose one of {', '.join(CASES)}")
    table = CASES[case]
    rng = np.random.default_rng([int(seed), int(fold), list(CASES).index(case)])
    return tuple(table[i] for i in rng.permutation(len(table)))


def assign_panels(table: Sequence[Subset], train_samples: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Training sample -> marker names: the i-th training sample gets row ``i mod len(table)``.

    Only the training samples get a panel: validation and test samples always keep all markers.
    """
    if not train_samples:
        raise ExperimentError("a heterogeneous case needs at least one training sample")
    return {s: subset_names(table[i % len(table)]) for i, s in enumerate(train_samples)}


# ---------------------------------------------------------------------------------------------------
# jobs
# ---------------------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return text.replace("+", "plus").replace("/", "-").replace(" ", "-")


@dataclass(frozen=True)
class Job:
    """One training + evaluation.

    Attributes:
        model: zoo name (``UB``, ``MS-ME``, ``MS-ME-EB`` ...).
        classes: the classes trained together (one for the paper's per-class models).
        fold: cross-validation fold.
        subset: UB only: the marker subset the model is trained and evaluated on; None = all markers.
        case: heterogeneous Case of Fig. 4 (None: every training sample keeps all markers).
        panels: the Case table for this fold (row i = panel of the fold's i-th training sample).
        label: the name in results and figures (defaults to ``model``; ``UB-joint`` for the
            two-class UB models of Fig. 1b,f).
    """

    model: str
    classes: tuple[str, ...]
    fold: int
    subset: Subset | None = None
    case: str | None = None
    panels: tuple[Subset, ...] | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.model)

    @property
    def job_id(self) -> str:
        """Stable, unique, file-name safe id, e.g. ``UB__m_125__sinusoids__f0``, ``MS-ME__case3__arteries__f2``.

        It depends only on the job's fields, so the same job in two experiments shares its run.
        """
        parts = [_slug(self.label), subset_label(self.subset) if self.subset else "all"]
        if self.case:
            parts.append(self.case)
        parts += ["-".join(self.classes), f"f{self.fold}"]
        return "__".join(parts)

    @property
    def markers(self) -> tuple[str, ...]:
        """The model's marker vocabulary: the UB subset, else the whole paper panel."""
        return subset_names(self.subset) if self.subset else PAPER_MARKERS

    @property
    def eval_subsets(self) -> list[tuple[str, ...]] | None:
        """Subsets to evaluate: a UB model only on its own subset, every other model on all of them."""
        return [self.markers] if self.subset else None

    def marker_panels(self, train_samples: Sequence[str]) -> dict[str, tuple[str, ...]] | None:
        """Per-sample training panels of this fold (None when every sample keeps all markers)."""
        return assign_panels(self.panels, train_samples) if self.panels else None

    def model_config(self, p: Preset):
        """The :class:`~marker_excite.models.zoo.ModelConfig` at preset ``p``."""
        from marker_excite.models.zoo import model_config

        return model_config(self.model, preset=p.zoo_preset, markers=self.markers, classes=self.classes,
                            **dict(p.model_overrides))

    def train_config(self, p: Preset, train_samples: Sequence[str] | None = None):
        """The :class:`~marker_excite.training.TrainConfig` at preset ``p``.

        ``train_samples`` (the fold's training samples) assigns the Case panels; without it no panel
        is set (used to find the fold first, see :func:`run_job`).
        """
        from marker_excite.training import train_config

        return train_config(
            p.train_preset, epochs=p.epochs, batch_size=p.batch_size, augment=p.augment, seed=p.seed,
            fold=self.fold, n_folds=p.n_folds, classes=self.classes,
            marker_panels=None if train_samples is None else self.marker_panels(train_samples),
        )


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
    """Subsets holding ``all_of``, at least one of ``any_of`` (if given) and none of ``none_of``."""

    label: str
    all_of: Subset = ()
    any_of: Subset = ()
    none_of: Subset = ()

    def contains(self, subset: str) -> bool:
        s = set(parse_label(subset))
        return (set(self.all_of) <= s and (not self.any_of or bool(s & set(self.any_of)))
                and not s & set(self.none_of))


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
    of that Case's M^UB (the reference UB exists only there).
    """

    name: str
    models: tuple[str, ...]
    reference: str
    case: str | None = None
    ub_only: bool = False


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
        return list(self.jobs[index - 1::count])


def parse_shard(text: str) -> tuple[int, int]:
    """``'2/4'`` -> ``(2, 4)``; raises :class:`ExperimentError` for anything else."""
    try:
        i, n = (int(p) for p in str(text).split("/"))
    except ValueError:
        raise ExperimentError(f"--shard must look like 2/4 (shard 2 of 4), got {text!r}") from None
    if n < 1 or not 1 <= i <= n:
        raise ExperimentError(f"--shard {text}: need 1 <= i <= n")
    return i, n


# ---------------------------------------------------------------------------------------------------
# the paper's experiments
# ---------------------------------------------------------------------------------------------------
#: ME placement ablations of Fig. 3f,g run by default (MS-ME itself is E+B+D).
DEFAULT_ABLATIONS: tuple[str, ...] = (
    "MS-ME-I", "MS-ME-E", "MS-ME-B", "MS-ME-D", "MS-ME-EB", "MS-ME-ED", "MS-ME-BD", "MS-ME-IEBD",
)

_SINUSOID_GROUPS = (
    GroupTest("fig1d", "sinusoids", (Group("M2s: m2 or m3", any_of=(2, 3)), Group("M1s: no m2, m3", none_of=(2, 3)))),
    GroupTest("fig1e", "sinusoids", (Group("M1Bs: m4, no m2, m3", all_of=(4,), none_of=(2, 3)),
                                     Group("M1As: no m2, m3, m4", none_of=(2, 3, 4)))),
)
_ARTERY_GROUPS = (
    GroupTest("fig1h", "arteries", (Group("M2a: m4", all_of=(4,)), Group("M1a: no m4", none_of=(4,)))),
    GroupTest("fig1i", "arteries", (Group("M2Ba: m4 and m2", all_of=(2, 4)), Group("M2Aa: m4, no m2", all_of=(4,), none_of=(2,)))),
)
#: Marker groups M2 used for Table 1 (subsets with m2 or m3 for sinusoids, with m4 for arteries).
M2_GROUPS: dict[str, Group] = {"sinusoids": _SINUSOID_GROUPS[0].groups[0], "arteries": _ARTERY_GROUPS[0].groups[0]}


def _check_models(models: Sequence[str] | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """``default`` when no models are given, else the given names in zoo spelling (validated)."""
    if not models:
        return default
    from marker_excite.models.zoo import canonical_name  # imports keras: only for user-given names

    return tuple(canonical_name(m) for m in models)


def _jobs(models: Sequence[str], classes: Sequence[str], folds: Sequence[int], **kw: Any) -> list[Job]:
    return [Job(m, (c,), f, **kw) for f in folds for c in classes for m in models]


def fig1_upper_bound(p: Preset, classes: Sequence[str], folds: Sequence[int], *, joint: bool = True, **_: Any) -> Experiment:
    """Fig. 1: one UB UNet per marker subset, class and fold (+ two-class UB models for Fig. 1b,f)."""
    jobs = [Job("UB", (c,), f, subset=s) for f in folds for c in classes for s in all_subsets()]
    analyses: list[Analysis] = [Ranking("fig1cg")]
    analyses += [g for g in _SINUSOID_GROUPS + _ARTERY_GROUPS if g.cls in classes]
    if joint and len(classes) > 1:
        jobs += [Job("UB", tuple(classes), f, subset=s, label="UB-joint") for f in folds for s in all_subsets()]
        analyses.append(Relative("fig1bf", ("UB-joint",), "UB"))
    return Experiment("fig1_upper_bound", p, tuple(jobs), tuple(analyses))


def fig2_sampling(p: Preset, classes: Sequence[str], folds: Sequence[int], *, models: Sequence[str] | None = None,
                  **_: Any) -> Experiment:
    """Fig. 2: MZ and MS relative to HeMIS (2b); HeMIS-MS, MS-DO, MS-VR relative to MS (2c)."""
    models = _check_models(models, ("HeMIS", "MZ", "MS", "HeMIS-MS", "MS-DO", "MS-VR"))
    analyses = _relatives(models, [("fig2b", ("MZ", "MS"), "HeMIS"), ("fig2c", ("HeMIS-MS", "MS-DO", "MS-VR"), "MS")])
    return Experiment("fig2_sampling", p, tuple(_jobs(models, classes, folds)), analyses)


def fig3_attention(p: Preset, classes: Sequence[str], folds: Sequence[int], *, models: Sequence[str] | None = None,
                   ablations: Sequence[str] = DEFAULT_ABLATIONS, **_: Any) -> Experiment:
    """Fig. 3: MS-SE, MS-ME vs MS (3c), MS-ME vs MS+ (3d), MS-ME vs UB (3e), ME placement ablations (3f,g)."""
    models = _check_models(models, ("MS", "MS-SE", "MS-ME", "MS+", *ablations))
    abl = tuple(m for m in models if m.startswith("MS-ME-"))
    analyses = _relatives(models + ("UB",), [
        ("fig3c", ("MS-SE", "MS-ME"), "MS"), ("fig3d", ("MS-ME",), "MS+"), ("fig3e", ("MS-ME",), "UB"),
        ("fig3fg", abl, "MS-ME"),
    ])
    return Experiment("fig3_attention", p, tuple(_jobs(models, classes, folds)), analyses, external=("UB",))


def fig4_heterogeneous(p: Preset, classes: Sequence[str], folds: Sequence[int], *, models: Sequence[str] | None = None,
                       cases: Sequence[str] | None = None, **_: Any) -> Experiment:
    """Fig. 4: MZ, MS, MS-ME trained with the heterogeneous panels of Cases 1-6, relative to UB on M^UB.

    The UB reference is the Fig. 1 UB of each subset (``external``), compared only on the Case's
    M^UB (the subsets a conventional UNet could be trained on with that Case's data).
    """
    models = _check_models(models, ("MZ", "MS", "MS-ME"))
    cases = list(cases or CASES)
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise ExperimentError(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    jobs = [Job(m, (c,), f, case=case, panels=shuffled_table(case, f, p.seed))
            for case in cases for f in folds for c in classes for m in models]
    analyses = tuple(Relative(f"fig4_{case}", models, "UB", case=case, ub_only=True) for case in cases)
    return Experiment("fig4_heterogeneous", p, tuple(jobs), analyses, external=("UB",))


def table1_quantification(p: Preset, classes: Sequence[str], folds: Sequence[int], **_: Any) -> Experiment:
    """Table 1 / Fig. 5: one MS-ME per class and fold (same job ids as in Fig. 3, so runs are shared)."""
    return Experiment("table1_quantification", p, tuple(_jobs(("MS-ME",), classes, folds)), (Ranking("ranking", "MS-ME"),))


def _relatives(available: Sequence[str], specs: Sequence[tuple[str, tuple[str, ...], str]]) -> tuple[Relative, ...]:
    out = []
    for name, models, ref in specs:
        kept = tuple(m for m in models if m in available)
        if kept and ref in available:
            out.append(Relative(name, kept, ref))
    return tuple(out)


#: Experiment name -> builder ``(preset, classes, folds, **options) -> Experiment``.
EXPERIMENTS: dict[str, Callable[..., Experiment]] = {
    "fig1_upper_bound": fig1_upper_bound,
    "fig2_sampling": fig2_sampling,
    "fig3_attention": fig3_attention,
    "fig4_heterogeneous": fig4_heterogeneous,
    "table1_quantification": table1_quantification,
}


def experiment(
    name: str,
    preset_name: str | Preset = "small",
    *,
    classes: Sequence[str] | None = None,
    folds: Sequence[int] | None = None,
    epochs: int | None = None,
    **options: Any,
) -> Experiment:
    """Build experiment ``name`` at a preset; ``classes`` / ``folds`` / ``epochs`` override the preset.

    ``options`` go to the builder: ``models`` (Figs. 2-4), ``ablations`` (Fig. 3), ``cases`` (Fig. 4),
    ``joint`` (Fig. 1).
    """
    if name not in EXPERIMENTS:
        raise ExperimentError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    p = preset(preset_name)
    if epochs is not None:
        if epochs < 1:
            raise ExperimentError(f"epochs must be >= 1, got {epochs}")
        p = p.replace(epochs=int(epochs))
    classes = tuple(classes or p.classes)
    if not classes or len(set(classes)) != len(classes):
        raise ExperimentError(f"classes must be non-empty and unique, got {list(classes)}")
    folds = tuple(p.folds if folds is None else folds)
    bad = [f for f in folds if not 0 <= f < p.n_folds]
    if not folds or bad:
        raise ExperimentError(f"folds must be in 0..{p.n_folds - 1}, got {list(folds)}")
    return EXPERIMENTS[name](p, classes, folds, **options)


# ---------------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------------
def run_dir(out_dir: str | os.PathLike, job: Job) -> Path:
    """``out_dir/runs/<job_id>``."""
    return Path(out_dir) / RUNS / job.job_id


def is_done(out_dir: str | os.PathLike, job: Job) -> bool:
    """True when the job's ``evaluation.csv`` exists."""
    return (run_dir(out_dir, job) / EVALUATION_CSV).is_file()


def ensure_store(p: Preset, out_dir: str | os.PathLike, store: str | os.PathLike | None = None,
                 *, progress: bool = True) -> Path:
    """The sample store to train on: ``store`` if given (must exist), else ``out_dir/phantom_<phantom>.h5``,
    generated with :func:`marker_excite.data.synthetic.write_dataset` (seed 0) when missing."""
    if store is not None:
        path = Path(store)
        if not path.is_file():
            raise ExperimentError(f"sample store {path} does not exist")
        return path
    path = Path(out_dir) / f"phantom_{p.phantom}.h5"
    if not path.is_file():
        from marker_excite.data.synthetic import write_dataset

        Path(out_dir).mkdir(parents=True, exist_ok=True)
        if progress:
            print(f"generating the {p.phantom!r} phantom -> {path}", file=sys.stderr)
        write_dataset(path, preset=p.phantom, seed=0, progress=progress)
    return path


def fold_train_samples(store_path: str | os.PathLike, train_cfg) -> tuple[str, ...]:
    """The training samples of ``train_cfg``'s fold (the same split ``training.train`` uses)."""
    from marker_excite.data.folds import paper_folds
    from marker_excite.data.store import SampleStore

    with SampleStore(store_path, "r") as store:
        names = store.names()
    folds = paper_folds(names, n_folds=train_cfg.n_folds, n_val=train_cfg.n_val, n_test=train_cfg.n_test,
                        seed=train_cfg.fold_seed)
    return tuple(folds[train_cfg.fold].train)


def run_job(job: Job, p: Preset, out_dir: str | os.PathLike, store_path: str | os.PathLike, *,
            resume: bool = True, train_fn: Callable | None = None, evaluate_fn: Callable | None = None,
            progress: bool = True) -> Path:
    """Train and evaluate one job; returns its ``evaluation.csv`` (see :func:`run_jobs`)."""
    from marker_excite import run_dir as rd
    from marker_excite.evaluation import write_results

    if train_fn is None:
        from marker_excite.training import train as train_fn
    if evaluate_fn is None:
        from marker_excite.evaluation import evaluate_run as evaluate_fn
    path = run_dir(out_dir, job)
    out = path / EVALUATION_CSV
    if resume and out.is_file():
        return out
    train_cfg = job.train_config(p)
    if job.panels:
        train_cfg = job.train_config(p, fold_train_samples(store_path, train_cfg))
    run = train_fn(path, job.model_config(p), train_cfg, store_path,
                   resume=resume and rd.is_run_dir(path), overwrite=not resume, progress=progress)
    rows = evaluate_fn(run, store_path, subsets=job.eval_subsets, progress=progress)
    tagged = [{**r, "model": job.label, "job": job.job_id, "case": job.case or ""} for r in rows]
    return write_results(tagged, out)


def check_settings(job: Job, p: Preset, out_dir: str | os.PathLike) -> None:
    """Raise :class:`ExperimentError` when a finished job's stored configs differ from what ``p`` asks
    (e.g. another ``--epochs``), so old results are never silently reused. Fields that depend on the
    store (``marker_panels``) are not compared; a run without stored configs is accepted as is."""
    from marker_excite import run_dir as rd

    path = run_dir(out_dir, job)
    expected = {rd.MODEL_CONFIG: job.model_config(p).to_dict(), rd.TRAIN_CONFIG: job.train_config(p).to_dict()}
    diffs: list[str] = []
    for name, given in expected.items():
        if (path / name).is_file():
            stored = rd.read_json(path / name, "config")
            given = {k: v for k, v in given.items() if k != "marker_panels"}
            stored = {k: v for k, v in stored.items() if k != "marker_panels"}
            diffs += rd.config_differences(stored, given, name.removesuffix(".json"))
    if diffs:
        raise ExperimentError(
            f"{path} was made with other settings ({', '.join(diffs)}); use another --out, or --no-resume to retrain"
        )


@dataclass
class RunSummary:
    """What :func:`run_jobs` did: job ids run now, skipped (already done), and still missing overall."""

    ran: list[str]
    skipped: list[str]
    remaining: list[str]
    seconds: float


def run_jobs(
    exp: Experiment,
    out_dir: str | os.PathLike,
    *,
    store: str | os.PathLike | None = None,
    shard: tuple[int, int] = (1, 1),
    resume: bool = True,
    train_fn: Callable | None = None,
    evaluate_fn: Callable | None = None,
    progress: bool = True,
) -> RunSummary:
    """Run the jobs of one shard of ``exp`` into ``out_dir/runs/<job_id>/``.

    Args:
        exp: the experiment.
        out_dir: output folder (shared by all shards).
        store: sample store; default: the preset's phantom in ``out_dir`` (generated once).
        shard: ``(i, n)``, 1-based: run jobs i, i+n, i+2n, ... of ``exp.jobs``.
        resume: skip jobs whose ``evaluation.csv`` exists and resume interrupted trainings;
            False retrains every job of the shard from scratch.
        train_fn, evaluate_fn: replace ``training.train`` / ``evaluation.evaluate_run`` (tests).
        progress: print one line per job (and the training progress).
    """
    start = time.perf_counter()
    jobs = exp.shard(*shard)
    store_path = ensure_store(exp.preset, out_dir, store, progress=progress)
    ran, skipped = [], []
    if resume:
        for job in jobs:
            if is_done(out_dir, job):
                check_settings(job, exp.preset, out_dir)
    for k, job in enumerate(jobs, start=1):
        if resume and is_done(out_dir, job):
            skipped.append(job.job_id)
            continue
        t0 = time.perf_counter()
        if progress:
            print(f"[{exp.name} shard {shard[0]}/{shard[1]}] job {k}/{len(jobs)}: {job.job_id}", file=sys.stderr, flush=True)
        run_job(job, exp.preset, out_dir, store_path, resume=resume, train_fn=train_fn, evaluate_fn=evaluate_fn,
                progress=progress)
        ran.append(job.job_id)
        if progress:
            print(f"[{exp.name}] {job.job_id} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    remaining = [j.job_id for j in exp.jobs if not is_done(out_dir, j)]
    return RunSummary(ran, skipped, remaining, time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------------
# aggregation
# ---------------------------------------------------------------------------------------------------
def load_results(source: str | os.PathLike) -> list[dict[str, Any]]:
    """Tidy rows of an experiment output folder (its ``results.csv``, else every ``runs/*/evaluation.csv``)
    or of a results CSV file."""
    from marker_excite.evaluation import read_results

    path = Path(source)
    if path.is_file():
        return read_results(path)
    if (path / RESULTS_CSV).is_file():
        return read_results(path / RESULTS_CSV)
    files = sorted((path / RUNS).glob(f"*/{EVALUATION_CSV}"))
    if not files:
        raise ExperimentError(f"no results in {path}: neither {RESULTS_CSV} nor {RUNS}/*/{EVALUATION_CSV}")
    return [row for f in files for row in read_results(f)]


def select(rows: Iterable[Mapping], *, model: str | None = None, cls: str | None = None, metric: str | None = "f1",
           case: str | None = None, subsets: Iterable[str] | None = None) -> list[Mapping]:
    """Rows matching every given field (``case=None`` keeps rows of any case; ``""`` only homogeneous ones)."""
    keep = None if subsets is None else set(subsets)
    return [
        r for r in rows
        if (model is None or r.get("model") == model) and (cls is None or r.get("class") == cls)
        and (metric is None or r.get("metric") == metric) and (case is None or (r.get("case") or "") == case)
        and (keep is None or r.get("subset") in keep)
    ]


def _test_dict(result, **extra: Any) -> dict[str, Any]:
    d = dataclasses.asdict(result)
    if isinstance(d["n"], tuple):
        d["n"] = list(d["n"])
    return {**extra, **d}


def _ranking(a: Ranking, rows: list[Mapping], figures: Path) -> dict[str, Any]:
    from marker_excite import plots

    sel = select(rows, model=a.model, case="")
    figure = plots.subset_ranking(sel, figures / f"{a.name}.png", title=f"{a.model}: subsets ranked by mean F1")
    classes = list(dict.fromkeys(r["class"] for r in sel))
    ranking = {c: [dict(subset=s, mean=m, sd=sd, n=n) for s, m, sd, n in plots.rank_subsets(sel, cls=c)] for c in classes}
    return {"kind": "ranking", "model": a.model, "figure": str(figure), "ranking": ranking}


def _group_test(a: GroupTest, rows: list[Mapping], figures: Path) -> dict[str, Any]:
    from marker_excite import plots, stats

    sel = select(rows, model=a.model, cls=a.cls, case="")
    values = [[float(r["value"]) for r in sel if g.contains(r["subset"])] for g in a.groups]
    test = stats.mann_whitney(*values)
    figure = plots.grouped_comparison(sel, {g.label: g.contains for g in a.groups}, figures / f"{a.name}.png",
                                      cls=a.cls, title=f"{a.model}, {a.cls}")
    means = {g.label: float(np.mean(v)) if v else None for g, v in zip(a.groups, values)}
    return {"kind": "groups", "model": a.model, "class": a.cls, "figure": str(figure), "means": means,
            "test": _test_dict(test)}


def _relative(a: Relative, rows: list[Mapping], figures: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from marker_excite import evaluation, plots, stats

    subsets = None
    info: dict[str, Any] = {"kind": "relative", "models": list(a.models), "reference": a.reference}
    if a.case:
        table = CASES[a.case]
        subsets = [subset_label(s) for s in m_ub(table)]
        n_ub, n_total, ratio = ub_ratio(table)
        info.update(case=a.case, table=[subset_label(s) for s in table], m_ub=n_ub, m_total=n_total, ratio=ratio)
    case_filter = a.case if a.case else ""
    ref = select(rows, model=a.reference, case="", subsets=subsets if a.ub_only else None)
    model_rows = {m: select(rows, model=m, case=case_filter, subsets=subsets if a.ub_only else None) for m in a.models}
    missing = [m for m, r in model_rows.items() if not r] + ([a.reference] if not ref else [])
    if missing:
        raise ExperimentError(f"no results for {', '.join(missing)}")
    classes = list(dict.fromkeys(r["class"] for rs in model_rows.values() for r in rs))
    tests, relative_rows = [], []
    for m, mrows in model_rows.items():
        relative_rows += [{**r, "analysis": a.name, "case": a.case or ""} for r in evaluation.relative(mrows, ref)]
        for c in [*classes, None] if len(classes) > 1 else classes:
            sel = [r for r in mrows if c is None or r["class"] == c]
            paired = stats.pair_rows(sel, ref)
            tests.append(_test_dict(stats.wilcoxon(paired.a, paired.b), model=m, reference=a.reference,
                                    **{"class": c or "all"}, mean_difference=float(np.mean(paired.differences))))
    pairwise = [
        _test_dict(stats.compare_paired(model_rows[x], model_rows[y]), model=x, versus=y)
        for x, y in itertools.combinations(a.models, 2)
    ]
    figure = plots.relative_boxplot(model_rows, ref, figures / f"{a.name}.png", reference=a.reference)
    info.update(figure=str(figure), tests=tests, pairwise=pairwise)
    return info, relative_rows


@dataclass
class AggregateResult:
    """Files written by :func:`aggregate` and the job ids still missing."""

    results_csv: Path
    relative_csv: Path | None
    stats_json: Path
    figures: list[Path]
    missing: list[str]


def aggregate(
    exp: Experiment,
    out_dir: str | os.PathLike,
    *,
    external: Mapping[str, str | os.PathLike] | None = None,
    progress: bool = True,
) -> AggregateResult:
    """Collect the experiment's ``evaluation.csv`` files into ``results.csv``, draw its figures into
    ``figures/`` and write ``stats.json`` (and ``relative.csv``: every "Rel. to" difference).

    ``external`` maps a reference model (``UB``) to another experiment's output folder or results CSV.
    Missing jobs are listed in ``stats.json`` and the available ones are used; an analysis that cannot
    be computed (a model or reference without results) is recorded with the reason instead of a figure.
    """
    from marker_excite.evaluation import read_results, write_results

    out = Path(out_dir)
    done = [j for j in exp.jobs if is_done(out, j)]
    missing = [j.job_id for j in exp.jobs if not is_done(out, j)]
    if not done:
        raise ExperimentError(f"no finished job of {exp.name} in {out} (run the experiment first)")
    rows = [row for j in done for row in read_results(run_dir(out, j) / EVALUATION_CSV)]
    for r in rows:
        r["case"] = r.get("case") or ""
    results_csv = write_results(rows, out / RESULTS_CSV)
    extra_rows: list[dict[str, Any]] = []
    external_info = {}
    for name, source in (external or {}).items():
        ext = [r for r in load_results(source) if r.get("model") == name]
        for r in ext:
            r["case"] = r.get("case") or ""
        extra_rows += ext
        external_info[name] = {"source": str(source), "rows": len(ext)}
    all_rows = rows + extra_rows
    figures_dir = out / FIGURES
    figures_dir.mkdir(parents=True, exist_ok=True)
    analyses: dict[str, Any] = {}
    relative_rows: list[dict[str, Any]] = []
    for a in exp.analyses:
        try:
            if isinstance(a, Ranking):
                analyses[a.name] = _ranking(a, all_rows, figures_dir)
            elif isinstance(a, GroupTest):
                analyses[a.name] = _group_test(a, all_rows, figures_dir)
            else:
                info, rel = _relative(a, all_rows, figures_dir)
                analyses[a.name] = info
                relative_rows += rel
        except UserInputError as exc:
            analyses[a.name] = {"kind": type(a).__name__.lower(), "skipped": str(exc)}
            if progress:
                print(f"[{exp.name}] {a.name} skipped: {exc}", file=sys.stderr)
    relative_csv = write_results(relative_rows, out / RELATIVE_CSV) if relative_rows else None
    summary = {
        "experiment": exp.name,
        "preset": dataclasses.asdict(exp.preset),
        "jobs": len(exp.jobs),
        "completed": len(done),
        "missing": missing,
        "external": external_info,
        "significance": "Wilcoxon signed-rank paired by (class, subset, fold); Mann-Whitney U for groups; "
                        "* p<=0.05, ** p<=0.01, *** p<=0.001",
        "analyses": analyses,
    }
    stats_json = write_json(out / STATS_JSON, summary)
    figures = [Path(v["figure"]) for v in analyses.values() if "figure" in v]
    return AggregateResult(results_csv, relative_csv, stats_json, figures, missing)


# ---------------------------------------------------------------------------------------------------
# the scripts' command line
# ---------------------------------------------------------------------------------------------------
def csv_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (command-line lists)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser(name: str, description: str) -> argparse.ArgumentParser:
    """The options shared by every script in ``experiments/``."""
    parser = argparse.ArgumentParser(prog=f"experiments/{name}.py", description=description)
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS),
                        help="paper: the paper's models and schedule (GPU); small: CPU-sized (default)")
    parser.add_argument("--out", type=Path, default=Path("results") / name, help="output folder (default: results/<name>)")
    parser.add_argument("--store", type=Path, default=None,
                        help="sample store to use (default: the preset's phantom, generated into --out)")
    parser.add_argument("--shard", default="1/1", help="run shard i of n (e.g. 2/4) of the job list")
    parser.add_argument("--no-resume", dest="resume", action="store_false",
                        help="retrain jobs of this shard from scratch (default: skip finished jobs, resume interrupted ones)")
    parser.add_argument("--classes", type=csv_list, default=None, help="comma-separated classes (default: the preset's)")
    parser.add_argument("--folds", type=lambda s: [int(x) for x in csv_list(s)], default=None,
                        help="comma-separated folds (default: the preset's)")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's number of epochs")
    parser.add_argument("--list", action="store_true", help="print the job ids of this shard and exit")
    parser.add_argument("--aggregate-only", action="store_true", help="only aggregate finished jobs")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def script_main(name: str, argv: Sequence[str] | None = None, *, add_arguments: Callable | None = None,
                options: Callable[[argparse.Namespace], dict[str, Any]] | None = None,
                after: Callable[[Experiment, argparse.Namespace], None] | None = None) -> int:
    """Entry point of the scripts in ``experiments/``: build, run (one shard), aggregate, report.

    ``add_arguments(parser)`` adds script options; ``options(args)`` turns them into builder options;
    ``after(exp, args)`` runs once everything is aggregated (e.g. quantification for Table 1).
    Returns the exit status (2 with a one-line message for bad input).
    """
    parser = build_parser(name, (EXPERIMENTS[name].__doc__ or name).splitlines()[0])
    parser.add_argument("--ub-results", type=Path, default=None,
                        help="output folder (or results CSV) of fig1_upper_bound, the UB reference (Figs. 3e, 4)")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        exp = experiment(name, args.preset, classes=args.classes, folds=args.folds, epochs=args.epochs,
                         **(options(args) if options else {}))
        shard = parse_shard(args.shard)
        if args.list:
            print("\n".join(j.job_id for j in exp.shard(*shard)))
            return 0
        progress = not args.quiet
        if not args.aggregate_only:
            summary = run_jobs(exp, args.out, store=args.store, shard=shard, resume=args.resume, progress=progress)
            print(f"{name}: shard {shard[0]}/{shard[1]}: ran {len(summary.ran)}, skipped {len(summary.skipped)} "
                  f"finished job(s) in {summary.seconds / 60:.1f} min")
            if summary.remaining:
                print(f"{len(summary.remaining)} job(s) of {name} are not finished (other shards?); "
                      f"when all are, run again with --aggregate-only")
                return 0
        external = {"UB": args.ub_results} if args.ub_results and "UB" in exp.external else None
        result = aggregate(exp, args.out, external=external, progress=progress)
        if after:
            after(exp, args)
    except UserInputError as exc:
        print(f"{name}: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"results: {result.results_csv}\nstats:   {result.stats_json}")
    for f in result.figures:
        print(f"figure:  {f}")
    if result.missing:
        print(f"note: {len(result.missing)} job(s) missing from the aggregate")
    return 0


# ---------------------------------------------------------------------------------------------------
# Table 1 / Fig. 5: quantification on the phantom
# ---------------------------------------------------------------------------------------------------
def m2_f1(rows: Iterable[Mapping], model: str = "MS-ME") -> dict[str, dict[str, float]]:
    """Table 1's F1: mean +- sd of ``model``'s F1 over the subsets of M2 (m2 or m3 for sinusoids, m4 for
    arteries) and all folds, per class present in ``rows``."""
    out = {}
    for cls, group in M2_GROUPS.items():
        values = [float(r["value"]) for r in select(rows, model=model, cls=cls, case="") if group.contains(r["subset"])]
        if values:
            out[cls] = {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                        "n": len(values), "group": group.label}
    return out


def quantification_subset(cls: str, sample: str, seed: int = 0) -> tuple[str, ...]:
    """The M2 marker subset a test sample is quantified with (drawn per sample, like a lab's varied panels)."""
    choices = [s for s in all_subsets() if M2_GROUPS[cls].contains(subset_label(s))]
    rng = np.random.default_rng([int(seed), sum(map(ord, sample)), sum(map(ord, cls))])
    return subset_names(choices[int(rng.integers(len(choices)))])


def quantify_experiment(exp: Experiment, out_dir: str | os.PathLike, store: str | os.PathLike | None = None,
                        *, progress: bool = True) -> Path:
    """Table 1 / Fig. 5 on the phantom: each fold's MS-ME segments its TEST samples with an M2 marker
    subset; volume fractions inside the tissue (``quantify.quantify_store``, DAPI tissue mask) are
    compared with the phantom's true fractions (sample attributes ``fraction_<class>``).

    Writes ``quantification.csv`` (sample, region, class, markers, fraction, true_fraction, error),
    ``figures/fig5c.png`` and adds ``table1`` to ``stats.json``. Returns the CSV path.
    """
    from marker_excite import quantify, stats
    from marker_excite.data.store import SampleStore
    from marker_excite.evaluation import write_results
    from marker_excite.training import load_run

    out = Path(out_dir)
    store_path = ensure_store(exp.preset, out, store, progress=progress)
    rows: list[dict[str, Any]] = []
    for job in (j for j in exp.jobs if j.model == "MS-ME" and is_done(out, j) and len(j.classes) == 1):
        run = load_run(run_dir(out, job))
        cls = job.classes[0]
        with SampleStore(store_path, "r") as st:
            truth = {s: (st.info(s).region, st.info(s).attrs.get(f"fraction_{cls}")) for s in run.fold.test}
        for sample in run.fold.test:
            markers = quantification_subset(cls, sample, exp.preset.seed)
            for r in quantify.quantify_store(store_path, run, samples=[sample], markers=list(markers), progress=False):
                true = truth[sample][1]
                rows.append(dict(model=job.label, fold=job.fold, **{"class": cls}, subset=PAPER_PANEL.subset_label(PAPER_PANEL.indices(markers)), n_markers=len(markers),
                    metric="fraction", value=float(r["fraction"]), sample=sample, region=r["region"],
                    true_fraction=float(true) if true is not None else float("nan")))
    if not rows:
        raise ExperimentError(f"no finished MS-ME run in {out} to quantify with")
    for r in rows:
        r["error"] = r["value"] - r["true_fraction"]
    csv_path = write_results(rows, out / "quantification.csv")
    figure = quantify.fraction_boxplot([dict(r, fraction=r["value"]) for r in rows], out / FIGURES / "fig5c.png",
                                       overwrite=True)
    table: dict[str, Any] = {"f1_over_M2": m2_f1(load_results(out)), "figure": str(figure), "fractions": {}}
    for cls in dict.fromkeys(r["class"] for r in rows):
        sel = [r for r in rows if r["class"] == cls]
        by_region = {}
        for region in dict.fromkeys(r["region"] for r in sel):
            values = [r for r in sel if r["region"] == region]
            by_region[region or "all"] = {
                "n": len(values),
                "fraction_mean": float(np.mean([r["value"] for r in values])),
                "true_fraction_mean": float(np.mean([r["true_fraction"] for r in values])),
                "mean_abs_error": float(np.mean([abs(r["error"]) for r in values])),
            }
        entry: dict[str, Any] = {"regions": by_region}
        regions = list(by_region)
        if len(regions) == 2:
            a, b = ([r["value"] for r in sel if (r["region"] or "all") == g] for g in regions)
            entry["region_test"] = _test_dict(stats.mann_whitney(a, b), groups=regions)
        table["fractions"][cls] = entry
    stats_path = out / STATS_JSON
    summary = read_json_file(stats_path)
    summary["table1"] = table
    write_json(stats_path, summary)
    return csv_path


def read_json_file(path: Path) -> dict[str, Any]:
    """A JSON object from ``path`` ({} when the file does not exist)."""
    import json

    return json.loads(path.read_text()) if path.is_file() else {}
