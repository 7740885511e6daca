"""A full disk during `predict` / `train`: one error line (exit 2), no partial output, a resumable run."""

import errno
import io

import h5py
import numpy as np
import pytest
from conftest import MARKERS, make_run

from marker_excite.cli import main
from marker_excite.data import tiff_io
from marker_excite.data.writers import write_volume


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
    from marker_excite import run_dir as rd
    from marker_excite.run import load_run

    assert main(train_argv(tmp_path, tiny_store, tmp_path / "full")) == 0
    real = np.savez
    calls = []

    def full(*args, **kwargs):  # the resume checkpoint of epoch 2 hits a full disk
        calls.append(1)
        if len(calls) == 2:
            raise disk_full()
        real(*args, **kwargs)

    monkeypatch.setattr(rd.np, "savez", full)
    msg = one_line_error(capsys, train_argv(tmp_path, tiny_store, tmp_path / "split"), "train")
    monkeypatch.undo()
    assert msg.endswith(f"no space left on device while writing run directory {tmp_path / 'split'}; it keeps its "
                        "last completed epoch: free space, then continue with --resume")  # fmt: skip
    split = tmp_path / "split"
    hidden = [p.name for p in split.iterdir() if p.name.startswith(".")]
    assert hidden == [rd.LOCK]  # no temporaries, no half checkpoint
    assert main(train_argv(tmp_path, tiny_store, split) + ["--resume"]) == 0
    assert [r["epoch"] for r in rd.read_log(split / rd.LOG)] == [1, 2]
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
