"""An output may not be, contain or sit inside an input (store, sample folder, image, run): one rule, every command."""

import numpy as np
import pytest
from conftest import MARKERS, make_run, make_tiny_store

from marker_excite.atomic import check_outputs_apart
from marker_excite.cli import main
from marker_excite.data.store import SampleStore
from marker_excite.data.writers import write_volume
from marker_excite.errors import UserInputError
from marker_excite.runs import directory as rd

RULE = "an output may not be, contain or sit inside an input; choose another output path"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run") / "run")[0]


def refused(capsys, argv, command) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"marker-excite {command}: error: ") and err[0].endswith(RULE), err
    return err[0]


def test_the_rule_is_resolved_through_symlinks(tmp_path):
    (tmp_path / "grp.zarr" / "s1.ome.zarr").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "grp.zarr")
    image = ("the input", tmp_path / "grp.zarr" / "s1.ome.zarr")
    for out, relation in [("grp.zarr", "contains"), ("link", "contains"), ("link/s1.ome.zarr", "is"),
                          ("grp.zarr/s1.ome.zarr/labels", "is inside")]:  # fmt: skip
        with pytest.raises(UserInputError, match=f"^--labels {tmp_path / out} {relation} the input "):
            check_outputs_apart([("--labels", tmp_path / out)], [image])
    check_outputs_apart([("--labels", tmp_path / "grp.zarr" / "s1.labels.ome.zarr")], [image])


def test_predict_refuses_labels_replacing_the_group_that_holds_the_input(tmp_path, capsys, run):
    zarr = pytest.importorskip("zarr")
    image = np.random.default_rng(0).normal(100, 20, (len(MARKERS), 2, 20, 30)).astype(np.float32)
    grp = tmp_path / "grp.zarr"
    zarr.open_group(str(grp), mode="w")  # a zarr group holding the image
    source = write_volume(grp / "s1.ome.zarr", image, (2.0, 1.0, 1.0), MARKERS)
    before = sorted(str(p.relative_to(grp)) for p in grp.rglob("*"))
    msg = refused(capsys, ["predict", str(run), str(source), "--labels", str(grp), "--overwrite", "--quiet"], "predict")
    assert f"--labels {grp} contains the input {source}/" in msg
    argv = ["predict", str(run), str(source), "--labels", str(source / "0"), "--overwrite", "--quiet"]
    assert f"--labels {source / '0'} is the input {source / '0'}" in refused(capsys, argv, "predict")
    assert sorted(str(p.relative_to(grp)) for p in grp.rglob("*")) == before


def test_quantify_refuses_an_output_that_is_the_store_or_an_image(tmp_path, capsys, run):
    store = make_tiny_store(tmp_path / "store.h5", n_samples=2)
    index = store.read_bytes()
    argv = ["quantify", "--store", str(store), "--model", str(run), "--overwrite", "--quiet"]
    assert f"--output {store} is the input {store}" in refused(capsys, [*argv, "-o", str(store)], "quantify")
    sample_dir = tmp_path / "store.h5.samples"
    msg = refused(capsys, [*argv, "-o", "x.csv", "--plot", str(sample_dir / "a.png")], "quantify")
    assert f"--plot {sample_dir / 'a.png'} is inside the input {sample_dir}" in msg
    assert store.read_bytes() == index and not (sample_dir / "a.png").exists()
    image = write_volume(tmp_path / "img.ome.tif", np.ones((1, 1, 8, 8), np.float32), (1, 1, 1), ("DAPI",))
    labels = write_volume(tmp_path / "lab.tif", np.ones((1, 1, 8, 8), np.uint8), (1, 1, 1), ("x",))
    argv = ["quantify", "--labels", str(labels), "--images", str(image), "--classes", "sinusoids", "--overwrite"]
    assert f"--output {image} is the input {image}" in refused(capsys, [*argv, "-o", str(image)], "quantify")
    assert image.stat().st_size > 0 and (tmp_path / "img.ome.tif").is_file()


def test_evaluate_refuses_results_over_the_store_or_the_run(tmp_path, capsys, run):
    store = make_tiny_store(tmp_path / "store.h5", n_samples=2)
    config = (run / rd.MODEL_CONFIG).read_bytes()
    argv = ["evaluate", "--run", str(run), "--store", str(store), "--samples", "s0", "--overwrite", "--quiet"]
    assert f"--out {store} is the input {store}" in refused(capsys, [*argv, "--out", str(store)], "evaluate")
    msg = refused(capsys, [*argv, "--out", str(tmp_path / "e.csv"), "--plot", str(run / rd.MODEL_CONFIG)], "evaluate")
    assert f"--plot {run / rd.MODEL_CONFIG} is the input" in msg
    assert (run / rd.MODEL_CONFIG).read_bytes() == config and not (tmp_path / "e.csv").exists()
    with SampleStore(store) as st:
        assert st.names() == ["s0", "s1"]


def test_train_refuses_to_replace_a_run_directory_that_holds_its_store(tmp_path, capsys):
    run = tmp_path / "run"
    store = make_tiny_store(run / "data.h5", n_samples=3)
    argv = ["train", "--store", str(store), "--run", str(run), "--preset", "small", "--overwrite", "--quiet"]
    assert f"--run {run} contains the input {store}" in refused(capsys, argv, "train")
    with SampleStore(store) as st:
        assert st.names() == ["s0", "s1", "s2"]
