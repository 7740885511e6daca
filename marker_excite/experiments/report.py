"""The reproduction report's measurements: every claim of the paper next to what the committed runs measure.

The paper's claims are data (:data:`CLAIMS`); :func:`measure` computes one claim's numbers from the F1 rows
of every finished job of an output folder (``runs/*/evaluation.csv``; :func:`f1_rows`): the median
relative F1 (IQR), the test (paired Wilcoxon pooled over classes, as in the paper, Mann-Whitney for groups
of subsets, Spearman for trends) and ``n``. Verdicts follow fixed rules decided before any run
(:func:`verdict`); a claim without results yet is "not run yet". The notes come from the runs' ``log.csv``
(:func:`convergence`) and from seed replicates (the same jobs run with other training seeds,
:func:`seed_spread`: how much of a difference between models is training noise). The functions ending in
``_lines`` give the report's sections as Markdown lines; :mod:`marker_excite.experiments.reproduction`
writes them into ``REPRODUCTION.md``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marker_excite.analysis.stats import Paired as MatchedRows
from marker_excite.analysis.stats import StatsError, TestResult, mann_whitney, pair_rows, stars, wilcoxon
from marker_excite.contract.markers import PAPER_PANEL
from marker_excite.experiments.aggregate import load_results, select
from marker_excite.experiments.last_epoch import LAST_EVALUATION_CSV, last_epoch_rows
from marker_excite.experiments.spec import CASES, EVALUATION_CSV, RUNS, ExperimentError, Group, m_ub
from marker_excite.runs.directory import MODEL_CONFIG, TRAIN_CONFIG
from marker_excite.runs.log import read_log

#: A run has reached a plateau when its validation mean F1 varies by less than this over the last
#: quarter of its epochs (the CPU protocol's convergence criterion).
PLATEAU_RANGE = 0.01
ALPHA = 0.05
#: The Wilcoxon note when every paired difference is zero, and the verdict it gives.
IDENTICAL = "all differences are zero"
NOT_TESTABLE = "not testable here (identical results)"


@dataclass(frozen=True)
class Paired:
    """Claim: ``model`` compared pair-wise with ``reference`` on the same (class, subset, fold).

    ``expect``: ``"greater"`` (model better), ``"not_greater"`` (no improvement of model over the
    reference), ``"similar"`` (not significantly different) or ``"less"``.
    ``case``: rows of a heterogeneous Case (``""``: homogeneous training); ``ub_only``: only the
    subsets of that Case's M^UB. ``cls``: one class only (``""``: every class present, pooled as in the
    paper); ``subsets``: only these marker subsets (e.g. ``("m_4",)`` for Fig. 2d; empty: all).
    """

    figure: str
    paper: str
    model: str
    reference: str
    expect: str
    case: str = ""
    reference_case: str = ""
    ub_only: bool = False
    cls: str = ""
    subsets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Trend:
    """Claim: a quantity grows with a number of markers (Spearman's rank correlation, ``expect`` greater).

    ``x="subset_size"``: the F1 of ``model`` (one class, homogeneous training) against the number of
    markers of the test subset (Fig. 1c,g). ``x="case_markers"``: per Case, the mean paired difference
    ``model - reference`` over the subsets (both trained on that Case) against the mean number of markers
    per training sample of the Case (Fig. 4's "emphasized with increasing number of markers").
    """

    figure: str
    paper: str
    model: str
    x: str
    reference: str = ""
    cls: str = ""


@dataclass(frozen=True)
class Groups:
    """Claim: the UB models of subsets in group ``a`` beat those in group ``b`` (Mann-Whitney)."""

    figure: str
    paper: str
    cls: str
    a: Group
    b: Group
    model: str = "UB"


Claim = Paired | Groups | Trend

_SINUSOIDS_M2 = Group("m2 or m3", any_of="m_23")
_SINUSOIDS_M1 = Group("no m2, m3", none_of="m_23")
_SINUSOIDS_M1B = Group("m4, no m2, m3", all_of="m_4", none_of="m_23")
_SINUSOIDS_M1A = Group("no m2, m3, m4", none_of="m_234")
_ARTERIES_M2 = Group("m4", all_of="m_4")
_ARTERIES_M1 = Group("no m4", none_of="m_4")
_ARTERIES_M2B = Group("m4 and m2", all_of="m_24")
_ARTERIES_M2A = Group("m4, no m2", all_of="m_4", none_of="m_2")

#: The paper's claims, in the order of the report.
CLAIMS: tuple[Claim, ...] = (
    Paired("Fig. 2b", "MS vastly outperforms MZ", "MS", "MZ", "greater"),
    Paired("Fig. 2b", "MS vastly outperforms HeMIS", "MS", "HeMIS", "greater"),
    Paired("Fig. 2b", "MZ does not perform significantly different than HeMIS", "MZ", "HeMIS", "similar"),
    Paired("Fig. 2c", "HeMIS-MS: no improvement compared to UNet-based MS", "HeMIS-MS", "MS", "not_greater"),
    Paired("Fig. 2c", "MS is better than MS-DO", "MS", "MS-DO", "greater"),
    Paired("Fig. 2c", "MS is better than MS-VR", "MS", "MS-VR", "greater"),
    Paired(
        "Fig. 2d",
        "all five markers: no significant difference between MS and HeMIS",
        "MS",
        "HeMIS",
        "similar",
        subsets=("m_12345",),
    ),
    Paired("Fig. 2d", "m4 alone: MS performs much superior to HeMIS", "MS", "HeMIS", "greater", subsets=("m_4",)),
    Paired("Fig. 3c", "MS-ME improves on MS", "MS-ME", "MS", "greater"),
    Paired("Fig. 3c", "MS-ME improves on MS, especially for the sinusoids", "MS-ME", "MS", "greater", cls="sinusoids"),
    Paired("Fig. 3c", "MS-ME improves on MS-SE", "MS-ME", "MS-SE", "greater"),
    Paired(
        "Fig. 3c",
        "MS-ME improves on MS-SE, especially for the sinusoids",
        "MS-ME",
        "MS-SE",
        "greater",
        cls="sinusoids",
    ),
    Paired("Fig. 3d", "MS-ME improves on the 20 % larger MS+", "MS-ME", "MS+", "greater"),
    Paired("Fig. 3e", "MS-ME is not significantly different from UB (31 dedicated UNets)", "MS-ME", "UB", "similar"),
    Paired(
        "Fig. 3e", "MS-ME slightly superior to UB for sinusoid segmentation", "MS-ME", "UB", "greater", cls="sinusoids"
    ),
    Paired("Fig. 3h", "m15: MS-ME performs superior to the dedicated UB", "MS-ME", "UB", "greater", subsets=("m_15",)),
    *(
        Paired(
            "Fig. 3f,g",
            f"ME after every block (MS-ME) is the optimal placement: {m} is not better",
            m,
            "MS-ME",
            "not_greater",
        )
        for m in ("MS-ME-I", "MS-ME-E", "MS-ME-B", "MS-ME-D", "MS-ME-EB", "MS-ME-ED", "MS-ME-BD", "MS-ME-IEBD")
    ),
    Paired("Fig. 1b,f", "one UB per class beats one two-class UB (joint)", "UB", "UB-joint", "greater"),
    Trend("Fig. 1c", "sinusoids: accuracy increases with more markers", "UB", "subset_size", cls="sinusoids"),
    Trend("Fig. 1g", "arteries: accuracy increases with more markers", "UB", "subset_size", cls="arteries"),
    Groups("Fig. 1d", "sinusoids: subsets with m2 or m3 beat those without", "sinusoids", _SINUSOIDS_M2, _SINUSOIDS_M1),
    Groups("Fig. 1e", "sinusoids, without m2, m3: m4 helps", "sinusoids", _SINUSOIDS_M1B, _SINUSOIDS_M1A),
    Groups("Fig. 1h", "arteries: subsets with m4 beat those without", "arteries", _ARTERIES_M2, _ARTERIES_M1),
    Groups("Fig. 1i", "arteries, with m4: adding m2 helps", "arteries", _ARTERIES_M2B, _ARTERIES_M2A),
    *(
        Paired(
            "Fig. 4",
            f"Case {c[-1]}: MS-ME {'outperforms' if c in ('case3', 'case4', 'case6') else 'vs'} UB",
            "MS-ME",
            f"UB-{c}",
            "greater" if c in ("case3", "case4", "case6") else "report",
            case=c,
            reference_case=c,
            ub_only=True,
        )
        for c in CASES
    ),
    Paired(
        "Fig. 4",
        "Case 1: MS adds no advantage over MZ (single marker per sample)",
        "MS",
        "MZ",
        "not_greater",
        case="case1",
        reference_case="case1",
    ),
    Paired(
        "Fig. 4",
        "Case 1: MS-ME adds no advantage over MS",
        "MS-ME",
        "MS",
        "not_greater",
        case="case1",
        reference_case="case1",
    ),
    Trend(
        "Fig. 4",
        "the superiority of MS over MZ is emphasized with increasing number of markers per sample",
        "MS",
        "case_markers",
        reference="MZ",
    ),
    Trend(
        "Fig. 4",
        "the superiority of MS-ME over MS is emphasized with increasing number of markers per sample",
        "MS-ME",
        "case_markers",
        reference="MS",
    ),
)


def verdict(expect: str, result: TestResult | None) -> str:
    """The verdict of a claim from its test, by rules fixed in advance.

    ``greater``: reproduced when p <= 0.05 and the test's ranks favour the model
    (:attr:`~marker_excite.analysis.stats.TestResult.direction`, the side the signed ranks favour: the median
    difference is 0 when most subsets score 0 for both models); not reproduced when p <= 0.05 the
    other way; else inconclusive. ``similar`` and ``not_greater``: reproduced when p > 0.05
    (``not_greater`` also when the model is significantly worse); not reproduced when significant
    (in the model's favour for ``not_greater``). ``report``: the paper states no direction. Whatever the
    claim: "not testable here" when every paired difference is exactly zero (the two models give identical
    results, as by construction for Marker Sampling with one marker per sample: there is nothing to drop).
    """
    if result is None:
        return "not run yet"
    if result.note == IDENTICAL:
        return NOT_TESTABLE
    significant = result.pvalue <= ALPHA and not result.note.startswith("only")
    positive = result.direction > 0
    if expect == "greater":
        if significant:
            return "reproduced" if positive else "not reproduced (opposite)"
        return "inconclusive (n.s.)"
    if expect == "similar":
        return "not reproduced (significant difference)" if significant else "reproduced"
    if expect == "not_greater":
        return "not reproduced (model better)" if significant and positive else "reproduced"
    return "measured"


def summary_counts(verdicts: Sequence[str]) -> str:
    """'N claims; a reproduced, b not reproduced, ...' for a list of verdicts (their first words count)."""
    kinds = ("reproduced", "not reproduced", "inconclusive", "not testable here", "not run yet", "measured")
    counts = {k: sum(v.split(" (")[0] == k for v in verdicts) for k in kinds}
    return f"{len(verdicts)} claims; " + ", ".join(
        f"{counts[k]} {k if k != 'measured' else 'measured without a stated direction'}" for k in kinds
    )


# -- measuring -----------------------------------------------------------------------------------------
def _paired_rows(rows: Sequence[Mapping], c: Paired) -> tuple[list[Mapping], list[Mapping]]:
    subsets = [s.label for s in m_ub(CASES[c.case])] if c.ub_only and c.case else None
    if c.subsets:
        subsets = [s for s in c.subsets if subsets is None or s in subsets]
    cls = c.cls or None
    return (
        select(rows, model=c.model, case=c.case, subsets=subsets, cls=cls),
        select(rows, model=c.reference, case=c.reference_case, subsets=subsets, cls=cls),
    )


def paired_claim(rows: Sequence[Mapping], claim: Paired) -> MatchedRows | None:
    """The rows of a paired claim's model and reference matched by (class, subset, fold); None when
    either has no results (yet) or none match."""
    model_rows, ref_rows = _paired_rows(rows, claim)
    if not model_rows or not ref_rows:
        return None
    try:
        return pair_rows(model_rows, ref_rows)
    except StatsError:
        return None


def _subset_size(label: str) -> int:
    """Number of markers of a paper-panel subset label (``m_125`` -> 3)."""
    return len(PAPER_PANEL.parse_subset(label))


def case_markers_per_sample(case: str) -> float:
    """Mean number of markers per training sample of a Fig. 4 Case (its table's rows)."""
    table = CASES[case]
    return float(np.mean([len(row.names) for row in table]))


def spearman(x: Sequence[float], y: Sequence[float]) -> TestResult:
    """Spearman's rank correlation of ``y`` with ``x`` as a :class:`TestResult` (``median_difference``
    holds rho; ``direction`` its sign); the note says when there are too few points for p <= 0.05."""
    from scipy import stats as st

    x_arr, y_arr = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x_arr.size < 3 or np.ptp(x_arr) == 0 or np.ptp(y_arr) == 0:
        return TestResult("spearman", 0.0, 1.0, int(x_arr.size), "n.s.", 0.0, "too few distinct points to correlate")
    res = st.spearmanr(x_arr, y_arr)
    rho, p = float(res.statistic), float(res.pvalue)
    return TestResult("spearman", rho, p, int(x_arr.size), stars(p), rho, "", int(np.sign(rho)))


def _trend_points(rows: Sequence[Mapping], claim: Trend) -> tuple[list[float], list[float], str]:
    """(x, y, detail) of a trend claim (empty lists when its runs are not in yet)."""
    if claim.x == "subset_size":
        sel = select(rows, model=claim.model, cls=claim.cls or None, case="")
        x = [float(_subset_size(str(r["subset"]))) for r in sel]
        y = [float(r["value"]) for r in sel]
        by_size = {n: float(np.mean([b for a, b in zip(x, y) if a == n])) for n in sorted(set(x))}
        detail = "mean F1 per number of markers: " + ", ".join(f"{int(n)}: {v:.3f}" for n, v in by_size.items())
        return x, y, detail
    x, y, cells = [], [], []
    for case in CASES:
        model_rows = select(rows, model=claim.model, case=case, cls=claim.cls or None)
        ref_rows = select(rows, model=claim.reference, case=case, cls=claim.cls or None)
        if not model_rows or not ref_rows:
            continue
        try:
            paired = pair_rows(model_rows, ref_rows)
        except StatsError:
            continue
        # one point per (class, fold) of the Case: the mean difference over its subsets
        for key in sorted({(k[0], k[2]) for k in paired.keys}):
            d = [v for k, v in zip(paired.keys, paired.differences) if (k[0], k[2]) == key]
            x.append(case_markers_per_sample(case))
            y.append(float(np.mean(d)))
            cells.append(f"{case} ({x[-1]:.1f} markers) {y[-1]:+.3f}")
    return x, y, "mean difference per Case: " + ", ".join(cells)


def measure(rows: Sequence[Mapping], claim: Claim) -> dict[str, Any] | None:
    """The numbers of one claim (None when its models have no results yet)."""
    if isinstance(claim, Trend):
        x, y, detail = _trend_points(rows, claim)
        if len(x) < 3:
            return None
        result = spearman(x, y)
        classes = [claim.cls] if claim.cls else sorted({str(r["class"]) for r in select(rows, model=claim.model)})
        return dict(result=result, median=result.statistic, iqr=None, n=str(len(x)), classes=classes, detail=detail)
    if isinstance(claim, Groups):
        sel = select(rows, model=claim.model, cls=claim.cls, case="")
        a = [float(r["value"]) for r in sel if claim.a.contains(r["subset"])]
        b = [float(r["value"]) for r in sel if claim.b.contains(r["subset"])]
        if len(a) < 2 or len(b) < 2:
            return None
        result = mann_whitney(a, b)
        return dict(
            result=result,
            median=result.median_difference,
            iqr=None,
            n=f"{len(a)} vs {len(b)}",
            classes=[claim.cls],
            detail=f"median F1 {np.median(a):.3f} ({claim.a.label}) vs {np.median(b):.3f} ({claim.b.label})",
        )
    paired = paired_claim(rows, claim)
    if paired is None:
        return None
    d = paired.differences
    result = wilcoxon(paired.a, paired.b)
    classes = sorted({k[0] for k in paired.keys})
    folds = sorted({k[2] for k in paired.keys}, key=int)
    per_fold = {f: float(np.mean([x for k, x in zip(paired.keys, d) if k[2] == f])) for f in folds}
    sizes = [len(PAPER_PANEL.parse_subset(k[1])) for k in paired.keys]
    per_size = {n: float(np.mean([x for s, x in zip(sizes, d) if s == n])) for n in sorted(set(sizes))}
    q1, q3 = np.percentile(d, [25, 75])
    spread = ", ".join(f"f{f} {v:+.3f}" for f, v in per_fold.items())
    if len(per_size) > 1:
        spread += "; per number of markers: " + ", ".join(f"{n}: {v:+.3f}" for n, v in per_size.items())
    if len(classes) > 1:
        spread += "; per class: " + ", ".join(_class_cell(paired, cls) for cls in classes)
    return dict(
        result=result,
        median=float(np.median(d)),
        iqr=(float(q1), float(q3)),
        n=str(len(d)),
        diffs=d,
        classes=classes,
        detail=f"classes {'+'.join(classes)}; mean difference per fold: {spread}",
    )


def _class_cell(paired: MatchedRows, cls: str) -> str:
    """One class's share of a pooled paired comparison: mean difference, Wilcoxon p and n."""
    mine = [i for i, k in enumerate(paired.keys) if k[0] == cls]
    a, b = paired.a[mine], paired.b[mine]
    return f"{cls} {float(np.mean(a - b)):+.3f} (p {wilcoxon(a, b).pvalue:.3g}, n {len(mine)})"


#: Key of a run in the convergence table: (model label, class, Case or "").
RunGroup = tuple[str, str, str]


def convergence(out_dir: str | os.PathLike) -> dict[RunGroup, dict[str, Any]]:
    """Per (model label, class, Case): runs, how many reached the plateau, the largest last-quarter range
    of the validation mean F1, the median best and last validation mean F1 (a run whose validation F1
    collapses after its peak shows a last value far below its best) and the median best epoch / epochs."""

    by_group: dict[RunGroup, list[tuple[float, int, int, float, float]]] = {}
    for run in sorted((Path(out_dir) / RUNS).glob(f"*/{EVALUATION_CSV}")):
        log = run.parent / "log.csv"
        if not log.is_file():
            continue
        history = read_log(log)
        values = [float(r["val_mean_f1"]) for r in history]
        if not values:
            continue
        tail = values[-max(1, len(values) // 4) :]
        best = int(np.argmax(values))
        by_group.setdefault(_run_group(run), []).append(
            (max(tail) - min(tail), best + 1, len(values), values[best], values[-1])
        )
    return {
        g: {
            "runs": len(v),
            "plateau": sum(r[0] < PLATEAU_RANGE for r in v),
            "max_range": max(r[0] for r in v),
            "median_best_epoch": float(np.median([r[1] for r in v])),
            "epochs": int(np.median([r[2] for r in v])),
            "median_best_f1": float(np.median([r[3] for r in v])),
            "median_last_f1": float(np.median([r[4] for r in v])),
        }
        for g, v in sorted(by_group.items())
    }


def _run_group(evaluation_csv: Path) -> RunGroup:
    """(model label, class, Case) of a finished job, from the first row of its ``evaluation.csv``."""
    with open(evaluation_csv, newline="") as fh:
        first = next(csv.DictReader(fh))
    return str(first["model"]), str(first["class"]), str(first.get("case") or "")


#: A group of runs "falls after its peak" when its median last validation F1 is this far below its best.
COLLAPSE_DROP = 0.1


def convergence_note(conv: Mapping[RunGroup, Mapping[str, Any]], model: str, classes: Sequence[str], case: str) -> str:
    """How the runs a claim compares converged, per class: 'MS-ME: 4/4 runs on a plateau' (one class) or
    'MS-ME runs on a plateau: sinusoids 4/4, arteries 1/4'; a class whose validation F1 falls far after its
    peak says so with the median best and last values."""
    found = [(cls, c) for cls in classes if (c := conv.get((model, cls, case)))]
    if not found:
        return ""
    if len(classes) == 1:
        text = f"{model}: {found[0][1]['plateau']}/{found[0][1]['runs']} runs on a plateau"
    else:
        text = f"{model} runs on a plateau: " + ", ".join(f"{cls} {c['plateau']}/{c['runs']}" for cls, c in found)
    falls = [
        f"{cls} validation F1 falls after its peak (median best {c['median_best_f1']:.2f}, last {c['median_last_f1']:.2f})"
        for cls, c in found
        if c["median_best_f1"] - c["median_last_f1"] > COLLAPSE_DROP
    ]
    return "; ".join([text, *falls])


def _models_of(claim: Claim) -> list[tuple[str, str]]:
    """(model, Case) of each side of a claim."""
    if isinstance(claim, Groups):
        return [(claim.model, "")]
    if isinstance(claim, Trend):
        return [(claim.model, "")] if not claim.reference else []
    return [(claim.model, claim.case), (claim.reference, claim.reference_case)]


def _full_subset_count(model: str, case: str) -> int:
    """Subsets a model is evaluated on per (class, fold): 31, a per-Case UB the Case's M^UB."""
    return len(m_ub(CASES[case])) if case and model.startswith("UB") else len(PAPER_PANEL.all_subsets())


def coverage_note(rows: Sequence[Mapping], claim: Claim) -> str:
    """'' when every (class, fold) of the claim's models has all its subsets; else which are incomplete
    (e.g. a UB sweep still running), so that a verdict on part of the subsets is read as such."""
    gaps = []
    for model, case in _models_of(claim):
        counts: dict[tuple[str, int], set[str]] = {}
        for r in select(rows, model=model, case=case):
            counts.setdefault((str(r["class"]), int(r["fold"])), set()).add(str(r["subset"]))
        full = _full_subset_count(model, case)
        gaps += [
            f"{model} {c} fold {f}: {len(v)} of {full} subsets" for (c, f), v in sorted(counts.items()) if len(v) < full
        ]
    return f"incomplete ({'; '.join(gaps)})" if gaps else ""


def claim_notes(
    claim: Claim,
    conv: Mapping[RunGroup, Mapping[str, Any]],
    measured: Mapping[str, Any],
    seeds: Mapping[Claim, str],
    coverage: str = "",
    longer: Mapping[Claim, str] | None = None,
) -> str:
    """The notes cell of a claim's row: coverage gaps, the measured detail, the seed and longer-training
    notes, the convergence of its runs and the test's own note, joined by '; '."""
    parts = [f"**{coverage}**"] if coverage else []
    parts.append(measured["detail"])
    if claim in seeds:
        parts.append(f"**{seeds[claim]}** (section Seed-to-seed spread)")
    if longer and claim in longer:
        parts.append(f"**{longer[claim]}**")
    for model, case in _models_of(claim):
        if note := convergence_note(conv, model, measured["classes"], case):
            parts.append(note)
    if isinstance(claim, Groups) or (isinstance(claim, Trend) and claim.x == "subset_size"):
        parts.append("circular on the phantom: its marker informativeness was built to follow Fig. 1")
    if measured["result"].note:
        parts.append(measured["result"].note)
    return "; ".join(parts)


def noise_note(measured: Mapping[str, Any], noise: float | None) -> str:
    """'; **smaller than the training noise ...**' when a paired claim's mean difference is below the
    seed-to-seed SD of one model's mean F1 (sinusoids; None: no seed replicates); else ''."""
    if noise is None or "diffs" not in measured or abs(float(np.mean(measured["diffs"]))) >= noise:
        return ""
    return f"; **smaller than the training noise (seed-to-seed SD of one model's mean F1 on sinusoids: {noise:.4f})**"


def runs_so_far(rows: Sequence[Mapping]) -> list[str]:
    """One line per (model, class, Case): the folds whose results are in."""
    folds: dict[tuple[str, str, str], set[int]] = {}
    for r in rows:
        folds.setdefault((str(r["model"]), str(r["class"]), str(r.get("case") or "")), set()).add(int(r["fold"]))
    if not folds:
        return ["none yet."]
    return [
        f"- {m}, {c}{f', {case}' if case else ''}: fold(s) {', '.join(map(str, sorted(f)))}"
        for (m, c, case), f in sorted(folds.items())
    ]


def model_means_lines(rows: Sequence[Mapping]) -> list[str]:
    """Mean F1 over the marker subsets per model, class and fold (Fig. 4 models with their Case).

    A fold evaluated on fewer subsets than the model's full set (31; a per-Case UB: the Case's M^UB),
    e.g. a UB sweep in progress, shows its count in parentheses."""
    values: dict[tuple[str, str, str], dict[int, list[float]]] = {}
    for r in rows:
        key = (str(r["model"]), str(r["class"]), str(r["case"]))
        values.setdefault(key, {}).setdefault(int(r["fold"]), []).append(float(r["value"]))
    if not values:
        return ["none yet."]
    folds = sorted({f for v in values.values() for f in v})
    lines = [
        f"| model | class | {' | '.join(f'fold {f}' for f in folds)} | mean of the folds |",
        f"| --- | --- | {' | '.join('---' for _ in folds)} | --- |",
    ]
    for (model, cls, case), per_fold in sorted(values.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])):
        full = _full_subset_count(model, case)
        cells = [
            "-"
            if f not in per_fold
            else f"{np.mean(per_fold[f]):.4f}" + ("" if len(per_fold[f]) == full else f" ({len(per_fold[f])})")
            for f in folds
        ]
        mean = np.mean([np.mean(v) for v in per_fold.values()])
        lines.append(f"| {model}{f' ({case})' if case else ''} | {cls} | {' | '.join(cells)} | {mean:.4f} |")
    return lines


#: Table 1's F1 values (mean, SD, %) and Fig. 5c's volume-fraction results, as the paper gives them.
_PAPER_F1_OVER_M2 = {"sinusoids": (91.2, 3.9), "arteries": (71.2, 4.4)}
_PAPER_TISSUE_F1 = (88.7, 6.8)
_PAPER_FRACTIONS = {"sinusoids": "META 15.65 > DIA 10.69 (*)", "arteries": "DIA 0.63, META 0.52"}


def _f1_row(quantity: str, paper: tuple[float, float], v: Mapping[str, Any]) -> str:
    """A Table 1 F1 row: measured mean +- SD (%), verdict 'measured' (absolute F1 of the phantom is not
    the paper's), and whether it lies within one SD of the paper's mean."""
    mean, sd = 100 * v["mean"], 100 * v["sd"]
    near = "within" if abs(mean - paper[0]) <= paper[1] else "outside"
    return (
        f"| {quantity} | {paper[0]} +- {paper[1]} | {mean:.1f} +- {sd:.1f} (n={v['n']}) | measured | "
        f"{near} one SD of the paper's mean (absolute F1 on the phantom) |"
    )


def _fractions_verdict(cls: str, test: Mapping[str, Any] | None) -> str:
    """Fig. 5c: sinusoids occupy more of the metaphysis than of the diaphysis (the paper's only
    significant region difference); the test is Mann-Whitney diaphysis vs metaphysis."""
    if cls != "sinusoids":
        return "measured"
    if not test:
        return "not run yet"
    if test["pvalue"] > ALPHA:
        return "inconclusive (n.s.)"
    dia_higher = test.get("direction", np.sign(test["median_difference"])) > 0
    return "not reproduced (opposite)" if dia_higher else "reproduced"


def table1_verdicts(lines: Sequence[str]) -> list[str]:
    """The verdict column of :func:`table1_lines`' rows (none when Table 1 was not run)."""
    return [row.split(" | ")[3] for row in lines[2:] if row.startswith("| ")]


def table1_lines(out_dir: Path) -> list[str]:
    """Table 1 rows from ``table1_quantification/stats.json`` (when it was run)."""
    path = out_dir / "table1_quantification" / "stats.json"
    if not path.is_file():
        return ["Table 1 / Fig. 5: not run yet."]
    table = json.loads(path.read_text()).get("table1", {})
    lines = ["| quantity | paper | measured here | verdict | notes |", "| --- | --- | --- | --- | --- |"]
    for cls, v in (table.get("f1_over_M2") or {}).items():
        if cls in _PAPER_F1_OVER_M2:
            lines.append(_f1_row(f"MS-ME F1 over M2, {cls} (%)", _PAPER_F1_OVER_M2[cls], v))
    if tissue := table.get("tissue_f1"):
        lines.append(_f1_row("tissue F1 of the m1 UNet (%)", _PAPER_TISSUE_F1, tissue))
    for cls, entry in (table.get("fractions") or {}).items():
        regions = entry.get("regions", {})
        text = "; ".join(
            f"{r}: {100 * v['fraction_mean']:.2f} % (truth {100 * v['true_fraction_mean']:.2f} %, n={v['n']})"
            for r, v in regions.items()
        )
        test = entry.get("region_test")
        if test:
            text += f"; Mann-Whitney p={test['pvalue']:.3g}"
        note = (test or {}).get("note") or "-"
        lines.append(
            f"| volume fraction of {cls} | {_PAPER_FRACTIONS.get(cls, '')} | {text} | "
            f"{_fractions_verdict(cls, test)} | {note} |"
        )
    return lines


def f1_rows(out_dir: Path) -> list[dict[str, Any]]:
    """The F1 rows of every finished job in ``out_dir`` (``case`` always a string; none yet: [])."""
    try:
        rows = [r for r in load_results(out_dir) if r.get("metric") == "f1"]
    except (StatsError, ExperimentError):  # no finished job yet
        return []
    for r in rows:
        r["case"] = r.get("case") or ""
    return rows


def runs_seed(out_dir: str | os.PathLike) -> int:
    """The seed of the finished runs in ``out_dir``: one per output folder, the same in each run's model
    config (initial weights, Marker Sampling) and training config (data order)."""
    seeds = set()
    for run in sorted((Path(out_dir) / RUNS).glob(f"*/{EVALUATION_CSV}")):
        pair = [
            int(json.loads((run.parent / name).read_text())["seed"])
            for name in (MODEL_CONFIG, TRAIN_CONFIG)
            if (run.parent / name).is_file()
        ]
        seeds.add(pair[0] if len(set(pair)) == 1 else "/".join(map(str, pair)))
    if len(seeds) != 1 or not isinstance(next(iter(seeds)), int):
        found = ", ".join(sorted(map(str, seeds))) or "no finished run"
        raise ExperimentError(
            f"{out_dir}: expected finished runs of one seed (model / training seed the same), found {found}"
        )
    return seeds.pop()


def claim_label(claim: Paired) -> str:
    """Short name of a paired claim for tables: ``Fig. 2d MS vs HeMIS (m_4)``, ``... (sinusoids)``."""
    scope = ", ".join([*claim.subsets, *([claim.cls] if claim.cls else [])])
    return f"{claim.figure} {claim.model} vs {claim.reference}" + (f" ({scope})" if scope else "")


def _difference_cell(measured: Mapping[str, Any]) -> str:
    """A claim measured by :func:`measure`: ``mean difference (p, n)`` for the seed and selection tables."""
    return f"{float(np.mean(measured['diffs'])):+.4f} (p {measured['result'].pvalue:.2g}, n {measured['n']})"


def _run_key(r: Mapping) -> tuple[str, str]:
    """``(model, "<class>, fold <f>")``: the training run a result row comes from (one seed)."""
    return str(r["model"]), f"{r['class']}, fold {r['fold']}"


def _values_by_key(rows: Sequence[Mapping]) -> dict[tuple[str, str], dict[str, float]]:
    """F1 per subset, per :func:`_run_key` of homogeneous training."""
    values: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        if not r["case"]:
            values.setdefault(_run_key(r), {})[str(r["subset"])] = float(r["value"])
    return values


def seed_spread(
    out_dir: str | os.PathLike, replicates: Sequence[str | os.PathLike], *, epoch: str = "best"
) -> tuple[list[str], dict[Claim, str]]:
    """The seed-to-seed spread: the models and claims of ``out_dir`` rerun with other seeds. Returns the
    report section's lines and, per claim rerun with other seeds, a one-line summary for its notes.
    ``epoch``: ``best`` (each run's best-validation epoch, the protocol) or ``last`` (the runs that also
    have ``evaluation.last.csv``).

    ``replicates``: output folders of the same experiments run with ``--seed`` (same folds and data).
    For every (model, class, fold) of ``out_dir`` rerun with at least one other seed: the mean F1 per seed
    over the subsets that all those seeds have (a UB sweep may be further along with one seed; "-": not
    run with that seed); for every homogeneous paired claim: the mean difference and its Wilcoxon p per
    seed on those same subsets, their mean and SD over the seeds. A difference between models that is
    smaller than the spread between seeds of one model is training noise, however small its p over the
    subsets of one training run.
    """
    seeds = [runs_seed(out_dir), *(runs_seed(d) for d in replicates)]
    if len(set(seeds)) != len(seeds):
        raise ExperimentError(f"seed replicates must have different seeds, got {seeds}")
    load = f1_rows if epoch == "best" else (lambda d: last_epoch_rows(d)[1])
    per_seed = [load(Path(out_dir)), *(load(Path(d)) for d in replicates)]
    values = [_values_by_key(rows) for rows in per_seed]
    common: dict[tuple[str, str], set[str]] = {}
    for key in sorted(values[0]):  # the (model, class, fold) of out_dir
        present = [v[key] for v in values if key in v]
        if len(present) > 1:
            common[key] = set.intersection(*(set(p) for p in present))
    common = {key: subsets for key, subsets in common.items() if subsets}
    if not common:
        return ["No (model, class, fold) finished with another seed yet."], {}
    head = " | ".join(f"seed {s}" for s in seeds)
    lines = [
        f"Output folders: {', '.join(str(d) for d in replicates)} (the same jobs with seeds "
        f"{', '.join(map(str, seeds[1:]))} for the initial weights, Marker Sampling draws and data order; "
        "folds, data and Case tables unchanged).",
        "",
        f"| model | class, fold | subsets | mean F1 over the subsets: {head} | range |",
        f"| --- | --- | --- | {' | '.join('---' for _ in seeds)} | --- |",
    ]
    ranges = []
    for (model, where), subsets in common.items():
        means = [
            float(np.mean([v[(model, where)][s] for s in subsets])) if (model, where) in v else None for v in values
        ]
        found = [m for m in means if m is not None]
        ranges.append(max(found) - min(found))
        cells = " | ".join("-" if m is None else f"{m:.4f}" for m in means)
        lines.append(f"| {model} | {where} | {len(subsets)} | {cells} | {ranges[-1]:.4f} |")
    # each seed's claims are measured on the subsets of its (model, class, fold) that the other seeds have
    per_seed = [[r for r in rows if str(r["subset"]) in common.get(_run_key(r), ())] for rows in per_seed]
    claim_lines, summaries = [], {}
    for claim in CLAIMS:
        if not isinstance(claim, Paired) or claim.case:
            continue
        measured = [measure(rows, claim) for rows in per_seed]
        diffs = [float(np.mean(m["diffs"])) for m in measured if m is not None]
        if measured[0] is None or len(diffs) < 2:
            continue
        cells = " | ".join("-" if m is None else _difference_cell(m) for m in measured)
        same = sum(np.sign(d) == np.sign(diffs[0]) for d in diffs)
        folds = sorted({where.split("fold ")[1] for (model, where) in common if model == claim.model}, key=int)
        summaries[claim] = (
            f"over {len(diffs)} seeds (fold {', '.join(folds)}): mean difference {np.mean(diffs):+.4f} "
            f"(SD {np.std(diffs, ddof=1):.4f}), same sign as seed {seeds[0]} in {same} of {len(diffs)}"
        )
        claim_lines.append(
            f"| {claim_label(claim)} | {cells} | "
            f"{np.mean(diffs):+.4f} ({np.std(diffs, ddof=1):.4f}) | {max(diffs) - min(diffs):.4f} | "
            f"{same} of {len(diffs)} |"
        )
    if claim_lines:
        lines += [
            "",
            f"| claim | mean difference (Wilcoxon p, n): {head} | mean over seeds (SD) | range | "
            f"same sign as seed {seeds[0]} |",
            f"| --- | {' | '.join('---' for _ in seeds)} | --- | --- | --- |",
            *claim_lines,
        ]
    lines += ["", f"Largest seed-to-seed range of one model's mean F1: {max(ranges):.4f}."]
    return lines, summaries


def per_class_lines(rows: Sequence[Mapping]) -> list[str]:
    """Each homogeneous paired claim measured and judged (same rules) on each class alone; [] when the
    runs hold one class only. The paper pools classes; a class whose runs did not converge can decide
    a pooled verdict, and this table shows it."""
    claims = [c for c in CLAIMS if isinstance(c, Paired) and not (c.case or c.cls or c.subsets)]
    by_class = {
        cls: [measure(select(rows, cls=cls), c) for c in claims]
        for cls in sorted({str(r["class"]) for r in rows if not r["case"]})
    }
    by_class = {cls: m for cls, m in by_class.items() if any(x is not None for x in m)}
    if len(by_class) < 2:
        return []
    lines = [
        "The paper pools the classes; here each homogeneous claim on each class alone, with the same test",
        "and verdict rules: median difference (mean, Wilcoxon p, n) and verdict. Many arteries subsets score 0",
        "with both models, so their median difference is often 0: the verdict follows the signed ranks.",
        "",
        f"| claim | {' | '.join(by_class)} |",
        f"| --- | {' | '.join('---' for _ in by_class)} |",
    ]
    for i, claim in enumerate(claims):
        cells = [
            "-"
            if (m := measured[i]) is None
            else f"{m['median']:+.3f} (mean {float(np.mean(m['diffs'])):+.3f}, p {m['result'].pvalue:.2g}, n {m['n']}) "
            f"{verdict(claim.expect, m['result'])}"
            for measured in by_class.values()
        ]
        if any(c != "-" for c in cells):
            lines.append(f"| {claim_label(claim)} | {' | '.join(cells)} |")
    return lines


def selection_lines(out_dir: str | os.PathLike) -> list[str]:
    """Each homogeneous paired claim on the runs evaluated with both their best-validation epoch and their
    last epoch (``evaluation.last.csv``, :mod:`marker_excite.experiments.last_epoch`)."""
    best, last = last_epoch_rows(out_dir)
    if not last:
        return [f"No `{LAST_EVALUATION_CSV}` yet (`python experiments/last_epoch_evaluation.py --out DIR`)."]
    lines = [
        "The protocol keeps each run's epoch with the best validation mean F1 (one validation sample, all",
        "markers) and tests it on all subsets. Each claim again on the runs evaluated with both that epoch",
        "and the last one (the end of the decayed schedule): mean difference (Wilcoxon p, n).",
        "",
        "| claim | best-validation epoch | last epoch |",
        "| --- | --- | --- |",
    ]
    for claim in CLAIMS:
        if not isinstance(claim, Paired) or claim.case:
            continue
        measured = [measure(best, claim), measure(last, claim)]
        if any(m is None for m in measured):
            continue
        cells = [_difference_cell(m) for m in measured]
        lines.append(f"| {claim_label(claim)} | {' | '.join(cells)} |")
    return lines


#: The section of a ``compare`` report that answers the paper's question on real images.
_COMPARE_ANSWER = "## One network or one per subset?"


def real_data_lines(folders: Sequence[str | os.PathLike], base: str | os.PathLike | None = None) -> list[str]:
    """Per ``compare`` output folder: where it is and its "One network or one per subset?" section (the
    per-subset table and the tests), read from its ``compare/report.md``; a folder without one says so.
    Links are relative to ``base`` (the folder of the report they go into; default: each folder's parent)."""
    lines = [
        "The paper's comparison (MS, MS-ME, MZ vs one UNet per subset) on real images, by `marker-excite compare`."
    ]
    for folder in folders:
        report = Path(folder) / "compare" / "report.md"
        lines += [
            "",
            f"### `{Path(folder).name}` ([report]({os.path.relpath(report, base if base is not None else Path(folder).parent)}))",
            "",
        ]
        if not report.is_file():
            lines.append("not run yet.")
            continue
        text = report.read_text()
        start = text.find(_COMPARE_ANSWER)
        if start < 0:
            lines.append("its report has no per-subset comparison yet.")
            continue
        body = text[start:].split("\n", 1)[1]
        lines += [line for line in body.split("\nFigures:")[0].strip().splitlines() if not line.startswith("## ")]
    return lines
