"""What the figures say: marker names for subsets, what an evaluation rests on, every class line, the
phantom's truth and the training samples in quantification plots."""

import numpy as np
import pytest

from marker_excite.analysis import plots
from marker_excite.commands.evaluate import basis
from marker_excite.data.store import SampleStore
from marker_excite.data.synthetic import write_dataset
from marker_excite.inference import quantify
from marker_excite.inference.quantify import fraction_boxplot, store_truth


@pytest.fixture
def figures(monkeypatch):
    """Capture the figures instead of writing them."""
    drawn = []

    def keep(fig, path, dpi=120):
        drawn.append(fig)
        return path

    monkeypatch.setattr(plots, "save_figure", keep)
    monkeypatch.setattr(quantify, "save_figure", keep)  # imported by name there
    return drawn


def test_subset_names():
    assert plots.subset_names("m_125") == "DAPI+endomucin+CXCL12-GFP"
    assert plots.subset_names("m_2", ("CD31", "DAPI")) == "DAPI"
    assert plots.subset_names("m_7") == "m_7"  # not a subset of the panel: kept as it is
    assert plots.subset_names("UB-tissue") == "UB-tissue"


def test_subset_ranking_names_markers_and_says_what_it_rests_on(figures, tmp_path):
    rows = [
        dict(model="MS", fold=0, **{"class": "sinusoids"}, subset=s, n_markers=len(s) - 2, metric="f1", value=v)
        for s, v in (("m_1", 0.5), ("m_25", 0.7), ("m_12345", 0.9))
    ]
    plots.subset_ranking(
        rows, tmp_path / "r.png", title="MS, fold 0", note="2 test samples (s3, s4), 4,096 annotated voxels"
    )
    (fig,) = figures
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["DAPI", "endomucin+CXCL12-GFP", "DAPI+endomucin+endoglin+collagen+CXCL12-GFP"]
    assert fig.get_suptitle() == "MS, fold 0\n2 test samples (s3, s4), 4,096 annotated voxels"


def test_training_curves_show_every_class(figures, tmp_path):
    one = [
        {"epoch": e, "loss": 1.0 / e, "val_loss": 1.1 / e, "val_f1_sinusoids": 0.1 * e, "val_mean_f1": 0.1 * e}
        for e in (1, 2, 3)
    ]
    plots.training_curves(one, tmp_path / "c1.png")
    two = [dict(r, val_f1_arteries=0.05 * r["epoch"], val_mean_f1=0.075 * r["epoch"]) for r in one]
    plots.training_curves(two, tmp_path / "c2.png")

    def f1_lines(fig):
        return {
            line.get_label(): list(line.get_ydata())
            for line in fig.axes[1].get_lines()
            if not line.get_label().startswith("best")
        }

    assert f1_lines(figures[0]) == {"sinusoids": pytest.approx([0.1, 0.2, 0.3])}  # not hidden under a mean line
    lines = f1_lines(figures[1])
    assert set(lines) == {"sinusoids", "arteries", "mean"}
    assert lines["arteries"] == pytest.approx([0.05, 0.1, 0.15]) and lines["mean"] == pytest.approx(
        [0.075, 0.15, 0.225]
    )


def test_quantification_plot_shows_truth_and_training_samples(figures, tmp_path):
    rows = [
        dict(
            sample=s, region="diaphysis", **{"class": "sinusoids"}, tissue_voxels=100, class_voxels=v, fraction=v / 100
        )
        for s, v in (("s1", 10), ("s2", 20), ("s3", 30))
    ]
    fraction_boxplot(rows, tmp_path / "q.png", truth={("s1", "sinusoids"): 0.12, ("s3", "sinusoids"): 0.25},
                     training=["s1", "s2"])  # fmt: skip
    (fig,) = figures
    points = [
        (line.get_marker(), float(line.get_ydata()[0]))
        for line in fig.axes[0].get_lines()
        if line.get_marker() in ("o", "s", "x")
    ]
    assert points == [("s", 0.1), ("x", 0.12), ("s", 0.2), ("o", 0.3), ("x", 0.25)]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "predicted",
        "predicted, training sample",
        "true fraction (same sample)",
    ]


def test_store_truth_and_evaluation_basis(tmp_path):
    path = write_dataset(tmp_path / "p.h5", "small", samples=2, shape=(3, 40, 40), progress=False)
    with SampleStore(path, "r") as st:
        infos = {n: st.info(n) for n in st.names()}
    names = sorted(infos)
    truth = store_truth(path, names, ["sinusoids", "arteries", "osteoblasts"])
    assert truth == {(n, c): float(infos[n].attrs[f"fraction_{c}"]) for n in names for c in ("sinusoids", "arteries")}
    assert 0 < truth[(names[0], "sinusoids")] < 1
    voxels = sum(len(infos[n].annotated_slices) * int(np.prod(infos[n].shape_zyx[1:])) for n in names)
    assert basis(path, names, ["sinusoids"]) == f"2 test samples ({', '.join(names)}), {voxels:,} annotated voxels"
    assert basis(path, names[:1], ["sinusoids"]).startswith(f"1 test sample ({names[0]}), ")


def test_training_curves_tick_whole_epochs(figures, tmp_path):
    history = [dict(epoch=e, loss=1 / e, val_loss=1.2 / e, val_f1_sinusoids=0.2 * e, val_mean_f1=0.2 * e)
               for e in (1, 2, 3)]  # fmt: skip
    plots.training_curves(history, tmp_path / "curves.png")
    (fig,) = figures
    for ax in fig.axes:
        fig.canvas.draw()
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
