"""SampleStore under faults: disk full, failing overwrite, kill, concurrent writers, locks, old stores, bad names."""

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from marker_excite.data import store as store_mod
from marker_excite.data.sample import Sample
from marker_excite.data.store import SampleStore, StoreError

REPO = Path(__file__).resolve().parents[1]


def sample(name="s1", seed=0, z=3) -> Sample:
    rng = np.random.default_rng(seed)
    image = rng.normal(100, 20, (2, z, 8, 9)).astype(np.float32)
    sin = (rng.random((z, 8, 9)) < 0.3).astype(np.uint8)
    return Sample(name, image, ("DAPI", "endomucin"), (2.0, 0.5, 0.5), {"sinusoids": sin})


def make_store(path: Path, *names: str) -> None:
    with SampleStore(path, "w") as st:
        for i, n in enumerate(names):
            st.write_sample(sample(n, seed=i))


def assert_intact(path: Path, names: dict[str, int]) -> None:
    """The store lists exactly ``names`` and each sample holds the data of its seed."""
    with SampleStore(path) as st:
        assert st.names() == sorted(names)
        for n, seed in names.items():
            np.testing.assert_array_equal(st.read_sample(n).image, sample(n, seed).image)


def sample_dir_files(path: Path) -> list[str]:
    return sorted(p.name for p in Path(f"{path}.samples").iterdir())


def test_disk_full_while_writing_a_sample_keeps_the_store(tmp_path, monkeypatch):
    p = tmp_path / "a.h5"
    make_store(p, "s1")
    before = sample_dir_files(p)
    real = h5py.Dataset.__setitem__
    calls = {"n": 0}

    def full(self, key, value):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", full)
    with SampleStore(p, "a") as st:
        with pytest.raises(StoreError, match="writing sample 's2' .* no space left on device; the store is unchanged"):
            st.write_sample(sample("s2", 1))
    monkeypatch.undo()
    assert_intact(p, {"s1": 0})
    assert sample_dir_files(p) == before  # the partial sample file is gone


def test_disk_full_while_writing_the_index_keeps_the_store(tmp_path, monkeypatch):
    p = tmp_path / "a.h5"
    make_store(p, "s1")
    before, index_bytes = sample_dir_files(p), p.read_bytes()
    real = store_mod._fsync

    def full(path):
        if path.name.startswith(".a.h5."):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path)

    monkeypatch.setattr(store_mod, "_fsync", full)
    with SampleStore(p, "a") as st:
        with pytest.raises(
            StoreError, match="cannot update store .*a.h5: no space left on device; the store is unchanged"
        ):
            st.write_sample(sample("s2", 1))
    assert p.read_bytes() == index_bytes
    assert sample_dir_files(p) == before and sorted(q.name for q in tmp_path.iterdir()) == ["a.h5", "a.h5.samples"]
    assert_intact(p, {"s1": 0})


def test_failing_overwrite_keeps_the_old_sample_and_a_good_one_replaces_it(tmp_path):
    p = tmp_path / "a.h5"
    make_store(p, "s1", "s2")
    bad = sample("s1", 7)
    with SampleStore(p, "a") as st:
        w = st.create_sample("s1", markers=bad.markers, shape_zyx=bad.shape_zyx, overwrite=True)
        with pytest.raises(StoreError, match="NaN/Inf"):
            with w:
                w.write_slice(0, bad.image[:, 0])
                w.write_slice(1, np.full_like(bad.image[:, 1], np.nan))
        assert st.names() == ["s1", "s2"]
        np.testing.assert_array_equal(st.read_sample("s1").image, sample("s1", 0).image)
    assert_intact(p, {"s1": 0, "s2": 1})
    with SampleStore(p, "a") as st:
        st.write_sample(sample("s1", 7), overwrite=True)
    assert_intact(p, {"s1": 7, "s2": 1})
    assert len([f for f in sample_dir_files(p) if f.endswith(".h5")]) == 2  # the replaced file was removed


def test_killed_writer_keeps_the_store_and_its_leftover_is_removed_next_time(tmp_path):
    p = tmp_path / "a.h5"
    make_store(p, "s1")
    code = textwrap.dedent(
        f"""
        import sys, time, numpy as np
        from marker_excite.data.store import SampleStore
        st = SampleStore({str(p)!r}, "a")
        w = st.create_sample("s2", markers=("DAPI",), shape_zyx=(4, 8, 8))
        w.write_slice(0, np.ones((1, 8, 8), np.float32))
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    assert proc.stdout.readline().strip() == b"ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leftovers = [f for f in sample_dir_files(p) if f.startswith(".sample.h5.")]
    assert len(leftovers) == 1
    assert_intact(p, {"s1": 0})
    with SampleStore(p, "a") as st:
        st.write_sample(sample("s3", 3))
    assert not [f for f in sample_dir_files(p) if f.startswith(".sample.h5.")]
    assert_intact(p, {"s1": 0, "s3": 3})


_WRITER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_store_safety import sample
from marker_excite.data.store import SampleStore
store, name, seed, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
while not go.exists():
    time.sleep(0.005)
with SampleStore(store, "a") as st:
    st.write_sample(sample(name, seed))
print("imported", name)
"""


def run_concurrently(tmp_path: Path, store: Path, jobs: list[tuple[str, int]]) -> list[subprocess.CompletedProcess]:
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = _WRITER.format(tests=str(REPO / "tests"))
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(store), n, str(s), str(go)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n, s in jobs
    ]  # fmt: skip
    time.sleep(1.5)  # let both import their libraries and wait at the start line
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


@pytest.mark.parametrize("existing", [False, True])
def test_two_processes_importing_at_once_both_land(tmp_path, existing):
    p = tmp_path / "a.h5"
    if existing:
        make_store(p, "s0")
    results = run_concurrently(tmp_path, p, [("s1", 1), ("s2", 2)])
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert_intact(p, {"s1": 1, "s2": 2, **({"s0": 0} if existing else {})})


def test_two_processes_importing_the_same_name_one_fails_cleanly(tmp_path):
    p = tmp_path / "a.h5"
    make_store(p, "s0")
    results = run_concurrently(tmp_path, p, [("s1", 1), ("s1", 2)])
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 1]
    failed = next(r for r in results if r.returncode)
    assert "sample 's1' already exists" in failed.stderr
    winner = next(int(r.args[5]) for r in results if r.returncode == 0)
    assert_intact(p, {"s0": 0, "s1": winner})
    assert len([f for f in sample_dir_files(p) if f.endswith(".h5")]) == 2


def test_locked_store_is_reported_as_in_use(tmp_path, monkeypatch):
    p = tmp_path / "a.h5"
    make_store(p, "s1")
    monkeypatch.setattr(store_mod, "LOCK_TIMEOUT_S", 0.2)
    fd = os.open(Path(f"{p}.samples") / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with SampleStore(p, "a") as st:
            with pytest.raises(StoreError, match="is in use by another process"):
                st.write_sample(sample("s2", 2))
            assert st.names() == ["s1"]
        assert_intact(p, {"s1": 0})  # reading is not blocked by a writer
    finally:
        os.close(fd)
    assert sample_dir_files(p) == sorted(
        [".lock", ".store-id", *[f for f in sample_dir_files(p) if f.startswith("s1-")]]
    )


def test_old_single_file_store_locked_by_a_writer_is_in_use_not_corrupt(tmp_path):
    p = tmp_path / "old.h5"
    make_store(tmp_path / "new.h5", "s1")
    os.replace(next(Path(f"{tmp_path / 'new.h5'}.samples").glob("s1-*.h5")), p)  # a version-1 store file
    code = f"import h5py, time; f = h5py.File({str(p)!r}, 'a'); print('ready', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        with pytest.raises(StoreError, match="in use by another process"):
            SampleStore(p)
    finally:
        proc.kill()
        proc.wait()


def test_old_single_file_store_is_read_and_converted_on_write_without_copying(tmp_path):
    p = tmp_path / "old.h5"
    make_store(tmp_path / "new.h5", "s1")
    os.replace(next(Path(f"{tmp_path / 'new.h5'}.samples").glob("s1-*.h5")), p)
    with h5py.File(p, "r") as f:
        assert f.attrs["version"] == 1 and list(f) == ["s1"]
    inode = p.stat().st_ino
    assert_intact(p, {"s1": 0})
    with SampleStore(p, "a") as st:
        st.write_sample(sample("s2", 2))
    with h5py.File(p, "r") as f:
        assert f.attrs["version"] == 2
        files = {n: e["file"] for n, e in json.loads(f["index"][()])["samples"].items()}
    assert (Path(f"{p}.samples") / files["s1"]).stat().st_ino == inode  # hard link, no copy
    assert_intact(p, {"s1": 0, "s2": 2})
    with SampleStore(p, "a") as st:
        st.remove("s1")
    assert_intact(p, {"s2": 2})
    assert not (Path(f"{p}.samples") / files["s1"]).exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "."}, r"sample name '\.' must be"),
        ({"name": ".."}, r"sample name '\.\.' must be"),
        ({"name": "a/b"}, "sample name 'a/b' must be"),
        ({"classes": ("a/b",)}, "label class name 'a/b' must be"),
        ({"classes": (".",)}, r"label class name '\.' must be"),
    ],
)
def test_names_that_break_the_store_are_refused(tmp_path, kwargs, message):
    args = {"name": "s1", "markers": ("DAPI",), "shape_zyx": (1, 2, 2), **kwargs}
    with SampleStore(tmp_path / "a.h5", "w") as st:
        with pytest.raises(StoreError, match=message):
            st.create_sample(args.pop("name"), **args)


def test_newer_invalid_or_damaged_stores_are_refused(tmp_path):
    p = tmp_path / "a.h5"
    make_store(p, "s1")
    with h5py.File(p, "a") as f:
        f.attrs["version"] = 3
    with pytest.raises(StoreError, match="schema version 3; this marker_excite reads up to 2"):
        SampleStore(p)
    with h5py.File(p, "a") as f:
        f.attrs["version"] = "1.1"
    with pytest.raises(StoreError, match="invalid schema version '1.1'"):
        SampleStore(p)
    with h5py.File(p, "a") as f:
        f.attrs["version"] = 2
    with h5py.File(next(Path(f"{p}.samples").glob("s1-*.h5")), "a") as f:
        del f["s1"].attrs["mean"]
    with SampleStore(p) as st, pytest.raises(StoreError, match="sample 's1' in store .* is damaged"):
        st.info("s1")
