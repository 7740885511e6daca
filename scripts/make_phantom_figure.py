"""Draw docs/img/phantom_mip.png: maximum-intensity projections of the five markers and the labels of one
phantom sample, plus one optical section (the first annotated slice) where vessel walls show as walls.

    python scripts/make_phantom_figure.py [--out docs/img/phantom_mip.png] [--shape 8,384,384] [--seed 0]
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from marker_excite.atomic import atomic_path  # noqa: E402
from marker_excite.data.synthetic import generate_sample  # noqa: E402


def _stretch(img: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img, [0.5, 99.7])
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)


def draw(out: str, shape: tuple[int, int, int], seed: int, region: str) -> None:
    """Generate one sample and save the MIP figure to ``out`` (atomically)."""
    s = generate_sample("figure", shape, region=region, seed=seed)
    z = int(np.flatnonzero(s.annotated)[0])
    zs = slice(0, shape[0])
    mip = s.image[:, zs].max(axis=1).astype(np.float32)
    fig, axes = plt.subplots(2, 4, figsize=(12, 7.4))
    for ax, c in zip(axes.flat, range(5)):
        ax.imshow(_stretch(mip[c]), cmap="gray")
        ax.set_title(f"m{c + 1} {s.markers[c]}", fontsize=10)
    section = s.image[:, z].astype(np.float32)
    overlay = np.stack([_stretch(section[3]), _stretch(section[1]), _stretch(section[0])], axis=-1)
    axes.flat[5].imshow(overlay)
    axes.flat[5].set_title(f"slice z={z}: collagen / endomucin / DAPI", fontsize=10)
    lab = np.zeros(shape[1:] + (3,), dtype=np.float32)
    lab += 0.25 * s.labels["tissue"][zs].max(axis=0)[..., None]
    lab[s.labels["sinusoids"][zs].max(axis=0) > 0] = (0.2, 0.85, 0.3)
    lab[s.labels["arteries"][zs].max(axis=0) > 0] = (0.95, 0.2, 0.2)
    axes.flat[6].imshow(lab)
    axes.flat[6].set_title("label MIP: sinusoids, arteries, tissue", fontsize=10)
    sl = np.zeros(shape[1:] + (3,), dtype=np.float32)
    sl += 0.25 * s.labels["tissue"][z][..., None]
    sl[s.labels["sinusoids"][z] > 0] = (0.2, 0.85, 0.3)
    sl[s.labels["arteries"][z] > 0] = (0.95, 0.2, 0.2)
    axes.flat[7].imshow(sl)
    axes.flat[7].set_title(f"labels of annotated slice z={z}", fontsize=10)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fr = {k: 100 * float(s.attrs[f"fraction_{k}"]) for k in ("sinusoids", "arteries")}
    fig.suptitle(
        f"Phantom sample ({region}, {shape[0]}x{shape[1]}x{shape[2]} voxels of {s.spacing[0]:g}x{s.spacing[1]:g}x"
        f"{s.spacing[2]:g} um, seed {seed}): maximum-intensity projections; sinusoids {fr['sinusoids']:.1f}%, "
        f"arteries {fr['arteries']:.2f}% of tissue",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=72)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img/phantom_mip.png")
    parser.add_argument("--shape", default="8,384,384")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--region", default="metaphysis")
    args = parser.parse_args()
    draw(args.out, tuple(int(v) for v in args.shape.split(",")), args.seed, args.region)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
