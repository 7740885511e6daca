"""Absurd inputs are refused with one line, exit 2, and nothing written."""

import numpy as np
import pytest
from test_inference import MARKERS, make_run

from marker_excite.cli import main
from marker_excite.data.store import SampleStore
from marker_excite.data.writers import write_volume


@pytest.fixture
def stack(tmp_path):
    image = np.random.default_rng(0).integers(0, 4000, (1, 2, 20, 30)).astype(np.uint16)
    write_volume(tmp_path / "img.ome.tif", image, (2.0, 0.5, 0.5), ["DAPI"])
    return tmp_path


def one_line_error(capsys, argv, command):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"marker-excite {command}: error: "), err
    return err[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--target-spacing", "1e6"], "changes the slice size by a factor 5e-07"),
        (["--target-spacing", "1e-3"], "changes the slice size by a factor 500"),
        (["--spacing", "2,1e-3,1e-3"], "resampling 0.001 µm pixels to 1 µm"),
        (["--spacing", "2,1e5,1e5"], "factor 100000"),
        (["--annotated", "2-0"], "empty range '2-0'"),
        (["--name", "."], r"sample name '\.' must be"),
        (["--label", "a/b={d}/img.ome.tif"], "label class name 'a/b' must be"),
    ],
)
def test_import_refuses_absurd_inputs(stack, capsys, extra, message):
    d = stack
    argv = ["import", "--store", str(d / "s.h5"), "--name", "s1", "--image", str(d / "img.ome.tif"), "--quiet"]
    msg = one_line_error(capsys, argv + [e.format(d=d) for e in extra], "import")
    assert __import__("re").search(message, msg), msg
    assert sorted(p.name for p in d.iterdir()) == ["img.ome.tif"]


def test_predict_output_equal_to_its_input_store_is_refused_even_with_overwrite(stack, tmp_path, capsys):
    run_dir, _, _ = make_run(tmp_path / "run")
    store = tmp_path / "store.h5"
    with SampleStore(store, "w") as st:
        w = st.create_sample("s1", markers=MARKERS, shape_zyx=(1, 20, 30))
        w.write_slice(0, np.ones((len(MARKERS), 20, 30), np.float32))
        w.finalize()
    before = store.read_bytes()
    for out in (store, tmp_path / "store.h5.samples" / "x.h5"):
        argv = ["predict", str(run_dir), f"{store}:s1", "--labels", str(out), "--overwrite", "--quiet"]
        assert "would replace the input" in one_line_error(capsys, argv, "predict")
    assert store.read_bytes() == before
    with SampleStore(store) as st:
        assert st.names() == ["s1"]
