"""Cross-validation folds by sample (the paper: 8 samples, 4 folds of 5 train / 1 val / 2 test).

Folds depend only on the set of sample names and the seed (not on their order), so every method of an
experiment sees the same split. Every sample is in the test set of exactly one fold.
:func:`explicit_fold` makes a split from named samples instead; :func:`restrict_train` keeps some of a
fold's training samples. :func:`select_fold` is the split a training config chooses, for training and for
everyone who needs to know what a run trains on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from marker_excite.errors import UserInputError, did_you_mean

if TYPE_CHECKING:
    from marker_excite.data.store import SampleStore


@dataclass(frozen=True)
class Fold:
    """Sample names of one cross-validation fold."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def to_dict(self) -> dict[str, list[str]]:
        return {"train": list(self.train), "val": list(self.val), "test": list(self.test)}


def paper_folds(
    sample_names: Sequence[str], n_folds: int = 4, n_val: int = 1, n_test: int | None = None, seed: int = 0
) -> list[Fold]:
    """Split samples into ``n_folds`` folds by a seeded permutation.

    The permuted samples are cut into ``n_folds`` consecutive test groups of near-equal size
    (exactly ``n_test`` each when given, which then must equal ``len(samples) / n_folds``). The
    validation samples of fold ``k`` are the first ``n_val`` samples of the following test group(s),
    so each sample also validates once when groups allow; the rest train.

    Raises :class:`UserInputError` when there are too few samples (every fold needs >= 1 test, ``n_val``
    validation and >= 1 training sample), for duplicates, or for an ``n_test`` that does not divide.
    """
    names = sorted(str(s) for s in sample_names)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise UserInputError(f"sample listed twice: {', '.join(dup)}")
    n = len(names)
    if n_folds < 2:
        raise UserInputError(f"n_folds must be >= 2, got {n_folds}")
    if n_val < 0:
        raise UserInputError(f"n_val must be >= 0, got {n_val}")
    if n_test is not None and n_test * n_folds != n:
        raise UserInputError(
            f"{n_folds} folds x {n_test} test samples != {n} samples; change n_test/n_folds or leave n_test unset"
        )
    largest_test = -(-n // n_folds)
    needed = max(n_folds, largest_test + n_val + 1)
    if n < needed:
        raise UserInputError(
            f"{n} sample(s) are too few for {n_folds}-fold cross-validation with {n_val} validation sample(s): "
            f"need at least {needed}"
        )
    perm = [names[i] for i in np.random.default_rng(seed).permutation(n)]
    groups = [list(g) for g in np.array_split(np.array(perm, dtype=object), n_folds)]
    folds: list[Fold] = []
    for k in range(n_folds):
        test = groups[k]
        val: list[str] = []
        j = 1
        while len(val) < n_val:
            val.extend(groups[(k + j) % n_folds][: n_val - len(val)])
            j += 1
        train = [s for s in perm if s not in test and s not in val]
        folds.append(Fold(tuple(sorted(train)), tuple(sorted(val)), tuple(sorted(test))))
    return folds


def _check_names(role: str, names: Sequence[str], known: Sequence[str], where: str) -> tuple[str, ...]:
    """``names`` as a tuple; :class:`UserInputError` naming unknown or repeated names (with the closest known)."""
    names = tuple(str(n) for n in names)
    unknown = [n for n in names if n not in known]
    if unknown:
        hints = "".join(did_you_mean(n, known) for n in unknown[:1])
        raise UserInputError(
            f"{role} sample(s) {', '.join(unknown)} are not {where}{hints}; known: {', '.join(sorted(known))}"
        )
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise UserInputError(f"{role} sample listed twice: {', '.join(dups)}")
    return names


def explicit_fold(
    sample_names: Sequence[str], train: Sequence[str], val: Sequence[str], test: Sequence[str] = ()
) -> Fold:
    """A split of named samples (``--train-samples / --val-samples / --test-samples``).

    Training and validation need at least one sample each; the test set may be empty; a sample may be in
    one set only; every name must be one of ``sample_names``. Samples in none of the sets are unused.
    """
    known = [str(s) for s in sample_names]
    sets = {
        role: _check_names(role, names, known, "in the store")
        for role, names in (("training", train), ("validation", val), ("test", test))
    }
    for role in ("training", "validation"):
        if not sets[role]:
            raise UserInputError(f"give at least one {role} sample")
    for a, b in (("training", "validation"), ("training", "test"), ("validation", "test")):
        both = sorted(set(sets[a]) & set(sets[b]))
        if both:
            raise UserInputError(f"sample(s) {', '.join(both)} are both {a} and {b} samples; each may be in one set")
    return Fold(*(tuple(sorted(sets[r])) for r in ("training", "validation", "test")))


def restrict_train(fold: Fold, train: Sequence[str], fold_label: str = "the fold") -> Fold:
    """``fold`` training only on ``train`` (each must be a training sample of it); validation and test unchanged."""
    names = _check_names("training", train, list(fold.train), f"training samples of {fold_label}")
    if not names:
        raise UserInputError("give at least one training sample")
    return Fold(tuple(sorted(names)), fold.val, fold.test)


class SplitSettings(Protocol):
    """The fields of a training config (:class:`~marker_excite.runs.run.TrainConfig`) that choose its split."""

    fold: int
    n_folds: int
    n_val: int
    n_test: int | None
    fold_seed: int
    train_samples: Sequence[str] | None
    val_samples: Sequence[str] | None
    test_samples: Sequence[str] | None


def select_fold(store: SampleStore, cfg: SplitSettings) -> Fold:
    """The split ``cfg`` chooses among the samples of ``store``: an explicit split (``val_samples`` given),
    else fold ``cfg.fold`` of :func:`paper_folds`, training only on ``train_samples`` when they are given."""
    names = store.names()
    if not names:
        raise UserInputError(f"sample store {store.path} holds no samples")
    if cfg.val_samples is not None:
        return explicit_fold(names, cfg.train_samples or (), cfg.val_samples, cfg.test_samples or ())
    folds = paper_folds(names, n_folds=cfg.n_folds, n_val=cfg.n_val, n_test=cfg.n_test, seed=cfg.fold_seed)
    if cfg.train_samples is not None:
        return restrict_train(folds[cfg.fold], cfg.train_samples, f"fold {cfg.fold}")
    return folds[cfg.fold]
