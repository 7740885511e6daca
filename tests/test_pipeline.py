"""tf.data pipeline: shapes, standardisation, availability, ablation, subsets, augmentation, epochs; folds."""

import itertools
from collections import Counter

import numpy as np
import pytest

from marker_excite.contract.markers import PAPER_MARKERS, MarkerPanel
from marker_excite.data.folds import Fold, paper_folds
from marker_excite.data.pipeline import (
    PatchSource,
    class_pixel_counts,
    dihedral,
    epoch_dataset,
    epoch_seed,
    make_dataset,
    patch_index,
    training_batches,
)
from marker_excite.data.sample import Sample
from marker_excite.data.store import SampleStore
from marker_excite.errors import UserInputError
from marker_excite.models.geometry import UNetGeometry

GEOM = UNetGeometry(depth=3)
IN = 60
OUT = GEOM.output_size(IN)  # 20, margin 20
PANEL = MarkerPanel(PAPER_MARKERS)
SHAPES = {"a": (3, 37, 45), "b": (2, 20, 26)}


def _sample(name, markers, shape, seed, code):
    """The DAPI channel encodes (sample, z, y, x) so every patch can be identified after standardisation."""
    rng = np.random.default_rng(seed)
    z, y, x = shape
    image = rng.normal(50, 10, (len(markers), z, y, x)).astype(np.float32)
    zz, yy, xx = np.meshgrid(np.arange(z), np.arange(y), np.arange(x), indexing="ij")
    image[markers.index("DAPI")] = code * 100000 + zz * 10000 + yy * 100 + xx
    sin = (rng.random(shape) < 0.3).astype(np.uint8)
    art = (rng.random(shape) < 0.2).astype(np.uint8)
    annotated = np.ones(z, bool)
    annotated[0] = z == 2  # sample a: slice 0 not annotated
    return Sample(name, image, markers, (2, 1, 1), {"sinusoids": sin, "arteries": art}, annotated)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    p = tmp_path_factory.mktemp("pipe") / "store.h5"
    with SampleStore(p, "w") as st:
        st.write_sample(_sample("a", ("DAPI", "endomucin"), SHAPES["a"], 1, 1))
        st.write_sample(_sample("b", ("collagen", "DAPI", "endoglin"), SHAPES["b"], 2, 2))
    st = SampleStore(p)
    yield st
    st.close()


def _decode(image, availability, st, name):
    """(sample code, z, y0, x0) of a patch from the DAPI channel's centre pixel."""
    info = st.info(name)
    ch = [m.lower() for m in info.markers].index("dapi")
    m = (IN - OUT) // 2
    raw = image[m, m, 0] * info.std[ch] + info.mean[ch]
    v = int(round(float(raw)))
    return v // 100000, (v // 10000) % 10, (v // 100) % 100, v % 100


def _source(st, **kw):
    args = dict(panel=PANEL, classes=("sinusoids",), input_size=IN, output_size=OUT, shuffle=False)
    args.update(kw)
    return PatchSource(st, ["a", "b"], **args)


def test_patch_index_and_element_shapes(store):
    idx = patch_index(store, ["a", "b"], OUT)
    # a: 2 annotated slices x (2 x 3) tiles; b: 2 slices x (1 x 2) tiles
    assert len(idx) == 2 * 6 + 2 * 2
    assert ("a", 1, 17, 25) in idx and ("b", 0, 0, 6) in idx and all(z != 0 for s, z, *_ in idx if s == "a")
    ds = make_dataset(store, ["a", "b"], panel=PANEL, classes=("sinusoids", "arteries"), input_size=IN,
                      output_size=OUT, batch_size=5, shuffle=True, seed=3)  # fmt: skip
    sizes = []
    for x, y in ds:
        assert x["image"].shape[1:] == (IN, IN, 5) and x["image"].dtype.name == "float32"
        assert x["availability"].shape[1:] == (5,) and y.shape[1:] == (OUT, OUT) and y.dtype.name == "int32"
        assert set(np.unique(y.numpy())) <= {0, 1, 2}
        sizes.append(int(y.shape[0]))
    assert sizes == [5, 5, 5, 1]  # last partial batch kept
    assert ds.cardinality().numpy() == 4


def test_each_patch_exactly_once_per_epoch_with_new_order(store):
    ds = make_dataset(store, ["a", "b"], panel=PANEL, classes=("sinusoids",), input_size=IN, output_size=OUT,
                      batch_size=3, shuffle=True, seed=7, repeat=True)  # fmt: skip
    n = len(patch_index(store, ["a", "b"], OUT))
    names = {1: "a", 2: "b"}
    epochs, seen = [], []
    for x, _ in ds.unbatch().take(2 * n):
        img, av = x["image"].numpy(), x["availability"].numpy()
        seen.append((img, av))
    for e in range(2):
        got = []
        for img, av in seen[e * n : (e + 1) * n]:
            name = "a" if av[1] == 1 else "b"  # a has endomucin, b does not
            code, z, y0, x0 = _decode(img, av, store, name)
            assert names[code] == name
            got.append((name, z, y0, x0))
        epochs.append(got)
        assert Counter(got) == Counter(patch_index(store, ["a", "b"], OUT))
    assert epochs[0] != epochs[1]  # reshuffled each epoch
    batches = [epochs[0][i : i + 3] for i in range(0, n, 3)]
    assert any(len({s for s, *_ in b}) == 2 for b in batches)  # batches mix samples


def test_training_epochs_depend_on_seed_and_epoch_only(store):
    src = _source(store, shuffle=True, augment=True)
    n = src.n_patches  # 16: one pass = 4 batches of 4

    def batches(epochs, steps):
        ds = epoch_dataset(src, 4, seed=5, epochs=epochs, steps=steps)
        assert ds.cardinality().numpy() == len(epochs) * steps
        return [(x["image"].numpy(), y.numpy()) for x, y in ds]

    run = batches(range(1, 4), 6)  # 6 steps: a pass of 4 batches, then 2 of the next pass
    resumed = batches(range(3, 4), 6)  # a run resumed after epoch 2 sees the same epoch 3
    for (a, la), (b, lb) in zip(run[12:], resumed):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    third = list(itertools.islice(src.stream(4, epoch_seed(5, 3), repeat=True), 6))  # the epoch's own stream
    assert len(resumed) == len(third) == 6
    for (a, _), (x, _) in zip(resumed, third):
        np.testing.assert_array_equal(a, x["image"])
    assert [len(y) for _, y in run[:6]] == [4] * 6 and n == 16
    assert not np.array_equal(run[0][0], run[6][0])  # another epoch, another order
    one_pass = batches(range(2, 3), 4)  # steps of one pass: exactly pass 0 of the epoch's stream
    np.testing.assert_array_equal(
        np.concatenate([y for _, y in one_pass]), np.stack([lab for _, lab in src.patches(epoch_seed(5, 2), 0)])
    )
    assert epoch_seed(0, 1) == epoch_seed(0, 1) != epoch_seed(0, 2)
    # the NumPy batches a non-TensorFlow Keras backend trains on are exactly the tf.data ones
    numpy_run = list(training_batches(src, 4, seed=5, epochs=range(1, 4), steps=6))
    assert len(numpy_run) == len(run) == 18
    for (x, y), (a, la) in zip(numpy_run, run):
        np.testing.assert_array_equal(x["image"], a)
        np.testing.assert_array_equal(y, la)


def test_standardisation_per_sample_before_padding(store):
    src = _source(store)
    m = (IN - OUT) // 2
    for i, name in enumerate(["a", "b"]):
        info = store.info(name)
        _, y, x = info.shape_zyx
        low = [mm.lower() for mm in info.markers]
        full = store.read_sample(name).image.astype(np.float64)
        ann = info.annotated_slices
        vals = []
        for z in ann:
            padded, _ = src.load_slice(i, z)
            assert padded.shape == (y + 2 * m + max(0, OUT - y), x + 2 * m, 5)
            assert np.all(padded[:m] == 0) and np.all(padded[:, :m] == 0)  # padding stays zero
            assert np.all(padded[m + y :] == 0) and np.all(padded[:, m + x :] == 0)
            vals.append(padded[m : m + y, m : m + x])
        vals = np.stack(vals)  # (annotated Z, Y, X, K)
        for j, marker in enumerate(PANEL.names):
            if marker.lower() not in low:
                assert np.all(vals[..., j] == 0)
                continue
            c = low.index(marker.lower())
            expect = (full[c] - full[c].mean()) / full[c].std()  # the sample's own statistics
            np.testing.assert_allclose(vals[..., j], expect[ann], atol=2e-4)
            if len(ann) == info.shape_zyx[0]:  # whole sample seen: mean 0, std 1
                assert abs(vals[..., j].mean()) < 1e-4 and abs(vals[..., j].std() - 1) < 1e-4


def test_availability_mapping_by_name_and_marker_panels(store):
    src = _source(store)
    np.testing.assert_array_equal(src.plans[0].availability, [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(src.plans[1].availability, [1, 0, 1, 1, 0])
    # b's channels are (collagen, DAPI, endoglin): the panel's collagen (index 3) comes from channel 0
    padded, _ = src.load_slice(1, 0)
    raw, _ = store.read_slice("b", 0)
    info = store.info("b")
    m = (IN - OUT) // 2
    np.testing.assert_allclose(padded[m : m + 20, m : m + 26, 3], (raw[0] - info.mean[0]) / info.std[0], atol=1e-5)
    ablated = _source(store, marker_panels={"b": ["DAPI"]})
    np.testing.assert_array_equal(ablated.plans[1].availability, [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(ablated.plans[0].availability, [1, 1, 0, 0, 0])
    assert np.all(ablated.load_slice(1, 0)[0][..., 2:] == 0)
    with pytest.raises(UserInputError, match="sample 'b' has no marker.s. endomucin"):
        _source(store, marker_panels={"b": ["endomucin"]})
    with pytest.raises(UserInputError, match="not in the store: zz"):
        _source(store, marker_panels={"zz": ["DAPI"]})


def test_subset_restricts_model_inputs(store):
    src = _source(store, subset=(1, 3))
    np.testing.assert_array_equal(src.plans[0].availability, [0, 1, 0, 0, 0])
    np.testing.assert_array_equal(src.plans[1].availability, [0, 0, 0, 1, 0])
    img, _ = src.load_slice(0, 1)
    assert np.all(img[..., [0, 2, 3, 4]] == 0) and np.any(img[..., 1] != 0)
    with pytest.raises(UserInputError, match="gives none of the model's markers"):
        _source(store, subset=(4,))
    with pytest.raises(UserInputError, match="empty marker subset"):
        _source(store, subset=())
    with pytest.raises(UserInputError, match="subset index 5 outside"):
        _source(store, subset=(5,))
    # a smaller model panel (e.g. an upper-bound model on a subset): extra sample channels are ignored
    ub = PatchSource(store, ["a"], panel=MarkerPanel(("endomucin",)), classes=("sinusoids",), input_size=IN,
                     output_size=OUT, shuffle=False)  # fmt: skip
    np.testing.assert_array_equal(ub.plans[0].availability, [1])


def test_class_selection_labels(store):
    sample = store.read_sample("a")
    for classes, expect in [
        (("sinusoids",), sample.labels["sinusoids"][1]),
        (("arteries",), sample.labels["arteries"][1]),
        (("sinusoids", "arteries"), np.where(sample.labels["arteries"][1] > 0, 2, sample.labels["sinusoids"][1])),
    ]:
        _, lab = _source(store, classes=classes).load_slice(0, 1)
        np.testing.assert_array_equal(lab, expect)
        assert lab.dtype == np.int32
    with pytest.raises(UserInputError, match="no labels for class 'tissue'"):
        _source(store, classes=("tissue",))
    counts = class_pixel_counts(store, ["a", "b"], ("sinusoids", "arteries"))
    total = np.zeros(3, int)
    for name in ["a", "b"]:
        s = store.read_sample(name)
        lab = np.where(s.labels["arteries"] > 0, 2, s.labels["sinusoids"])[s.annotated]
        total += np.bincount(lab.ravel(), minlength=3)
    np.testing.assert_array_equal(counts, total)


def test_augmentation_applied_identically_to_image_and_label(store):
    plain = list(_source(store, classes=("sinusoids", "arteries")).patches(seed=0))
    aug = list(_source(store, classes=("sinusoids", "arteries"), augment=True).patches(seed=1))
    assert len(plain) == len(aug)
    used = set()
    m = (IN - OUT) // 2
    for (x0, y0), (x1, y1) in zip(plain, aug):
        found = [
            combo
            for combo in itertools.product((False, True), repeat=3)
            if np.array_equal(dihedral(x0["image"], y0, *combo)[0], x1["image"])
            and np.array_equal(dihedral(x0["image"], y0, *combo)[1], y1)
        ]
        assert len(found) == 1, "augmented patch is not exactly one rotation/reflection of the original"
        # the label tile still sits under the centre of the image tile (same transform)
        assert np.array_equal(dihedral(x0["image"][m:-m, m:-m], y0, *found[0])[0], x1["image"][m:-m, m:-m])
        used.add(found[0])
    assert len(used) >= 6  # really random: most of the 8 transforms were applied
    ds = make_dataset(store, ["a"], panel=PANEL, classes=("sinusoids",), input_size=IN, output_size=OUT,
                      batch_size=4, shuffle=False, augment=True, seed=1)  # fmt: skip
    first = next(iter(ds))[0]["image"].numpy()
    ref = next(iter(make_dataset(store, ["a"], panel=PANEL, classes=("sinusoids",), input_size=IN,
                                 output_size=OUT, batch_size=4, shuffle=False)))[0]["image"].numpy()  # fmt: skip
    assert not np.array_equal(first, ref)


def test_streaming_mode_reads_each_slice_once_per_epoch(store):
    calls = Counter()
    orig = store.read_slice

    class Counting:
        def __getattr__(self, name):
            return getattr(store, name)

        def read_slice(self, name, z):
            calls[(name, z)] += 1
            return orig(name, z)

    src = PatchSource(Counting(), ["a", "b"], panel=PANEL, classes=("sinusoids",), input_size=IN, output_size=OUT,
                      shuffle=True, cache_bytes=1)  # fmt: skip
    assert not src.fits_in_cache
    for number in range(2):
        got = [
            _decode(x["image"], None, store, "a" if x["availability"][1] else "b") for x, _ in src.patches(0, number)
        ]
        assert len(got) == len(set(got)) == src.n_patches
    assert set(calls.values()) == {2}  # each annotated slice read once in each of the 2 epochs
    calls.clear()
    cached = PatchSource(Counting(), ["a", "b"], panel=PANEL, classes=("sinusoids",), input_size=IN,
                         output_size=OUT, shuffle=True)  # fmt: skip
    for number in range(3):
        assert len(list(cached.patches(0, number))) == cached.n_patches
    assert set(calls.values()) == {1}  # cached across epochs


def test_pipeline_input_errors(store):
    with pytest.raises(UserInputError, match="no annotated slices"):
        with SampleStore(store.path.parent / "empty.h5", "w") as st:
            st.write_sample(Sample("e", np.ones((1, 2, 5, 5), np.float32), ("DAPI",), labels={"sinusoids": np.zeros((2, 5, 5))},
                                   annotated=np.zeros(2, bool)))  # fmt: skip
            PatchSource(st, ["e"], panel=PANEL, classes=("sinusoids",), input_size=IN, output_size=OUT, shuffle=False)
    with pytest.raises(UserInputError, match="batch_size"):
        make_dataset(
            store,
            ["a"],
            panel=PANEL,
            classes=("sinusoids",),
            input_size=IN,
            output_size=OUT,
            batch_size=0,
            shuffle=False,
        )
    with pytest.raises(UserInputError, match="not in store"):
        PatchSource(store, ["zz"], panel=PANEL, classes=("sinusoids",), input_size=IN, output_size=OUT, shuffle=False)


def test_paper_folds():
    names = [f"s{i}" for i in range(1, 9)]
    folds = paper_folds(names, seed=0)
    assert len(folds) == 4
    assert all(isinstance(f, Fold) and (len(f.train), len(f.val), len(f.test)) == (5, 1, 2) for f in folds)
    assert sorted(s for f in folds for s in f.test) == sorted(names)
    assert len({s for f in folds for s in f.val}) == 4  # validation samples differ between folds
    for f in folds:
        assert not set(f.train) & set(f.val) and not set(f.train) & set(f.test) and not set(f.val) & set(f.test)
        assert set(f.train) | set(f.val) | set(f.test) == set(names)
    assert paper_folds(list(reversed(names)), seed=0) == folds  # order of input does not matter
    assert paper_folds(names, seed=1) != folds
    six = paper_folds([f"x{i}" for i in range(6)], n_folds=3)
    assert [len(f.test) for f in six] == [2, 2, 2] and all(len(f.train) == 3 for f in six)
    odd = paper_folds([f"x{i}" for i in range(7)])
    assert sorted(len(f.test) for f in odd) == [1, 2, 2, 2]
    with pytest.raises(UserInputError, match="too few"):
        paper_folds(["a", "b", "c"])
    with pytest.raises(UserInputError, match="n_test"):
        paper_folds(names, n_test=3)
    with pytest.raises(UserInputError, match="twice"):
        paper_folds(["a", "a", "b", "c", "d", "e"])


def test_intensity_augmentation_is_one_gain_per_channel_and_keeps_the_rotations(store):
    base = dict(classes=("sinusoids",), augment=True)
    rotated = list(_source(store, **base).patches(seed=3))
    scaled = list(_source(store, **base, intensity=0.2).patches(seed=3))
    gains = []
    for (x0, y0), (x1, y1) in zip(rotated, scaled):
        np.testing.assert_array_equal(y0, y1)  # same rotations / reflections and labels as augment alone
        for k in range(x0["image"].shape[-1]):
            a, b = x0["image"][..., k], x1["image"][..., k]
            if np.abs(a).max() > 0:
                gain = float(np.sum(a * b) / np.sum(a * a))
                np.testing.assert_allclose(b, gain * a, rtol=1e-5, atol=1e-6)  # one gain for the channel
                gains.append(gain)
    assert 1 / 1.2 - 1e-6 <= min(gains) and max(gains) <= 1.2 + 1e-6
    assert max(gains) - min(gains) > 0.2  # really drawn per patch and channel
    with pytest.raises(UserInputError, match="intensity augmentation must be >= 0"):
        _source(store, intensity=-0.1)
