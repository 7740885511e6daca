"""Replicate-level statistics: do the verdicts hold across phantoms and training seeds?

One *replicate* is one output folder of the same experiments: one phantom (the store the jobs trained
on) and one training seed. The paper-style test of :mod:`marker_excite.experiments.report` pairs the
31 subsets x folds of ONE pair of trainings; it says how consistently one trained network beats another
across subsets, not whether the method beats the other across trainings. Here each replicate is reduced
to one number per claim and class (the mean paired difference over its (subset, fold) pairs) and the
test runs across replicates (n = number of replicates):

- a two-sided one-sample t-test of the replicate means against 0 (the verdict's test), with the
  Wilcoxon signed-rank test of the same means beside it (with n < 6 it can never reach p 0.05);
- the number of replicates whose mean has the claimed sign;
- the verdict by the rules of :func:`marker_excite.experiments.report.verdict` applied to the t-test
  (fewer than :data:`MIN_REPLICATES` replicates: inconclusive), "not testable here" when every paired
  difference of every replicate is exactly 0;
- a flag when the effect is smaller than the training noise: the seed-to-seed SD of one model's mean F1
  (over training seeds on the same phantom and fold, median over the models that have >= 2 seeds).

The rules were written down in experiments/README.md ("Replicates across phantoms") before the runs.
Which phantom a folder trained on is read from its ``phantom.json`` (``{"seed": N, ...}``, written with
the phantom replicates); a folder without one used the preset's default phantom, seed 0.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from marker_excite.analysis.stats import StatsError, TestResult, stars, wilcoxon
from marker_excite.atomic import atomic_path
from marker_excite.experiments.report import (
    ALPHA,
    CLAIMS,
    IDENTICAL,
    NOT_TESTABLE,
    Paired,
    claim_label,
    f1_rows,
    paired_claim,
    runs_seed,
    verdict,
)

PHANTOM_JSON = "phantom.json"
#: Fewer replicates than this give "inconclusive" whatever the test says.
MIN_REPLICATES = 3


@dataclass(frozen=True)
class Replicate:
    """One output folder: its phantom seed, training seed and F1 rows (homogeneous and Case runs)."""

    folder: str
    phantom: int
    seed: int
    rows: Sequence[Mapping] = field(repr=False, compare=False)

    @property
    def label(self) -> str:
        return f"phantom {self.phantom}, seed {self.seed}"


def phantom_of(out_dir: str | os.PathLike) -> int:
    """The phantom seed of an output folder: ``phantom.json``'s ``seed``, else 0 (the preset's phantom)."""
    path = Path(out_dir) / PHANTOM_JSON
    if not path.is_file():
        return 0
    return int(json.loads(path.read_text())["seed"])


def load_replicates(folders: Sequence[str | os.PathLike]) -> list[Replicate]:
    """The replicates in ``folders`` (folders without finished runs are left out); two folders of the same
    (phantom, seed) are refused: they would count one replicate twice."""
    out, seen = [], {}
    for folder in folders:
        rows = f1_rows(Path(folder))
        if not rows:
            continue
        rep = Replicate(str(folder), phantom_of(folder), runs_seed(folder), rows)
        key = (rep.phantom, rep.seed)
        if key in seen:
            raise StatsError(f"{folder} and {seen[key]} are both {rep.label}: one replicate counted twice")
        seen[key] = folder
        out.append(rep)
    return out


@dataclass(frozen=True)
class ReplicateMean:
    """One replicate's share of a claim: the mean paired difference over its (subset, fold) pairs."""

    replicate: Replicate
    mean: float
    pairs: int
    folds: tuple[int, ...]
    all_zero: bool


def replicate_mean(rep: Replicate, claim: Paired, cls: str) -> ReplicateMean | None:
    """The mean difference of ``claim`` on class ``cls`` in one replicate (None: not run there)."""
    paired = paired_claim([r for r in rep.rows if r["class"] == cls], claim)
    if paired is None:
        return None
    d = paired.differences
    folds = tuple(sorted({int(k[2]) for k in paired.keys}))
    return ReplicateMean(rep, float(np.mean(d)), int(d.size), folds, bool(np.all(d == 0)))


def t_test(means: Sequence[float]) -> TestResult:
    """Two-sided one-sample t-test of ``means`` against 0 as a :class:`TestResult` (``median_difference``:
    the mean; ``direction``: its sign). Fewer than 2 values or no spread: p = 1 with a note."""
    from scipy import stats as st

    x = np.asarray(means, dtype=float)
    mean = float(np.mean(x)) if x.size else 0.0
    if x.size < 2:
        return TestResult("t-test", 0.0, 1.0, int(x.size), "n.s.", mean, "one replicate: no test", int(np.sign(mean)))
    if np.all(x == 0):
        return TestResult("t-test", 0.0, 1.0, int(x.size), "n.s.", 0.0, IDENTICAL)
    if np.ptp(x) == 0:  # identical non-zero means: t is infinite
        return TestResult("t-test", float("inf"), 0.0, int(x.size), "***", mean, "", int(np.sign(mean)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = st.ttest_1samp(x, 0.0)
    p = float(res.pvalue)
    return TestResult("t-test", float(res.statistic), p, int(x.size), stars(p), mean, "", int(np.sign(mean)))


@dataclass(frozen=True)
class ReplicateRow:
    """A claim on one class across replicates: per-replicate means, tests, sign agreement, verdict."""

    claim: Paired
    cls: str
    means: tuple[ReplicateMean, ...]
    ttest: TestResult
    wilcoxon_p: float
    agree: int
    verdict: str
    noise_sd: float | None

    @property
    def below_noise(self) -> bool:
        """The effect is smaller than the seed-to-seed SD of one model's mean F1 (when there is one)."""
        return self.noise_sd is not None and abs(self.mean) < self.noise_sd

    @property
    def mean(self) -> float:
        return float(np.mean([m.mean for m in self.means]))

    @property
    def sd(self) -> float:
        return float(np.std([m.mean for m in self.means], ddof=1)) if len(self.means) > 1 else float("nan")


def claimed_sign(claim: Paired) -> int:
    """+1 for a claim that the model is better, -1 for 'less', 0 for claims of no difference."""
    return {"greater": 1, "less": -1}.get(claim.expect, 0)


def replicate_verdict(claim: Paired, test: TestResult, means: Sequence[ReplicateMean]) -> str:
    """The replicate-level verdict (module doc): the report's rules on the t-test across replicates."""
    if means and all(m.all_zero for m in means):
        return NOT_TESTABLE
    if len(means) < MIN_REPLICATES:
        return f"inconclusive ({len(means)} replicate{'s' if len(means) != 1 else ''}, needs {MIN_REPLICATES})"
    return verdict(claim.expect, test)


def seed_noise_sd(replicates: Sequence[Replicate], cls: str) -> float | None:
    """Median over (model, fold) of the SD over training seeds of the model's mean F1 (homogeneous runs,
    class ``cls``, the same phantom, the subsets every seed has); None without >= 2 seeds of one model."""
    by_run: dict[tuple[int, str, int], dict[int, dict[str, float]]] = {}
    for rep in replicates:
        for r in rep.rows:
            if r["class"] == cls and not r["case"]:
                key = (rep.phantom, str(r["model"]), int(r["fold"]))
                by_run.setdefault(key, {}).setdefault(rep.seed, {})[str(r["subset"])] = float(r["value"])
    sds = []
    for per_seed in by_run.values():
        if len(per_seed) < 2:
            continue
        common = set.intersection(*(set(v) for v in per_seed.values()))
        if common:
            sds.append(float(np.std([np.mean([v[s] for s in common]) for v in per_seed.values()], ddof=1)))
    return float(np.median(sds)) if sds else None


def homogeneous_claims() -> list[Paired]:
    """The paired claims on homogeneous training (the ones a replicate can test)."""
    return [c for c in CLAIMS if isinstance(c, Paired) and not c.case]


def replicate_rows(replicates: Sequence[Replicate], classes: Sequence[str] = ("sinusoids",)) -> list[ReplicateRow]:
    """Every homogeneous paired claim on each class of ``classes`` that at least one replicate ran."""
    out = []
    for cls in classes:
        noise = seed_noise_sd(replicates, cls)
        for claim in homogeneous_claims():
            if claim.cls:  # its class restriction is what every row here already is (one class per row)
                continue
            means = tuple(m for rep in replicates if (m := replicate_mean(rep, claim, cls)) is not None)
            if not means:
                continue
            values = [m.mean for m in means]
            test = t_test(values)
            wil = wilcoxon(values).pvalue if any(values) else 1.0
            sign = claimed_sign(claim)
            agree = sum(np.sign(v) == sign for v in values) if sign else sum(abs(v) <= (noise or 0) for v in values)
            verdict_ = replicate_verdict(claim, test, means)
            out.append(ReplicateRow(claim, cls, means, test, float(wil), int(agree), verdict_, noise))
    return out


def _agree_text(row: ReplicateRow) -> str:
    if claimed_sign(row.claim):
        return f"{row.agree} of {len(row.means)} in the claimed direction"
    return f"{row.agree} of {len(row.means)} within the seed noise"


def replicate_lines(replicates: Sequence[Replicate], rows: Sequence[ReplicateRow]) -> list[str]:
    """The report section: the replicates, then one row per claim and class."""
    if not rows:
        return ["No replicate has finished runs of a homogeneous claim yet."]
    noise = {row.cls: row.noise_sd for row in rows}  # computed once per class by replicate_rows
    lines = [
        "One replicate = one (phantom, training seed): "
        + "; ".join(f"`{Path(r.folder).name}` ({r.label})" for r in replicates)
        + ". Per replicate the mean paired difference over its (subset, fold) pairs; across replicates a",
        f"two-sided one-sample t-test (n = replicates; verdicts need >= {MIN_REPLICATES}), the Wilcoxon p of the same",
        "means (it cannot reach 0.05 with n < 6) and the sign agreement. Rules: experiments/README.md",
        '("Replicates across phantoms"), fixed before the runs. Seed-to-seed SD of one model\'s mean F1: '
        + ", ".join(f"{c} {v:.4f}" if v is not None else f"{c} -" for c, v in noise.items())
        + ".",
        "",
        "| claim | class | per replicate: mean difference (folds) | mean (SD) | t-test p | Wilcoxon p | "
        "agreement | verdict | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cells = "; ".join(f"{m.replicate.label}: {m.mean:+.4f} (f{','.join(map(str, m.folds))})" for m in row.means)
        sd = "-" if np.isnan(row.sd) else f"{row.sd:.4f}"
        notes = [n for n in (row.ttest.note, "smaller than the training noise" if row.below_noise else "") if n]
        lines.append(
            f"| {claim_label(row.claim)} | {row.cls} | {cells} | {row.mean:+.4f} ({sd}) | "
            f"{row.ttest.pvalue:.3g} {row.ttest.stars} | {row.wilcoxon_p:.3g} | {_agree_text(row)} | "
            f"{row.verdict} | {'; '.join(notes) or '-'} |"
        )
    return lines


def headline_lines(rows: Sequence[ReplicateRow]) -> list[str]:
    """A short paragraph and table: which findings hold across phantoms and seeds, which do not."""
    if not rows:
        return []
    decidable = [r for r in rows if len(r.means) >= MIN_REPLICATES]
    holds = [r for r in decidable if r.verdict == "reproduced"]
    fails = [r for r in decidable if r.verdict.startswith("not reproduced")]
    n_reps = max(len(r.means) for r in rows)
    lines = [
        f"Across up to {n_reps} replicates (phantoms x training seeds, cpu protocol, sinusoids), "
        f"{len(decidable)} of {len(rows)} claims have the {MIN_REPLICATES} replicates a verdict needs; of "
        f"those, {len(holds)} hold (replicate-level t-test, p <= {ALPHA}, in the claimed direction), "
        f"{len(fails)} are contradicted and {len(decidable) - len(holds) - len(fails)} are inconclusive or "
        "not testable. The others wait for their replicates.",
        "",
        "| claim | replicates | mean difference (SD) | agreement | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        sd = "-" if np.isnan(r.sd) else f"{r.sd:.3f}"
        lines.append(
            f"| {claim_label(r.claim)}: {r.claim.paper} | {len(r.means)} | {r.mean:+.3f} ({sd}) | "
            f"{_agree_text(r)} | {r.verdict} |"
        )
    return lines


def plot_replicates(rows: Sequence[ReplicateRow], path: str | os.PathLike) -> Path:
    """One line per claim: each replicate's mean difference as a dot around zero, the claim's mean as a
    bar; filled dots for phantom replicates, open for seed replicates of phantom 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(rows) + 1.2))
    for i, row in enumerate(rows):
        y = len(rows) - 1 - i
        for m in row.means:
            filled = m.replicate.phantom != 0 or m.replicate.seed == 0
            ax.plot(m.mean, y, "o", ms=5, mfc="C0" if filled else "none", mec="C0", alpha=0.8)
        ax.plot([row.mean, row.mean], [y - 0.3, y + 0.3], "-", color="C3", lw=2)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{claim_label(r.claim)} [{r.verdict.split(' (')[0]}]" for r in reversed(rows)], fontsize=7)
    ax.set_xlabel("mean paired F1 difference per replicate (model - reference)")
    ax.set_title("Replicates: filled = phantom replicate or seed 0, open = seed replicate; bar = mean", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return out
