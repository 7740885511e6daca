"""REPRODUCTION.md: every claim of the paper next to what the committed runs measure, with the replicates.

:func:`write_report` puts together the sections measured by :mod:`marker_excite.experiments.report` (the
claims, their verdicts, convergence, Table 1, seed spread, model selection, real data) with the
replicate-level statistics of :mod:`marker_excite.experiments.replicates`, the attention analysis and the
longer-training comparison, and writes the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from marker_excite.atomic import write_text
from marker_excite.experiments import replicates as rep_stats
from marker_excite.experiments.attention import ATTENTION_JSON, attention_lines
from marker_excite.experiments.last_epoch import LAST_EVALUATION_CSV
from marker_excite.experiments.longer import PAIR, longer_lines, longer_note, pair_row
from marker_excite.experiments.report import (
    ALPHA,
    CLAIMS,
    PLATEAU_RANGE,
    Claim,
    Paired,
    claim_notes,
    convergence,
    coverage_note,
    f1_rows,
    measure,
    model_means_lines,
    noise_note,
    per_class_lines,
    real_data_lines,
    runs_so_far,
    seed_spread,
    selection_lines,
    summary_counts,
    table1_lines,
    table1_verdicts,
    verdict,
)
from marker_excite.experiments.spec import RUNS

REPORT_MD = "REPRODUCTION.md"
REPLICATES_PNG = "replicates.png"


def write_report(
    out_dir: str | os.PathLike,
    *,
    protocol: str = "",
    path: str | os.PathLike | None = None,
    replicates: Sequence[str | os.PathLike] = (),
    longer: str | os.PathLike | None = None,
    phantoms: Sequence[str | os.PathLike] = (),
    real: Sequence[str | os.PathLike] = (),
) -> Path:
    """Write ``REPRODUCTION.md`` for the finished jobs in ``out_dir`` (see module doc).

    ``replicates``: output folders of seed replicates (section "Seed-to-seed spread",
    :func:`~marker_excite.experiments.report.seed_spread`; each claim's notes summarise it). ``longer``: the
    output root of ``experiments/gpu/longer_training.sh`` (section "Longer training",
    :func:`~marker_excite.experiments.longer.longer_lines`). ``phantoms``: output folders of the same
    experiments on other phantoms. With replicates or phantoms, the report opens with the headline of the
    replicate-level statistics (:mod:`marker_excite.experiments.replicates`) and draws ``replicates.png``
    beside it. ``real``: output folders of ``marker-excite compare`` on real images (section "Real data":
    their "One network or one per subset?" tables, :func:`~marker_excite.experiments.report.real_data_lines`).
    """
    out = Path(out_dir)
    rows = f1_rows(out)
    conv = convergence(out)
    seed_lines, seed_notes = seed_spread(out, replicates) if replicates else ([], {})
    longer_notes: dict[Claim, str] = {}
    if longer and (note := longer_note(longer)):  # the MS-ME vs MS claim (homogeneous training)
        ref, model = PAIR
        is_pair = [isinstance(c, Paired) and (c.model, c.reference, c.case) == (model, ref, "") for c in CLAIMS]
        longer_notes = {c: note for c, match in zip(CLAIMS, is_pair) if match}
    if replicates and next((out / RUNS).glob(f"*/{LAST_EVALUATION_CSV}"), None):
        last_lines, _ = seed_spread(out, replicates, epoch="last")
        seed_lines += ["", "### The same runs evaluated with their last epoch", "", *last_lines[2:]]
    lines = ["# Reproduction of the paper's claims on the CPU protocol", ""]
    reps = rep_stats.load_replicates([out, *replicates, *phantoms]) if (replicates or phantoms) else []
    rep_rows = rep_stats.replicate_rows(reps) if reps else []
    if rep_rows:
        figure = rep_stats.plot_replicates(rep_rows, out / REPLICATES_PNG)
        lines += [
            "## Headline: what holds across phantoms and training seeds",
            "",
            *rep_stats.headline_lines(rep_rows),
            "",
            f"![replicate means per claim]({figure.name}) (section Replicates for the numbers)",
            "",
        ]
    if protocol:
        lines += [protocol, ""]
    lines += [
        "Rows are paired by (class, marker subset, fold); the median and IQR are of the relative F1",
        "`F1_model - F1_reference` (Fig. 1 rows: median F1 of group a minus group b). Tests: paired Wilcoxon",
        "signed-rank, pooled over the classes present (as in the paper); Mann-Whitney U for groups of subsets;",
        "Spearman's rank correlation (rho) for trends with the number of markers.",
        f"Verdicts (rules fixed before the runs, `marker_excite.experiments.report.verdict`): p <= {ALPHA} in the",
        "claimed direction = reproduced; p <= 0.05 against it = not reproduced; otherwise inconclusive",
        "(for 'not different' claims: p > 0.05 = reproduced); not testable here = every paired difference is",
        "exactly 0 (the two models give identical results, e.g. identical by construction).",
    ]
    noise = rep_stats.seed_noise_sd(reps, "sinusoids") if reps else None
    table, verdicts = [], []
    for claim in CLAIMS:
        measured = measure(rows, claim)
        if measured is None:
            verdicts.append("not run yet")
            table.append(f"| {claim.figure} | {claim.paper} | - | - | - | not run yet | - |")
            continue
        res = measured["result"]
        iqr = f" ({measured['iqr'][0]:+.3f}, {measured['iqr'][1]:+.3f})" if measured["iqr"] else ""
        value = f"rho {measured['median']:+.3f}" if res.test == "spearman" else f"{measured['median']:+.3f}{iqr}"
        expect = claim.expect if isinstance(claim, Paired) else "greater"
        verdicts.append(verdict(expect, res))
        table.append(
            f"| {claim.figure} | {claim.paper} | {value} | {res.pvalue:.3g} {res.stars} | "
            f"{measured['n']} | {verdicts[-1]} | {claim_notes(claim, conv, measured, seed_notes, coverage_note(rows, claim), longer_notes)}"
            f"{noise_note(measured, noise)} |"
        )
    table1 = table1_lines(out)
    lines += [f"**Summary: {summary_counts([*verdicts, *table1_verdicts(table1)])} (Table 1 rows included).**"]
    lines += [
        "",
        "| figure | paper's result | measured: median (IQR) | test p | n | verdict | notes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *table,
    ]
    if per_class := per_class_lines(rows):
        lines += ["", "## Per class", "", *per_class]
    lines += ["", "## Runs so far", "", *runs_so_far(rows)]
    lines += [
        "",
        "## Mean F1 over the marker subsets",
        "",
        "Per model, class and fold: the mean test F1 over the subsets it was evaluated on (31; a UB model",
        "per subset; in parentheses the count when a fold has fewer, e.g. a UB sweep in progress).",
        "",
        *model_means_lines(rows),
    ]
    if real:
        lines += ["", "## Real data", "", *real_data_lines(real, base=(Path(path) if path else out / REPORT_MD).parent)]
    lines += ["", "## Table 1 / Fig. 5", ""] + table1
    if rep_rows:
        lines += ["", "## Replicates across phantoms and training seeds", ""] + rep_stats.replicate_lines(
            reps, rep_rows
        )
    if replicates:
        lines += ["", "## Seed-to-seed spread", ""] + seed_lines
    if next((out / RUNS).glob(f"*/{LAST_EVALUATION_CSV}"), None):
        lines += ["", "## Model selection: best-validation vs last epoch", ""] + selection_lines(out)
    if any(next((Path(d) / RUNS).glob(f"*/{ATTENTION_JSON}"), None) for d in (out, *replicates)):
        lines += ["", "## Marker Excite: what the attention learned", ""] + attention_lines([out, *replicates])
    longer_section = longer_lines(longer, [r for d in (out, *replicates) if (r := pair_row(d))]) if longer else []
    if longer_section:
        lines += ["", "## Longer training (GPU, Keras' JAX backend)", "", *longer_section]
    lines += [
        "",
        "## Convergence of the runs",
        "",
        f"Plateau: validation mean F1 varies by < {PLATEAU_RANGE} over the last quarter of the epochs.",
        "",
        "| model | class | Case | runs | on a plateau | largest last-quarter range | median validation F1: best / last "
        "| median best epoch / epochs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (model, cls, case), c in conv.items():
        lines.append(
            f"| {model} | {cls} | {case or '-'} | {c['runs']} | {c['plateau']} | {c['max_range']:.4f} | "
            f"{c['median_best_f1']:.3f} / {c['median_last_f1']:.3f} | {c['median_best_epoch']:.0f} / {c['epochs']} |"
        )
    return write_text(Path(path) if path else out / REPORT_MD, "\n".join(lines) + "\n")
