"""predict --preview: the input markers as a named colour overlay next to the predicted labels / probabilities."""

import numpy as np
import pytest
from conftest import make_run

from marker_excite.cli import main
from marker_excite.data.io import open_volume
from marker_excite.data.writers import write_volume
from marker_excite.errors import UserInputError
from marker_excite.inference.predictor import load_predictor
from marker_excite.inference.preview import MARKER_COLOURS, collect, marker_composite, parse_slice, preview_figure


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("preview") / "run")[0]


@pytest.fixture
def stack(tmp_path):
    image = np.random.default_rng(0).normal(5.0, 2.0, size=(4, 3, 16, 16)).astype(np.float32)
    path = tmp_path / "stack.ome.tif"
    write_volume(path, image, channel_names=("DAPI", "CD31", "endomucin", "collagen"))
    return path, image


def test_parse_slice():
    assert parse_slice(None, 7) == 3
    assert parse_slice("mip", 7) is None and parse_slice("MIP", 7) is None
    assert parse_slice("0", 7) == 0 and parse_slice("-1", 7) == 6
    with pytest.raises(UserInputError, match="outside the stack's slices 0..6"):
        parse_slice("7", 7)
    with pytest.raises(UserInputError, match="a slice number or 'mip'"):
        parse_slice("middle", 7)


def test_marker_composite_scales_each_marker_into_its_colour():
    ramp = np.tile(np.linspace(0.0, 1.0, 201, dtype=np.float32), (4, 1))  # 1st / 99.5th percentile 0.01 / 0.995
    image = np.stack([ramp, 2 * ramp + 7, np.full_like(ramp, 3.0)])
    rgb = marker_composite(image)
    assert rgb.shape == (4, 201, 3)
    expected = np.clip((ramp - 0.01) / (0.995 - 0.01), 0, 1)[..., None] * (
        np.asarray(MARKER_COLOURS[0]) + np.asarray(MARKER_COLOURS[1]))  # fmt: skip
    np.testing.assert_allclose(rgb, np.clip(expected, 0, 1), atol=1e-5)  # the constant marker adds nothing
    assert rgb[0, 0].tolist() == [0.0, 0.0, 0.0] and np.allclose(rgb[0, -1], [0.15, 1.0, 1.0])  # blue + green, clipped


def test_collect_slice_and_mip_from_written_outputs(run_dir, stack, tmp_path):
    path, image = stack
    assert main(["predict", str(run_dir), str(path), "--labels", str(tmp_path / "l.h5"), "--probabilities",
                 str(tmp_path / "p.ome.tif"), "--prob-dtype", "uint8", "--quiet"]) == 0  # fmt: skip
    classes = load_predictor(run_dir).spec.classes
    with open_volume(path) as vol, open_volume(tmp_path / "l.h5") as lab, open_volume(tmp_path / "p.ome.tif") as prob:
        labels, probs = lab.read_volume()[0], prob.read_volume()
        one = collect(vol, [0, 2, 3], classes, 1, labels=lab, probabilities=prob, probability_scale=255)
        mip = collect(vol, [0, 2, 3], classes, None, probabilities=prob, probability_scale=255)
    assert one.markers == ("DAPI", "endomucin", "collagen") and one.view == "slice 1 of 3"
    np.testing.assert_array_equal(one.image, image[[0, 2, 3], 1])
    np.testing.assert_array_equal(one.labels, labels[1][None] == 1)
    np.testing.assert_allclose(one.probabilities, probs[1:, 1] / 255, rtol=1e-6)
    assert mip.view == "MIP over 3 slices"
    np.testing.assert_array_equal(mip.image, image[[0, 2, 3]].max(axis=1))
    np.testing.assert_allclose(mip.probabilities, probs[1:].max(axis=1) / 255, rtol=1e-6)
    np.testing.assert_array_equal(mip.labels[0], (np.argmax(probs, axis=0) == 1).any(axis=0))
    fig = preview_figure(one, title="stack")
    axes = fig.axes
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["DAPI", "endomucin", "collagen"]
    assert fig.get_suptitle() == "stack: slice 1 of 3, markers DAPI+endomucin+collagen"
    assert axes[1].get_legend().get_texts()[0].get_text() == f"sinusoids ({100 * one.labels[0].mean():.1f}%)"
    assert axes[2].get_title() == "P(sinusoids)"


def test_predict_preview_cli(run_dir, stack, tmp_path, capsys):
    path, _ = stack
    out = tmp_path / "out"
    base = ["predict", str(run_dir), str(path), "--labels", str(out / "l.ome.tif"), "--use", "DAPI,collagen"]
    assert main([*base, "--preview", str(out / "view.png"), "--preview-slice", "mip"]) == 0
    text = capsys.readouterr().out
    assert f"wrote preview: {out / 'view.png'}" in text
    assert (out / "view.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a bad slice is refused before anything is predicted or written
    assert main([*base, "--overwrite", "--preview", str(out / "v2.png"), "--preview-slice", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "marker-excite predict: error: --preview-slice 3 is outside the stack's slices 0..2"
    assert sorted(p.name for p in out.iterdir()) == ["l.ome.tif", "view.png"]
    assert main([*base, "--preview-slice", "1"]) == 2
    assert "--preview-slice needs --preview" in capsys.readouterr().err
