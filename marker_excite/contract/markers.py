"""Marker vocabularies: ordered marker names, availability vectors and marker subsets.

Markers are referred to by NAME at the edges (files, CLI, model card) and by INDEX inside tensors.
A :class:`MarkerPanel` is the explicit mapping between the two. A :class:`Subset` is a set of a panel's
markers: 0-based indices inside, the paper's 1-based notation outside (``m_125`` is the subset of the
first, second and fifth marker of the panel).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from marker_excite.config import split_list
from marker_excite.errors import UserInputError, did_you_mean

#: The five markers of the paper, in the paper's order (m1 .. m5).
PAPER_MARKERS: tuple[str, ...] = ("DAPI", "endomucin", "endoglin", "collagen", "CXCL12-GFP")


class MarkerError(UserInputError):
    """A marker name, index or subset that does not fit a panel."""


def _normalise(name: str) -> str:
    return name.strip().lower()


def duplicated_names(names: Iterable[str]) -> list[str]:
    """Names that occur more than once, compared case-insensitively (sorted; empty if none)."""
    names = [str(n) for n in names]
    keys = [_normalise(n) for n in names]
    return sorted({n for n, k in zip(names, keys) if keys.count(k) > 1})


@dataclass(frozen=True)
class MarkerPanel:
    """An ordered, duplicate-free list of marker names (the model's marker vocabulary)."""

    names: tuple[str, ...] = PAPER_MARKERS

    def __post_init__(self) -> None:
        names = tuple(str(n).strip() for n in self.names)
        if not names:
            raise MarkerError("a marker panel needs at least one marker")
        if any(not n for n in names):
            raise MarkerError(f"empty marker name in panel {list(self.names)}")
        dups = duplicated_names(names)
        if dups:
            raise MarkerError(f"marker {dups[0]!r} appears twice in panel {list(names)}")
        if len(names) > 16:
            raise MarkerError(f"at most 16 markers are supported, got {len(names)}")
        object.__setattr__(self, "names", names)

    # -- basic mapping -------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of markers K."""
        return len(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(_normalise(name) == _normalise(n) for n in self.names)

    def index(self, marker: str | int) -> int:
        """0-based index of a marker given by name (case-insensitive) or by 1-based number ``m_k``."""
        if isinstance(marker, (int, np.integer)) and not isinstance(marker, bool):
            k = int(marker)
            if not 1 <= k <= self.size:
                raise MarkerError(f"marker number {k} is outside 1..{self.size} for panel {list(self.names)}")
            return k - 1
        text = str(marker).strip()
        for i, n in enumerate(self.names):
            if _normalise(n) == _normalise(text):
                return i
        if text.isdigit():
            return self.index(int(text))
        if text.lower().startswith("m") and text[1:].isdigit() and len(text) == 2:
            return self.index(int(text[1:]))
        raise MarkerError(
            f"unknown marker {text!r}{did_you_mean(text, self.names)}; this panel has {', '.join(self.names)}"
        )

    def indices(self, markers: Iterable[str | int]) -> tuple[int, ...]:
        """Sorted 0-based indices of a non-empty, duplicate-free collection of markers."""
        idx = [self.index(m) for m in markers]
        if not idx:
            raise MarkerError("empty marker set: give at least one marker")
        dup = sorted({self.names[i] for i in idx if idx.count(i) > 1})
        if dup:
            raise MarkerError(f"marker given twice: {', '.join(dup)}")
        return tuple(sorted(idx))

    # -- availability vectors -----------------------------------------------------------------
    def availability(self, markers: Iterable[str | int]) -> np.ndarray:
        """Binary float32 vector of length K with 1 for each given marker."""
        v = np.zeros(self.size, dtype=np.float32)
        v[list(self.indices(markers))] = 1.0
        return v

    def markers_of(self, availability: Sequence[float] | np.ndarray) -> tuple[str, ...]:
        """Names of the markers switched on in an availability vector."""
        v = np.asarray(availability)
        if v.shape != (self.size,):
            raise MarkerError(f"availability vector has shape {v.shape}, expected ({self.size},)")
        return tuple(n for n, a in zip(self.names, v) if a > 0.5)

    # -- subsets -------------------------------------------------------------------------------
    def all_subsets(self) -> list[Subset]:
        """All 2^K-1 non-empty subsets; by size, then lexicographically (``m_1, ..., m_5, m_12, ...``)."""
        out: list[Subset] = []
        for r in range(1, self.size + 1):
            out.extend(Subset(c, self) for c in itertools.combinations(range(self.size), r))
        return out

    def parse_subset(self, text: str | Sequence[str | int]) -> Subset:
        """Parse user input into a :class:`Subset` of this panel.

        Accepts ``"DAPI,collagen"``, ``"1,5"``, ``"m_15"`` / ``"m15"``, or a sequence of names/numbers
        (numbers are 1-based, as in the paper). Raises :class:`MarkerError` for unknown names, duplicates
        and empty sets.
        """
        if not isinstance(text, str):
            return Subset(self.indices(text), self)
        s = text.strip()
        if not s:
            raise MarkerError(
                "empty marker set: give at least one marker (names like DAPI,collagen or numbers like 1,5)"
            )
        low = s.lower()
        if low.startswith("m") and "," not in s and s not in self:
            body = low[2:] if low.startswith("m_") else low[1:]
            if body.isdigit() and self.size <= 9:
                return Subset(self.indices(int(c) for c in body), self)
            if body and all(p.isdigit() for p in body.split("-")):
                return Subset(self.indices(int(p) for p in body.split("-")), self)
        return Subset(self.indices(split_list(s, what="marker list", error=MarkerError)), self)

    def to_list(self) -> list[str]:
        return list(self.names)

    @classmethod
    def from_list(cls, names: Sequence[str]) -> MarkerPanel:
        return cls(tuple(names))


#: The paper's panel (m1 .. m5), the default panel of a :class:`Subset`.
PAPER_PANEL = MarkerPanel(PAPER_MARKERS)


def subset_name(names: Sequence[str]) -> str:
    """How results name a subset of markers: the paper's notation (``m_125``) when all ``names`` are paper
    markers, else the marker names joined by ``+`` in the given order (``cytoplasm+nuclear``).

    Result tables, charts, reports and ``evaluate`` use it, so one subset has one name whichever model
    (a UB on that subset alone, or a network on the whole panel) was evaluated on it.
    """
    names = tuple(str(n) for n in names)
    if not names:
        raise MarkerError("empty marker set: a subset needs at least one marker")
    if all(n in PAPER_PANEL for n in names):
        return PAPER_PANEL.parse_subset(list(names)).label
    return "+".join(names)


@dataclass(frozen=True)
class Subset:
    """A non-empty set of markers of a panel, held as sorted, distinct 0-based indices into ``panel``.

    ``label`` is the paper's 1-based notation (``Subset((0, 1, 4)).label == "m_125"``); build one from
    user input with :meth:`MarkerPanel.parse_subset` (``"m_125"``, ``"DAPI,collagen"``, names). Iterating
    yields the indices; ``a <= b`` tells whether ``a``'s markers are all in ``b`` (same panel).
    """

    indices: tuple[int, ...]
    panel: MarkerPanel = PAPER_PANEL

    def __post_init__(self) -> None:
        idx = tuple(sorted(int(i) for i in self.indices))
        if not idx:
            raise MarkerError("empty marker set: a subset needs at least one marker")
        if len(set(idx)) != len(idx):
            raise MarkerError(f"marker index given twice in subset {list(self.indices)}")
        if idx[0] < 0 or idx[-1] >= self.panel.size:
            raise MarkerError(f"marker index outside 0..{self.panel.size - 1} in subset {list(self.indices)}")
        object.__setattr__(self, "indices", idx)

    @property
    def numbers(self) -> tuple[int, ...]:
        """The paper's 1-based marker numbers: ``(1, 2, 5)`` for ``m_125``."""
        return tuple(i + 1 for i in self.indices)

    @property
    def label(self) -> str:
        """The paper's notation ``m_125`` (numbers joined by ``-`` for panels of more than 9 markers)."""
        return "m_" + ("-" if self.panel.size > 9 else "").join(str(n) for n in self.numbers)

    @property
    def names(self) -> tuple[str, ...]:
        """Marker names, in panel order."""
        return tuple(self.panel.names[i] for i in self.indices)

    @property
    def name(self) -> str:
        """The subset's name in results (:func:`subset_name`): ``m_125`` or ``cytoplasm+nuclear``."""
        return subset_name(self.names)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __le__(self, other: Subset) -> bool:
        if not isinstance(other, Subset) or other.panel != self.panel:
            return NotImplemented
        return set(self.indices) <= set(other.indices)

    def __str__(self) -> str:
        return self.label
