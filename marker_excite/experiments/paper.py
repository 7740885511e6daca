"""The paper's experiments (Figs. 1-4, Table 1) as :class:`~marker_excite.experiments.spec.Experiment` builders."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from marker_excite.experiments.spec import (
    CASES,
    PAPER_PANEL,
    Analysis,
    Experiment,
    ExperimentError,
    Group,
    GroupTest,
    Job,
    Preset,
    Ranking,
    Relative,
    all_subsets,
    m_ub,
    preset,
    shuffled_table,
)

#: ME placement ablations of Fig. 3f,g run by default (MS-ME itself is E+B+D).
DEFAULT_ABLATIONS: tuple[str, ...] = (
    "MS-ME-I",
    "MS-ME-E",
    "MS-ME-B",
    "MS-ME-D",
    "MS-ME-EB",
    "MS-ME-ED",
    "MS-ME-BD",
    "MS-ME-IEBD",
)

_SINUSOID_GROUPS = (
    GroupTest("fig1d", "sinusoids", (Group("M2s: m2 or m3", any_of="m_23"), Group("M1s: no m2, m3", none_of="m_23"))),
    GroupTest(
        "fig1e",
        "sinusoids",
        (Group("M1Bs: m4, no m2, m3", all_of="m_4", none_of="m_23"), Group("M1As: no m2, m3, m4", none_of="m_234")),
    ),
)
_ARTERY_GROUPS = (
    GroupTest("fig1h", "arteries", (Group("M2a: m4", all_of="m_4"), Group("M1a: no m4", none_of="m_4"))),
    GroupTest(
        "fig1i",
        "arteries",
        (Group("M2Ba: m4 and m2", all_of="m_24"), Group("M2Aa: m4, no m2", all_of="m_4", none_of="m_2")),
    ),
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


def fig1_upper_bound(
    p: Preset, classes: Sequence[str], folds: Sequence[int], *, joint: bool = True, **_: Any
) -> Experiment:
    """Fig. 1: one UB UNet per marker subset, class and fold (+ two-class UB models for Fig. 1b,f)."""
    jobs = [Job("UB", (c,), f, subset=s) for f in folds for c in classes for s in all_subsets()]
    analyses: list[Analysis] = [Ranking("fig1cg")]
    analyses += [g for g in _SINUSOID_GROUPS + _ARTERY_GROUPS if g.cls in classes]
    if joint and len(classes) > 1:
        jobs += [Job("UB", tuple(classes), f, subset=s, label="UB-joint") for f in folds for s in all_subsets()]
        analyses.append(Relative("fig1bf", ("UB-joint",), "UB"))
    return Experiment("fig1_upper_bound", p, tuple(jobs), tuple(analyses))


def fig2_sampling(
    p: Preset, classes: Sequence[str], folds: Sequence[int], *, models: Sequence[str] | None = None, **_: Any
) -> Experiment:
    """Fig. 2: MZ and MS relative to HeMIS (2b); HeMIS-MS, MS-DO, MS-VR relative to MS (2c)."""
    models = _check_models(models, ("HeMIS", "MZ", "MS", "HeMIS-MS", "MS-DO", "MS-VR"))
    analyses = _relatives(models, [("fig2b", ("MZ", "MS"), "HeMIS"), ("fig2c", ("HeMIS-MS", "MS-DO", "MS-VR"), "MS")])
    return Experiment("fig2_sampling", p, tuple(_jobs(models, classes, folds)), analyses)


def fig3_attention(
    p: Preset,
    classes: Sequence[str],
    folds: Sequence[int],
    *,
    models: Sequence[str] | None = None,
    ablations: Sequence[str] = DEFAULT_ABLATIONS,
    **_: Any,
) -> Experiment:
    """Fig. 3: MS-SE, MS-ME vs MS (3c), MS-ME vs MS+ (3d), MS-ME vs UB (3e), ME placement ablations (3f,g)."""
    models = _check_models(models, ("MS", "MS-SE", "MS-ME", "MS+", *ablations))
    abl = tuple(m for m in models if m.startswith("MS-ME-"))
    analyses = _relatives(
        models + ("UB",),
        [
            ("fig3c", ("MS-SE", "MS-ME"), "MS"),
            ("fig3d", ("MS-ME",), "MS+"),
            ("fig3e", ("MS-ME",), "UB"),
            ("fig3fg", abl, "MS-ME"),
        ],
    )
    return Experiment("fig3_attention", p, tuple(_jobs(models, classes, folds)), analyses, external=("UB",))


def case_ub_label(case: str) -> str:
    """Name of the per-Case upper bound of Fig. 4 in results (``UB-case3``)."""
    return f"UB-{case}"


def fig4_heterogeneous(
    p: Preset,
    classes: Sequence[str],
    folds: Sequence[int],
    *,
    models: Sequence[str] | None = None,
    cases: Sequence[str] | None = None,
    case_ub: bool = True,
    **_: Any,
) -> Experiment:
    """Fig. 4: MZ, MS, MS-ME trained with the heterogeneous panels of Cases 1-6, relative to UB on M^UB.

    The paper's reference (``fig4_<case>``): for every subset of the Case's M^UB, a UB UNet trained only
    on the fold's training samples whose Case panel contains that subset (``UB-<case>`` jobs; "m_23 in
    Case 3 is only trainable using samples s1 or s2"). An extra analysis (``fig4_<case>_vs_fig1_ub``)
    compares with the stronger Fig. 1 UB trained on all training samples (``external``), labelled as such.
    ``case_ub=False`` leaves out the per-Case UB jobs.
    """
    models = _check_models(models, ("MZ", "MS", "MS-ME"))
    cases = list(cases or CASES)
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise ExperimentError(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    jobs = []
    for case in cases:
        for f in folds:
            table = shuffled_table(case, f)
            for c in classes:
                jobs += [Job(m, (c,), f, case=case, panels=table) for m in models]
                if case_ub:
                    jobs += [
                        Job("UB", (c,), f, subset=s, case=case, panels=table, label=case_ub_label(case))
                        for s in m_ub(table)
                    ]
    analyses: list[Analysis] = []
    for case in cases:
        if case_ub:
            analyses.append(
                Relative(f"fig4_{case}", models, case_ub_label(case), case=case, ub_only=True, reference_case=case)
            )
        analyses.append(Relative(f"fig4_{case}_vs_fig1_ub", models, "UB", case=case, ub_only=True))
    return Experiment("fig4_heterogeneous", p, tuple(jobs), tuple(analyses), external=("UB",))


#: Label of the tissue network of Table 1: a UNet on m1 (DAPI) alone, trained on the class ``tissue``.
TISSUE_MODEL = "UB-tissue"


def tissue_job(fold: int) -> Job:
    """The paper's tissue network of one fold: "a separate UNet model that uses only m1"."""
    return Job("UB", ("tissue",), fold, subset=PAPER_PANEL.parse_subset("m_1"), label=TISSUE_MODEL)


def table1_quantification(p: Preset, classes: Sequence[str], folds: Sequence[int], **_: Any) -> Experiment:
    """Table 1 / Fig. 5: one MS-ME per class and fold (same job ids as in Fig. 3, so runs are shared) and
    the m1-only tissue UNet of each fold that gives the tissue mask of the volume fractions."""
    jobs = _jobs(("MS-ME",), classes, folds) + [tissue_job(f) for f in folds]
    return Experiment("table1_quantification", p, tuple(jobs), (Ranking("ranking", "MS-ME"),))


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
    seed: int | None = None,
    precision: str | None = None,
    **options: Any,
) -> Experiment:
    """Build experiment ``name`` at a preset; ``classes`` / ``folds`` / ``epochs`` / ``seed`` (the training
    seed: a seed replicate) / ``precision`` (``fp32``, ``bf16``, ``fp16``) override the preset.

    ``options`` go to the builder: ``models`` (Figs. 2-4), ``ablations`` (Fig. 3), ``cases`` (Fig. 4),
    ``joint`` (Fig. 1).
    """
    if name not in EXPERIMENTS:
        raise ExperimentError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    p = preset(preset_name).overridden(epochs=epochs, seed=seed, precision=precision)
    classes = tuple(classes or p.classes)
    if not classes or len(set(classes)) != len(classes):
        raise ExperimentError(f"classes must be non-empty and unique, got {list(classes)}")
    folds = tuple(p.folds if folds is None else folds)
    bad = [f for f in folds if not 0 <= f < p.n_folds]
    if not folds or bad:
        raise ExperimentError(f"folds must be in 0..{p.n_folds - 1}, got {list(folds)}")
    return EXPERIMENTS[name](p, classes, folds, **options)
