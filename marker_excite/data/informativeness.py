"""How informative each marker (and pair of markers) is about each class, measured on the phantom.

A deliberately simple per-pixel classifier — logistic regression on the Gaussian-smoothed, per-sample
standardised intensities of the chosen markers at two scales — is trained on the annotated slices of
one sample and scored (ROC-AUC) on another. The ranking of markers it produces is the phantom's
analogue of the paper's Fig. 1 (docs/phantom.md):

* sinusoids: m2 (endomucin) or m3 (endoglin) best, then m4 (collagen), m1 (DAPI) / m5 (CXCL12) least;
* arteries: m4 (collagen) the best single marker, and m2 the marker that adds most to m4;
* no single marker is perfect.

``python -m marker_excite.data.informativeness`` prints the table in markdown.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence

import numpy as np
import scipy.ndimage as ndi
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from marker_excite.config import split_list
from marker_excite.contract.markers import MarkerPanel, Subset
from marker_excite.data.sample import PAPER_CLASSES, Sample
from marker_excite.data.synthetic import generate_sample

#: Gaussian smoothing scales (pixels, in-plane) of the classifier's features.
SCALES: tuple[float, ...] = (1.0, 4.0)


def pixel_features(sample: Sample, scales: Sequence[float] = SCALES) -> np.ndarray:
    """Features of every pixel of the annotated slices: (markers, scales, n_pixels) float32.

    Each channel is standardised with the sample's own mean and std (as the training pipeline does),
    then smoothed in-plane at each scale.
    """
    assert sample.annotated is not None
    zs = np.flatnonzero(sample.annotated)
    img = sample.image.astype(np.float32)
    mean = img.mean(axis=(1, 2, 3), keepdims=True)
    std = img.std(axis=(1, 2, 3), keepdims=True) + 1e-6
    img = (img[:, zs] - mean) / std
    out = np.empty((img.shape[0], len(scales), img[0].size), dtype=np.float32)
    for c in range(img.shape[0]):
        for j, s in enumerate(scales):
            out[c, j] = ndi.gaussian_filter(img[c], (0, s, s)).ravel()
    return out


def _balanced_indices(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to n/2 positive and n/2 negative pixel indices (all of a class when it has fewer)."""
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    take = lambda idx: idx if idx.size <= n // 2 else rng.choice(idx, n // 2, replace=False)  # noqa: E731
    return np.concatenate([take(pos), take(neg)])


def _stack(samples: Sequence[Sample], classes: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Features of all annotated pixels of several samples and their binary labels per class."""
    feats = np.concatenate([pixel_features(s) for s in samples], axis=2)
    labels = {c: np.concatenate([s.labels[c][s.annotated].ravel() > 0 for s in samples]) for c in classes}
    return feats, labels


def marker_auc(
    train: Sequence[Sample],
    test: Sequence[Sample],
    subsets: Sequence[Sequence[int]],
    classes: Sequence[str] = PAPER_CLASSES,
    *,
    n_pixels: int = 20000,
    seed: int = 0,
) -> dict[tuple[str, tuple[int, ...]], float]:
    """Test ROC-AUC of the per-pixel classifier for each class and marker subset (0-based indices).

    The classifier is fitted on the annotated pixels of the ``train`` samples and scored on those of the
    ``test`` samples (class-balanced pixel subsamples of size ``n_pixels``). All samples must carry the
    same markers in the same order and the labels of ``classes``.
    """
    markers = {tuple(s.markers) for s in (*train, *test)}
    if len(markers) != 1:
        raise ValueError(f"samples have different markers: {sorted(markers)}")
    rng = np.random.default_rng(seed)
    f_train, labels_train = _stack(train, classes)
    f_test, labels_test = _stack(test, classes)
    results: dict[tuple[str, tuple[int, ...]], float] = {}
    for cls in classes:
        y_train, y_test = labels_train[cls], labels_test[cls]
        if y_train.all() or not y_train.any() or y_test.all() or not y_test.any():
            raise ValueError(f"class {cls!r} needs positive and negative annotated pixels in train and test samples")
        i_train = _balanced_indices(y_train, n_pixels, rng)
        i_test = _balanced_indices(y_test, n_pixels, rng)
        for subset in subsets:
            sub = tuple(sorted(int(i) for i in subset))
            x_train = f_train[list(sub)][:, :, i_train].reshape(-1, i_train.size).T
            x_test = f_test[list(sub)][:, :, i_test].reshape(-1, i_test.size).T
            model = LogisticRegression(max_iter=500).fit(x_train, y_train[i_train])
            results[(cls, sub)] = float(roc_auc_score(y_test[i_test], model.decision_function(x_test)))
    return results


def singles_and_pairs(n_markers: int) -> list[tuple[int, ...]]:
    """All single markers, then all pairs, as sorted 0-based index tuples."""
    return [(i,) for i in range(n_markers)] + list(itertools.combinations(range(n_markers), 2))


def phantom_informativeness(
    shape_zyx: Sequence[int] = (4, 256, 256), seed: int = 0, classes: Sequence[str] = PAPER_CLASSES
) -> dict[tuple[str, tuple[int, ...]], float]:
    """The table for singles and pairs on the phantom, deterministic for a seed.

    Trained on a diaphyseal and a metaphyseal sample (seeds ``seed``, ``seed + 1``), tested on two other
    ones (``seed + 2``, ``seed + 3``); every slice is annotated.
    """

    def pair(first: int, tag: str) -> list[Sample]:
        return [
            generate_sample(f"{tag}{k}", shape_zyx, region=region, seed=first + k, annotated_every=1)
            for k, region in enumerate(("diaphysis", "metaphysis"))
        ]

    train, test = pair(seed, "train"), pair(seed + 2, "test")
    return marker_auc(train, test, singles_and_pairs(train[0].n_channels), classes, seed=seed)


def markdown_table(results: dict[tuple[str, tuple[int, ...]], float], panel: MarkerPanel | None = None) -> str:
    """Markdown table: one row per marker subset (paper notation ``m_12``), one AUC column per class."""
    panel = panel or MarkerPanel()
    classes = list(dict.fromkeys(c for c, _ in results))
    subsets = list(dict.fromkeys(s for _, s in results))
    head = "| markers | names | " + " | ".join(f"AUC {c}" for c in classes) + " |"
    rule = "| --- | --- | " + " | ".join("---:" for _ in classes) + " |"
    rows = [head, rule]
    for s in subsets:
        names = " + ".join(panel.names[i] for i in s)
        vals = " | ".join(f"{results[(c, s)]:.3f}" for c in classes)
        rows.append(f"| {Subset(s, panel).label} | {names} | {vals} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the informativeness table of the phantom (markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="4,256,256", help="Z,Y,X of the two phantom samples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in split_list(args.shape, what="--shape"))
    print(markdown_table(phantom_informativeness(shape, args.seed)))


if __name__ == "__main__":
    main()
