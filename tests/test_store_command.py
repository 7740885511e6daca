"""`marker-excite info STORE` / `store list` list the samples of a store; `store remove` removes samples atomically."""

import json
from pathlib import Path

from test_store_safety import assert_intact, make_store

from marker_excite.cli import main


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"marker-excite {argv[0]}: error: "), err
    return err[0]


def test_info_lists_the_samples_of_a_store(tmp_path, capsys):
    store = tmp_path / "data.h5"
    make_store(store, "s1", "liver_2")
    assert main(["info", str(store)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"store {store}: 2 samples"
    assert lines[2] == (
        "  s1       no region; 3 x 8 x 9 voxels at 2 x 0.5 x 0.5 µm (float32); markers DAPI, endomucin; "
        "3 annotated slice(s); sinusoids 64 voxels"
    )
    assert main(["store", "list", str(store), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in listed["samples"]] == ["liver_2", "s1"]
    assert listed["samples"][1] == {
        "name": "s1", "region": None, "markers": ["DAPI", "endomucin"], "classes": {"sinusoids": 64},
        "shape_zyx": [3, 8, 9], "spacing_zyx_um": [2.0, 0.5, 0.5], "annotated_slices": 3, "dtype": "float32",
    }  # fmt: skip


def test_store_remove_removes_the_named_samples_or_none(tmp_path, capsys):
    store = tmp_path / "data.h5"
    make_store(store, "s1", "s2", "s3")
    folder = Path(f"{store}.samples")
    msg = one_line_error(capsys, ["store", "remove", str(store), "s1", "s2x"])
    assert msg.endswith(f"sample 's2x' (did you mean 's2'?) is not in store {store}; it has s1, s2, s3")
    assert_intact(store, {"s1": 0, "s2": 1, "s3": 2}) and len(list(folder.glob("*.h5"))) == 3
    assert main(["store", "remove", str(store), "s1", "s3"]) == 0
    assert capsys.readouterr().out == f"removed s1, s3 from {store}; 1 sample left\n"
    assert_intact(store, {"s2": 1})
    assert [p.name.split("-")[0] for p in folder.glob("*.h5")] == ["s2"]  # their files are gone too
    msg = one_line_error(capsys, ["store", "remove", str(tmp_path / "new.h5"), "s1"])
    assert msg.endswith(f"store {tmp_path / 'new.h5'} does not exist") and not (tmp_path / "new.h5.samples").exists()
