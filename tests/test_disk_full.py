"""A full disk during `predict` / `train` / `import`: one error line (exit 2), no partial output, a resumable run."""

import errno
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import MARKERS, make_run

from marker_excite.cli import main
from marker_excite.data import tiff_io
from marker_excite.data.writers import write_volume

REPO = Path(__file__).resolve().parents[1]


def disk_full():
    return OSError(errno.ENOSPC, "No space left on device")


def one_line_error(capsys, argv, command):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"marker-excite {command}: error: "), err
    return err[0]


class FullFile(io.FileIO):
    """A file whose third write fails as on a full disk."""

    writes = 0

    def write(self, data):
        FullFile.writes += 1
        if FullFile.writes == 3:
            raise disk_full()
        return super().write(data)


@pytest.mark.parametrize("fails", ["tiff slice", "hdf5 slice", "hdf5 flush"])
def test_predict_on_a_full_disk_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, fails):
    run_dir, _, _ = make_run(tmp_path / "run")
    image = np.random.default_rng(0).normal(100, 20, (len(MARKERS), 4, 20, 30)).astype(np.float32)
    stack = write_volume(tmp_path / "stack.ome.tif", image, (2.0, 1.0, 1.0), MARKERS)
    out = tmp_path / "out"
    out.mkdir()
    (out / "labels.ome.tif").write_bytes(b"old labels")  # an existing output to replace: kept as it was
    if fails == "tiff slice":
        FullFile.writes = 0
        monkeypatch.setattr(tiff_io, "open", lambda path, mode: FullFile(path, mode.replace("b", "")), raising=False)
        culprit = out / "labels.ome.tif"
    elif fails == "hdf5 slice":
        real = h5py.Dataset.__setitem__

        def full(self, key, value):
            if key[1] == 2:
                raise disk_full()
            real(self, key, value)

        monkeypatch.setattr(h5py.Dataset, "__setitem__", full)
        culprit = out / "probs.h5"
    else:
        real_close = h5py.File.close

        def full_close(self):  # h5py reports HDF5's failing flush by text, without an errno
            name = self.filename if self.id.valid else ""
            real_close(self)
            if ".probs.h5." in name:
                raise OSError(
                    "Can't close file (file write failed: errno = 28, error message = 'No space left on device')"
                )

        monkeypatch.setattr(h5py.File, "close", full_close)
        culprit = out / "probs.h5"
    argv = ["predict", str(run_dir), str(stack), "--labels", str(out / "labels.ome.tif"),
            "--probabilities", str(out / "probs.h5"), "--overwrite", "--quiet"]  # fmt: skip
    msg = one_line_error(capsys, argv, "predict")
    assert msg.endswith(f"error: cannot write {culprit}: no space left on device"), msg
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == ["labels.ome.tif"]
    assert (out / "labels.ome.tif").read_bytes() == b"old labels"


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    from conftest import make_tiny_store

    return make_tiny_store(tmp_path_factory.mktemp("store") / "tiny.h5", n_samples=3)


def train_argv(tmp_path, store, run):
    from conftest import TINY

    from marker_excite.models.zoo import model_config

    config = tmp_path / "model.json"
    if not config.exists():
        model_config("MS-ME", **TINY).to_json(config)
    return ["train", "--store", str(store), "--run", str(run), "--model-config", str(config), "--preset", "small",
            "--n-folds", "3", "--batch-size", "4", "--epochs", "2", "--quiet"]  # fmt: skip


def test_train_on_a_full_disk_is_one_line_and_resumes_to_the_same_weights(tiny_store, tmp_path, capsys, monkeypatch):
    from marker_excite.runs import checkpoint
    from marker_excite.runs import directory as rd
    from marker_excite.runs.log import read_log
    from marker_excite.runs.run import load_run

    assert main(train_argv(tmp_path, tiny_store, tmp_path / "full")) == 0
    real = np.savez
    calls = []

    def full(*args, **kwargs):  # the resume checkpoint of epoch 2 hits a full disk
        calls.append(1)
        if len(calls) == 2:
            raise disk_full()
        real(*args, **kwargs)

    monkeypatch.setattr(checkpoint.np, "savez", full)
    msg = one_line_error(capsys, train_argv(tmp_path, tiny_store, tmp_path / "split"), "train")
    monkeypatch.undo()
    assert msg.endswith(f"no space left on device while writing run directory {tmp_path / 'split'}; it keeps its "
                        "last completed epoch: free space, then continue with --resume")  # fmt: skip
    split = tmp_path / "split"
    hidden = [p.name for p in split.iterdir() if p.name.startswith(".")]
    assert hidden == [rd.LOCK]  # no temporaries, no half checkpoint
    assert main(train_argv(tmp_path, tiny_store, split) + ["--resume"]) == 0
    assert [r["epoch"] for r in read_log(split / rd.LOG)] == [1, 2]
    for weights in ("best", "last"):
        a, b = (load_run(tmp_path / run, weights=weights).model.weights for run in ("full", "split"))
        for x, y in zip(a, b):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_train_on_a_full_disk_while_creating_the_run_directory(tiny_store, tmp_path, capsys, monkeypatch):
    from marker_excite import atomic

    real = atomic.write_text

    def full(path, *args, **kwargs):  # the third config file of a new run hits a full disk
        if str(path).endswith("data_config.json"):
            raise disk_full()
        return real(path, *args, **kwargs)

    monkeypatch.setattr(atomic, "write_text", full)
    run = tmp_path / "run"
    msg = one_line_error(capsys, train_argv(tmp_path, tiny_store, run), "train")
    assert msg.endswith(f"while creating run directory {run}: free space, then start again with --overwrite")
    assert sorted(p.name for p in run.iterdir()) == [".lock", "model_config.json", "train_config.json"]


INSIDE_FULL_DISK = """
import json, os, subprocess, sys
from marker_excite.data.store import SampleStore

def imp(name, image, labels):
    argv = [sys.executable, "-m", "marker_excite", "import", "--store", STORE, "--name", name, "--image", image,
            "--label", "sinusoids=" + labels, "--annotated", "all", "--target-spacing", "none", "--quiet"]
    return subprocess.run(argv, capture_output=True, text=True)

def free_kb():
    st = os.statvfs(os.path.dirname(STORE))
    return st.f_bavail * st.f_frsize // 1024

small, big = imp("s0", SMALL, SMALL_LABELS), imp("s1", BIG, LABELS)
nearly_full = {}  # the disk filled up to a few KB: the sample file, or the new index, meets the full disk
for kb in (6, 28):
    with open(FILL, "wb") as fh:
        fh.write(bytes(1024 * (free_kb() - kb)))
    done = imp("s2", SMALL, SMALL_LABELS)
    nearly_full[kb] = [done.returncode, done.stderr]
    os.unlink(FILL)
with SampleStore(STORE) as st:
    names = st.names()
    image = st.read_sample("s0").image.tolist()
json.dump({"small": small.returncode, "rc": big.returncode, "err": big.stderr, "names": names, "s0": image,
           "nearly_full": nearly_full}, open(RESULT, "w"))
"""


def test_import_on_a_really_full_disk_is_one_line_not_a_crash(tmp_path):
    """A 3 MB tmpfs (in a user namespace) fills up during import: exit 2 and one line, never SIGSEGV."""
    if (
        not shutil.which("unshare")
        or subprocess.run(
            ["unshare", "-Urm", "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tmp_path)], capture_output=True
        ).returncode
    ):
        pytest.skip("cannot mount a small tmpfs here (unshare -Urm)")
    rng = np.random.default_rng(0)
    n = 300  # 4.3 MB of float32: does not fit
    images = {k: rng.normal(100, 20, (len(MARKERS), 2 if k == "small" else 6, n, n)).astype(np.float32)
              for k in ("small", "big")}  # fmt: skip
    images["small"] = images["small"][:, :, :20, :20]
    for k, image in images.items():
        write_volume(tmp_path / f"{k}.ome.tif", image, (2.0, 1.0, 1.0), MARKERS)
    write_volume(tmp_path / "labels.tif", (rng.random((1, 6, n, n)) < 0.3).astype(np.uint8), (2.0, 1.0, 1.0), ("x",))
    write_volume(tmp_path / "small_labels.tif", np.ones((1, 2, 20, 20), np.uint8), (2.0, 1.0, 1.0), ("x",))
    disk = tmp_path / "disk"
    disk.mkdir()
    values = {"STORE": disk / "d.h5", "SMALL": tmp_path / "small.ome.tif", "BIG": tmp_path / "big.ome.tif",
              "SMALL_LABELS": tmp_path / "small_labels.tif", "LABELS": tmp_path / "labels.tif",
              "RESULT": tmp_path / "result.json", "FILL": disk / "fill"}  # fmt: skip
    script = "".join(f"{k} = {str(v)!r}\n" for k, v in values.items()) + INSIDE_FULL_DISK
    (tmp_path / "inside.py").write_text(script)
    mount = f"mount -t tmpfs -o size=3m tmpfs {disk} && exec {sys.executable} {tmp_path / 'inside.py'}"
    done = subprocess.run(["unshare", "-Urm", "sh", "-c", mount], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["small"] == 0 and result["rc"] == 2, result
    err = result["err"].strip().splitlines()
    assert err == [f"marker-excite import: error: writing sample 's1' to store {disk / 'd.h5'} failed: "
                   "no space left on device; the store is unchanged"], err  # fmt: skip
    for kb, (code, stderr) in result["nearly_full"].items():
        assert code == 2 and stderr.count("\n") == 1 and "no space left on device" in stderr, (kb, stderr)
    assert result["names"] == ["s0"]
    np.testing.assert_array_equal(np.asarray(result["s0"], np.float32), images["small"])
