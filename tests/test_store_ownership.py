"""A sample folder belongs to one store: renamed, copied, linked or crafted indexes never delete samples."""

import os
import shutil
from pathlib import Path

import h5py
import pytest
from test_store_safety import assert_intact, make_store, sample

from marker_excite.cli import main
from marker_excite.data.store import SampleStore, StoreError, read_index
from marker_excite.data.writers import write_volume

OWNER_FILE = ".store-id"  # the sample folder's record of the store that owns it


def add(path: Path, name: str, seed: int) -> None:
    with SampleStore(path, "a") as st:
        st.write_sample(sample(name, seed))


def sample_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.h5"))


def test_a_renamed_index_keeps_its_samples_when_a_new_store_takes_its_old_name(tmp_path):
    make_store(tmp_path / "data.h5", "s1", "s2")
    os.replace(tmp_path / "data.h5", tmp_path / "data_v1.h5")
    make_store(tmp_path / "data.h5", "n1")  # synth --out data.h5
    add(tmp_path / "data.h5", "n2", 5)  # import --store data.h5
    add(tmp_path / "data_v1.h5", "s3", 3)
    assert_intact(tmp_path / "data_v1.h5", {"s1": 0, "s2": 1, "s3": 3})
    assert_intact(tmp_path / "data.h5", {"n1": 0, "n2": 5})
    old, new = (read_index(tmp_path / n) for n in ("data_v1.h5", "data.h5"))
    assert (
        old.sample_dir == tmp_path / "data.h5.samples" and new.sample_dir.name == f"data.h5.{new.store_id[:8]}.samples"
    )
    assert old.store_id != new.store_id


def test_overwriting_a_store_keeps_the_samples_of_its_copy_and_collects_the_rest(tmp_path):
    data, backup = tmp_path / "data.h5", tmp_path / "backup.h5"
    make_store(data, "s1", "s2")
    shutil.copyfile(data, backup)
    make_store(data, "n1")  # synth --out data.h5 --overwrite
    assert_intact(backup, {"s1": 0, "s2": 1})
    assert_intact(data, {"n1": 0})
    add(backup, "s3", 3)  # the copy keeps working, writes included
    assert_intact(backup, {"s1": 0, "s2": 1, "s3": 3})
    assert_intact(data, {"n1": 0})
    backup.unlink()  # once no index lists the old samples, the next write removes their files
    add(data, "n2", 2)
    assert len(sample_files(tmp_path / "data.h5.samples")) == 2


def test_writing_through_a_symlinked_index_updates_its_target(tmp_path):
    data, alias = tmp_path / "data.h5", tmp_path / "alias.h5"
    make_store(data, "s1")
    alias.symlink_to("data.h5")
    add(alias, "s2", 2)
    add(data, "s3", 3)
    assert alias.is_symlink()
    assert_intact(alias, {"s1": 0, "s2": 2, "s3": 3})


def craft_index(path: Path, sample_dir: str) -> None:
    make_store(path, "s1")
    with h5py.File(path, "a") as f:
        f.attrs["sample_dir"] = sample_dir


def test_an_index_naming_a_folder_outside_its_own_is_refused(tmp_path, capsys):
    victims = tmp_path / "victims"
    victims.mkdir()
    (victims / "keep.h5").write_bytes(b"precious")
    store = tmp_path / "crafted.h5"
    craft_index(store, str(victims))
    with pytest.raises(StoreError, match="the sample index is damaged .*'/.*victims' is not a plain name next to"):
        SampleStore(store)
    image = write_volume(tmp_path / "x.ome.tif", sample().image, (2.0, 0.5, 0.5), ("DAPI", "endomucin"))
    argv = ["import", "--store", str(store), "--name", "x", "--image", str(image), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a plain name next to the index" in err[0], err
    assert (victims / "keep.h5").read_bytes() == b"precious"


def test_an_index_naming_a_folder_it_does_not_own_never_deletes_there(tmp_path):
    victims = tmp_path / "victims"
    victims.mkdir()
    (victims / "keep.h5").write_bytes(b"precious")
    store = tmp_path / "crafted.h5"
    craft_index(store, "victims")  # its sample file stays in crafted.h5.samples: listed nowhere now
    add(store, "s2", 2)
    with SampleStore(store, "a") as st:
        st.remove("s2")
    assert (victims / "keep.h5").read_bytes() == b"precious" and not (victims / OWNER_FILE).exists()


def test_an_old_store_without_ids_is_claimed_on_first_write_and_its_copy_kept(tmp_path):
    data, backup = tmp_path / "data.h5", tmp_path / "backup.h5"
    make_store(data, "s1", "s2")
    with h5py.File(data, "a") as f:  # as written before stores had ids
        del f.attrs["store_id"]
    (tmp_path / "data.h5.samples" / OWNER_FILE).unlink()
    shutil.copyfile(data, backup)
    with SampleStore(backup, "a") as st:  # not its default folder: adds, never deletes
        st.remove("s1")
    with SampleStore(data, "a") as st:
        st.remove("s2")
    assert_intact(backup, {"s2": 1})
    assert_intact(data, {"s1": 0})
    store_id = read_index(data).store_id
    assert store_id and (tmp_path / "data.h5.samples" / OWNER_FILE).read_text().strip() == store_id
    assert read_index(backup).store_id != store_id


def test_an_index_copied_without_its_folder_is_refused_with_a_clear_error(tmp_path):
    make_store(tmp_path / "data.h5", "s1")
    (tmp_path / "elsewhere").mkdir()
    shutil.copyfile(tmp_path / "data.h5", tmp_path / "elsewhere" / "data.h5")
    with pytest.raises(StoreError, match="its sample folder data.h5.samples is missing next to it"):
        SampleStore(tmp_path / "elsewhere" / "data.h5", "a")


def test_a_hidden_copy_is_protected_and_an_unreadable_one_stops_all_deletion(tmp_path):
    data, hidden, damaged = tmp_path / "data.h5", tmp_path / ".old.h5", tmp_path / "damaged.h5"
    make_store(data, "s1", "s2", "s3")
    shutil.copyfile(data, hidden)
    with SampleStore(data, "a") as st:
        st.remove("s1")
    assert_intact(hidden, {"s1": 0, "s2": 1, "s3": 2})
    hidden.unlink()
    shutil.copyfile(data, damaged)
    with h5py.File(damaged, "a") as f:
        del f["index"]
    with SampleStore(data, "a") as st:
        st.remove("s2")
    assert len(sample_files(tmp_path / "data.h5.samples")) == 3  # s1's and s2's files stay while in doubt
    damaged.unlink()
    with SampleStore(data, "a") as st:
        st.remove("s3")
    assert sample_files(tmp_path / "data.h5.samples") == [] and read_index(data).entries == {}
