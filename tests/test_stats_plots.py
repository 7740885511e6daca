"""stats.py (against scipy and hand-computed values), plots.py (non-empty PNGs) and progress.py."""

import io

import numpy as np
import pytest
from scipy import stats as st

from marker_excite.analysis import plots, stats
from marker_excite.progress import Progress, format_duration


def _rows(model, values, cls="sinusoids", metric="f1"):
    """Tidy rows for subsets m_1.. and folds 0.. from a {(subset, fold): value} dict."""
    return [
        {"model": model, "fold": f, "class": cls, "subset": s, "n_markers": len(s) - 2, "metric": metric, "value": v}
        for (s, f), v in values.items()
    ]


@pytest.mark.parametrize(
    "p, mark",
    [
        (0.0005, "***"),
        (0.001, "***"),
        (0.0011, "**"),
        (0.01, "**"),
        (0.05, "*"),
        (0.0501, "n.s."),
        (1.0, "n.s."),
        (float("nan"), "n.s."),
    ],
)
def test_stars(p, mark):
    assert stats.stars(p) == mark


def test_wilcoxon_matches_scipy_and_hand_values():
    a = np.array([0.8, 0.7, 0.9, 0.6, 0.75, 0.85, 0.95, 0.5])
    b = np.array([0.7, 0.72, 0.8, 0.5, 0.6, 0.8, 0.7, 0.45])
    res = stats.wilcoxon(a, b)
    ref = st.wilcoxon(a - b)
    assert res.pvalue == pytest.approx(ref.pvalue) and res.statistic == pytest.approx(ref.statistic)
    # hand check: differences 0.1,-0.02,0.1,0.1,0.15,0.05,0.25,0.05 -> only -0.02 negative (rank 1): W = 1
    assert res.statistic == pytest.approx(1.0)
    # exact two-sided p for W=1, n=8: 2 * P(W <= 1) = 2 * 2 / 256
    assert res.pvalue == pytest.approx(4 / 256)
    assert res.stars == "*" and res.n == 8 and res.note == ""
    assert res.median_difference == pytest.approx(np.median(a - b))


def test_wilcoxon_zero_differences_and_too_few():
    allzero = stats.wilcoxon([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert allzero.pvalue == 1.0 and allzero.stars == "n.s." and "zero" in allzero.note
    few = stats.wilcoxon([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert few.pvalue == pytest.approx(0.25) and "never reach 0.05" in few.note
    # zero differences dropped (wilcox) vs split (zsplit): same as scipy
    a, b = [1, 2, 3, 4, 5, 6, 7], [1, 1, 1, 1, 1, 1, 9]
    for zm in ("wilcox", "zsplit", "pratt"):
        assert stats.wilcoxon(a, b, zero_method=zm).pvalue == pytest.approx(
            st.wilcoxon(np.subtract(a, b), zero_method=zm).pvalue
        )
    with pytest.raises(stats.StatsError, match="no pairs"):
        stats.wilcoxon([], [])
    with pytest.raises(stats.StatsError, match="differ in length"):
        stats.wilcoxon([1, 2], [1])
    with pytest.raises(stats.StatsError, match="NaN"):
        stats.wilcoxon([1, np.nan], [1, 2])


def test_mann_whitney_matches_scipy():
    a, b = [0.9, 0.85, 0.8, 0.95, 0.7], [0.5, 0.6, 0.55, 0.4]
    res = stats.mann_whitney(a, b)
    ref = st.mannwhitneyu(a, b)
    assert res.statistic == pytest.approx(ref.statistic) == 20.0  # every a beats every b: U = 5 * 4
    assert res.pvalue == pytest.approx(2 / 126)  # exact: 2 / C(9, 4)
    assert res.stars == "*" and res.n == (5, 4)
    assert "never reach" in stats.mann_whitney([1, 2], [3]).note
    assert stats.mann_whitney([1, 1], [1, 1]).pvalue == 1.0
    with pytest.raises(stats.StatsError, match="both groups"):
        stats.mann_whitney([], [1])


def test_test_direction_follows_the_ranks_not_the_median():
    """Mostly zero differences: the median is 0, the direction is the side the ranks favour."""
    # non-zero differences -0.3, -0.2, +0.1: ranks 3, 2, 1 -> W+ - W- = 1 - 5 < 0
    w = stats.wilcoxon([0.0, 0.0, 0.0, 0.0, 0.0, -0.3, -0.2, 0.1])
    assert w.median_difference == 0.0 and w.direction == -1
    assert stats.wilcoxon([0.0, 0.0, 0.0, 0.0, 0.3, -0.1]).direction == 1
    assert stats.wilcoxon([0.1, -0.1]).direction == 0  # W+ = W- = 1.5
    # Mann-Whitney: U_a = 2 (a beats b in 2 of the 3 x 2 pairs) < 3 -> b tends to exceed a
    m = stats.mann_whitney([0.0, 0.0, 0.5], [0.2, 0.3])
    assert m.statistic == 2.0 and m.direction == -1
    assert stats.mann_whitney([1.0, 2.0], [0.0, 0.5]).direction == 1


def test_pair_rows_matches_by_class_subset_fold():
    a = _rows("MS-ME", {("m_1", 0): 0.5, ("m_2", 0): 0.7, ("m_1", 1): 0.6, ("m_12", 0): 0.9})
    b = _rows("MS", {("m_1", 1): 0.4, ("m_1", 0): 0.45, ("m_2", 0): 0.8, ("m_3", 0): 0.1})
    paired = stats.pair_rows(a, b)
    assert paired.keys == [("sinusoids", "m_1", "0"), ("sinusoids", "m_1", "1"), ("sinusoids", "m_2", "0")]
    np.testing.assert_allclose(paired.differences, [0.05, 0.2, -0.1])
    assert paired.only_a == [("sinusoids", "m_12", "0")] and paired.only_b == [("sinusoids", "m_3", "0")]
    with pytest.raises(stats.StatsError, match="two rows"):
        stats.pair_rows(a + a, b)
    with pytest.raises(stats.StatsError, match="no matching"):
        stats.pair_rows(a, b, metric="recall")
    assert stats.compare_paired(a, b).pvalue == pytest.approx(st.wilcoxon([0.05, 0.2, -0.1]).pvalue)


def test_compare_to_reference_skips_models_without_common_results():
    """A tissue model shares no (class, subset, fold) with the vessel models: listed, not a crash."""
    from marker_excite.analysis.results import compare_to_reference

    ms = _rows("MS", {("m_1", 0): 0.4, ("m_2", 0): 0.6, ("m_12", 0): 0.8})
    ms_me = _rows("MS-ME", {("m_1", 0): 0.5, ("m_2", 0): 0.65, ("m_12", 0): 0.8})
    ub = _rows("UB", {("m_2", 0): 0.7})
    tissue = _rows("UB-tissue", {("m_1", 0): 0.98}, cls="tissue")
    with pytest.raises(stats.StatsError, match=r"model UB-tissue, classes tissue vs model MS, classes sinusoids"):
        stats.pair_rows(tissue, ms)
    compared, skipped = compare_to_reference(tissue + ub + ms_me + ms + _rows("MS", {("m_1", 0): 1}, metric="tp"), "MS")
    assert [(c.model, c.reference, c.test.n) for c in compared] == [("MS-ME", "MS", 3), ("UB", "MS", 1)]
    assert compared[0].mean_difference == pytest.approx(0.05) and compared[1].mean_difference == pytest.approx(0.1)
    assert [r["value"] for r in compared[0].relative] == pytest.approx([0.1, 0.0, 0.05])
    assert skipped == {"UB-tissue": "no (class, subset, fold) in common with MS (classes tissue vs sinusoids)"}
    with pytest.raises(stats.StatsError, match="no f1 results of the reference model 'MZ'"):
        compare_to_reference(ms, "MZ")


def test_rank_subsets_mean_sd_ascending():
    rows = _rows("UB", {("m_1", 0): 0.2, ("m_1", 1): 0.4, ("m_2", 0): 0.9, ("m_2", 1): 0.7, ("m_12", 0): 0.5})
    ranked = plots.rank_subsets(rows)
    assert [r[0] for r in ranked] == ["m_1", "m_12", "m_2"]
    assert ranked[0][1] == pytest.approx(0.3) and ranked[0][2] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert ranked[1][2] == 0.0 and ranked[1][3] == 1


def _png_ok(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_plots_write_pngs(tmp_path):
    rng = np.random.default_rng(0)
    subsets = ["m_1", "m_2", "m_3", "m_12", "m_13", "m_23", "m_123"]

    def table(model, shift, cls):
        return _rows(
            model,
            {
                (s, f): float(np.clip(0.5 + shift + 0.05 * len(s) + 0.02 * rng.normal(), 0, 1))
                for s in subsets
                for f in range(4)
            },
            cls=cls,
        )

    ref = table("MS", 0.0, "sinusoids") + table("MS", 0.0, "arteries")
    models = {
        "MS-ME": table("MS-ME", 0.05, "sinusoids") + table("MS-ME", 0.05, "arteries"),
        "MZ": table("MZ", -0.1, "sinusoids") + table("MZ", -0.1, "arteries"),
    }
    out = plots.subset_ranking(ref, tmp_path / "rank.png")
    assert _png_ok(out)
    assert _png_ok(plots.relative_boxplot(models, ref, tmp_path / "rel.png", reference="MS"))
    groups = {"with m2": lambda s: "2" in s, "without m2": lambda s: "2" not in s}
    assert _png_ok(plots.grouped_comparison(ref, groups, tmp_path / "groups.png", cls="sinusoids"))
    history = [
        {
            "epoch": e,
            "loss": 1.0 / e,
            "val_loss": 1.1 / e,
            "val_f1_sinusoids": 0.1 * e,
            "val_mean_f1": 0.1 * e,
            "time": 1.0,
        }
        for e in range(1, 6)
    ]
    assert _png_ok(plots.training_curves(history, tmp_path / "curves.png"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "groups.png", "rank.png", "rel.png"]
    with pytest.raises(Exception, match="matches no rows"):
        plots.grouped_comparison(ref, {"a": ["m_9"], "b": ["m_1"]}, tmp_path / "x.png")


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


def test_progress_quiet_when_not_a_tty():
    stream = _Stream(tty=False)
    with Progress(100, "job", unit="item", every=25, stream=stream) as bar:
        for _ in range(100):
            bar.update(loss=0.5)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4  # 25 %, 50 %, 75 % and the final line
    assert lines[0].startswith("job 25/100 items ( 25%)") and "ETA" in lines[0] and "loss=0.5" in lines[0]
    assert lines[-1].startswith("job 100/100 items (100%)") and "ETA" not in lines[-1]


def test_progress_min_interval_keeps_fast_loops_to_their_final_line(monkeypatch):
    stream = _Stream(tty=False)
    with Progress(10, "fast", unit="batch", every=10, min_interval=1e6, stream=stream) as bar:
        for _ in range(10):
            bar.update()
    assert stream.getvalue().splitlines() == [stream.getvalue().splitlines()[-1]]
    assert stream.getvalue().startswith("fast 10/10 batches (100%)")
    now = [0.0]
    monkeypatch.setattr("marker_excite.progress.time.perf_counter", lambda: now[0])
    slow = _Stream(tty=False)
    with Progress(10, "slow", unit="batch", every=10, min_interval=15, stream=slow) as bar:
        for _ in range(10):
            now[0] += 10.0  # a 10 s step: a line at most every 15 s, i.e. every second step
            bar.update()
    lines = slow.getvalue().splitlines()
    assert [ln.split(" (")[0] for ln in lines] == [f"slow {n}/10 batches" for n in (2, 4, 6, 8, 10)]


def test_progress_tty_and_disabled():
    stream = _Stream(tty=True)
    bar = Progress(3, "x", stream=stream)
    for _ in range(3):
        bar.update()
    bar.close()
    assert stream.getvalue().count("\r") == 4 and stream.getvalue().endswith("\n")
    quiet = _Stream(tty=True)
    with Progress(3, stream=quiet, enabled=False) as bar:
        bar.update(3)
        bar.write("hello")
    assert quiet.getvalue() == ""
    assert format_duration(75.3) == "1:15" and format_duration(4000) == "1:06:40"
