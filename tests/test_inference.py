"""inference.py: exact stitching vs direct model calls (2D, 3D, tiny stacks), marker restriction, streaming."""

import json

import numpy as np
import pytest
from conftest import MARKERS, make_run

from marker_excite.contract.markers import MarkerError, MarkerPanel
from marker_excite.contract.model_spec import ModelSpec, plan_channels
from marker_excite.data.io import open_volume
from marker_excite.data.writers import write_volume
from marker_excite.errors import UserInputError
from marker_excite.inference.predictor import load_predictor
from marker_excite.inference.whole_stack import (
    encode_probabilities,
    labels_from_probabilities,
    predict_file,
    predict_volume,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "run")


@pytest.fixture(scope="module")
def predictor(run):
    return load_predictor(run[0])


def _standardise(image):
    """Whole-stack per-channel z-score of [C, Z, Y, X] (float64 stats, as in inference)."""
    x = image.astype(np.float64)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = x.std(axis=(1, 2, 3), keepdims=True)
    return ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def _direct(model, std_slice, origins, availability, in_size=28, out_size=12, margin=8):
    """Hand tiling: pad by the margin, cut input tiles at the output origins, softmax, place outputs."""
    k, y, x = std_slice.shape
    cy, cx = max(y, out_size), max(x, out_size)
    padded = np.zeros((k, cy + 2 * margin, cx + 2 * margin), np.float32)
    padded[:, margin : margin + y, margin : margin + x] = std_slice
    tiles = np.stack([padded[:, a : a + in_size, b : b + in_size].transpose(1, 2, 0) for a, b in origins])
    logits = np.asarray(model([tiles, np.tile(availability, (len(origins), 1))], training=False))
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = np.zeros((probs.shape[-1], cy, cx))
    count = np.zeros((cy, cx))
    for (a, b), p in zip(origins, probs):
        out[:, a : a + out_size, b : b + out_size] += p.transpose(2, 0, 1)
        count[a : a + out_size, b : b + out_size] += 1
    return (out / count)[:, :y, :x]


def _stack(tmp_path, shape, markers=MARKERS, name="stack.ome.tif", seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(5.0, 2.0, size=(len(markers), *shape)).astype(np.float32)
    path = tmp_path / name
    write_volume(path, image, channel_names=markers)
    return path, image


def test_3d_stack_equals_direct_tiles(run, predictor, tmp_path):
    _, model, _ = run
    # 24 x 36 = exactly 2 x 3 output tiles of 12 px: no overlap, plain placement
    path, image = _stack(tmp_path, (3, 24, 36))
    with open_volume(path) as vol:
        probs = predict_volume(predictor, vol, batch_size=4, progress=False)
    std = _standardise(image)
    origins = [(a, b) for a in (0, 12) for b in (0, 12, 24)]
    for z in range(3):
        expected = _direct(model, std[:, z], origins, np.ones(3, np.float32))
        np.testing.assert_allclose(probs[:, z], expected, atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)


def test_2d_stack_with_pulled_back_tile_and_smaller_than_tile(run, predictor, tmp_path):
    _, model, _ = run
    path, image = _stack(tmp_path, (1, 17, 30), name="two_d.tif")  # last tiles pulled back: 5 and 18
    with open_volume(path) as vol:
        probs = predict_volume(predictor, vol, batch_size=3, progress=False)
    expected = _direct(
        model, _standardise(image)[:, 0], [(a, b) for a in (0, 5) for b in (0, 12, 18)], np.ones(3, np.float32)
    )
    np.testing.assert_allclose(probs[:, 0], expected, atol=1e-5)

    path, image = _stack(tmp_path, (2, 5, 7), name="tiny.h5")  # smaller than one output tile: padded
    with open_volume(path) as vol:
        probs = predict_volume(predictor, vol, progress=False)
    assert probs.shape == (2, 2, 5, 7)
    for z in range(2):
        expected = _direct(model, _standardise(image)[:, z], [(0, 0)], np.ones(3, np.float32))
        np.testing.assert_allclose(probs[:, z], expected, atol=1e-5)


def test_markers_restriction_equals_zeroed_channel(run, predictor, tmp_path):
    _, model, _ = run
    path, image = _stack(tmp_path, (2, 12, 12))
    with open_volume(path) as vol:
        restricted = predict_volume(predictor, vol, markers="m_13", progress=False)
    std = _standardise(image)
    std[1] = 0.0  # endomucin left out: zero channel AND availability 0
    for z in range(2):
        expected = _direct(model, std[:, z], [(0, 0)], np.array([1, 0, 1], np.float32))
        np.testing.assert_allclose(restricted[:, z], expected, atol=1e-5)
    # a stack that lacks endomucin gives the same result as restricting it away
    two = tmp_path / "two.ome.tif"
    write_volume(two, image[[0, 2]], channel_names=("DAPI", "collagen"))
    with open_volume(two) as vol:
        np.testing.assert_allclose(predict_volume(predictor, vol, progress=False), restricted, atol=1e-6)


class SpyVolume:
    """A VolumeReader stand-in that counts slice reads (and has no whole-volume read)."""

    def __init__(self, image, markers, spacing=(1.0, 1.0, 1.0)):
        self.image, self.markers, self.spacing = image, markers, spacing
        self.shape_czyx = image.shape
        self.reads: list[int] = []

    def read_slice(self, z):
        self.reads.append(z)
        return self.image[:, z].copy()


def test_streaming_reads_each_slice_twice_in_order(predictor):
    vol = SpyVolume(np.random.default_rng(1).normal(size=(3, 4, 13, 13)).astype(np.float32), MARKERS)
    seen = []
    from marker_excite.inference.whole_stack import predict_slices

    for z, probs in predict_slices(predictor, vol, progress=False):
        seen.append(z)
        # statistics pass (all 4 slices) done, prediction reads one slice at a time
        assert vol.reads == [0, 1, 2, 3] + list(range(z + 1))
        assert probs.shape == (2, 13, 13)
    assert seen == [0, 1, 2, 3]


def test_resampling_to_model_spacing_and_back(tmp_path):
    path, _, _ = make_run(tmp_path / "run_fine", spacing=(1.0, 0.5, 0.5))
    pred = load_predictor(path)
    assert pred.spec.spacing == (1.0, 0.5, 0.5)
    vol = SpyVolume(np.random.default_rng(2).normal(size=(3, 1, 10, 14)).astype(np.float32), MARKERS)
    probs = predict_volume(pred, vol, progress=False)
    assert probs.shape == (2, 1, 10, 14)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)


def test_plan_channels_errors_and_order():
    panel = MarkerPanel(MARKERS)
    plan = plan_channels(("collagen", "dapi"), panel)
    assert plan.pairs == ((0, 2), (1, 0)) and plan.availability.tolist() == [1, 0, 1]
    extra = plan_channels(("DAPI", "CD31", "colagen"), panel)  # channels outside the panel are skipped
    assert extra.pairs == ((0, 0),) and extra.skipped == ("CD31", "colagen")
    assert extra.skip_notice(panel) == (
        f"note: skipping stack channel(s) CD31, colagen (did you mean 'collagen'?): not in the model's panel "
        f"({', '.join(MARKERS)})"
    )
    with pytest.raises(MarkerError, match=r"none of the stack's markers colagen \(did you mean 'collagen'\?\) is in"):
        plan_channels(("colagen",), panel)
    assert plan_channels(("DAPI", "CD31"), panel, markers="DAPI").pairs == ((0, 0),)
    with pytest.raises(MarkerError, match="twice"):
        plan_channels(("DAPI", "dapi"), panel)
    with pytest.raises(MarkerError, match="endomucin requested"):
        plan_channels(("DAPI",), panel, markers="DAPI,endomucin")


def test_plan_channels_for_training_samples():
    """The same mapping feeds the training pipeline: a sample's kept markers and a lenient subset."""
    panel = MarkerPanel(MARKERS)
    plan = plan_channels(("collagen", "CD31", "DAPI"), panel, sample="s1")
    assert plan.source.tolist() == [2, -1, 0] and plan.skipped == ("CD31",)
    kept = plan_channels(("collagen", "CD31", "DAPI"), panel, keep=("dapi",), sample="s1")
    assert kept.source.tolist() == [2, -1, -1] and kept.availability.tolist() == [1, 0, 0]
    lenient = plan_channels(("collagen", "DAPI"), panel, given=(1, 2), sample="s1")  # s1 lacks endomucin
    assert lenient.source.tolist() == [-1, -1, 0] and lenient.availability.tolist() == [0, 0, 1]
    with pytest.raises(
        MarkerError, match="marker_panels: sample 's1' has no marker.s. endomucin; it has collagen, DAPI"
    ):
        plan_channels(("collagen", "DAPI"), panel, keep=("endomucin",), sample="s1")
    with pytest.raises(MarkerError, match="sample 's1' gives none of the model's markers DAPI, endomucin, collagen"):
        plan_channels(("collagen", "DAPI"), panel, given=(1,), sample="s1")


def test_predict_file_writes_both_volumes(predictor, tmp_path):
    path, _ = _stack(tmp_path, (2, 15, 15))
    out = predict_file(predictor, path, labels=tmp_path / "l.ome.tif", probabilities=tmp_path / "p.h5",
                       probability_dtype="uint8", progress=False)  # fmt: skip
    with open_volume(out["probabilities"]) as pv, open_volume(out["labels"]) as lv:
        assert pv.markers == ("background", "sinusoids") and pv.dtype == np.uint8
        with open_volume(path) as vol:
            probs = predict_volume(predictor, vol, progress=False)
        np.testing.assert_array_equal(pv.read_volume(), encode_probabilities(probs, "uint8"))
        np.testing.assert_array_equal(lv.read_volume()[0], labels_from_probabilities(probs))
    with pytest.raises(UserInputError, match="already exists"):
        predict_file(predictor, path, labels=tmp_path / "l.ome.tif", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.ome.tif", "p.h5", "stack.ome.tif"]


def test_encode_probabilities_and_spec():
    p = np.array([[0.0, 0.5, 1.0]], np.float32)
    assert encode_probabilities(p, "uint8").tolist() == [[0, 128, 255]]
    assert encode_probabilities(p, "uint16").tolist() == [[0, 32768, 65535]]
    spec = ModelSpec(MARKERS, ("a", "b"), 28, 12)
    assert spec.margin == 8 and spec.outputs == ("background", "a", "b")


def test_model_card_round_trip_and_signature():
    spec = ModelSpec(MARKERS, ("a", "b"), 28, 12, spacing=(2.0, 0.5, 0.5), name="MS", model_config={"name": "MS"})
    assert spec.shapes() == {"image": (None, 28, 28, 3), "availability": (None, 3), "probabilities": (None, 12, 12, 3)}
    card = spec.card()
    assert card["model"] == "MS" and card["software"] == {} and card["training"] == {}  # no provenance
    assert card["tile"] == {"input_size": 28, "output_size": 12, "margin": 8}
    assert card["signature"] == {
        "name": "serving_default",
        "inputs": {"image": {"dtype": "float32", "shape": ["N", 28, 28, 3]},
                   "availability": {"dtype": "float32", "shape": ["N", 3]}},
        "outputs": {"probabilities": {"dtype": "float32", "shape": ["N", 12, 12, 3]}},
    }  # fmt: skip
    assert ModelSpec.from_card(json.loads(json.dumps(card))) == spec
    with pytest.raises(UserInputError, match="model card is incomplete"):
        ModelSpec.from_card({"markers": list(MARKERS)})
