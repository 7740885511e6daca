"""Where a trained model came from (:class:`Provenance`): its run, split and samples, the markers its
training samples had, the schedule, the best epoch and the software it was trained and exported with.

The model card's ``training`` and ``software`` entries are its serialised form
(:meth:`Provenance.card_entries`, parsed back by :meth:`Provenance.from_card`); cards written before
a field was recorded still load (``split`` folds, ``markers_seen`` unknown, ``weights`` best,
``precision`` fp32). Pure Python, part of the model contract (:mod:`marker_excite.contract.model_spec`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marker_excite.errors import UserInputError


@dataclass(frozen=True)
class Provenance:
    """The training history of a model (the model card's ``training`` and ``software``).

    Attributes:
        run, store: the run directory and the sample store it was trained on.
        split: ``folds`` (cross-validation fold ``fold`` of ``n_folds``) or ``explicit`` (named samples).
        samples: ``train`` / ``val`` / ``test`` -> the samples of each group, in that order.
        marker_panels: training sample -> the markers it kept (samples not listed kept all).
        markers_seen: the markers of the panel that some training sample had; None when not recorded
            (runs made before it was), and then no marker is refused as unseen.
        epochs, epochs_planned: the epochs trained and planned.
        best_epoch, best_val_mean_f1, best_val_f1: the best validation epoch and its scores (mean and
            per class), None / empty before the first epoch.
        weights, weights_epoch: which weights the model holds (``best`` or ``last``) and their epoch.
        batch_size, learning_rate, seed, precision: the training settings.
        trained_with, exported_with: the software versions (``versions.json`` of the run; the software
            that exported it), None when unknown or not exported.
    """

    run: str
    store: str
    fold: int
    n_folds: int
    samples: Mapping[str, tuple[str, ...]]
    marker_panels: Mapping[str, tuple[str, ...]]
    epochs: int
    epochs_planned: int
    best_epoch: int | None
    best_val_mean_f1: float | None
    best_val_f1: Mapping[str, float]
    batch_size: int
    learning_rate: float
    seed: int
    split: str = "folds"
    markers_seen: tuple[str, ...] | None = None
    weights: str = "best"
    weights_epoch: int | None = None
    precision: str = "fp32"
    trained_with: Mapping[str, Any] | None = None
    exported_with: Mapping[str, Any] | None = None

    @property
    def train_samples(self) -> tuple[str, ...]:
        """The samples the model was trained on."""
        return tuple(self.samples.get("train", ()))

    def card_entries(self, model: str) -> dict[str, Any]:
        """The card's ``software`` and ``training`` entries (keys in the card's fixed order); ``model``
        is the model's zoo name, repeated in ``training``."""
        return {
            "software": {"exported_with": _plain(self.exported_with), "trained_with": _plain(self.trained_with)},
            "training": {
                "run": self.run,
                "model": model,
                "store": self.store,
                "split": self.split,
                "fold": self.fold,
                "n_folds": self.n_folds,
                "samples": {group: list(names) for group, names in self.samples.items()},
                "marker_panels": {sample: list(markers) for sample, markers in self.marker_panels.items()},
                "markers_seen": list(self.markers_seen) if self.markers_seen is not None else None,
                "epochs": self.epochs,
                "epochs_planned": self.epochs_planned,
                "best_epoch": self.best_epoch,
                "weights": self.weights,
                "weights_epoch": self.weights_epoch,
                "best_val_mean_f1": self.best_val_mean_f1,
                "best_val_f1": dict(self.best_val_f1),
                "batch_size": self.batch_size,
                "learning_rate": self.learning_rate,
                "seed": self.seed,
                "precision": self.precision,
            },
        }

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> Provenance | None:
        """The provenance recorded by a model card (its ``training`` and ``software``); None for a card
        without a training summary. Raises :class:`UserInputError` for a corrupt one."""
        training = card.get("training")
        if not training:
            return None
        software = card.get("software") or {}
        try:
            seen = training.get("markers_seen")
            return cls(
                run=str(training["run"]),
                store=str(training["store"]),
                fold=int(training["fold"]),
                n_folds=int(training["n_folds"]),
                samples={str(group): _names(names) for group, names in training["samples"].items()},
                marker_panels={str(s): _names(m) for s, m in (training.get("marker_panels") or {}).items()},
                epochs=int(training["epochs"]),
                epochs_planned=int(training["epochs_planned"]),
                best_epoch=_optional(int, training["best_epoch"]),
                best_val_mean_f1=_optional(float, training["best_val_mean_f1"]),
                best_val_f1={str(c): float(v) for c, v in (training.get("best_val_f1") or {}).items()},
                batch_size=int(training["batch_size"]),
                learning_rate=float(training["learning_rate"]),
                seed=int(training["seed"]),
                split=str(training.get("split", "folds")),
                markers_seen=_names(seen) if seen is not None else None,
                weights=str(training.get("weights", "best")),
                weights_epoch=_optional(int, training.get("weights_epoch")),
                precision=str(training.get("precision", "fp32")),
                trained_with=software.get("trained_with"),
                exported_with=software.get("exported_with"),
            )
        except KeyError as exc:
            raise UserInputError(f"model card is incomplete: no training {exc}") from None
        except (AttributeError, TypeError, ValueError) as exc:
            raise UserInputError(f"model card training summary is corrupt: {exc}") from None


def _names(values: Any) -> tuple[str, ...]:
    """A JSON list of names as a tuple of strings (a lone string is refused)."""
    if isinstance(values, str):
        raise TypeError(f"expected a list of names, got {values!r}")
    return tuple(str(v) for v in values)


def _optional(kind: type, value: Any) -> Any:
    """``kind(value)``, or None for None."""
    return None if value is None else kind(value)


def _plain(versions: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A versions record as a plain dict (None stays None)."""
    return None if versions is None else dict(versions)
