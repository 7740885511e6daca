"""SampleStore: schema round trip, streaming statistics, class counts, atomic and failure-safe writes."""

import json

import h5py
import numpy as np
import pytest

from marker_excite.data.sample import Sample
from marker_excite.data.store import SCHEMA_VERSION, STORE_FORMAT, SampleStore, StoreError
from marker_excite.errors import UserInputError


def make_sample(name="s1", z=4, y=30, x=40, dtype=np.float32, seed=0) -> Sample:
    rng = np.random.default_rng(seed)
    image = (rng.normal(100, 20, (3, z, y, x))).astype(dtype)
    sin = rng.random((z, y, x)) < 0.3
    art = rng.random((z, y, x)) < 0.2  # overlaps sinusoids on purpose
    return Sample(
        name, image, ("DAPI", "endomucin", "collagen"), (2.0, 0.5, 0.5),
        {"sinusoids": sin.astype(np.uint8), "arteries": art.astype(np.uint8)},
        np.array([True, False, True, True][:z]), "diaphysis", {"note": "x", "n": 3},
    )  # fmt: skip


def test_round_trip_and_schema(tmp_path):
    s = make_sample(dtype=np.uint16)
    p = tmp_path / "store.h5"
    with SampleStore(p, "w") as st:
        info = st.write_sample(s)
    assert info.markers == s.markers and info.spacing == (2.0, 0.5, 0.5) and info.region == "diaphysis"
    with h5py.File(p, "r") as f:
        assert f.attrs["format"] == STORE_FORMAT and f.attrs["version"] == SCHEMA_VERSION == 2
        assert f.attrs["sample_dir"] == "store.h5.samples"
        entry = json.loads(f["index"][()])["samples"]["s1"]
        store_id = f.attrs["store_id"]
    sample_file = tmp_path / "store.h5.samples" / entry["file"]
    assert entry["group"] == "s1" and sample_file.name.startswith("s1-")
    assert sorted(q.name for q in sample_file.parent.iterdir()) == [".lock", ".store-id", sample_file.name]
    assert len(store_id) == 32 and (sample_file.parent / ".store-id").read_text() == store_id + "\n"
    with h5py.File(sample_file, "r") as f:  # each sample file is a one-sample store of version 1
        assert f.attrs["format"] == STORE_FORMAT and f.attrs["version"] == 1
        assert f["s1/image"].chunks == (1, 1, 30, 40) and f["s1/image"].dtype == np.uint16
        assert f["s1/labels/sinusoids"].chunks == (1, 30, 40)
    with SampleStore(p) as st:
        assert st.names() == ["s1"]
        back = st.read_sample("s1")
        np.testing.assert_array_equal(back.image, s.image)
        assert back.image.dtype == np.uint16
        for c in s.labels:
            np.testing.assert_array_equal(back.labels[c], s.labels[c])
        np.testing.assert_array_equal(back.annotated, s.annotated)
        assert back.attrs == {"note": "x", "n": 3} and back.region == "diaphysis"
        image, labels = st.read_slice("s1", 2)
        assert image.dtype == np.float32 and image.shape == (3, 30, 40)
        np.testing.assert_array_equal(image, s.image[:, 2].astype(np.float32))
        np.testing.assert_array_equal(labels["arteries"], s.labels["arteries"][2])


def test_statistics_are_float64_streaming_over_all_voxels(tmp_path):
    s = make_sample()
    with SampleStore(tmp_path / "a.h5", "w") as st:
        info = st.write_sample(s)
    flat = s.image.reshape(3, -1).astype(np.float64)
    np.testing.assert_allclose(info.mean, flat.mean(1), rtol=1e-12)
    np.testing.assert_allclose(info.std, flat.std(1), rtol=1e-10)


def test_class_counts_on_annotated_slices_background_per_voxel(tmp_path):
    s = make_sample()
    with SampleStore(tmp_path / "a.h5", "w") as st:
        info = st.write_sample(s)
    ann = s.annotated
    sin, art = s.labels["sinusoids"][ann] > 0, s.labels["arteries"][ann] > 0
    counts = info.class_counts
    assert counts["sinusoids"] == sin.sum() and counts["arteries"] == art.sum()
    assert counts["background"] == (~sin & ~art).sum()
    assert counts["background"] != sin.size - sin.sum() - art.sum()  # overlap: not "total minus classes"
    assert counts["annotated_voxels"] == 3 * 30 * 40 and counts["voxels"] == 4 * 30 * 40
    np.testing.assert_array_equal(info.counts_for(["sinusoids"]), [(~sin).sum(), sin.sum()])
    # later class wins on overlap, as in the label maps
    np.testing.assert_array_equal(
        info.counts_for(["sinusoids", "arteries"]), [(~sin & ~art).sum(), (sin & ~art).sum(), art.sum()]
    )
    with pytest.raises(StoreError, match="no labels for class 'tissue'"):
        info.counts_for(["tissue"])


def test_incremental_writer_any_order_and_checks(tmp_path):
    s = make_sample()
    with SampleStore(tmp_path / "a.h5", "w") as st:
        w = st.create_sample("big", markers=s.markers, shape_zyx=s.shape_zyx, spacing=s.spacing, classes=("sinusoids",))
        for z in [3, 1, 0, 2]:
            w.write_slice(z, s.image[:, z], {"sinusoids": s.labels["sinusoids"][z]} if z != 1 else None)
        with pytest.raises(StoreError, match="slice 2 written twice"):
            w.write_slice(2, s.image[:, 2])
        info = w.finalize()
        np.testing.assert_array_equal(info.annotated, [True, False, True, True])
        w2 = st.create_sample("partial", markers=s.markers, shape_zyx=s.shape_zyx)
        w2.write_slice(0, s.image[:, 0])
        with pytest.raises(StoreError, match=r"slice\(s\) 1, 2, 3 were never written"):
            w2.finalize()
        assert st.names() == ["big"]


def test_write_errors_name_the_problem(tmp_path):
    s = make_sample()
    with SampleStore(tmp_path / "a.h5", "w") as st:
        w = st.create_sample("x", markers=s.markers, shape_zyx=s.shape_zyx, classes=("sinusoids",))
        bad = s.image[:, 0].copy()
        bad[1, 3, 3] = np.nan
        with pytest.raises(StoreError, match="NaN/Inf voxels in marker.s. endomucin at slice 0"):
            w.write_slice(0, bad)
        with pytest.raises(StoreError, match=r"label 'sinusoids' has shape \(2, 2\)"):
            w.write_slice(0, s.image[:, 0], {"sinusoids": np.zeros((2, 2))})
        with pytest.raises(StoreError, match="not declared"):
            w.write_slice(0, s.image[:, 0], {"arteries": s.labels["arteries"][0]})
        with pytest.raises(StoreError, match=r"image shape \(2, 30, 40\)"):
            w.write_slice(0, s.image[:2, 0])
        w.abort()
        with pytest.raises(UserInputError, match="marker given twice"):
            st.create_sample("y", markers=("DAPI", "dapi"), shape_zyx=(1, 2, 2))
        with pytest.raises(UserInputError, match="empty marker set"):
            st.create_sample("y", markers=(), shape_zyx=(1, 2, 2))
        st.write_sample(s)
        with pytest.raises(StoreError, match="already exists"):
            st.write_sample(s)
        st.write_sample(make_sample(seed=5), overwrite=True)
        with pytest.raises(StoreError, match="'nope' is not in store"):
            st.info("nope")


def test_append_failure_keeps_existing_samples(tmp_path):
    p = tmp_path / "a.h5"
    with SampleStore(p, "w") as st:
        st.write_sample(make_sample("s1"))
    with SampleStore(p, "a") as st:
        with pytest.raises(RuntimeError):
            with st.create_sample("s2", markers=("DAPI",), shape_zyx=(3, 4, 4)) as w:
                w.write_slice(0, np.ones((1, 4, 4)))
                raise RuntimeError("disk on fire")
        assert st.names() == ["s1"]
    with SampleStore(p) as st, h5py.File(p, "r") as f:
        assert list(json.loads(f["index"][()])["samples"]) == ["s1"]
        assert len(list((tmp_path / "a.h5.samples").glob("*.h5"))) == 1
        np.testing.assert_array_equal(st.read_sample("s1").image, make_sample("s1").image)


def test_new_store_is_atomic(tmp_path):
    p = tmp_path / "new.h5"
    with pytest.raises(RuntimeError):
        with SampleStore(p, "w") as st:
            st.write_sample(make_sample())
            raise RuntimeError("interrupted")
    assert not p.exists() and list(tmp_path.iterdir()) == []
    with SampleStore(p, "a") as st:  # "a" on a missing file creates it
        st.write_sample(make_sample())
    assert SampleStore(p).names() == ["s1"]


def test_open_errors(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(StoreError, match="junk.h5.*corrupt, truncated or not HDF5"):
        SampleStore(junk)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(StoreError, match="not a marker_excite sample store"):
        SampleStore(plain)
    with pytest.raises(StoreError, match="does not exist"):
        SampleStore(tmp_path / "missing.h5")
    good = tmp_path / "good.h5"
    with SampleStore(good, "w") as st:
        st.write_sample(make_sample())
    data = good.read_bytes()
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match="trunc.h5"):
        with SampleStore(trunc) as st:
            st.read_sample("s1")


def test_a_stored_sample_reads_as_a_volume(tmp_path):
    """SampleStore.volume is what open_volume gives for store.h5:sample; the store owns the layout."""
    from marker_excite.data.formats import reading_format
    from marker_excite.data.io import open_volume
    from marker_excite.data.volume import VolumeError, VolumeReader

    s, other = make_sample(dtype=np.uint16), make_sample("s2", seed=1)
    p = tmp_path / "store.h5"
    with SampleStore(p, "w") as st:
        st.write_sample(s)
        st.write_sample(other)
    with SampleStore(p) as st:
        vol = st.volume("s1")
        assert isinstance(vol, VolumeReader) and vol.path == p and vol.dtype == np.uint16
        assert vol.shape_czyx == (3, 4, 30, 40) and vol.markers == s.markers and vol.spacing == (2.0, 0.5, 0.5)
        assert (vol.markers_source, vol.spacing_source) == ("file", "file")
        np.testing.assert_array_equal(vol.read_volume(), s.image.astype(np.float32))
        vol.close()  # a view of the open store: the store stays open
        renamed = st.volume("s2", markers="DAPI,-,vWF", spacing=(1, 1, 1))
        assert renamed.markers == ("DAPI", "vWF") and renamed.spacing == (1.0, 1.0, 1.0)
        np.testing.assert_array_equal(renamed.read_slice(1), other.image[[0, 2], 1])
        with pytest.raises(StoreError, match="sample 'nope' is not in store"):
            st.volume("nope")
    assert reading_format(p).name == reading_format(p, dataset="s1").name == "store"
    with open_volume(f"{p}:s2") as vol:
        assert type(vol) is type(renamed) and vol.markers == other.markers
        np.testing.assert_array_equal(vol.read_slice(3), other.image[:, 3])
    with pytest.raises(VolumeError, match=r"store.h5: sample store; name one of its samples: s1, s2"):
        open_volume(p)
