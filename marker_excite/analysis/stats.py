"""Statistical tests of the paper on tidy result rows: paired Wilcoxon signed-rank, Mann-Whitney U.

The paper compares models by the paired Wilcoxon signed-rank test over matched results (same class,
marker subset and fold) and unpaired groups by the Mann-Whitney U test; significance is shown as
stars (p <= 0.05 ``*``, <= 0.01 ``**``, <= 0.001 ``***``, otherwise ``n.s.``).

Rows are the dicts of a tidy results table (:mod:`marker_excite.analysis.results`: ``model, fold, class,
subset, n_markers, metric, value``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from marker_excite.errors import UserInputError

#: Keys that identify matching results of two models (the paper's pairing).
PAIR_KEYS: tuple[str, ...] = ("class", "subset", "fold")
#: Significance thresholds, strictest first.
STAR_LEVELS: tuple[tuple[float, str], ...] = ((0.001, "***"), (0.01, "**"), (0.05, "*"))


class StatsError(UserInputError):
    """Data that a test cannot be computed on (empty, mismatched or duplicated results)."""


def stars(p: float) -> str:
    """Significance stars: ``***`` (p <= 0.001), ``**`` (<= 0.01), ``*`` (<= 0.05), else ``n.s.``."""
    if p is None or not np.isfinite(p):
        return "n.s."
    for level, mark in STAR_LEVELS:
        if p <= level:
            return mark
    return "n.s."


@dataclass(frozen=True)
class TestResult:
    """Outcome of one test.

    Attributes:
        test: ``"wilcoxon"`` or ``"mannwhitneyu"``.
        statistic: the test statistic as scipy reports it.
        pvalue: the p-value (1.0 when all paired differences are zero).
        n: number of pairs (Wilcoxon) or ``(n_a, n_b)`` (Mann-Whitney).
        stars: :func:`stars` of the p-value.
        median_difference: median of a - b (Wilcoxon) or median(a) - median(b) (Mann-Whitney).
        note: a caveat in words (too few samples to ever reach p <= 0.05, all differences zero), or "".
        direction: the side the test's ranks favour: +1 when a tends to exceed b, -1 when b tends to
            exceed a, 0 when neither. Wilcoxon: the sign of W+ - W- (signed ranks of the non-zero
            differences); Mann-Whitney: the sign of U_a - n_a n_b / 2. Unlike the median, it is defined
            when most differences are zero.
    """

    test: str
    statistic: float
    pvalue: float
    n: int | tuple[int, int]
    stars: str
    median_difference: float
    note: str = ""
    direction: int = 0

    @property
    def significant(self) -> bool:
        return self.pvalue <= 0.05


def _as_array(values: Iterable[float], what: str) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    if arr.ndim != 1:
        raise StatsError(f"{what}: expected a 1-D list of numbers, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise StatsError(f"{what}: contains {int((~np.isfinite(arr)).sum())} NaN/Inf value(s)")
    return arr


def wilcoxon_min_p(n: int) -> float:
    """Smallest two-sided p-value the exact signed-rank test can give with ``n`` non-zero differences."""
    return min(1.0, 2.0 / 2.0**n) if n > 0 else 1.0


def mannwhitney_min_p(n_a: int, n_b: int) -> float:
    """Smallest two-sided p-value the exact Mann-Whitney U test can give for group sizes ``n_a, n_b``."""
    if n_a < 1 or n_b < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def wilcoxon(
    a: Sequence[float],
    b: Sequence[float] | None = None,
    *,
    zero_method: str = "wilcox",
    alternative: str = "two-sided",
) -> TestResult:
    """Paired Wilcoxon signed-rank test of ``a - b`` (or of ``a`` alone when ``b`` is None).

    ``zero_method`` is scipy's: ``"wilcox"`` drops zero differences (the default), ``"pratt"``
    ranks them and then drops them, ``"zsplit"`` splits them between the signs. When every
    difference is zero there is no evidence of a difference: p = 1 and the note says so.

    Raises :class:`StatsError` for empty or unequal-length inputs and NaN values.
    """
    from scipy import stats as st

    x = _as_array(a, "wilcoxon a")
    if b is None:
        d = x
    else:
        y = _as_array(b, "wilcoxon b")
        if y.size != x.size:
            raise StatsError(f"wilcoxon: paired inputs differ in length ({x.size} vs {y.size})")
        d = x - y
    if d.size == 0:
        raise StatsError("wilcoxon: no pairs to test")
    median = float(np.median(d))
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        return TestResult("wilcoxon", 0.0, 1.0, int(d.size), "n.s.", median, "all differences are zero")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = st.wilcoxon(d, zero_method=zero_method, alternative=alternative)
    effective = nonzero if zero_method in ("wilcox", "pratt") else int(d.size)
    note = ""
    if wilcoxon_min_p(effective) > 0.05:
        note = f"only {effective} non-zero difference(s): p can never reach 0.05 (needs >= 6)"
    p = float(res.pvalue)
    nz = d[d != 0]
    direction = int(np.sign(np.sum(np.sign(nz) * st.rankdata(np.abs(nz)))))
    return TestResult("wilcoxon", float(res.statistic), p, int(d.size), stars(p), median, note, direction)


def mann_whitney(a: Sequence[float], b: Sequence[float], *, alternative: str = "two-sided") -> TestResult:
    """Unpaired Mann-Whitney U test between two groups (scipy's ``mannwhitneyu``, automatic method).

    Raises :class:`StatsError` when a group is empty or holds NaN values.
    """
    from scipy import stats as st

    x = _as_array(a, "mann_whitney a")
    y = _as_array(b, "mann_whitney b")
    if x.size == 0 or y.size == 0:
        raise StatsError(f"mann_whitney: both groups need values (sizes {x.size} and {y.size})")
    median = float(np.median(x) - np.median(y))
    if np.ptp(np.concatenate([x, y])) == 0:
        return TestResult(
            "mannwhitneyu",
            float(x.size * y.size / 2),
            1.0,
            (int(x.size), int(y.size)),
            "n.s.",
            median,
            "all values are equal",
        )
    res = st.mannwhitneyu(x, y, alternative=alternative)
    note = ""
    if mannwhitney_min_p(x.size, y.size) > 0.05:
        note = f"groups of {x.size} and {y.size}: p can never reach 0.05"
    p = float(res.pvalue)
    direction = int(np.sign(float(res.statistic) - x.size * y.size / 2))
    return TestResult(
        "mannwhitneyu", float(res.statistic), p, (int(x.size), int(y.size)), stars(p), median, note, direction
    )


@dataclass(frozen=True)
class Paired:
    """Two result tables matched by key: ``a[i]`` and ``b[i]`` belong to ``keys[i]``."""

    keys: list[tuple]
    a: np.ndarray
    b: np.ndarray
    only_a: list[tuple]
    only_b: list[tuple]

    @property
    def differences(self) -> np.ndarray:
        return self.a - self.b


def _index(rows: Iterable[Mapping], keys: Sequence[str], metric: str | None, what: str) -> dict[tuple, float]:
    out: dict[tuple, float] = {}
    for row in rows:
        if metric is not None and row.get("metric") != metric:
            continue
        try:
            key = tuple(str(row[k]) for k in keys)
        except KeyError as exc:
            raise StatsError(f"{what}: row without column {exc.args[0]!r}: {dict(row)}") from None
        if key in out:
            raise StatsError(
                f"{what}: two rows for {dict(zip(keys, key))} (metric {metric}); pair results of ONE model per table"
            )
        out[key] = float(row["value"])
    return out


def _describe(rows: Iterable[Mapping]) -> str:
    """``model(s) M, class(es) C`` of a table, for error messages."""
    models = sorted({str(r.get("model", "?")) for r in rows})
    classes = sorted({str(r.get("class", "?")) for r in rows})
    return f"model {'+'.join(models) or '-'}, classes {', '.join(classes) or '-'}"


def pair_rows(
    rows_a: Iterable[Mapping],
    rows_b: Iterable[Mapping],
    *,
    metric: str | None = "f1",
    keys: Sequence[str] = PAIR_KEYS,
) -> Paired:
    """Match two tidy tables by ``keys`` (default class, subset, fold) for one ``metric``.

    Keys present in only one table are listed in ``only_a`` / ``only_b`` (e.g. UB models exist only
    for some subsets). Raises :class:`StatsError` on duplicated keys or when nothing matches.
    """
    rows_a, rows_b = list(rows_a), list(rows_b)
    ia = _index(rows_a, keys, metric, "first table")
    ib = _index(rows_b, keys, metric, "second table")
    common = sorted(set(ia) & set(ib))
    if not common:
        raise StatsError(
            f"no matching ({', '.join(keys)}) between the two tables for metric {metric!r} "
            f"({len(ia)} and {len(ib)} rows; {_describe(rows_a)} vs {_describe(rows_b)})"
        )
    return Paired(
        keys=common,
        a=np.array([ia[k] for k in common]),
        b=np.array([ib[k] for k in common]),
        only_a=sorted(set(ia) - set(ib)),
        only_b=sorted(set(ib) - set(ia)),
    )


def compare_paired(
    rows_a: Iterable[Mapping],
    rows_b: Iterable[Mapping],
    *,
    metric: str = "f1",
    keys: Sequence[str] = PAIR_KEYS,
    zero_method: str = "wilcox",
) -> TestResult:
    """Paired Wilcoxon test of model A against model B over their matched results."""
    paired = pair_rows(rows_a, rows_b, metric=metric, keys=keys)
    return wilcoxon(paired.a, paired.b, zero_method=zero_method)
