"""Replicate-level statistics of the reproduction report (marker_excite.experiments.replicates) and the
claims about trends, on hand-computed examples."""

import json
import math

import pytest

from marker_excite import experiments as E
from marker_excite.analysis.results import write_results
from marker_excite.errors import UserInputError
from marker_excite.experiments import replicates as R
from marker_excite.experiments.report import NOT_TESTABLE, Paired, spearman, summary_counts, verdict
from marker_excite.experiments.reproduction import write_report

_s = E.PAPER_PANEL.parse_subset


def _write_runs(out, phantom, seed, models, folds, value):
    """Fake finished runs of homogeneous sinusoids jobs: F1 = value(model, fold, subset)."""
    for model in models:
        for fold in folds:
            job = E.Job(model, ("sinusoids",), fold)
            rows = [
                dict(model=model, fold=fold, subset=s.label, n_markers=len(s), metric="f1", value=value(model, fold, s))
                | {"class": "sinusoids"}
                for s in E.all_subsets()
            ]
            run = E.job_run_dir(out, job)
            write_results(rows, run / E.EVALUATION_CSV)
            for name in ("train_config.json", "model_config.json"):
                (run / name).write_text(json.dumps({"seed": seed}))
    if phantom:
        (out / R.PHANTOM_JSON).write_text(json.dumps({"seed": phantom}))


def test_t_test_matches_the_hand_computed_value():
    # mean 0.2, SD 0.1, n 3: t = 0.2 / (0.1 / sqrt 3); df 2: two-sided p = 1 - t / sqrt(t^2 + 2)
    res = R.t_test([0.1, 0.2, 0.3])
    t = 0.2 / (0.1 / math.sqrt(3))
    assert res.statistic == pytest.approx(t) and res.pvalue == pytest.approx(1 - t / math.sqrt(t * t + 2))
    assert res.n == 3 and res.direction == 1 and res.median_difference == pytest.approx(0.2)
    assert R.t_test([0.0, 0.0, 0.0]).note == "all differences are zero"
    assert R.t_test([0.3]).pvalue == 1.0 and "one replicate" in R.t_test([0.3]).note


def test_replicate_verdicts_follow_the_written_rules():
    claim = Paired("Fig. x", "A beats B", "A", "B", "greater")
    rep = R.Replicate("d", 0, 0, [])

    def means(*values, zero=False):
        return [R.ReplicateMean(rep, v, 31, (0,), zero) for v in values]

    # +0.05, +0.06, +0.07: t = 0.06 / (0.01 / sqrt 3) = 10.39, p = 0.0091 -> reproduced
    ok = means(0.05, 0.06, 0.07)
    assert R.replicate_verdict(claim, R.t_test([m.mean for m in ok]), ok) == "reproduced"
    against = means(-0.05, -0.06, -0.07)
    assert R.replicate_verdict(claim, R.t_test([-0.05, -0.06, -0.07]), against) == "not reproduced (opposite)"
    mixed = means(0.05, -0.06, 0.07)
    assert R.replicate_verdict(claim, R.t_test([0.05, -0.06, 0.07]), mixed) == "inconclusive (n.s.)"
    two = means(0.05, 0.06)
    assert R.replicate_verdict(claim, R.t_test([0.05, 0.06]), two) == "inconclusive (2 replicates, needs 3)"
    zero = means(0.0, 0.0, 0.0, zero=True)
    assert R.replicate_verdict(claim, R.t_test([0, 0, 0]), zero) == NOT_TESTABLE
    similar = Paired("Fig. x", "A ~ B", "A", "B", "similar")
    assert R.replicate_verdict(similar, R.t_test([0.05, 0.06, 0.07]), ok).startswith("not reproduced")
    assert R.replicate_verdict(similar, R.t_test([0.05, -0.06, 0.07]), mixed) == "reproduced"


def test_identical_models_are_not_testable_and_summary_counts_every_kind():
    from marker_excite.analysis.stats import wilcoxon

    assert verdict("not_greater", wilcoxon([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])) == NOT_TESTABLE
    assert summary_counts(
        ["reproduced", "not reproduced (opposite)", NOT_TESTABLE, "measured", "inconclusive (n.s.)"]
    ) == (
        "5 claims; 1 reproduced, 1 not reproduced, 1 inconclusive, 1 not testable here, 0 not run yet, "
        "1 measured without a stated direction"
    )


def test_spearman_of_a_trend():
    # ranks of y: 1 3 2 4 against 1 2 3 4: sum d^2 = 2, rho = 1 - 6 * 2 / (4 * 15) = 0.8
    res = spearman([1, 2, 3, 4], [0.1, 0.2, 0.15, 0.3])
    assert res.statistic == pytest.approx(0.8) and res.direction == 1 and res.n == 4
    assert spearman([1, 1, 1], [0.1, 0.2, 0.3]).pvalue == 1.0


def test_seed_noise_sd_is_the_median_sd_over_seeds_of_one_phantom(tmp_path):
    levels = {0: {"MS": 0.80, "MS-ME": 0.70}, 1: {"MS": 0.82, "MS-ME": 0.70}, 2: {"MS": 0.84, "MS-ME": 0.76}}
    folders = []
    for seed, per_model in levels.items():
        out = tmp_path / f"seed{seed}"
        _write_runs(out, 0, seed, ["MS", "MS-ME"], [0], lambda m, f, s, p=per_model: p[m])
        folders.append(out)
    other = tmp_path / "phantom1"  # one seed of another phantom: no seed spread of its own
    _write_runs(other, 1, 0, ["MS", "MS-ME"], [0], lambda m, f, s: 0.1)
    reps = R.load_replicates([*folders, other])
    assert [(r.phantom, r.seed) for r in reps] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    # MS: SD(0.80, 0.82, 0.84) = 0.02; MS-ME: SD(0.70, 0.70, 0.76) = sqrt(0.0012); median of the two
    assert R.seed_noise_sd(reps, "sinusoids") == pytest.approx((0.02 + math.sqrt(0.0012)) / 2)


def test_report_with_phantom_replicates(tmp_path):
    """Per replicate the mean difference over (subset, fold); the t-test across replicates; the headline,
    the section and the figure; a (phantom, seed) counted twice is refused."""
    # MS - MZ per replicate: +0.10, +0.12, +0.14 (both folds); MS-ME - MS: +0.01, -0.01, +0.00
    gain = {0: (0.10, 0.01), 1: (0.12, -0.01), 2: (0.14, 0.0)}
    dirs = {p: tmp_path / f"phantom{p}" for p in gain}
    for p, (ms_mz, me_ms) in gain.items():
        base = {"MZ": 0.6, "MS": 0.6 + ms_mz, "MS-ME": 0.6 + ms_mz + me_ms}
        _write_runs(dirs[p], p, 0, list(base), [0, 1], lambda m, f, s, b=base: b[m] + 0.01 * len(s))
    text = write_report(dirs[0], phantoms=[dirs[1], dirs[2]]).read_text()
    assert text.index("## Headline") < text.index("| figure | paper's result")
    assert (dirs[0] / "replicates.png").stat().st_size > 1000
    section = text.split("## Replicates across phantoms and training seeds")[1]
    row = next(line for line in section.splitlines() if line.startswith("| Fig. 2b MS vs MZ |"))
    t = 0.12 / (0.02 / math.sqrt(3))
    assert "phantom 0, seed 0: +0.1000 (f0,1); phantom 1, seed 0: +0.1200 (f0,1); phantom 2, seed 0: +0.1400" in row
    assert f"| +0.1200 (0.0200) | {1 - t / math.sqrt(t * t + 2):.3g} " in row
    assert "| 3 of 3 in the claimed direction | reproduced |" in row
    me = next(line for line in section.splitlines() if line.startswith("| Fig. 3c MS-ME vs MS |"))
    assert "| +0.0000 (0.0100) | 1 " in me and "| 1 of 3 in the claimed direction | inconclusive (n.s.) |" in me
    headline = text.split("## Headline")[1].split("![")[0]
    assert "| Fig. 2b MS vs MZ: MS vastly outperforms MZ | 3 | +0.120 (0.020) |" in headline
    assert "2 of 2 claims have the 3 replicates a verdict needs; of those, 1 hold" in headline
    assert "0 are contradicted and 1 are inconclusive" in headline
    with pytest.raises(UserInputError, match="one replicate counted twice"):
        write_report(dirs[0], phantoms=[dirs[1], dirs[1]])


def test_real_data_section_quotes_the_compare_answer(tmp_path):
    """REPRODUCTION.md's "Real data" section: the per-subset answer of each compare folder, or why not."""
    from marker_excite.experiments.report import real_data_lines

    done = tmp_path / "real-a"
    (done / "compare").mkdir(parents=True)
    (done / "compare" / "report.md").write_text(
        "# Which stains\n\nintro\n\n## One network or one per subset? (cells)\n\n| subset | UB | MS |\n"
        "|---|---:|---:|\n| dna | 0.900 | 0.890 |\n\nFigures: [x](figures/x.png)\n"
    )
    lines = real_data_lines([done, tmp_path / "real-b"])
    assert "### `real-a` ([report](real-a/compare/report.md))" in lines
    assert "| dna | 0.900 | 0.890 |" in lines and not any(line.startswith("Figures:") for line in lines)
    assert lines[-1] == "not run yet."
    _write_runs(tmp_path / "cpu", 0, 0, ["MS", "MZ"], [0], lambda m, f, s: 0.5)
    text = write_report(tmp_path / "cpu", real=[done]).read_text()
    assert text.index("## Real data") < text.index("## Table 1") and "| dna | 0.900 | 0.890 |" in text
    assert "([report](../real-a/compare/report.md))" in text  # relative to the report in cpu/
